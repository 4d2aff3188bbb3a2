//! One RPC peer per connection, shared by `serve` and `run`: frames read and written by two tasks,
//! requests sent and matched to their replies by message id with per-request timeouts, pings
//! answered, optional periodic pings with a close-on-no-answer deadline, and every pending request
//! failed with the reason when the connection ends.
//!
//! Every queue is bounded: the writer's queue makes senders wait, and the inbox of incoming
//! requests and messages makes the reader stop reading, so a peer that floods us meets TCP
//! back-pressure instead of growing our memory.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::envelope::{Envelope, Message, Request, Response, new_message_id};
use super::wire::{Encoding, WireError, decode_envelope, encode_envelope};
use crate::codec::{DecodeOptions, Str, Value};
use crate::frame::{self, FrameError, HEADER_LEN};

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
    tasks_left: AtomicUsize,
}

impl Lifecycle {
    fn record(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
    }

    fn reason(&self) -> CloseReason {
        self.reason
            .get()
            .cloned()
            .unwrap_or(CloseReason::Closed("connection closed"))
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
    pings_answered: AtomicU64,
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

    fn abort(&self, reason: CloseReason) {
        self.life.record(reason);
        let reason = self.life.reason();
        self.fail_pending(&reason);
        self.life.abort.cancel();
    }

    async fn send_frame(&self, envelope: Envelope) -> Result<(), CallError> {
        let frame = encode_envelope(envelope, self.encoding, self.max_frame_len)
            .map_err(|error| CallError::Encode(Arc::new(error)))?;
        self.outbox
            .send(frame)
            .await
            .map_err(|_| CallError::Closed(self.life.reason()))
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
    /// messages from the peer, which ends when the peer stops sending.
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
            tasks_left: AtomicUsize::new(2),
        });
        let shared = Arc::new(Shared {
            outbox,
            pending: Mutex::new(Pending::default()),
            life: Arc::clone(&life),
            encoding: config.encoding,
            max_frame_len: config.max_frame_len,
            pings_answered: AtomicU64::new(0),
        });
        let peer = Peer { shared };
        let read = ReadLoop {
            shared: Arc::clone(&peer.shared),
            inbox,
            decode: config.decode,
            ping_reply: config.ping_reply,
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
            tokio::spawn(ping_loop(peer.clone(), ping));
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

    /// How many of the peer's pings this side has answered.
    pub fn pings_answered(&self) -> u64 {
        self.shared.pings_answered.load(Ordering::Relaxed)
    }

    /// Requests waiting for a reply.
    pub fn pending_requests(&self) -> usize {
        self.shared.pending().waiters.len()
    }
}

/// Room made for a read into an empty buffer: an idle connection holds this much, no more.
const FIRST_READ: usize = 512;
/// Room made for a read that continues a frame, or follows a read that filled its room.
const READ_CHUNK: usize = 8192;

/// The reading half: frames in, replies routed, pings answered, the rest to the inbox.
struct ReadLoop {
    shared: Arc<Shared>,
    inbox: mpsc::Sender<Incoming>,
    decode: Arc<DecodeOptions>,
    ping_reply: Value,
}

impl ReadLoop {
    async fn run<R: AsyncRead + Unpin>(self, reader: R, buffer: BytesMut) {
        let life = Arc::clone(&self.shared.life);
        let outcome = tokio::select! {
            outcome = self.read_frames(reader, buffer) => outcome,
            () = life.abort.cancelled() => Ok(()),
            () = life.finish.cancelled() => Ok(()),
            () = life.stop_reading.cancelled() => Ok(()),
        };
        match outcome {
            Ok(()) => {
                life.record(CloseReason::PeerClosed);
                // Replies can no longer arrive.
                self.shared.fail_pending(&life.reason());
            }
            Err(reason) => self.shared.abort(reason),
        }
        life.input_done.cancel();
    }

    /// Reads until the peer closes between frames (`Ok`) or something goes wrong.
    async fn read_frames<R: AsyncRead + Unpin>(
        &self,
        mut reader: R,
        mut buffer: BytesMut,
    ) -> Result<(), CloseReason> {
        // Whether the last read filled its room: more is probably waiting.
        let mut busy = false;
        loop {
            while let Some(payload) = frame::split_frame(&mut buffer, self.shared.max_frame_len)
                .map_err(|error| CloseReason::BadFrame(Arc::new(error)))?
            {
                let envelope = decode_envelope(payload, self.shared.encoding, &self.decode)
                    .map_err(|error| CloseReason::BadPayload(Arc::new(error)))?;
                self.dispatch(envelope).await?;
            }
            if buffer.is_empty() && !busy {
                // Between frames on a quiet connection, wait with a small buffer, so idle
                // connections cost little and a past big frame costs nothing later.
                buffer = BytesMut::with_capacity(FIRST_READ);
            } else {
                buffer.reserve(READ_CHUNK);
            }
            let room = buffer.capacity() - buffer.len();
            let read = reader
                .read_buf(&mut buffer)
                .await
                .map_err(|error| CloseReason::Io(Arc::new(error)))?;
            if read == 0 {
                return match torn_frame(&buffer, self.shared.max_frame_len) {
                    Some(torn) => Err(torn),
                    None => Ok(()),
                };
            }
            busy = read == room;
        }
    }

    async fn dispatch(&self, envelope: Envelope) -> Result<(), CloseReason> {
        let incoming = match envelope {
            Envelope::Response(response) => {
                let waiter = self.shared.pending().waiters.remove(&response.message_id);
                // A reply nobody waits for (timed out, or never asked) is dropped.
                if let Some(waiter) = waiter {
                    let _ = waiter.send(Ok(response.result));
                }
                return Ok(());
            }
            Envelope::Request(request) if request.is_ping() => {
                self.shared.pings_answered.fetch_add(1, Ordering::Relaxed);
                let pong = Response {
                    message_id: request.message_id,
                    result: self.ping_reply.clone(),
                };
                return match self.shared.send_frame(Envelope::Response(pong)).await {
                    Ok(()) => Ok(()),
                    Err(CallError::Closed(reason)) => Err(reason),
                    // A pong always encodes; if it could not, dropping it is the peer's problem.
                    Err(_) => Ok(()),
                };
            }
            Envelope::Request(request) => Incoming::Request(Box::new(request)),
            Envelope::Message(message) => Incoming::Message(Box::new(message)),
        };
        // An owner that dropped the inbox does not want requests: they are dropped.
        let _ = self.inbox.send(incoming).await;
        Ok(())
    }
}

/// The reason for bytes left over at end of input, if any.
fn torn_frame(buffer: &[u8], max_frame_len: usize) -> Option<CloseReason> {
    if buffer.is_empty() {
        return None;
    }
    let expected = match frame::parse_header(buffer, max_frame_len) {
        Ok(Some(len)) => HEADER_LEN + len,
        _ => HEADER_LEN,
    };
    Some(CloseReason::TornFrame {
        received: buffer.len(),
        expected,
    })
}

/// Frames queued together are written with one system call, up to this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// The writing half: frames from the outbox to the socket, until every sender is gone, a
/// graceful close (refuse new frames, write those queued within `flush_timeout`, then shut
/// down), or an abort (stop now). A write in progress is never abandoned for a graceful close,
/// so the peer never sees half a frame followed by another.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut outbox: mpsc::Receiver<Bytes>,
    life: &Lifecycle,
    flush_timeout: Duration,
) {
    let mut batch = BytesMut::new();
    let mut flush_by: Option<tokio::time::Instant> = None;
    loop {
        let next = tokio::select! {
            biased;
            () = life.abort.cancelled() => return,
            () = life.finish.cancelled(), if flush_by.is_none() => {
                flush_by = Some(tokio::time::Instant::now() + flush_timeout);
                outbox.close();
                continue;
            }
            frame = outbox.recv() => frame,
        };
        let Some(frame) = next else { break };
        gather(frame, &mut outbox, &mut batch).await;
        let written = tokio::select! {
            () = life.abort.cancelled() => return,
            written = by_deadline(flush_by, write_batch(&mut writer, &batch)) => written,
        };
        if let Err(error) = written {
            if flush_by.is_none() {
                life.record(CloseReason::Io(Arc::new(error)));
                life.abort.cancel();
            }
            return;
        }
    }
    tokio::select! {
        _ = by_deadline(flush_by, writer.shutdown()) => {}
        () = life.abort.cancelled() => {}
    }
}

/// Writes one batch and flushes it: a no-op on TCP, while a buffering writer (a WebSocket
/// stream, which sends a message on flush) must not hold frames back.
async fn write_batch<W: AsyncWrite + Unpin>(writer: &mut W, batch: &[u8]) -> io::Result<()> {
    writer.write_all(batch).await?;
    writer.flush().await
}

/// Puts `first` and the frames queued behind it into `batch`, for one write.
async fn gather(first: Bytes, outbox: &mut mpsc::Receiver<Bytes>, batch: &mut BytesMut) {
    batch.clear();
    batch.extend_from_slice(&first);
    if outbox.is_empty() {
        // Let the tasks woken with this one (the other requests answered by the same read)
        // queue their frames first, so that one system call carries them all.
        tokio::task::yield_now().await;
    }
    while batch.len() < BATCH_BYTES {
        match outbox.try_recv() {
            Ok(more) => batch.extend_from_slice(&more),
            Err(_) => break,
        }
    }
}

/// Runs `io`, failing with `TimedOut` at `deadline` if there is one.
async fn by_deadline<F: Future<Output = io::Result<()>>>(
    deadline: Option<tokio::time::Instant>,
    io: F,
) -> io::Result<()> {
    match deadline {
        None => io.await,
        Some(deadline) => tokio::time::timeout_at(deadline, io)
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
    }
}

/// Pings the peer every `interval`; a ping unanswered after `timeout` aborts the connection.
async fn ping_loop(peer: Peer, config: PingConfig) {
    let life = Arc::clone(&peer.shared.life);
    let start = tokio::time::Instant::now() + config.interval;
    let mut ticker = tokio::time::interval_at(start, config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = JoinSet::new();
    let mut last_round_trip = 0.0;
    loop {
        tokio::select! {
            () = life.abort.cancelled() => break,
            () = life.finish.cancelled() => break,
            () = life.input_done.cancelled() => break,
            _ = ticker.tick() => {
                let peer = peer.clone();
                in_flight.spawn(async move { ping_once(&peer, last_round_trip, config.timeout).await });
            }
            Some(joined) = in_flight.join_next() => match joined {
                Ok(Ok(round_trip)) => last_round_trip = round_trip,
                Ok(Err(CallError::Timeout(after))) => {
                    peer.abort(CloseReason::PingTimeout(after));
                    break;
                }
                _ => {}
            },
        }
    }
}

/// Sends one ping and returns its round trip in seconds.
async fn ping_once(peer: &Peer, last_round_trip: f64, timeout: Duration) -> Result<f64, CallError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64());
    let sent = Instant::now();
    let ping = Request::ping(Str::default(), now, last_round_trip);
    peer.call(ping.command, ping.params, Some(timeout)).await?;
    Ok(sent.elapsed().as_secs_f64())
}
