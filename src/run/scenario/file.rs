//! The scenario file as written: serde's shape of the TOML, unknown keys rejected, before any
//! value is checked.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use serde::Deserialize;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScenarioFile {
    pub(super) name: String,
    pub(super) target: Option<String>,
    pub(super) connections: u64,
    pub(super) connect_rate: Option<f64>,
    pub(super) duration: String,
    #[serde(default = "default_timeout")]
    pub(super) timeout: String,
    pub(super) in_flight: Option<u64>,
    pub(super) reconnect: Option<String>,
    pub(super) source_addresses: Option<Vec<String>>,
    pub(super) load: LoadFile,
    #[serde(default)]
    pub(super) csv: BTreeMap<String, CsvFile>,
    pub(super) session: Vec<SessionFile>,
    #[serde(default)]
    pub(super) thresholds: IndexMap<String, String>,
}

/// A `[csv.NAME]` table.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { file = \"users.csv\" }"
)]
pub(super) struct CsvFile {
    pub(super) file: String,
    pub(super) order: Option<String>,
}

fn default_timeout() -> String {
    "10s".into()
}

/// `[load]`.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as [load] model = \"closed\""
)]
pub(super) struct LoadFile {
    pub(super) model: String,
    #[serde(default)]
    pub(super) stages: Vec<StageFile>,
    pub(super) arrivals: Option<String>,
    pub(super) seed: Option<u64>,
}

/// One of `load.stages`.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { rate = 100, for = \"10s\" }"
)]
pub(super) struct StageFile {
    pub(super) from: Option<f64>,
    pub(super) rate: f64,
    #[serde(rename = "for")]
    pub(super) lasting: String,
}

/// A `[[session]]`.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a [[session]] table with a name and steps"
)]
pub(super) struct SessionFile {
    pub(super) name: String,
    #[serde(default = "one")]
    pub(super) weight: u32,
    pub(super) steps: Vec<StepFile>,
}

fn one() -> u32 {
    1
}

/// One of a session's `steps`: `validate` checks that exactly one of its kinds is set.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { request = \"echo\" }"
)]
pub(super) struct StepFile {
    pub(super) request: Option<String>,
    pub(super) message: Option<String>,
    pub(super) wait_message: Option<String>,
    pub(super) think: Option<String>,
    pub(super) params: Option<toml::Value>,
    pub(super) timeout: Option<String>,
}

/// The most parts a dotted key may have: the toml crate refuses a key whose table path (every
/// part but the last) reaches 80, with a bare "recursion limit" that says neither which key nor
/// where.
const MAX_KEY_PARTS: usize = 80;

/// Reads the file's TOML into its shape. A key the parser finds too deep is named by its line
/// and the limit, which the parser's own error does not give.
pub(super) fn read(text: &str) -> anyhow::Result<ScenarioFile> {
    toml::from_str(text).map_err(|error| {
        if error.span().is_some() || error.message() != "recursion limit" {
            return anyhow::Error::new(error);
        }
        let limit = format!("more than the {MAX_KEY_PARTS} parts a TOML key may have");
        match line_of_deepest_key(text) {
            Some(line) => anyhow::anyhow!("line {line}: a dotted key has {limit}"),
            None => anyhow::anyhow!("a key nests too deeply: {limit}"),
        }
    })
}

/// The line (from 1) whose key, before its `=` or inside its `[...]`, has the most dots, if
/// one has more than `MAX_KEY_PARTS - 1`. Quoted parts may hide dots or show false ones, but a
/// key this deep is almost always bare, and the line only guides the reader.
fn line_of_deepest_key(text: &str) -> Option<usize> {
    let key_dots = |line: &str| {
        let line = line.trim_start();
        let key = match line.strip_prefix('[') {
            Some(header) => header.split(']').next().unwrap_or_default(),
            None => line.split('=').next().unwrap_or_default(),
        };
        key.matches('.').count()
    };
    let (index, dots) = text
        .lines()
        .map(key_dots)
        .enumerate()
        .max_by_key(|&(index, dots)| (dots, std::cmp::Reverse(index)))?;
    (dots >= MAX_KEY_PARTS).then_some(index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step whose params are a dotted key of `parts` parts, on line 10.
    fn deep_params(parts: usize) -> String {
        let key = format!("params{}", ".a".repeat(parts - 1));
        format!(
            "name = \"deep\"\nconnections = 1\nduration = \"300ms\"\n[load]\nmodel = \"closed\"\n\
             [[session]]\nname = \"s\"\n[[session.steps]]\nrequest = \"echo\"\n{key} = 1\n"
        )
    }

    #[test]
    fn a_key_too_deep_for_the_parser_is_named_with_its_line_and_the_limit() {
        let message = format!("{:#}", read(&deep_params(81)).err().expect("too deep"));
        assert_eq!(
            message,
            "line 10: a dotted key has more than the 80 parts a TOML key may have"
        );
        assert!(read(&deep_params(80)).is_ok(), "the most the parser takes");
    }
}
