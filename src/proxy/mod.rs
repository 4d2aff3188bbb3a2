//! `amf-bench proxy`: a transparent, policy-aware proxy that relays every byte untouched and logs
//! each frame decoded. Per connection (`connection.rs`): dial the upstream, relay both ways
//! (`relay.rs`), and show an observer (`observe.rs`) a copy of each chunk, which frames it
//! (`tap.rs`), decodes it (`decode.rs`), matches replies to requests (`latency.rs`) and queues
//! log events for one writer thread (`log.rs`, `format.rs`, `record.rs`). Clients connect over
//! TCP or WebSocket (`accept.rs`); the upstream is always TCP.

mod accept;
pub mod command;
mod connection;
pub mod decode;
pub mod format;
pub mod latency;
pub mod log;
mod observe;
pub mod record;
pub mod relay;
pub mod stats;
pub mod tap;
mod terminal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::DecodeOptions;
use crate::listener::Listeners;
use crate::policy::PolicySource;
use crate::ws::WsConfig;
pub use accept::UPGRADE_WAIT;
use latency::LatencyBook;
use log::{Filter, LogSender, LogWriter, Outputs};
pub use stats::{ProxyStats, StatsSnapshot, Summary};
use tap::{Framing, TapLimits};

/// Everything the proxy needs to know.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The server, HOST:PORT, dialled once per client.
    pub upstream: String,
    /// How long dialling the upstream may take.
    pub connect_timeout: Duration,
    /// How frames are cut for the log.
    pub framing: Framing,
    /// The tap's size limits.
    pub limits: TapLimits,
    /// How frame payloads are decoded for the log.
    pub decode: DecodeOptions,
    /// The policy answered for a `<policy-file-request/>`; `Off` forwards it upstream.
    pub policy: PolicySource,
    /// Which frames the log shows.
    pub filter: Filter,
    /// Terminal, JSON log, recording, stats interval, queue budget.
    pub outputs: Outputs,
    /// Relay buffer per direction per connection, in bytes.
    pub buffer_size: usize,
    /// Connections relayed at once, over both listeners; more wait in the listen backlog.
    pub max_connections: usize,
    /// A second address accepting WebSocket clients (as Ruffle's socket proxy makes), if any.
    pub ws_listen: Option<SocketAddr>,
    /// The main port also accepts WebSocket upgrades (told apart by their `GET `).
    pub ws_on_tcp: bool,
    /// How WebSocket clients are accepted, on either port.
    pub websocket: WsConfig,
}

/// How a client reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TCP connection carrying the byte stream itself.
    Tcp,
    /// A WebSocket whose binary messages carry the byte stream.
    WebSocket,
}

impl Transport {
    /// `tcp` or `websocket`, as the JSON log says.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::WebSocket => "websocket",
        }
    }

    /// What the terminal line adds after the client: nothing for TCP.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "",
            Transport::WebSocket => " (WebSocket)",
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream: "127.0.0.1:9000".into(),
            connect_timeout: Duration::from_secs(10),
            framing: Framing::AmfSocket,
            limits: TapLimits {
                max_decode: 1024 * 1024,
                max_frame: crate::frame::DEFAULT_MAX_FRAME_LEN,
            },
            decode: DecodeOptions::default(),
            policy: PolicySource::Off,
            filter: Filter::default(),
            outputs: Outputs {
                queue_bytes: 64 * 1024 * 1024,
                ..Outputs::default()
            },
            buffer_size: 16 * 1024,
            max_connections: 10_000,
            ws_listen: None,
            ws_on_tcp: false,
            websocket: WsConfig::for_frames(crate::frame::DEFAULT_MAX_FRAME_LEN),
        }
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    config: ProxyConfig,
    /// The policy's bytes, when answered here.
    policy: Option<Arc<[u8]>>,
    /// Whether a recording is being written (so filtered-out frames are still queued).
    recording: bool,
    /// Whether anything shows the log (terminal or file); without, no log event is queued.
    logging: bool,
    log: LogSender,
    latency: Arc<LatencyBook>,
    stats: Arc<ProxyStats>,
}

/// A bound proxy, ready to run.
pub struct Proxy {
    listeners: Listeners,
    shared: Arc<Shared>,
    writer: LogWriter,
}

impl Proxy {
    /// Binds the listening socket and opens the log and recording files.
    pub async fn bind(config: ProxyConfig) -> anyhow::Result<Proxy> {
        let listeners = Listeners::bind(config.listen, config.ws_listen).await?;
        let addr = listeners.local_addr()?;
        // Before the outputs are opened: a refused policy must not have truncated the log.
        config
            .policy
            .check_for_port(config.listen.port(), addr.port())?;
        let latency = Arc::new(LatencyBook::new().context("cannot make a histogram")?);
        let header = record::Header {
            framing: config.framing,
            upstream: config.upstream.clone(),
            listen: addr.to_string(),
        };
        let (log, writer) = log::open(
            &config.outputs,
            |out| record::Recorder::start(out, &header),
            Arc::clone(&latency),
            config.decode.clone(),
        )
        .context("cannot open the log or recording file")?;
        let shared = Shared {
            policy: config.policy.render(addr.port()),
            recording: config.outputs.record.is_some(),
            logging: config.outputs.terminal || config.outputs.json.is_some(),
            config,
            log,
            latency,
            stats: Arc::new(ProxyStats::default()),
        };
        Ok(Proxy {
            listeners,
            shared: Arc::new(shared),
            writer,
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
    pub fn stats(&self) -> Arc<ProxyStats> {
        Arc::clone(&self.shared.stats)
    }

    /// The live latency figures.
    pub fn latency(&self) -> Arc<LatencyBook> {
        Arc::clone(&self.shared.latency)
    }

    /// Relays until `shutdown` is cancelled, then closes every connection, lets the log catch
    /// up, and returns the summary.
    pub async fn run(self, shutdown: CancellationToken) -> Summary {
        let Proxy {
            listeners,
            shared,
            writer,
        } = self;
        let writing = std::thread::Builder::new()
            .name("proxy-log".into())
            .spawn(move || writer.run());
        let slots = Arc::new(Semaphore::new(shared.config.max_connections.max(1)));
        let handlers = TaskTracker::new();
        let ids = AtomicU64::new(1);
        let handle = |stream, remote, listener| {
            let conn = ids.fetch_add(1, Ordering::Relaxed);
            let shared = Arc::clone(&shared);
            accept::accepted(shared, conn, stream, remote, listener, shutdown.clone())
        };
        listeners
            .accept_loop(slots, handlers.clone(), shutdown.clone(), handle)
            .await;
        handlers.close();
        handlers.wait().await;
        let stats = shared.stats.snapshot();
        let latency = shared.latency.snapshot();
        let log_dropped = shared.log.dropped();
        // The last sender goes with `shared`: the writer then drains the queue and returns.
        drop(shared);
        let log_failures = match writing {
            Ok(thread) => match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Ok(failures)) => failures,
                _ => vec!["the log writer stopped unexpectedly".into()],
            },
            Err(error) => vec![format!("cannot start the log writer: {error}")],
        };
        Summary {
            stats,
            latency,
            log_dropped,
            log_failures,
        }
    }
}
