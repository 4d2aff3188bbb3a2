//! The server's counters: connections, requests and messages by command, connection ends by
//! reason. Live for the `stats` command, printed on shutdown.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::codec::display::printable;
use crate::codec::{Str, Value};
use crate::rpc::PING_COMMAND;

/// Distinct command names counted one by one; beyond this, commands count under `OTHER`, so a
/// client inventing names cannot grow the table without bound.
const MAX_COMMAND_NAMES: usize = 1000;
/// Where commands beyond `MAX_COMMAND_NAMES` are counted.
const OTHER: &str = "(other)";

/// Counts by name; command names come from clients, so the hasher is seeded per process.
type Counts = HashMap<Str, u64, foldhash::fast::RandomState>;

#[derive(Default)]
struct ByName {
    requests: Counts,
    messages: Counts,
    closes: BTreeMap<&'static str, u64>,
}

/// Counters shared by every connection of one server.
#[derive(Default)]
pub struct Stats {
    accepted: AtomicU64,
    active: AtomicU64,
    policy_requests: AtomicU64,
    websocket: AtomicU64,
    /// Pings answered, on every connection: each peer adds to it as it answers.
    pings: Arc<AtomicU64>,
    by_name: Mutex<ByName>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Connections accepted so far.
    pub connections_accepted: u64,
    /// Connections open now.
    pub connections_active: u64,
    /// Policy requests answered.
    pub policy_requests: u64,
    /// Connections that completed a WebSocket handshake (on either port).
    pub websocket_connections: u64,
    /// Requests by command (pings included, counted as they are answered).
    pub requests: BTreeMap<String, u64>,
    /// Messages by command.
    pub messages: BTreeMap<String, u64>,
    /// Connection ends by reason kind (see `CloseReason::kind`).
    pub closes: BTreeMap<String, u64>,
}

impl Snapshot {
    /// Connection ends caused by the peer's bad input, a failed socket or a missed ping.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.closes
            .iter()
            .filter(|(kind, _)| {
                !matches!(kind.as_str(), "peer_closed" | "closed" | "policy_answered")
            })
            .map(|(kind, count)| (kind.clone(), *count))
            .collect()
    }
}

/// The name an empty command is counted under: an empty member name cannot be sent in AMF3
/// (it ends an object's members), so `stats` could not reply with it.
const EMPTY: &str = "(empty)";
/// The longest command name counted as itself: the table lives as long as the server, so
/// without this a client's megabyte names would grow it by `MAX_COMMAND_NAMES` megabytes.
const MAX_NAME_LEN: usize = 256;
/// Where longer names are counted.
const LONG: &str = "(long)";

fn count(table: &mut Counts, name: &str, by: u64) {
    let name = match name.len() {
        0 => EMPTY,
        1..=MAX_NAME_LEN => name,
        _ => LONG,
    };
    if let Some(counter) = table.get_mut(name) {
        *counter += by;
    } else if table.len() < MAX_COMMAND_NAMES {
        table.insert(Str::from(name), by);
    } else {
        *table.entry(Str::new_static(OTHER)).or_default() += by;
    }
}

impl Stats {
    fn by_name(&self) -> std::sync::MutexGuard<'_, ByName> {
        self.by_name
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A connection was accepted.
    pub fn connection_opened(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// A policy request was answered (its connection ends without a close reason).
    pub fn policy_answered(&self) {
        self.policy_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection completed a WebSocket handshake.
    pub fn websocket_opened(&self) {
        self.websocket.fetch_add(1, Ordering::Relaxed);
    }

    /// The counter each connection's peer adds its answered pings to.
    pub fn pings_total(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.pings)
    }

    /// A connection ended (as an RPC connection or before it became one) for a reason of this
    /// kind (`CloseReason::kind`, or a transport's own).
    pub fn connection_ended(&self, kind: &'static str) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        *self.by_name().closes.entry(kind).or_default() += 1;
    }

    /// A request arrived.
    pub fn request(&self, command: &str) {
        count(&mut self.by_name().requests, command, 1);
    }

    /// A message arrived.
    pub fn message(&self, command: &str) {
        count(&mut self.by_name().messages, command, 1);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let by_name = self.by_name();
        let sorted = |table: &Counts| -> BTreeMap<String, u64> {
            table
                .iter()
                .map(|(name, count)| (name.to_string(), *count))
                .collect()
        };
        let mut requests = sorted(&by_name.requests);
        let pings = self.pings.load(Ordering::Relaxed);
        if pings > 0 {
            // Pings never reach the command table (the peer answers them), so the name is free.
            requests.insert(PING_COMMAND.to_string(), pings);
        }
        Snapshot {
            connections_accepted: self.accepted.load(Ordering::Relaxed),
            connections_active: self.active.load(Ordering::Relaxed),
            policy_requests: self.policy_requests.load(Ordering::Relaxed),
            websocket_connections: self.websocket.load(Ordering::Relaxed),
            requests,
            messages: sorted(&by_name.messages),
            closes: by_name
                .closes
                .iter()
                .map(|(kind, count)| (kind.to_string(), *count))
                .collect(),
        }
    }
}

impl Snapshot {
    /// The counters as the `stats` command's result.
    pub fn to_value(&self) -> Value {
        let table = |counts: &BTreeMap<String, u64>| {
            Value::object(
                counts
                    .iter()
                    .map(|(name, count)| (Str::from(name.as_str()), number(*count)))
                    .collect(),
            )
        };
        Value::object(vec![
            (Str::new_static("closes"), table(&self.closes)),
            (
                Str::new_static("connectionsAccepted"),
                number(self.connections_accepted),
            ),
            (
                Str::new_static("connectionsActive"),
                number(self.connections_active),
            ),
            (Str::new_static("errors"), table(&self.errors())),
            (Str::new_static("messages"), table(&self.messages)),
            (
                Str::new_static("policyRequests"),
                number(self.policy_requests),
            ),
            (Str::new_static("requests"), table(&self.requests)),
            (
                Str::new_static("websocketConnections"),
                number(self.websocket_connections),
            ),
        ])
    }

    /// The counters as text, one per line, for the shutdown report.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "connections: {} accepted, {} open; policy requests: {}; WebSocket connections: {}",
            self.connections_accepted,
            self.connections_active,
            self.policy_requests,
            self.websocket_connections
        );
        for (title, counts) in [
            ("requests", &self.requests),
            ("messages", &self.messages),
            ("connection ends", &self.closes),
        ] {
            let listed: Vec<String> = counts
                .iter()
                .map(|(k, n)| format!("{} {n}", printable(k)))
                .collect();
            let listed = if listed.is_empty() {
                "none".into()
            } else {
                listed.join(", ")
            };
            let _ = writeln!(text, "{title}: {listed}");
        }
        text
    }
}

fn number(count: u64) -> Value {
    Value::number_from_i64(i64::try_from(count).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::CloseReason;

    #[test]
    fn command_names_are_capped() {
        let stats = Stats::default();
        for index in 0..MAX_COMMAND_NAMES + 5 {
            stats.request(&format!("command{index}"));
        }
        stats.request("command0");
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.requests.len(), MAX_COMMAND_NAMES + 1);
        assert_eq!(snapshot.requests[OTHER], 5);
        assert_eq!(snapshot.requests["command0"], 2);
    }

    #[test]
    fn long_command_names_count_together() {
        let stats = Stats::default();
        let longest = "n".repeat(MAX_NAME_LEN);
        stats.request(&longest);
        stats.request(&"a".repeat(MAX_NAME_LEN + 1));
        stats.message(&"b".repeat(1 << 20));
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.requests[&longest], 1);
        assert_eq!(snapshot.requests[LONG], 1);
        assert_eq!(snapshot.messages[LONG], 1);
    }

    #[test]
    fn errors_leave_out_orderly_ends() {
        let stats = Stats::default();
        stats.connection_opened();
        stats.connection_opened();
        stats.connection_opened();
        stats.pings_total().fetch_add(3, Ordering::Relaxed);
        stats.connection_ended(CloseReason::PeerClosed.kind());
        let torn = CloseReason::TornFrame {
            received: 2,
            expected: 4,
        };
        stats.connection_ended(torn.kind());
        stats.connection_ended("policy_answered");
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.connections_active, 0);
        assert_eq!(snapshot.requests[PING_COMMAND], 3);
        assert_eq!(
            snapshot.errors().into_iter().collect::<Vec<_>>(),
            vec![("torn_frame".to_string(), 1)]
        );
    }
}
