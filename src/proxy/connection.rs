//! One proxied connection: dial the upstream at once, relay both directions concurrently (the
//! client's first bytes sniffed for a policy request meanwhile, and answered even if the dial
//! fails), and end it: a clean close on
//! each side is passed on as a half-close, a failure on either side resets both. The client is
//! a TCP stream or a WebSocket carrying the same byte stream (`Client`); the upstream is TCP.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::log::{Direction, Event, Stamp, What};
use super::observe::{ConnState, Observer};
use super::relay::{Ended, Opening, SNIFF_WAIT, client_side, pump, sniff_policy_request};
use super::{Shared, Transport};
use crate::policy::{self, Sniff};
use crate::ws::{CloseDone, Prefixed, WsError, WsStream};

/// A client connection the proxy relays: its TCP socket, and its two directions as byte streams.
pub(super) trait Client: AsyncRead + AsyncWrite + Unpin + Send {
    /// How the client connected, for the log.
    const TRANSPORT: Transport;

    /// The TCP socket underneath.
    fn socket(&self) -> &TcpStream;

    /// The reading and writing halves, usable at once.
    fn halves(
        &mut self,
    ) -> (
        impl AsyncRead + Unpin + Send + '_,
        impl AsyncWrite + Unpin + Send + '_,
    );
}

impl Client for TcpStream {
    const TRANSPORT: Transport = Transport::Tcp;

    fn socket(&self) -> &TcpStream {
        self
    }

    fn halves(
        &mut self,
    ) -> (
        impl AsyncRead + Unpin + Send + '_,
        impl AsyncWrite + Unpin + Send + '_,
    ) {
        self.split()
    }
}

impl Client for WsStream<Prefixed<TcpStream>> {
    const TRANSPORT: Transport = Transport::WebSocket;

    fn socket(&self) -> &TcpStream {
        self.get_ref().get_ref()
    }

    fn halves(
        &mut self,
    ) -> (
        impl AsyncRead + Unpin + Send + '_,
        impl AsyncWrite + Unpin + Send + '_,
    ) {
        tokio::io::split(self)
    }
}

/// How long shutdown spends closing a client gracefully.
const SHUTDOWN_CLOSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a connection ended.
#[derive(Debug)]
enum Outcome {
    /// Both sides closed cleanly.
    Closed,
    /// A policy request was answered here.
    PolicyAnswered,
    /// The client closed its WebSocket while the upstream still had bytes for it.
    ClientClosed,
    /// The client reset the connection, or could not be written to.
    ClientFailed(io::Error),
    /// The upstream reset the connection, or could not be written to.
    UpstreamFailed(io::Error),
    /// The upstream could not be reached.
    Unreachable(io::Error),
    /// The proxy is shutting down.
    Shutdown,
}

impl Outcome {
    /// The reason's kind, as counted.
    fn kind(&self) -> &'static str {
        match self {
            Outcome::Closed => "closed",
            Outcome::PolicyAnswered => "policy_answered",
            Outcome::ClientClosed => "closed",
            Outcome::ClientFailed(error) => {
                WsError::within(error).map_or("client_error", WsError::kind)
            }
            Outcome::UpstreamFailed(_) => "upstream_error",
            Outcome::Unreachable(_) => "upstream_unreachable",
            Outcome::Shutdown => "shutdown",
        }
    }

    fn describe(&self) -> String {
        match self {
            Outcome::Closed => "closed by both sides".into(),
            Outcome::PolicyAnswered => "policy answered".into(),
            Outcome::ClientClosed => {
                "closed by the client's WebSocket Close while the upstream was still sending".into()
            }
            Outcome::ClientFailed(error) => format!("client error: {error}"),
            Outcome::UpstreamFailed(error) => format!("upstream error: {error}"),
            Outcome::Unreachable(error) => format!("upstream unreachable: {error}"),
            Outcome::Shutdown => "proxy shutting down".into(),
        }
    }

    /// Whether the upstream is reset rather than closed, to pass a failure on.
    fn resets(&self) -> bool {
        matches!(
            self,
            Outcome::ClientClosed
                | Outcome::ClientFailed(_)
                | Outcome::UpstreamFailed(_)
                | Outcome::Unreachable(_)
        )
    }

    /// Whether the client is reset too: not after a WebSocket refusal, whose Close says why, nor
    /// after the client's own Close.
    fn resets_client(&self) -> bool {
        match self {
            Outcome::ClientClosed => false,
            Outcome::ClientFailed(error) => WsError::within(error).is_none(),
            other => other.resets(),
        }
    }
}

/// A client as accepted: its stream, its address, and what was read from it already.
pub(super) struct Accepted<C> {
    pub(super) client: C,
    pub(super) addr: SocketAddr,
    pub(super) first: BytesMut,
    /// When the client connected: the `open` event's time, whatever the handshake and the
    /// upstream's dial then took.
    pub(super) at: Stamp,
}

/// Handles one accepted client until both sides are done.
pub(super) async fn handle<C: Client>(
    shared: Arc<Shared>,
    conn: u64,
    accepted: Accepted<C>,
    shutdown: CancellationToken,
) {
    let Accepted {
        mut client,
        addr: client_addr,
        mut first,
        at: opened_at,
    } = accepted;
    shared.stats.opened();
    let target = &shared.config.upstream;
    let dialed = dial(&shared, &mut client, &mut first, &shutdown).await;
    let state = ConnState::default();
    // The upstream as given, for a connection that never reached it.
    let announce_unconnected = || {
        let what = open::<C>(client_addr, target.clone());
        send_at(&shared, conn, opened_at, what);
    };
    let (outcome, c2s, s2c) = match dialed {
        Dialed::Shutdown => {
            announce_unconnected();
            (Outcome::Shutdown, 0, 0)
        }
        Dialed::Failed(error) => {
            announce_unconnected();
            (Outcome::Unreachable(error), 0, 0)
        }
        Dialed::PolicyRequest => {
            announce_unconnected();
            let outcome = answer_policy(&shared, conn, client_addr, &mut client).await;
            (outcome, 0, 0)
        }
        Dialed::Upstream {
            mut upstream,
            sniffed,
        } => {
            let _ = upstream.set_nodelay(true);
            let peer = upstream
                .peer_addr()
                .map_or(target.clone(), |a| a.to_string());
            send_at(&shared, conn, opened_at, open::<C>(client_addr, peer));
            let sockets = Sockets {
                client: &mut client,
                client_addr,
                first,
                sniffed,
                upstream: &mut upstream,
            };
            let (outcome, c2s, s2c) = relay(&shared, conn, &state, sockets, &shutdown).await;
            let outcome = match outcome {
                Outcome::PolicyAnswered => {
                    answer_policy(&shared, conn, client_addr, &mut client).await
                }
                other => other,
            };
            end(&upstream, outcome.resets());
            (outcome, c2s, s2c)
        }
    };
    if matches!(outcome, Outcome::Shutdown | Outcome::ClientClosed) {
        // As serve does: a WebSocket client gets a Close (a TCP one its FIN), not a vanished
        // connection, which a browser reports as an abnormal close; after the client's own
        // Close, the echo tungstenite queued behind the bytes still on their way.
        let _ = tokio::time::timeout(SHUTDOWN_CLOSE, client.shutdown()).await;
    }
    end(client.socket(), outcome.resets_client());
    state
        .matcher
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .finish(&shared.latency);
    let what = What::Close {
        reason: outcome.describe(),
        c2s,
        s2c,
        transport: C::TRANSPORT,
    };
    if !matches!(outcome, Outcome::Closed) {
        tracing::debug!(conn, client = %client_addr, "connection ended: {}", outcome.describe());
    }
    send(&shared, conn, what);
    shared.stats.closed(outcome.kind(), c2s, s2c);
}

/// How the upstream's dial went, or why it was not needed.
enum Dialed {
    Upstream {
        upstream: TcpStream,
        /// Whether the client's first bytes were found not to be a policy request, so that the
        /// relay does not wait for them again.
        sniffed: bool,
    },
    Failed(io::Error),
    /// The client asked for the policy answered here.
    PolicyRequest,
    Shutdown,
}

/// What came first while dialing.
enum First {
    Dialed(io::Result<TcpStream>),
    Sniffed(io::Result<Sniff>),
    Shutdown,
}

/// Dials the upstream. With a policy to answer here, the client's first bytes are read into
/// `first` meanwhile, and a policy request is answered whatever becomes of the dial: an upstream
/// that is down or slow to accept must not cost Flash its policy.
async fn dial<C: Client>(
    shared: &Shared,
    client: &mut C,
    first: &mut BytesMut,
    shutdown: &CancellationToken,
) -> Dialed {
    let connect = TcpStream::connect(&shared.config.upstream);
    let dialing = async {
        tokio::time::timeout(shared.config.connect_timeout, connect)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))
    };
    tokio::pin!(dialing);
    let answers = shared.policy.is_some();
    let (mut reader, _) = client.halves();
    let sniffing = sniff_policy_request(&mut reader, first);
    tokio::pin!(sniffing);
    let came = tokio::select! {
        dialed = &mut dialing => First::Dialed(dialed),
        sniffed = &mut sniffing, if answers => First::Sniffed(sniffed),
        () = shutdown.cancelled() => First::Shutdown,
    };
    let sniffed = match came {
        First::Shutdown => return Dialed::Shutdown,
        First::Dialed(Ok(upstream)) => {
            return Dialed::Upstream {
                upstream,
                sniffed: false,
            };
        }
        First::Dialed(Err(error)) if !answers => return Dialed::Failed(error),
        First::Dialed(Err(error)) => {
            // Flash asks as soon as it connects: a client silent for the sniff's wait is not
            // asking, and learns at once that the upstream is unreachable.
            let sniffed = tokio::select! {
                sniffed = tokio::time::timeout(SNIFF_WAIT, &mut sniffing) => sniffed.ok(),
                () = shutdown.cancelled() => return Dialed::Shutdown,
            };
            return match sniffed {
                Some(Ok(Sniff::PolicyRequest)) => Dialed::PolicyRequest,
                _ => Dialed::Failed(error),
            };
        }
        First::Sniffed(sniffed) => sniffed,
    };
    if matches!(sniffed, Ok(Sniff::PolicyRequest)) {
        return Dialed::PolicyRequest;
    }
    tokio::select! {
        dialed = &mut dialing => match dialed {
            Ok(upstream) => Dialed::Upstream {
                upstream,
                sniffed: sniffed.is_ok(),
            },
            Err(error) => Dialed::Failed(error),
        },
        () = shutdown.cancelled() => Dialed::Shutdown,
    }
}

fn open<C: Client>(client: SocketAddr, upstream: String) -> What {
    What::Open {
        client,
        upstream,
        transport: C::TRANSPORT,
    }
}

fn send(shared: &Shared, conn: u64, what: What) {
    send_at(shared, conn, Stamp::now(), what);
}

/// Queues an event of connection `conn` that happened at `at`, if the log shows it or the
/// recording records it.
pub(super) fn send_at(shared: &Shared, conn: u64, at: Stamp, what: What) {
    let logged = shared.logging && shared.config.filter.shows_conn(conn);
    if logged || shared.recording {
        shared.log.send(Event {
            at,
            conn,
            what,
            logged,
        });
    }
}

/// Passes a failure on as a reset: with a zero linger, closing sends RST instead of FIN.
fn end(stream: &TcpStream, reset: bool) {
    if reset {
        let _ = stream.set_zero_linger();
    }
}

/// The two sockets of a connection.
struct Sockets<'s, C> {
    client: &'s mut C,
    client_addr: SocketAddr,
    /// Bytes already read from the client.
    first: BytesMut,
    /// Whether `first` was already found not to be a policy request.
    sniffed: bool,
    upstream: &'s mut TcpStream,
}

/// Relays both directions until both close, either fails, the client asks for a policy to
/// answer here, or shutdown. Returns how it ended and the bytes relayed each way.
async fn relay<C: Client>(
    shared: &Shared,
    conn: u64,
    state: &ConnState,
    sockets: Sockets<'_, C>,
    shutdown: &CancellationToken,
) -> (Outcome, u64, u64) {
    let size = shared.config.buffer_size;
    let (mut c2s_buffer, mut s2c_buffer) = (vec![0u8; size], vec![0u8; size]);
    let mut c2s = Observer::new(Direction::ClientToServer, conn, shared, state);
    let mut s2c = Observer::new(Direction::ServerToClient, conn, shared, state);
    let outcome = {
        let (mut client_read, mut client_write) = sockets.client.halves();
        let (mut upstream_read, mut upstream_write) = sockets.upstream.split();
        let on_policy_forwarded = || {
            state
                .policy_exchange
                .store(true, std::sync::atomic::Ordering::Relaxed);
            send(
                shared,
                conn,
                policy_event(sockets.client_addr, "forwarded", None),
            );
        };
        let held = &shared.stats.held;
        let opening = Opening {
            first: sockets.first,
            sniffed: sockets.sniffed,
            answer: shared.policy.is_some(),
            on_policy_forwarded,
        };
        let up = client_side(
            &mut client_read,
            &mut upstream_write,
            opening,
            &mut c2s_buffer,
            &mut c2s,
            held,
        );
        let down = pump(
            &mut upstream_read,
            &mut client_write,
            &mut s2c_buffer,
            &mut s2c,
            held,
        );
        both(up, down, shutdown).await
    };
    // A direction abandoned mid-frame (the other side failed, or shutdown) reports it too.
    c2s.finish();
    s2c.finish();
    (outcome, c2s.bytes, s2c.bytes)
}

/// Runs both directions until both have closed, or one fails (the other is then abandoned).
async fn both(
    up: impl Future<Output = Ended>,
    down: impl Future<Output = Ended>,
    shutdown: &CancellationToken,
) -> Outcome {
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    loop {
        tokio::select! {
            ended = &mut up, if !up_done => match ended {
                Ended::Closed => up_done = true,
                Ended::PolicyRequest => return Outcome::PolicyAnswered,
                Ended::ReadFailed(error) => return Outcome::ClientFailed(error),
                Ended::WriteFailed(error) => return Outcome::UpstreamFailed(error),
            },
            ended = &mut down, if !down_done => match ended {
                Ended::Closed | Ended::PolicyRequest => down_done = true,
                Ended::ReadFailed(error) => return Outcome::UpstreamFailed(error),
                Ended::WriteFailed(error) if CloseDone::within(&error) => {
                    return Outcome::ClientClosed;
                }
                Ended::WriteFailed(error) => return Outcome::ClientFailed(error),
            },
            () = shutdown.cancelled() => return Outcome::Shutdown,
        }
        if up_done && down_done {
            return Outcome::Closed;
        }
    }
}

fn policy_event(client: SocketAddr, action: &'static str, error: Option<String>) -> What {
    What::Policy {
        client,
        action,
        error,
    }
}

/// Answers the policy request the client sent first; the upstream never saw it.
async fn answer_policy(
    shared: &Shared,
    conn: u64,
    client_addr: SocketAddr,
    client: &mut impl Client,
) -> Outcome {
    let Some(policy) = &shared.policy else {
        return Outcome::Closed;
    };
    let answered = policy::answer(client, policy, policy::AnswerTimeouts::default()).await;
    let what = match &answered {
        Ok(_) => policy_event(client_addr, "answered", None),
        Err(error) => policy_event(client_addr, "failed", Some(error.to_string())),
    };
    send(shared, conn, what);
    match answered {
        Ok(_) => {
            shared.stats.policy_answered();
            Outcome::PolicyAnswered
        }
        Err(error) => Outcome::ClientFailed(error),
    }
}
