//! The proxy's counters: connections, their ends by reason, bytes relayed, bytes held in relay
//! buffers, and the final summary printed on exit.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::latency::Figures;
use super::relay::Held;

/// Counters shared by every connection of one proxy.
#[derive(Debug, Default)]
pub struct ProxyStats {
    accepted: AtomicU64,
    active: AtomicU64,
    policy_answered: AtomicU64,
    websocket: AtomicU64,
    c2s_bytes: AtomicU64,
    s2c_bytes: AtomicU64,
    /// Bytes read and not yet written on.
    pub held: Held,
    closes: Mutex<BTreeMap<&'static str, u64>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Policy requests answered by the proxy.
    pub policy_answered: u64,
    /// Clients whose WebSocket handshake succeeded.
    pub websocket: u64,
    /// Bytes relayed client to server, over ended connections.
    pub c2s_bytes: u64,
    /// Bytes relayed server to client, over ended connections.
    pub s2c_bytes: u64,
    /// The most bytes ever held in relay buffers at once (read, not yet written).
    pub held_peak: u64,
    /// Connection ends by reason kind.
    pub closes: BTreeMap<String, u64>,
}

impl ProxyStats {
    pub(super) fn opened(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn closed(&self, kind: &'static str, c2s: u64, s2c: u64) {
        self.c2s_bytes.fetch_add(c2s, Ordering::Relaxed);
        self.s2c_bytes.fetch_add(s2c, Ordering::Relaxed);
        *self
            .closes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default() += 1;
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn websocket_opened(&self) {
        self.websocket.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn policy_answered(&self) {
        self.policy_answered.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let closes = self.closes.lock().unwrap_or_else(|p| p.into_inner());
        StatsSnapshot {
            accepted: self.accepted.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            policy_answered: self.policy_answered.load(Ordering::Relaxed),
            websocket: self.websocket.load(Ordering::Relaxed),
            c2s_bytes: self.c2s_bytes.load(Ordering::Relaxed),
            s2c_bytes: self.s2c_bytes.load(Ordering::Relaxed),
            held_peak: self.held.peak(),
            closes: closes.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
        }
    }
}

/// What a proxy run came to.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The counters.
    pub stats: StatsSnapshot,
    /// Passive latency by command.
    pub latency: Figures,
    /// Log events dropped because the writer fell behind (the traffic was not affected).
    pub log_dropped: u64,
    /// Outputs of the log writer (log, recording, terminal) that stopped early, and why.
    pub log_failures: Vec<String>,
}

impl Summary {
    /// The text printed on exit.
    pub fn to_text(&self) -> String {
        let stats = &self.stats;
        let mut text = self.latency.table();
        let closes: Vec<String> = stats
            .closes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            text,
            "connections: {} accepted ({} WebSocket), {} policy answered; ended: {}; relayed {} B up, {} B down",
            stats.accepted,
            stats.websocket,
            stats.policy_answered,
            if closes.is_empty() {
                "none".into()
            } else {
                closes.join(", ")
            },
            stats.c2s_bytes,
            stats.s2c_bytes,
        );
        if self.log_dropped > 0 {
            let _ = writeln!(
                text,
                "log: {} events dropped because the log fell behind (traffic unaffected)",
                self.log_dropped
            );
        }
        for failure in &self.log_failures {
            let _ = writeln!(text, "log: stopped early: {failure}");
        }
        text
    }
}
