//! One server connection: answer a policy request if that is what arrives first, complete a
//! WebSocket handshake if the connection is (or starts) one, then run the RPC peer over TCP or
//! WebSocket alike and act on each request; on shutdown, stop reading, finish what is in flight up
//! to the drain deadline, then close.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ServeConfig;
use super::commands::{self, Action};
use super::stats::Stats;
use crate::codec::display::printable;
use crate::codec::{Str, Value};
use crate::policy::{self, Sniff};
use crate::rpc::{CallError, CloseReason, Incoming, Peer, Request};
use crate::sniff;
use crate::ws::{self, Prefixed, UpgradeSniff, WsError};

/// The server's shutdown signal and the moment draining must end, fixed when it starts.
#[derive(Clone)]
pub(super) struct Drain {
    shutdown: CancellationToken,
    timeout: Duration,
    deadline: Arc<OnceLock<Instant>>,
}

impl Drain {
    pub(super) fn new(shutdown: CancellationToken, timeout: Duration) -> Drain {
        Drain {
            shutdown,
            timeout,
            deadline: Arc::new(OnceLock::new()),
        }
    }

    fn deadline(&self) -> Instant {
        *self.deadline.get_or_init(|| Instant::now() + self.timeout)
    }

    /// Returns once shutdown has begun and the drain deadline has passed.
    async fn passed(&self) {
        self.shutdown.cancelled().await;
        tokio::time::sleep_until(self.deadline()).await;
    }
}

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    /// The main port: AMF Socket frames, and policy requests or WebSocket upgrades when enabled.
    Tcp,
    /// The WebSocket port: every connection starts with a handshake.
    WebSocket,
}

/// What a connection on the main port turned out to be, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    PolicyRequest,
    WebSocket,
    Frames,
}

pub(super) struct Handler {
    pub(super) remote: SocketAddr,
    pub(super) config: Arc<ServeConfig>,
    pub(super) policy: Option<Arc<[u8]>>,
    pub(super) stats: Arc<Stats>,
    pub(super) drain: Drain,
}

impl Handler {
    pub(super) async fn run(self, stream: TcpStream, transport: Transport) {
        self.stats.connection_opened();
        let _ = stream.set_nodelay(true);
        match transport {
            Transport::Tcp => self.run_tcp(stream).await,
            Transport::WebSocket => self.upgrade(stream, BytesMut::new()).await,
        }
    }

    /// The main port: sniffs the first bytes when something else than frames may arrive.
    async fn run_tcp(self, mut stream: TcpStream) {
        let mut already_read = BytesMut::new();
        let opened = Instant::now();
        if self.policy.is_some() || self.config.ws_on_tcp {
            match self.sniff(&mut stream, &mut already_read).await {
                Ok(Opening::PolicyRequest) => return self.answer_policy(stream).await,
                Ok(Opening::WebSocket) => return self.upgrade(stream, already_read).await,
                Ok(Opening::Frames) => {}
                Err(kind) => return self.stats.connection_ended(kind),
            }
        }
        let (reader, writer) = stream.into_split();
        let sniffed_for = opened.elapsed();
        self.serve_connection(reader, writer, already_read, sniffed_for, None)
            .await;
    }

    /// Completes a WebSocket handshake (replaying `already_read`), then serves the connection.
    async fn upgrade(self, stream: TcpStream, already_read: BytesMut) {
        let handshake = ws::accept(Prefixed::new(already_read, stream), &self.config.websocket);
        let accepted = tokio::select! {
            accepted = handshake => accepted,
            () = self.drain.shutdown.cancelled() => return self.stats.connection_ended("closed"),
        };
        match accepted {
            Ok(websocket) => {
                self.stats.websocket_opened();
                let close_note = Some(websocket.close_note());
                let (reader, writer) = tokio::io::split(websocket);
                self.serve_connection(reader, writer, BytesMut::new(), Duration::ZERO, close_note)
                    .await;
            }
            Err(error) => {
                tracing::info!(peer = %self.remote, "WebSocket connection refused: {error}");
                self.stats.connection_ended(error.kind());
            }
        }
    }

    /// Runs the RPC peer on the connection's two halves until it ends, and counts how it ended.
    /// `sniffed_for` is how long the connection waited for its first bytes: that much of the
    /// first ping interval has passed. A WebSocket's `close_note` gets the reason when the
    /// client's fault (bad framing, an unanswered ping) closes the connection, for its Close.
    async fn serve_connection<R, W>(
        self,
        reader: R,
        writer: W,
        already_read: BytesMut,
        sniffed_for: Duration,
        close_note: Option<Arc<OnceLock<String>>>,
    ) where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut config = self.config.peer.clone();
        config.first_ping_in = config
            .ping
            .map(|ping| ping.interval.saturating_sub(sniffed_for));
        config.close_note = close_note;
        let (peer, inbox) = Peer::start(reader, writer, already_read, config);
        let served = async {
            self.serve(&peer, inbox).await;
            peer.closed().await
        };
        // Past the drain deadline nothing waits any longer: not a reply stuck behind a client
        // that does not read, nor the flush of a graceful close.
        let reason = tokio::select! {
            reason = served => reason,
            () = self.drain.passed() => {
                peer.abort(CloseReason::Closed(DRAIN_PASSED));
                peer.closed().await
            }
        };
        let kind = close_kind(&reason);
        if reason.is_protocol_error() || kind.starts_with("ws_") {
            tracing::warn!(peer = %self.remote, "closing the connection: {reason}");
        } else {
            tracing::debug!(peer = %self.remote, "connection ended: {reason}");
        }
        self.stats.connection_ended(kind);
    }

    /// Waits for the first bytes to tell a policy request or a WebSocket upgrade from RPC
    /// traffic. Flash Player sends its policy request as soon as it connects, and a browser its
    /// upgrade; a client silent until the first ping is due is an RPC client waiting for the
    /// server, so it gets the RPC peer (and its pings) from then on.
    async fn sniff(
        &self,
        stream: &mut TcpStream,
        buffer: &mut BytesMut,
    ) -> Result<Opening, &'static str> {
        let (policy, websocket) = (self.policy.is_some(), self.config.ws_on_tcp);
        let decide = |received: &[u8]| classify_opening(received, policy, websocket);
        let sniffing =
            sniff::read_until_decided(stream, buffer, SNIFF_STEP, decide, Opening::Frames);
        let silent_until = self
            .config
            .peer
            .ping
            .map(|ping| Instant::now() + ping.interval);
        let outcome = tokio::select! {
            outcome = sniffing => outcome,
            () = crate::shutdown::sleep_until(silent_until) => return Ok(Opening::Frames),
            () = self.drain.shutdown.cancelled() => return Err("closed"),
        };
        outcome.map_err(|_| "io_error")
    }

    /// Answers a policy request; the drain deadline cuts both the write and the drain after it
    /// short, as it does every connection.
    async fn answer_policy(&self, mut stream: TcpStream) {
        let policy = self.policy.as_deref().unwrap_or_default();
        let timeouts = policy::AnswerTimeouts::default();
        let written = tokio::select! {
            written = policy::write_answer(&mut stream, policy, timeouts.write) => written,
            () = self.drain.passed() => {
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, DRAIN_PASSED))
            }
        };
        if written.is_ok() {
            tokio::select! {
                () = policy::linger(&mut stream, timeouts.linger) => {}
                () = self.drain.passed() => {}
            }
        }
        match written {
            Ok(bytes) => {
                tracing::info!(peer = %self.remote, bytes, "answered a policy request");
                self.stats.policy_answered();
                self.stats.connection_ended("policy_answered");
            }
            Err(error) => {
                tracing::warn!(peer = %self.remote, "policy answer failed: {error}");
                self.stats.connection_ended("io_error");
            }
        }
    }

    /// Acts on requests and messages until the peer stops sending (or shutdown stops reading),
    /// then lets in-flight work finish (up to the drain deadline once shutting down) and closes.
    async fn serve(&self, peer: &Peer, mut inbox: tokio::sync::mpsc::Receiver<Incoming>) {
        let mut work = JoinSet::new();
        let mut stopping = false;
        // A connection that failed (reset, ping time-out) has nobody left to answer: the
        // requests still queued in the inbox are not worked on.
        let closed = peer.closed();
        tokio::pin!(closed);
        loop {
            tokio::select! {
                _ = &mut closed => {
                    work.abort_all();
                    return;
                }
                incoming = inbox.recv(), if work.len() < self.config.max_in_flight => match incoming {
                    Some(incoming) => {
                        if !self.act(peer, incoming, &mut work).await {
                            work.abort_all();
                            return;
                        }
                    }
                    None => break,
                },
                Some(_) = work.join_next(), if !work.is_empty() => {}
                () = self.drain.shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    peer.stop_reading("server shutting down");
                }
            }
        }
        self.finish(peer, work).await;
    }

    /// Waits for in-flight work, bounded by the drain deadline once shutdown has begun, and no
    /// longer than the connection lasts: once it has failed (a reset) nobody is left to answer,
    /// and its slot must not wait out a long `sleep`.
    async fn finish(&self, peer: &Peer, mut work: JoinSet<()>) {
        let closed = peer.closed();
        tokio::pin!(closed);
        loop {
            let deadline = self
                .drain
                .shutdown
                .is_cancelled()
                .then(|| self.drain.deadline());
            tokio::select! {
                joined = work.join_next() => if joined.is_none() { break },
                _ = &mut closed => {
                    work.abort_all();
                    break;
                }
                () = self.drain.shutdown.cancelled(), if deadline.is_none() => {}
                () = crate::shutdown::sleep_until(deadline) => {
                    // A zero drain asked for an immediate close: nothing to warn about.
                    if !self.drain.timeout.is_zero() {
                        tracing::warn!(peer = %self.remote, in_flight = work.len(), "drain deadline passed");
                    }
                    work.abort_all();
                    break;
                }
            }
        }
        peer.close("the server closed the connection");
    }

    /// Handles one request or message; `false` when the connection must close now.
    async fn act(&self, peer: &Peer, incoming: Incoming, work: &mut JoinSet<()>) -> bool {
        let request = match incoming {
            Incoming::Message(message) => {
                self.stats.message(&message.command);
                return true;
            }
            Incoming::Request(request) => *request,
        };
        self.stats.request(&request.command);
        let Request {
            message_id,
            command,
            params,
        } = request;
        match commands::plan(&command, params, &self.config.responses) {
            Action::Reply(result) => reply(peer, message_id, result).await,
            Action::Stats => reply(peer, message_id, self.stats.snapshot().to_value()).await,
            Action::ReplyAfter(delay, result) => {
                let peer = peer.clone();
                work.spawn(async move {
                    tokio::time::sleep(delay).await;
                    reply(&peer, message_id, result).await;
                });
            }
            Action::Push {
                count,
                interval,
                command,
            } => {
                work.spawn(push(peer.clone(), message_id, count, interval, command));
            }
            Action::Close => {
                peer.close("the client sent 'close'");
                return false;
            }
        }
        true
    }
}

/// Why a connection still open at the drain deadline was closed.
const DRAIN_PASSED: &str = "the drain deadline passed";

/// Bytes read per attempt while sniffing: enough for a whole policy request in one read.
const SNIFF_STEP: usize = 128;

/// Decides what a main-port connection is once its first bytes allow (a policy request starts
/// with `<`, an upgrade with `G`, so at most one of them can match).
fn classify_opening(received: &[u8], policy: bool, websocket: bool) -> Option<Opening> {
    let policy = if policy {
        policy::classify(received, false)
    } else {
        Sniff::Other
    };
    let upgrade = if websocket {
        ws::classify(received)
    } else {
        UpgradeSniff::Other
    };
    match (policy, upgrade) {
        (Sniff::PolicyRequest, _) => Some(Opening::PolicyRequest),
        (_, UpgradeSniff::Upgrade) => Some(Opening::WebSocket),
        (Sniff::NeedMore, _) | (_, UpgradeSniff::NeedMore) => None,
        _ => Some(Opening::Frames),
    }
}

/// The kind a connection's end is counted under: the WebSocket refusal inside an I/O error when
/// that is what ended it, else the reason's own kind.
fn close_kind(reason: &CloseReason) -> &'static str {
    match reason {
        CloseReason::Io(error) => WsError::within(error).map_or(reason.kind(), WsError::kind),
        _ => reason.kind(),
    }
}

async fn reply(peer: &Peer, message_id: Str, result: Value) {
    // A closed connection has nobody to reply to; its end is recorded once, by the handler.
    if let Err(CallError::Encode(error)) = peer.respond(message_id.clone(), result).await {
        reply_not_sent(peer, message_id, &format!("the reply: {error}")).await;
    }
}

/// What a request asked for cannot be sent (above --max-frame, nested beyond the encoder's
/// depth, a member name AMF3 cannot carry): the client must not wait for ever, so it gets an
/// error result instead, or, when even that cannot be sent, the connection closes.
async fn reply_not_sent(peer: &Peer, message_id: Str, what: &str) {
    tracing::warn!(
        message_id = %printable(&message_id),
        "cannot send {what}; sending an error result instead"
    );
    let failure = commands::error_result("reply_not_sent", &format!("cannot send {what}"));
    if let Err(CallError::Encode(_)) = peer.respond(message_id, failure).await {
        peer.close("a reply could not be sent");
    }
}

/// Sends `count` messages, `interval` apart, each `{index, count}`, then replies `{pushed}`.
async fn push(
    peer: Peer,
    message_id: Str,
    count: u64,
    interval: std::time::Duration,
    command: Str,
) {
    for index in 0..count {
        if index > 0 && !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        let params = Value::object(vec![
            (
                Str::new_static("count"),
                Value::number_from_i64(count as i64),
            ),
            (
                Str::new_static("index"),
                Value::number_from_i64(index as i64),
            ),
        ]);
        match peer.send_message(command.clone(), params).await {
            Ok(()) => {}
            Err(CallError::Encode(error)) => {
                let what = format!("pushed message {index}: {error}");
                return reply_not_sent(&peer, message_id, &what).await;
            }
            Err(_) => return,
        }
    }
    let result = Value::object(vec![(
        Str::new_static("pushed"),
        Value::number_from_i64(count as i64),
    )]);
    reply(&peer, message_id, result).await;
}
