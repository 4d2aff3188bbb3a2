//! The port-843 policy server: any number of listeners (IPv4 and IPv6, or sockets inherited from
//! systemd), a cap on concurrent connections, a deadline per exchange so silent clients cannot
//! block others, a policy that SIGHUP can replace, one log line per exchange, and counters.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Sniff, linger, sniff, write_answer};
use crate::listener::accept_loop_any;

/// The policy being served; replaced whole on reload, read by every exchange.
#[derive(Debug)]
pub struct PolicyStore {
    current: RwLock<Arc<[u8]>>,
}

impl PolicyStore {
    /// A store serving `policy`.
    pub fn new(policy: &str) -> PolicyStore {
        PolicyStore {
            current: RwLock::new(policy.as_bytes().into()),
        }
    }

    /// The policy now.
    pub fn get(&self) -> Arc<[u8]> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&current)
    }

    /// Serves `policy` from now on; exchanges in progress finish with the old one.
    pub fn replace(&self, policy: &str) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        *current = policy.as_bytes().into();
    }
}

/// How the policy server behaves.
#[derive(Debug, Clone)]
pub struct PolicyServerConfig {
    /// Connections handled at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// The most one exchange may take, from accept to close.
    pub deadline: Duration,
}

impl Default for PolicyServerConfig {
    fn default() -> Self {
        PolicyServerConfig {
            max_connections: 10_000,
            deadline: Duration::from_secs(5),
        }
    }
}

/// How one exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// The policy was sent.
    Answered,
    /// The client sent something other than a policy request: closed without an answer.
    NotARequest,
    /// The client sent nothing (or not enough) before the deadline.
    Timeout,
    /// The connection failed.
    IoError,
}

impl Outcome {
    /// The outcome's name in logs and counters.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::NotARequest => "not_a_request",
            Outcome::Timeout => "timeout",
            Outcome::IoError => "io_error",
        }
    }
}

/// The policy server's counters.
#[derive(Debug, Default)]
pub struct PolicyStats {
    accepted: AtomicU64,
    outcomes: [AtomicU64; 4],
}

impl PolicyStats {
    fn record(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Exchanges ended so far, by outcome.
    pub fn outcomes(&self) -> BTreeMap<Outcome, u64> {
        [
            Outcome::Answered,
            Outcome::NotARequest,
            Outcome::Timeout,
            Outcome::IoError,
        ]
        .into_iter()
        .map(|outcome| {
            (
                outcome,
                self.outcomes[outcome as usize].load(Ordering::Relaxed),
            )
        })
        .collect()
    }

    /// The counters as one line for the shutdown report.
    pub fn to_text(&self) -> String {
        let outcomes: Vec<String> = self
            .outcomes()
            .into_iter()
            .map(|(outcome, count)| format!("{} {count}", outcome.name()))
            .collect();
        format!(
            "connections: {} accepted; exchanges: {}\n",
            self.accepted(),
            outcomes.join(", ")
        )
    }
}

/// A listening socket for `addr`; an IPv6 wildcard is IPv6-only, so that `[::]:843` and
/// `0.0.0.0:843` can both be bound.
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let bind = || -> std::io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        TcpListener::from_std(socket.into())
    };
    bind().with_context(|| match addr.port() {
        port if port < 1024 => format!(
            "cannot listen on {addr} (ports below 1024 need root, CAP_NET_BIND_SERVICE or systemd socket activation; see the README)"
        ),
        _ => format!("cannot listen on {addr}"),
    })
}

/// A policy server over bound listeners.
pub struct PolicyServer {
    listeners: Vec<TcpListener>,
    store: Arc<PolicyStore>,
    stats: Arc<PolicyStats>,
    config: PolicyServerConfig,
}

impl PolicyServer {
    /// A server answering with `store`'s policy on `listeners`.
    pub fn new(
        listeners: Vec<TcpListener>,
        store: Arc<PolicyStore>,
        config: PolicyServerConfig,
    ) -> PolicyServer {
        PolicyServer {
            listeners,
            store,
            stats: Arc::default(),
            config,
        }
    }

    /// The addresses listened on.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|listener| listener.local_addr().ok())
            .collect()
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<PolicyStats> {
        Arc::clone(&self.stats)
    }

    /// Serves until `shutdown`, then lets exchanges in progress end (each within its deadline).
    /// One accept loop over every listener, so a slot is taken only by a connection that is
    /// there, whichever listener it came to.
    pub async fn run(self, shutdown: CancellationToken) -> Arc<PolicyStats> {
        let slots = Arc::new(Semaphore::new(self.config.max_connections.max(1)));
        let exchanges = TaskTracker::new();
        let context = Exchange {
            store: Arc::clone(&self.store),
            stats: Arc::clone(&self.stats),
            deadline: self.config.deadline,
        };
        let handle = |stream, peer, _listener: usize| {
            context.stats.accepted.fetch_add(1, Ordering::Relaxed);
            let context = context.clone();
            async move { exchange(stream, peer, &context).await }
        };
        accept_loop_any(self.listeners, slots, exchanges.clone(), shutdown, handle).await;
        exchanges.close();
        exchanges.wait().await;
        self.stats
    }
}

/// What every exchange needs.
#[derive(Clone)]
struct Exchange {
    store: Arc<PolicyStore>,
    stats: Arc<PolicyStats>,
    deadline: Duration,
}

/// One exchange, bounded by the deadline, logged in one line.
async fn exchange(mut stream: TcpStream, peer: SocketAddr, context: &Exchange) {
    let started = Instant::now();
    let mut received = BytesMut::new();
    let mut sent = 0;
    let work = async {
        match sniff(&mut stream, &mut received, true).await {
            Ok(Sniff::PolicyRequest) => {
                let policy = context.store.get();
                match write_answer(&mut stream, &policy, context.deadline).await {
                    Ok(bytes) => {
                        sent = bytes;
                        linger(&mut stream, Duration::from_secs(1)).await;
                        Outcome::Answered
                    }
                    Err(_) => Outcome::IoError,
                }
            }
            Ok(_) => Outcome::NotARequest,
            Err(_) => Outcome::IoError,
        }
    };
    // The deadline may fall while lingering after the answer: the exchange was still answered.
    let outcome = match tokio::time::timeout(context.deadline, work).await {
        Ok(outcome) => outcome,
        Err(_) if sent > 0 => Outcome::Answered,
        Err(_) => Outcome::Timeout,
    };
    context.stats.record(outcome);
    tracing::info!(
        peer = %peer,
        outcome = outcome.name(),
        received = received.len(),
        sent,
        ms = started.elapsed().as_millis() as u64,
        "policy exchange"
    );
}
