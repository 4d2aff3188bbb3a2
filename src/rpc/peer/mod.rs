//! One RPC peer per connection, shared by `serve` and `run`: frames read and written by two tasks,
//! requests sent and matched to their replies by message id with per-request timeouts, pings
//! answered, optional periodic pings with a close-on-no-answer deadline, and every pending request
//! failed with the reason when the connection ends.
//!
//! Every queue is bounded: the writer's queue makes senders wait, and the inbox of incoming
//! requests and messages makes the reader stop reading, so a peer that floods us meets TCP
//! back-pressure instead of growing our memory.

mod ping;
mod read;
mod write;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::envelope::{Envelope, Message, Request, Response, new_message_id};
use super::wire::{Encoding, WireError, encode_envelope_within};
use crate::codec::{DecodeOptions, Limits, Str, Value};
use crate::frame::{self, FrameError};
use ping::ping_loop;
use read::ReadLoop;
use write::write_loop;

/// Periodic pings to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingConfig {
    /// Time between pings.
    pub interval: Duration,
    /// A ping not answered within this closes the connection.
    pub timeout: Duration,
}

impl Default for PingConfig {
    /// As the Ruby AMF Socket server: every 5 s, close after 10 s without an answer.
    fn default() -> Self {
        PingConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

/// How a peer behaves.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The payload encoding.
    pub encoding: Encoding,
    /// The cap on a frame's payload, both ways.
    pub max_frame_len: usize,
    /// Codec limits for incoming frames.
    pub decode: Arc<DecodeOptions>,
    /// Periodic pings to the peer, or none.
    pub ping: Option<PingConfig>,
    /// The result sent back to the peer's pings (`null` as Ruby, `"pong"` as ActionScript).
    pub ping_reply: Value,
    /// Incoming requests and messages queued before the reader stops reading.
    pub inbox_len: usize,
    /// Outgoing frames queued before senders wait.
    pub outbox_len: usize,
    /// How long a graceful close may spend flushing queued frames.
    pub flush_timeout: Duration,
    /// When the first ping goes out, if not one interval after the start: a server that waited
    /// for the client's first bytes has already let part of the interval pass.
    pub first_ping_in: Option<Duration>,
    /// A counter beyond this connection (a server's total) that each ping answered adds to.
    pub pings_total: Option<Arc<AtomicU64>>,
    /// Where the reason goes when the peer's fault (bad input, an unanswered ping) closes the
    /// connection, before the writer shuts down: a transport that can tell the peer why (a
    /// WebSocket's Close) reads it there.
    pub close_note: Option<Arc<OnceLock<String>>>,
    /// What a frame that decodes but is not an envelope (an unknown `type`, a missing member)
    /// does.
    pub bad_envelopes: BadEnvelopes,
}

/// What a peer does with a frame that decodes but is not an envelope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BadEnvelopes {
    /// Close the connection for the peer's fault, as the Ruby server does.
    #[default]
    Close,
    /// Drop the object and read on, as the ActionScript client does; `Peer::envelopes_dropped`
    /// counts them.
    Drop,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            encoding: Encoding::Amf3,
            max_frame_len: frame::DEFAULT_MAX_FRAME_LEN,
            decode: Arc::new(DecodeOptions::default()),
            ping: None,
            ping_reply: Value::Null,
            inbox_len: 16,
            outbox_len: 16,
            flush_timeout: Duration::from_secs(5),
            first_ping_in: None,
            pings_total: None,
            close_note: None,
            bad_envelopes: BadEnvelopes::Close,
        }
    }
}

/// A request or message from the peer, for the owner of the connection to handle. Boxed, so
/// that the inbox, which a channel allocates ahead in blocks of slots, stays small per connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// Must be answered with `Peer::respond`.
    Request(Box<Request>),
    /// Fire and forget.
    Message(Box<Message>),
}

/// Why a connection ended. The first reason recorded wins.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CloseReason {
    /// The peer closed the connection between frames.
    #[error("the peer closed the connection")]
    PeerClosed,
    /// The peer closed the connection in the middle of a frame.
    #[error("the peer closed the connection mid-frame ({received} of {expected} bytes)")]
    TornFrame {
        /// Bytes of the frame received, header included.
        received: usize,
        /// Bytes the frame needed, header included (just the header when it was incomplete).
        expected: usize,
    },
    /// A zero-length or oversized frame header.
    #[error("bad frame: {0}")]
    BadFrame(Arc<FrameError>),
    /// A payload that does not decode, or is not an envelope.
    #[error("bad payload: {0}")]
    BadPayload(Arc<WireError>),
    /// Reading or writing the socket failed.
    #[error("connection error: {0}")]
    Io(Arc<io::Error>),
    /// The peer did not answer a ping in time.
    #[error("the peer did not answer a ping within {0:?}")]
    PingTimeout(Duration),
    /// This side closed the connection.
    #[error("closed: {0}")]
    Closed(&'static str),
}

impl CloseReason {
    /// A short name for counting reasons by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::TornFrame { .. } => "torn_frame",
            CloseReason::BadFrame(error) => match **error {
                FrameError::Empty => "empty_frame",
                FrameError::TooLarge { .. } => "oversize_frame",
                _ => "bad_frame",
            },
            CloseReason::BadPayload(error) if error.is_bad_envelope() => "bad_envelope",
            CloseReason::BadPayload(_) => "undecodable_frame",
            CloseReason::Io(_) => "io_error",
            CloseReason::PingTimeout(_) => "ping_timeout",
            CloseReason::Closed(_) => "closed",
        }
    }

    /// Whether the peer did something wrong (as opposed to an orderly end).
    pub fn is_protocol_error(&self) -> bool {
        matches!(
            self,
            CloseReason::TornFrame { .. } | CloseReason::BadFrame(_) | CloseReason::BadPayload(_)
        )
    }
}

/// Why a request got no result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// No reply within the request's timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The connection ended first.
    #[error("connection ended: {0}")]
    Closed(CloseReason),
    /// The request could not be encoded.
    #[error("cannot send the request: {0}")]
    Encode(Arc<WireError>),
}

type Waiter = oneshot::Sender<Result<Value, CallError>>;

/// Requests sent and not answered yet; `closed` once the connection can deliver no more replies.
#[derive(Default)]
struct Pending {
    waiters: HashMap<Str, Waiter>,
    closed: Option<CloseReason>,
}

/// The connection's state that outlives the handles: held by the writer, which must not hold the
/// outbox sender (it stops when every sender is gone).
struct Lifecycle {
    /// Stop everything now.
    abort: CancellationToken,
    /// Stop reading, flush what is queued, then close.
    finish: CancellationToken,
    /// Stop reading only.
    stop_reading: CancellationToken,
    /// The reader has stopped.
    input_done: CancellationToken,
    /// Both tasks have stopped: the socket is closed.
    done: CancellationToken,
    reason: OnceLock<CloseReason>,
    /// Where the reason of a close for the peer's fault is also written (`PeerConfig::close_note`).
    close_note: Option<Arc<OnceLock<String>>>,
    tasks_left: AtomicUsize,
}

impl Lifecycle {
    fn record(&self, reason: CloseReason) {
        let peer_at_fault =
            reason.is_protocol_error() || matches!(reason, CloseReason::PingTimeout(_));
        let note = match &self.close_note {
            Some(note) if peer_at_fault => Some((note, reason.to_string())),
            _ => None,
        };
        // Only the reason that wins is noted.
        if self.reason.set(reason).is_ok()
            && let Some((note, text)) = note
        {
            let _ = note.set(text);
        }
    }

    fn reason(&self) -> CloseReason {
        self.reason
            .get()
            .cloned()
            .unwrap_or(CloseReason::Closed("connection closed"))
    }
}

/// The reader waiting for room in our own queues; reading resumes when it is dropped.
struct ReaderStall<'s>(&'s Shared);

impl Drop for ReaderStall<'_> {
    fn drop(&mut self) {
        self.0.reader_stalled.store(false, Ordering::Release);
    }
}

/// Marks a task's end even if it is cancelled or panics.
struct TaskGuard(Arc<Lifecycle>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.tasks_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.done.cancel();
        }
    }
}

struct Shared {
    outbox: mpsc::Sender<Bytes>,
    pending: Mutex<Pending>,
    life: Arc<Lifecycle>,
    encoding: Encoding,
    max_frame_len: usize,
    /// The limits frames are encoded within: those they are decoded within.
    limits: Limits,
    pings_answered: AtomicU64,
    pings_total: Option<Arc<AtomicU64>>,
    /// Times the reader stopped reading because our own queues were full, and whether it is
    /// stopped now: a ping unanswered meanwhile may be waiting, unread, in our socket.
    reader_stalls: AtomicU64,
    reader_stalled: AtomicBool,
    /// Frames dropped for not being envelopes (with `BadEnvelopes::Drop`).
    envelopes_dropped: AtomicU64,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding this lock leaves the map consistent: recover it.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fails every pending request and refuses new ones.
    fn fail_pending(&self, reason: &CloseReason) {
        let waiters = {
            let mut pending = self.pending();
            pending.closed.get_or_insert_with(|| reason.clone());
            std::mem::take(&mut pending.waiters)
        };
        for (_, waiter) in waiters {
            let _ = waiter.send(Err(CallError::Closed(reason.clone())));
        }
    }

    /// Closes for the peer's fault (an unanswered ping): the replies already queued still go,
    /// within the flush time-out, and a WebSocket peer gets a Close saying why.
    fn close_for(&self, reason: CloseReason) {
        self.life.record(reason);
        self.fail_pending(&self.life.reason());
        self.life.finish.cancel();
    }

    fn abort(&self, reason: CloseReason) {
        self.life.record(reason);
        let reason = self.life.reason();
        self.fail_pending(&reason);
        self.life.abort.cancel();
    }

    /// Marks the reader stopped by our own back-pressure until the guard is dropped.
    fn reader_stall(&self) -> ReaderStall<'_> {
        self.reader_stalls.fetch_add(1, Ordering::AcqRel);
        self.reader_stalled.store(true, Ordering::Release);
        ReaderStall(self)
    }

    /// A mark of the reader's stalls: whether it has stalled since `earlier`, or is stalled.
    fn reader_stalls(&self) -> u64 {
        self.reader_stalls.load(Ordering::Acquire)
    }

    fn reader_stalled_since(&self, earlier: u64) -> bool {
        self.reader_stalled.load(Ordering::Acquire) || self.reader_stalls() != earlier
    }

    fn encode(&self, envelope: Envelope) -> Result<Bytes, CallError> {
        encode_envelope_within(envelope, self.encoding, self.max_frame_len, &self.limits)
            .map_err(|error| CallError::Encode(Arc::new(error)))
    }

    async fn send_frame(&self, envelope: Envelope) -> Result<(), CallError> {
        let frame = self.encode(envelope)?;
        self.outbox
            .send(frame)
            .await
            .map_err(|_| CallError::Closed(self.life.reason()))
    }

    /// `send_frame` for the reader: when the outbox is full it waits, reading nothing meanwhile,
    /// and only then marks itself stalled (a mark taken for every frame would excuse every
    /// unanswered ping).
    async fn send_frame_from_reader(&self, envelope: Envelope) -> Result<(), CallError> {
        let frame = self.encode(envelope)?;
        let closed = || CallError::Closed(self.life.reason());
        match self.outbox.try_send(frame) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(frame)) => {
                let _stall = self.reader_stall();
                self.outbox.send(frame).await.map_err(|_| closed())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(closed()),
        }
    }
}

/// A handle on one connection's RPC peer; cheap to clone. The connection closes when `close` is
/// called, when it fails, or when every handle is dropped and the peer has stopped sending.
#[derive(Clone)]
pub struct Peer {
    shared: Arc<Shared>,
}

/// Removes a request's waiter if its caller gives up (timeout or cancellation).
struct WaiterGuard<'p> {
    shared: &'p Shared,
    message_id: Str,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending().waiters.remove(&self.message_id);
    }
}

impl Peer {
    /// Starts the peer's tasks on a connection split into its two halves; `already_read` holds any
    /// bytes read before (by policy sniffing). Returns the handle and the inbox of requests and
    /// messages from the peer, which ends when the peer stops sending (it closed, or sent bad
    /// input): the owner answers what it took from the inbox, then closes.
    pub fn start<R, W>(
        reader: R,
        writer: W,
        already_read: BytesMut,
        config: PeerConfig,
    ) -> (Peer, mpsc::Receiver<Incoming>)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (outbox, outbox_rx) = mpsc::channel(config.outbox_len.max(1));
        let (inbox, inbox_rx) = mpsc::channel(config.inbox_len.max(1));
        let life = Arc::new(Lifecycle {
            abort: CancellationToken::new(),
            finish: CancellationToken::new(),
            stop_reading: CancellationToken::new(),
            input_done: CancellationToken::new(),
            done: CancellationToken::new(),
            reason: OnceLock::new(),
            close_note: config.close_note.clone(),
            tasks_left: AtomicUsize::new(2),
        });
        let shared = Arc::new(Shared {
            outbox,
            pending: Mutex::new(Pending::default()),
            life: Arc::clone(&life),
            encoding: config.encoding,
            max_frame_len: config.max_frame_len,
            limits: config.decode.limits,
            pings_answered: AtomicU64::new(0),
            pings_total: config.pings_total,
            reader_stalls: AtomicU64::new(0),
            reader_stalled: AtomicBool::new(false),
            envelopes_dropped: AtomicU64::new(0),
        });
        let peer = Peer { shared };
        let read = ReadLoop {
            shared: Arc::clone(&peer.shared),
            inbox,
            decode: config.decode,
            ping_reply: config.ping_reply,
            bad_envelopes: config.bad_envelopes,
        };
        let guard = TaskGuard(Arc::clone(&life));
        tokio::spawn(async move {
            let _guard = guard;
            read.run(reader, already_read).await;
        });
        let guard = TaskGuard(Arc::clone(&life));
        let flush_timeout = config.flush_timeout;
        tokio::spawn(async move {
            let _guard = guard;
            write_loop(writer, outbox_rx, &life, flush_timeout).await;
        });
        if let Some(ping) = config.ping {
            let first_in = config.first_ping_in.unwrap_or(ping.interval);
            tokio::spawn(ping_loop(peer.clone(), ping, first_in));
        }
        (peer, inbox_rx)
    }

    /// Sends a request and waits for its result, at most `timeout` if given.
    pub async fn call(
        &self,
        command: Str,
        params: Value,
        timeout: Option<Duration>,
    ) -> Result<Value, CallError> {
        let exchange = self.exchange(command, params);
        match timeout {
            Some(limit) => tokio::time::timeout(limit, exchange)
                .await
                .unwrap_or(Err(CallError::Timeout(limit))),
            None => exchange.await,
        }
    }

    async fn exchange(&self, command: Str, params: Value) -> Result<Value, CallError> {
        let (waiter, reply) = oneshot::channel();
        let message_id = self.register(waiter)?;
        let _guard = WaiterGuard {
            shared: &self.shared,
            message_id: message_id.clone(),
        };
        let request = Request {
            message_id,
            command,
            params,
        };
        self.shared.send_frame(Envelope::Request(request)).await?;
        reply
            .await
            .unwrap_or_else(|_| Err(CallError::Closed(self.shared.life.reason())))
    }

    /// Files a waiter under a fresh message id.
    fn register(&self, waiter: Waiter) -> Result<Str, CallError> {
        let mut pending = self.shared.pending();
        if let Some(reason) = &pending.closed {
            return Err(CallError::Closed(reason.clone()));
        }
        let mut message_id = new_message_id();
        while pending.waiters.contains_key(&message_id) {
            message_id = new_message_id();
        }
        pending.waiters.insert(message_id.clone(), waiter);
        Ok(message_id)
    }

    /// Sends a fire-and-forget message.
    pub async fn send_message(&self, command: Str, params: Value) -> Result<(), CallError> {
        let message = Message {
            message_id: new_message_id(),
            command,
            params,
        };
        self.shared.send_frame(Envelope::Message(message)).await
    }

    /// Answers the peer's request `message_id`.
    pub async fn respond(&self, message_id: Str, result: Value) -> Result<(), CallError> {
        let response = Response { message_id, result };
        self.shared.send_frame(Envelope::Response(response)).await
    }

    /// Closes gracefully: stops reading, flushes what is queued (within the flush timeout), then
    /// closes. `why` is recorded as the reason unless the connection had already ended.
    pub fn close(&self, why: &'static str) {
        self.shared.life.record(CloseReason::Closed(why));
        self.shared.life.finish.cancel();
    }

    /// Stops reading from the peer (its pending requests fail with `why`) while replies can still
    /// be sent; `close` or dropping every handle ends the connection afterwards.
    pub fn stop_reading(&self, why: &'static str) {
        self.shared.life.record(CloseReason::Closed(why));
        self.shared.life.stop_reading.cancel();
    }

    /// Closes now, dropping whatever is queued.
    pub fn abort(&self, reason: CloseReason) {
        self.shared.abort(reason);
    }

    /// Waits until the connection is closed, and says why.
    pub async fn closed(&self) -> CloseReason {
        self.shared.life.done.cancelled().await;
        self.shared.life.reason()
    }

    /// Waits until nothing more can arrive from the peer (its input ended, or the connection
    /// closed), and says why.
    pub async fn input_ended(&self) -> CloseReason {
        self.shared.life.input_done.cancelled().await;
        self.shared.life.reason()
    }

    /// How many of the peer's pings this side has answered.
    pub fn pings_answered(&self) -> u64 {
        self.shared.pings_answered.load(Ordering::Relaxed)
    }

    /// Frames from the peer dropped for not being envelopes (with `BadEnvelopes::Drop`).
    pub fn envelopes_dropped(&self) -> u64 {
        self.shared.envelopes_dropped.load(Ordering::Relaxed)
    }

    /// Requests waiting for a reply.
    pub fn pending_requests(&self) -> usize {
        self.shared.pending().waiters.len()
    }
}
