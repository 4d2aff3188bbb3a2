//! Passive latency: each connection matches replies to the requests it saw by message id (either
//! way round: the server may ask too), and every match lands in one HdrHistogram per command,
//! shared by all connections. Requests never answered are counted when their connection ends.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::decode::Rpc;
use super::log::Direction;
use crate::codec::Str;
use crate::codec::display::printable;

/// The highest latency recorded, in microseconds; longer ones are clamped to it.
const MAX_MICROS: u64 = 60_000_000;
/// Distinct command names measured one by one; beyond this, commands count under `OTHER`, so
/// peers inventing names cannot grow memory without bound (a histogram is tens of KiB).
const MAX_COMMANDS: usize = 256;
/// Where commands beyond `MAX_COMMANDS` are counted.
const OTHER: &str = "(other)";
/// Requests awaiting a reply per connection; further ones are counted as untracked.
const MAX_PENDING: usize = 10_000;
/// The longest message id or command a tracked request may have: each waiting request keeps
/// both, so without this a peer's megabyte ids would make `MAX_PENDING` gigabytes.
const MAX_TRACKED_NAME: usize = 256;

/// One command's figures.
#[derive(Debug, Clone)]
pub struct CommandLatency {
    /// Reply time minus request time, in microseconds.
    pub histogram: Histogram<u64>,
    /// Requests whose connection ended before a reply.
    pub unanswered: u64,
}

/// All commands' figures, shared by every connection of one proxy.
#[derive(Debug)]
pub struct LatencyBook {
    empty: Histogram<u64>,
    inner: Mutex<Figures>,
}

/// A copy of the figures.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// By command.
    pub commands: BTreeMap<String, CommandLatency>,
    /// Requests not tracked because a connection had `MAX_PENDING` waiting, or because their id
    /// or command was longer than `MAX_TRACKED_NAME`.
    pub untracked: u64,
    /// Replies to no request the proxy saw.
    pub unmatched_replies: u64,
}

impl LatencyBook {
    /// An empty book.
    pub fn new() -> Result<LatencyBook, hdrhistogram::CreationError> {
        Ok(LatencyBook {
            empty: Histogram::new_with_bounds(1, MAX_MICROS, 3)?,
            inner: Mutex::default(),
        })
    }

    fn with<R>(&self, work: impl FnOnce(&mut Figures) -> R) -> R {
        let mut figures = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        work(&mut figures)
    }

    fn command<'f>(&self, figures: &'f mut Figures, command: &str) -> &'f mut CommandLatency {
        let name =
            if figures.commands.contains_key(command) || figures.commands.len() < MAX_COMMANDS {
                command
            } else {
                OTHER
            };
        figures
            .commands
            .entry(name.to_string())
            .or_insert_with(|| CommandLatency {
                histogram: self.empty.clone(),
                unanswered: 0,
            })
    }

    fn answered(&self, command: &str, took: Duration) {
        let micros = (took.as_micros() as u64).clamp(1, MAX_MICROS);
        self.with(|figures| {
            let _ = self.command(figures, command).histogram.record(micros);
        });
    }

    fn unanswered(&self, command: &str) {
        self.with(|figures| self.command(figures, command).unanswered += 1);
    }

    /// A copy of the figures now.
    pub fn snapshot(&self) -> Figures {
        self.with(|figures| figures.clone())
    }
}

impl Figures {
    /// The table printed on exit and with `--stats-every`: one row per command, milliseconds.
    pub fn table(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{:<28} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "command (latency, ms)", "replies", "unanswered", "p50", "p90", "p99", "max"
        );
        for (command, figures) in &self.commands {
            let h = &figures.histogram;
            // No reply, no latency: a dash rather than a time of 0.
            let ms = |us: u64| match h.is_empty() {
                true => "-".to_string(),
                false => format!("{:.2}", us as f64 / 1000.0),
            };
            let _ = writeln!(
                text,
                "{:<28} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9}",
                printable(command),
                h.len(),
                figures.unanswered,
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.9)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max()),
            );
        }
        if self.untracked > 0 || self.unmatched_replies > 0 {
            let _ = writeln!(
                text,
                "requests not tracked (too many waiting, or an id or command over {MAX_TRACKED_NAME} bytes): {}; replies to unseen requests: {}",
                self.untracked, self.unmatched_replies
            );
        }
        text
    }
}

/// One connection's requests awaiting replies.
#[derive(Debug, Default)]
pub struct Matcher {
    pending: HashMap<(Direction, Str), (Str, Instant), foldhash::fast::RandomState>,
}

impl Matcher {
    /// Notes a frame's envelope seen at `at` going `direction`. A reply's matched request is
    /// recorded in `book`; its command is filled into `rpc`, and the latency returned.
    pub fn observe(
        &mut self,
        direction: Direction,
        rpc: &mut Rpc,
        at: Instant,
        book: &LatencyBook,
    ) -> Option<Duration> {
        match (rpc.type_name, &rpc.command) {
            ("rpcRequest", Some(command)) => {
                let trackable = self.pending.len() < MAX_PENDING
                    && rpc.message_id.len() <= MAX_TRACKED_NAME
                    && command.len() <= MAX_TRACKED_NAME;
                if !trackable {
                    book.with(|figures| figures.untracked += 1);
                    return None;
                }
                let key = (direction, rpc.message_id.clone());
                // An id used again before its reply: the earlier request will not be matched.
                if let Some((earlier, _)) = self.pending.insert(key, (command.clone(), at)) {
                    book.unanswered(&earlier);
                }
                None
            }
            ("rpcResponse", _) => {
                let key = (direction.reverse(), rpc.message_id.clone());
                let Some((command, sent)) = self.pending.remove(&key) else {
                    book.with(|figures| figures.unmatched_replies += 1);
                    return None;
                };
                let took = at.saturating_duration_since(sent);
                book.answered(&command, took);
                rpc.command = Some(command);
                Some(took)
            }
            _ => None,
        }
    }

    /// The connection ended: every request still waiting is unanswered.
    pub fn finish(&mut self, book: &LatencyBook) {
        for (_, (command, _)) in self.pending.drain() {
            book.unanswered(&command);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(type_name: &'static str, command: Option<&str>, id: &str) -> Rpc {
        Rpc {
            type_name,
            command: command.map(Str::from),
            message_id: Str::from(id),
        }
    }

    #[test]
    fn long_names_are_not_kept_and_a_reused_id_leaves_its_request_unanswered() {
        let book = LatencyBook::new().expect("histogram");
        let mut matcher = Matcher::default();
        let at = Instant::now();
        let long = "i".repeat(MAX_TRACKED_NAME + 1);
        let mut request = rpc("rpcRequest", Some("echo"), &long);
        matcher.observe(Direction::ClientToServer, &mut request, at, &book);
        let mut request = rpc("rpcRequest", Some(&long), "1");
        matcher.observe(Direction::ClientToServer, &mut request, at, &book);
        assert!(matcher.pending.is_empty());
        assert_eq!(book.snapshot().untracked, 2);
        let mut first = rpc("rpcRequest", Some("login"), "7");
        matcher.observe(Direction::ClientToServer, &mut first, at, &book);
        let mut again = rpc("rpcRequest", Some("echo"), "7");
        matcher.observe(Direction::ClientToServer, &mut again, at, &book);
        let mut reply = rpc("rpcResponse", None, "7");
        matcher.observe(Direction::ServerToClient, &mut reply, at, &book);
        assert_eq!(reply.command.as_deref(), Some("echo"), "the latest request");
        let figures = book.snapshot();
        assert_eq!(figures.commands["login"].unanswered, 1);
        assert_eq!(figures.commands["echo"].histogram.len(), 1);
    }

    #[test]
    fn replies_match_requests_by_id_and_direction() {
        let book = LatencyBook::new().expect("histogram");
        let mut matcher = Matcher::default();
        let start = Instant::now();
        let mut request = rpc("rpcRequest", Some("sleep"), "1");
        assert_eq!(
            matcher.observe(Direction::ClientToServer, &mut request, start, &book),
            None
        );
        // A reply going the same way as the request is not its reply.
        let mut wrong_way = rpc("rpcResponse", None, "1");
        let later = start + Duration::from_millis(5);
        assert_eq!(
            matcher.observe(Direction::ClientToServer, &mut wrong_way, later, &book),
            None
        );
        let mut reply = rpc("rpcResponse", None, "1");
        let later = start + Duration::from_millis(20);
        let took = matcher.observe(Direction::ServerToClient, &mut reply, later, &book);
        assert_eq!(took, Some(Duration::from_millis(20)));
        assert_eq!(reply.command.as_deref(), Some("sleep"));
        let mut orphan = rpc("rpcRequest", Some("echo"), "2");
        matcher.observe(Direction::ClientToServer, &mut orphan, later, &book);
        matcher.finish(&book);
        let figures = book.snapshot();
        assert_eq!(figures.commands["sleep"].histogram.len(), 1);
        assert_eq!(figures.commands["echo"].unanswered, 1);
        assert_eq!(figures.unmatched_replies, 1);
        let table = figures.table();
        let row = |command: &str| -> Vec<String> {
            let line = table.lines().find(|line| line.starts_with(command));
            let line = line.unwrap_or_else(|| panic!("a row for {command}: {table}"));
            line.split_whitespace().map(str::to_string).collect()
        };
        // 20 ms as the histogram holds it at 3 significant digits.
        let held = "20.02";
        assert_eq!(row("sleep"), ["sleep", "1", "0", held, held, held, held]);
        // No reply: no latency to show, rather than a time of 0.
        assert_eq!(row("echo"), ["echo", "0", "1", "-", "-", "-", "-"]);
    }
}
