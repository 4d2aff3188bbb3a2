//! Values read from CSV files for templates: `[csv.users] file = "users.csv"` makes
//! `{{users.name}}` the `name` column of a row, the same row for every column within one request.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};

use crate::codec::Str;

/// Largest CSV file read, so that a wrong path (a disk image, a log) fails fast.
pub const MAX_CSV_BYTES: u64 = 256 << 20;

/// Which row a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrder {
    /// Row `client index mod rows`: each client keeps its own row (its account, say).
    Client,
    /// The next row on every request, shared by all clients, wrapping at the end.
    Sequence,
    /// A random row on every request.
    Random,
}

impl RowOrder {
    /// Parses the `order` key.
    pub fn parse(key: &str, text: &str) -> anyhow::Result<RowOrder> {
        match text {
            "client" => Ok(RowOrder::Client),
            "sequence" => Ok(RowOrder::Sequence),
            "random" => Ok(RowOrder::Random),
            other => bail!(
                "{key}: '{other}' is not a row order; expected \"client\", \"sequence\" or \"random\""
            ),
        }
    }
}

/// A CSV file with a header row, held in memory.
#[derive(Debug)]
pub struct CsvTable {
    /// The name templates use (`[csv.NAME]`).
    pub name: String,
    /// Column names, from the header row.
    pub columns: Vec<String>,
    rows: Vec<Vec<Str>>,
    order: RowOrder,
    next: AtomicUsize,
}

impl CsvTable {
    /// Reads `path` (relative paths are resolved by the caller); `key` names it in errors.
    pub fn load(name: &str, path: &Path, order: RowOrder, key: &str) -> anyhow::Result<CsvTable> {
        let cannot_read = || format!("{key}: cannot read '{}'", path.display());
        // Read through a limit rather than trusting the size: a device or a pipe has none.
        let mut text = Vec::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_CSV_BYTES + 1).read_to_end(&mut text))
            .with_context(cannot_read)?;
        if text.len() as u64 > MAX_CSV_BYTES {
            bail!(
                "{key}: '{}' is larger than {MAX_CSV_BYTES} bytes, the most read",
                path.display()
            );
        }
        CsvTable::parse(name, &text, order)
            .with_context(|| format!("{key}: in '{}'", path.display()))
    }

    /// Parses CSV text whose first row names the columns.
    pub fn parse(name: &str, text: &[u8], order: RowOrder) -> anyhow::Result<CsvTable> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text);
        let columns: Vec<String> = reader
            .headers()
            .context("the header row")?
            .iter()
            .map(|column| column.trim().to_string())
            .collect();
        let rows = reader
            .records()
            .map(|record| {
                let record = record?;
                Ok(record.iter().map(Str::from).collect())
            })
            .collect::<Result<Vec<Vec<Str>>, csv::Error>>()?;
        if rows.is_empty() {
            bail!("no rows below the header");
        }
        Ok(CsvTable {
            name: name.to_string(),
            columns,
            rows,
            order,
            next: AtomicUsize::new(0),
        })
    }

    /// The index of `column`, if the header has it.
    pub fn column(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|name| name == column)
    }

    /// The longest cell of `column`, in bytes.
    pub fn longest(&self, column: usize) -> usize {
        self.rows
            .iter()
            .filter_map(|row| row.get(column))
            .map(|cell| cell.len())
            .max()
            .unwrap_or(0)
    }

    /// The row for one request of client `client`.
    pub fn pick_row(&self, client: u64) -> usize {
        match self.order {
            RowOrder::Client => (client % self.rows.len() as u64) as usize,
            RowOrder::Sequence => self.next.fetch_add(1, Ordering::Relaxed) % self.rows.len(),
            RowOrder::Random => rand::random_range(0..self.rows.len()),
        }
    }

    /// The cell at `row`, `column` (empty when a short row lacks it).
    pub fn cell(&self, row: usize, column: usize) -> Str {
        self.rows
            .get(row)
            .and_then(|cells| cells.get(column))
            .cloned()
            .unwrap_or_default()
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows (never true for a loaded table).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_by_order() {
        let text = b"user,password\nann,a1\nbob,b2\ncat,c3\n";
        let table = CsvTable::parse("users", text, RowOrder::Client).expect("valid");
        assert_eq!(table.columns, ["user", "password"]);
        assert_eq!(table.pick_row(4), 1);
        assert_eq!(table.cell(1, 0), "bob");
        let table = CsvTable::parse("users", text, RowOrder::Sequence).expect("valid");
        let rows: Vec<usize> = (0..4).map(|_| table.pick_row(9)).collect();
        assert_eq!(rows, [0, 1, 2, 0]);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let message = format!(
            "{:#}",
            CsvTable::parse("users", b"user\n", RowOrder::Client).expect_err("no rows")
        );
        assert!(message.contains("no rows"), "{message}");
        let message = format!(
            "{:#}",
            CsvTable::parse("users", b"a,b\n1,2\n3\n", RowOrder::Client).expect_err("ragged")
        );
        assert!(message.contains("record 2"), "{message}");
        let message = format!(
            "{:#}",
            CsvTable::load(
                "users",
                Path::new("/nonexistent/users.csv"),
                RowOrder::Client,
                "csv.users.file"
            )
            .expect_err("missing")
        );
        assert!(
            message.contains("csv.users.file: cannot read '/nonexistent/users.csv'"),
            "{message}"
        );
        let endless = CsvTable::load(
            "zeros",
            Path::new("/dev/zero"),
            RowOrder::Client,
            "csv.zeros.file",
        )
        .expect_err("too large");
        assert!(
            format!("{endless:#}").contains("is larger than 268435456 bytes"),
            "{endless:#}"
        );
    }
}
