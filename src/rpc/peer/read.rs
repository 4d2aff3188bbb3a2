//! The reading half of a peer: frames in, replies routed to their waiters, pings answered, the
//! rest to the owner's inbox.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::{BadEnvelopes, CallError, CloseReason, Incoming, Shared};
use crate::codec::{DecodeOptions, Value};
use crate::frame::{self, HEADER_LEN};
use crate::rpc::envelope::{Envelope, Response};
use crate::rpc::wire::decode_envelope;

/// Room made for a read into an empty buffer: an idle connection holds this much, no more.
const FIRST_READ: usize = 512;
/// Room made for a read that continues a frame, or follows a read that filled its room.
const READ_CHUNK: usize = 8192;

/// The reading half: frames in, replies routed, pings answered, the rest to the inbox.
pub(super) struct ReadLoop {
    pub(super) shared: Arc<Shared>,
    pub(super) inbox: mpsc::Sender<Incoming>,
    pub(super) decode: Arc<DecodeOptions>,
    pub(super) ping_reply: Value,
    pub(super) bad_envelopes: BadEnvelopes,
}

impl ReadLoop {
    pub(super) async fn run<R: AsyncRead + Unpin>(self, reader: R, buffer: BytesMut) {
        let life = Arc::clone(&self.shared.life);
        let outcome = tokio::select! {
            outcome = self.read_frames(reader, buffer) => outcome,
            () = life.abort.cancelled() => Ok(()),
            () = life.finish.cancelled() => Ok(()),
            () = life.stop_reading.cancelled() => Ok(()),
        };
        match outcome {
            // Bad input ends the peer's input as a close between frames does: what came before
            // it is still handled and answered (the owner closes once it has drained its inbox,
            // so the answers do not depend on how TCP split the bytes), and a WebSocket peer
            // then gets a Close saying why.
            Ok(()) => self.input_ended(CloseReason::PeerClosed),
            Err(reason) if reason.is_protocol_error() => self.input_ended(reason),
            Err(reason) => self.shared.abort(reason),
        }
        life.input_done.cancel();
    }

    /// Records why the input ended; replies to our own requests can no longer arrive.
    fn input_ended(&self, reason: CloseReason) {
        self.shared.life.record(reason);
        self.shared.fail_pending(&self.shared.life.reason());
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
                match decode_envelope(payload, self.shared.encoding, &self.decode) {
                    Ok(envelope) => self.dispatch(envelope).await?,
                    Err(error)
                        if error.is_bad_envelope() && self.bad_envelopes == BadEnvelopes::Drop =>
                    {
                        tracing::debug!("dropped a frame that is not an envelope: {error}");
                        self.shared
                            .envelopes_dropped
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => return Err(CloseReason::BadPayload(Arc::new(error))),
                }
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
                if let Some(total) = &self.shared.pings_total {
                    total.fetch_add(1, Ordering::Relaxed);
                }
                let pong = Response {
                    message_id: request.message_id,
                    result: self.ping_reply.clone(),
                };
                let sent = self
                    .shared
                    .send_frame_from_reader(Envelope::Response(pong))
                    .await;
                return match sent {
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
        if let Err(TrySendError::Full(incoming)) = self.inbox.try_send(incoming) {
            let _stall = self.shared.reader_stall();
            let _ = self.inbox.send(incoming).await;
        }
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
