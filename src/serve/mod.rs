//! `amf-bench serve`: the reference AMF Socket RPC server. A Listener accepts connections up to a
//! cap (shared by the TCP port and the optional WebSocket port) and gives each to a Handler
//! (`connection.rs`); shutdown stops accepting, lets in-flight requests finish up to a deadline,
//! then closes.

pub mod command;
pub mod commands;
mod connection;
pub mod responses;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::listener::{Listeners, Which};
pub use crate::policy::PolicySource;
use crate::rpc::PeerConfig;
use crate::ws::WsConfig;
use connection::{Drain, Handler, Transport};
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
    /// A second address accepting WebSocket connections (as Ruffle's socket proxy makes), if any.
    pub ws_listen: Option<SocketAddr>,
    /// The main port also accepts WebSocket upgrades (told apart by their `GET `).
    pub ws_on_tcp: bool,
    /// How WebSocket connections are accepted, on either port.
    pub websocket: WsConfig,
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
            ws_listen: None,
            ws_on_tcp: false,
            websocket: WsConfig::for_frames(crate::frame::DEFAULT_MAX_FRAME_LEN),
        }
    }
}

/// A bound server, ready to run.
pub struct Server {
    listeners: Listeners,
    config: Arc<ServeConfig>,
    policy: Option<Arc<[u8]>>,
    stats: Arc<Stats>,
}

impl Server {
    /// Binds the listening socket.
    pub async fn bind(mut config: ServeConfig) -> anyhow::Result<Server> {
        let listeners = Listeners::bind(config.listen, config.ws_listen).await?;
        let port = listeners.local_addr()?.port();
        config.policy.check_for_port(config.listen.port(), port)?;
        let stats = Arc::new(Stats::default());
        config.peer.pings_total = Some(stats.pings_total());
        Ok(Server {
            listeners,
            policy: config.policy.render(port),
            config: Arc::new(config),
            stats,
        })
    }

    /// The address actually bound (its port, when port 0 was asked for).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listeners.local_addr()
    }

    /// The WebSocket listener's address, when there is one.
    pub fn ws_local_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        self.listeners.ws_local_addr()
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Serves until `shutdown` is cancelled, then drains and returns the final counters.
    pub async fn run(self, shutdown: CancellationToken) -> Snapshot {
        let Server {
            listeners,
            config,
            policy,
            stats,
        } = self;
        let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let handlers = TaskTracker::new();
        let drain = Drain::new(shutdown.clone(), config.drain_timeout);
        let handle = |stream, remote, listener| {
            let handler = Handler {
                remote,
                config: Arc::clone(&config),
                policy: policy.clone(),
                stats: Arc::clone(&stats),
                drain: drain.clone(),
            };
            let transport = match listener {
                Which::Main => Transport::Tcp,
                Which::WebSocket => Transport::WebSocket,
            };
            handler.run(stream, transport)
        };
        listeners
            .accept_loop(slots, handlers.clone(), shutdown, handle)
            .await;
        handlers.close();
        handlers.wait().await;
        stats.snapshot()
    }
}
