//! `amf-bench serve`: the reference AMF Socket RPC server. A Listener accepts connections up to a
//! cap and gives each to a Handler (`connection.rs`); shutdown stops accepting, lets in-flight
//! requests finish up to a deadline, then closes.

pub mod command;
pub mod commands;
mod connection;
pub mod responses;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::listener::accept_loop;
pub use crate::policy::PolicySource;
use crate::rpc::PeerConfig;
pub use responses::Responses;
pub use stats::{Snapshot, Stats};

/// Everything the server needs to know.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Requests of one connection handled at once; more wait, and the connection is read no further.
    pub max_in_flight: usize,
    /// Each connection's RPC peer (encoding, frame cap, pings).
    pub peer: PeerConfig,
    /// What to answer a `<policy-file-request/>` on this port with.
    pub policy: PolicySource,
    /// Canned results by command.
    pub responses: Arc<Responses>,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            max_connections: 10_000,
            max_in_flight: 64,
            peer: PeerConfig {
                ping: Some(crate::rpc::PingConfig::default()),
                ..PeerConfig::default()
            },
            policy: PolicySource::default(),
            responses: Arc::new(Responses::default()),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    config: Arc<ServeConfig>,
    policy: Option<Arc<[u8]>>,
    stats: Arc<Stats>,
}

impl Server {
    /// Binds the listening socket.
    pub async fn bind(config: ServeConfig) -> anyhow::Result<Server> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let port = listener.local_addr()?.port();
        Ok(Server {
            listener,
            policy: config.policy.render(port),
            config: Arc::new(config),
            stats: Arc::new(Stats::default()),
        })
    }

    /// The address actually bound (its port, when port 0 was asked for).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Serves until `shutdown` is cancelled, then drains and returns the final counters.
    pub async fn run(self, shutdown: CancellationToken) -> Snapshot {
        let slots = Arc::new(Semaphore::new(self.config.max_connections.max(1)));
        let handlers = TaskTracker::new();
        let drain = connection::Drain::new(shutdown.clone(), self.config.drain_timeout);
        let handle = |stream, remote| {
            let handler = connection::Handler {
                remote,
                config: Arc::clone(&self.config),
                policy: self.policy.clone(),
                stats: Arc::clone(&self.stats),
                drain: drain.clone(),
            };
            handler.run(stream)
        };
        accept_loop(self.listener, slots, handlers.clone(), shutdown, handle).await;
        handlers.close();
        handlers.wait().await;
        self.stats.snapshot()
    }
}
