//! A WebSocket connection as a byte stream (AsyncRead + AsyncWrite): binary messages carry the
//! bytes and their boundaries mean nothing; a Close (or the end of the connection) is the end of
//! input; shutting down sends a Close, then ends the TCP stream. A text message or one over the
//! size limit is refused: the stream sends a Close saying why and fails reads (and writes) with a
//! `WsError`.
//! A layer above that closes for the peer's fault (bad framing inside the messages, an unanswered
//! ping) notes why in the stream's `close_note` first, and shutting down then sends that as a
//! Close 1002: the peer broke the protocol the messages carry.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::WsError;

/// The largest binary message written at once; a longer write is split over several messages
/// (the peer reads a byte stream, so where they split does not matter).
const MAX_MESSAGE_OUT: usize = 64 * 1024;

/// A WebSocket connection read and written as a stream of bytes.
pub struct WsStream<S> {
    inner: WebSocketStream<S>,
    /// The unread rest of the last binary message.
    incoming: Bytes,
    /// The peer closed (or the connection ended): reads return end of input.
    input_ended: bool,
    /// A message refused: the Close to send, then the error every read returns.
    refusal: Option<Refusal>,
    /// Our Close is queued (a shutdown in progress).
    close_sent: bool,
    /// Why the layer above is closing for the peer's fault, when it is: the reason of our Close.
    close_note: Arc<OnceLock<String>>,
}

struct Refusal {
    close: Option<CloseFrame>,
    why: Refused,
    /// Our side is shut down after the Close.
    shut: bool,
    /// Until when what the peer still sends is read and dropped.
    linger: Option<Linger>,
}

/// Why a message was refused.
enum Refused {
    Text,
    TooLarge,
    /// A frame that breaks RFC 6455 (an unmasked frame, a reserved opcode or bit, ...).
    Protocol(ProtocolError),
    /// Text that is not UTF-8 where RFC 6455 asks for it (a Close's reason, a text message).
    InvalidUtf8(String),
}

impl Refused {
    fn error(&self) -> WsError {
        match self {
            Refused::Text => WsError::TextMessage,
            Refused::TooLarge => WsError::MessageTooLarge,
            Refused::Protocol(violation) => {
                WsError::Protocol(tungstenite::Error::Protocol(violation.clone()))
            }
            Refused::InvalidUtf8(what) => WsError::Protocol(tungstenite::Error::Utf8(what.clone())),
        }
    }
}

/// After a refusal's Close, what the peer is still sending (the rest of the refused message) is
/// read and dropped until it pauses: closing a socket with unread bytes resets the connection,
/// and a reset can destroy the Close in flight and fail the peer's write, so that the peer never
/// learns why it was refused.
struct Linger {
    /// The next deadline: a pause in the peer's sending, or the end of the whole wait.
    timer: Pin<Box<tokio::time::Sleep>>,
    /// When the wait ends, however busy the peer is.
    until: tokio::time::Instant,
    /// Bytes dropped so far.
    dropped: usize,
}

/// How long the peer may pause before the refused connection closes.
const LINGER_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
/// The longest a refused connection lingers.
const LINGER_AT_MOST: std::time::Duration = std::time::Duration::from_secs(2);
/// The most bytes read and dropped while lingering.
const LINGER_BYTES: usize = 16 << 20;

impl<S> WsStream<S> {
    pub(super) fn new(inner: WebSocketStream<S>) -> WsStream<S> {
        WsStream {
            inner,
            incoming: Bytes::new(),
            input_ended: false,
            refusal: None,
            close_sent: false,
            close_note: Arc::default(),
        }
    }
}

/// The longest reason a Close frame carries: its payload is at most 125 bytes, 2 of them the code.
const MAX_CLOSE_REASON: usize = 123;

/// The Close sent at shutdown: 1002 with the noted reason (cut to what a Close carries) when the
/// peer was at fault, else 1000, the end of the stream.
fn closing_frame(note: Option<&String>) -> CloseFrame {
    let Some(reason) = note else {
        return CloseFrame {
            code: CloseCode::Normal,
            reason: "end of stream".into(),
        };
    };
    CloseFrame {
        code: CloseCode::Protocol,
        reason: fitted_reason(reason).into(),
    }
}

/// `reason` cut to what a Close carries, never inside a character.
fn fitted_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// The underlying connection.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }

    /// Where the layer above writes why it closes for the peer's fault (bad framing inside the
    /// messages, an unanswered ping), before it shuts the stream down; the first note is sent.
    pub fn close_note(&self) -> Arc<OnceLock<String>> {
        Arc::clone(&self.close_note)
    }

    /// Takes in the next message: bytes to hand out, the end, or a refusal.
    fn accept_message(
        &mut self,
        next: Option<Result<Message, tungstenite::Error>>,
    ) -> io::Result<()> {
        match next {
            Some(Ok(Message::Binary(bytes))) => self.incoming = bytes,
            Some(Ok(Message::Text(_))) => self.refuse(
                CloseCode::Unsupported,
                "text messages are refused: send the stream as binary messages",
                Refused::Text,
            ),
            Some(Ok(Message::Close(_))) | None => self.input_ended = true,
            // Pings are answered by tungstenite itself; pongs and raw frames carry no bytes.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            // The TCP stream ended without a Close (tungstenite calls that a reset, but a reset
            // is an I/O error): the peer went away, the end of its input as a FIN is on TCP.
            Some(Err(
                tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake),
            )) => {
                self.input_ended = true;
            }
            Some(Err(tungstenite::Error::Capacity(_))) => {
                self.refuse(CloseCode::Size, "message too large", Refused::TooLarge)
            }
            // RFC 6455 7.1.7: fail the connection, with a Close saying why where it can go.
            Some(Err(tungstenite::Error::Protocol(violation)))
                if is_peers_violation(&violation) =>
            {
                let reason = violation.to_string();
                self.refuse(CloseCode::Protocol, &reason, Refused::Protocol(violation));
            }
            Some(Err(tungstenite::Error::Utf8(what))) => {
                let reason = format!("invalid UTF-8 in a Close reason or a text message: {what}");
                self.refuse(CloseCode::Protocol, &reason, Refused::InvalidUtf8(what));
            }
            Some(Err(tungstenite::Error::Io(error))) => return Err(error),
            Some(Err(error)) => return Err(to_io(error)),
        }
        Ok(())
    }

    fn refuse(&mut self, code: CloseCode, reason: &str, why: Refused) {
        let close = CloseFrame {
            code,
            reason: fitted_reason(reason).into(),
        };
        self.refusal = Some(Refusal {
            close: Some(close),
            why,
            shut: false,
            linger: None,
        });
    }

    /// Once a message was refused, the refusal's error for writes too: what the other
    /// direction of a relay sees must say why the connection ends, not that its Close went.
    fn refused(&self) -> Option<io::Error> {
        let refusal = self.refusal.as_ref()?;
        Some(io::Error::new(
            io::ErrorKind::InvalidData,
            refusal.why.error(),
        ))
    }

    /// Sends the refusal's Close (once, best effort), then fails the read.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(refusal) = self.refusal.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut inner = Pin::new(&mut self.inner);
        if refusal.close.is_some() {
            if ready!(inner.as_mut().poll_ready(cx)).is_ok() {
                let close = refusal.close.take();
                let _ = inner.as_mut().start_send(Message::Close(close));
            } else {
                refusal.close = None;
            }
        }
        // A peer that cannot take the Close still gets the connection closed.
        let _ = ready!(inner.as_mut().poll_flush(cx));
        let socket = Pin::new(inner.get_mut().get_mut());
        if !refusal.shut {
            let _ = ready!(socket.poll_shutdown(cx));
            refusal.shut = true;
        }
        ready!(linger(refusal, Pin::new(self.inner.get_mut()), cx));
        let error = refusal.why.error();
        Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.refusal.is_some() {
                return this.poll_refusal(cx);
            }
            if !this.incoming.is_empty() {
                let count = this.incoming.len().min(buf.remaining());
                buf.put_slice(&this.incoming.split_to(count));
                return Poll::Ready(Ok(()));
            }
            if this.input_ended {
                // Send the answer to the peer's Close now, not at our next write: a relay may
                // not write again for a long while.
                let _ = ready!(Pin::new(&mut this.inner).poll_flush(cx));
                return Poll::Ready(Ok(()));
            }
            let next = ready!(Pin::new(&mut this.inner).poll_next(cx));
            this.accept_message(next)?;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(refused) = self.refused() {
            return Poll::Ready(Err(refused));
        }
        let mut inner = Pin::new(&mut self.get_mut().inner);
        ready!(inner.as_mut().poll_ready(cx)).map_err(to_io)?;
        let count = buf.len().min(MAX_MESSAGE_OUT);
        let message = Message::Binary(Bytes::copy_from_slice(&buf[..count]));
        inner.start_send(message).map_err(to_io)?;
        Poll::Ready(Ok(count))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(refused) = self.refused() {
            return Poll::Ready(Err(refused));
        }
        Pin::new(&mut self.get_mut().inner)
            .poll_flush(cx)
            .map_err(to_io)
    }

    /// Sends a Close 1000 (the WebSocket end of stream), or 1002 with the `close_note` when there
    /// is one (after the peer's own Close, just the echo tungstenite queued), then shuts the TCP
    /// stream's write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut inner = Pin::new(&mut this.inner);
        if !this.close_sent {
            ready!(inner.as_mut().poll_ready(cx)).map_err(to_io)?;
            let close = closing_frame(this.close_note.get());
            // Refused only when a Close already went either way, which is as good.
            let _ = inner.as_mut().start_send(Message::Close(Some(close)));
            this.close_sent = true;
        }
        ready!(inner.poll_close(cx)).map_err(to_io)?;
        Pin::new(this.inner.get_mut()).poll_shutdown(cx)
    }
}

/// Reads and drops what the peer still sends, until it pauses, ends, or the wait's bounds.
fn linger<S: AsyncRead>(
    refusal: &mut Refusal,
    mut socket: Pin<&mut S>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let linger = refusal.linger.get_or_insert_with(|| {
        let now = tokio::time::Instant::now();
        Linger {
            timer: Box::pin(tokio::time::sleep_until(now + LINGER_PAUSE)),
            until: now + LINGER_AT_MOST,
            dropped: 0,
        }
    });
    let mut scratch = [0u8; 8192];
    loop {
        if linger.timer.as_mut().poll(cx).is_ready() || linger.dropped >= LINGER_BYTES {
            return Poll::Ready(());
        }
        let mut buf = ReadBuf::new(&mut scratch);
        match socket.as_mut().poll_read(cx, &mut buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(()),
            Poll::Ready(Ok(())) => {
                linger.dropped += buf.filled().len();
                let pause_ends = tokio::time::Instant::now() + LINGER_PAUSE;
                let until = linger.until;
                linger.timer.as_mut().reset(pause_ends.min(until));
            }
        }
    }
}

/// Writing after the Close handshake: the peer closed cleanly, but while we still had bytes for
/// it, which WebSocket, having no half-close, cannot deliver.
#[derive(Debug, thiserror::Error)]
#[error("the WebSocket is closed: its Close handshake is done")]
pub struct CloseDone;

impl CloseDone {
    /// Whether an I/O error from a `WsStream` is a write after the Close handshake.
    pub fn within(error: &io::Error) -> bool {
        error.get_ref().is_some_and(|inner| inner.is::<CloseDone>())
    }
}

/// A tungstenite failure as an I/O error, keeping the I/O error itself when it is one. Writing
/// after the Close handshake is a broken pipe, as writing to a closed socket.
/// Whether a protocol error is the peer breaking RFC 6455 in what it sent, rather than the
/// connection's end (a reset, or use after a Close), which has no one left to tell.
fn is_peers_violation(violation: &ProtocolError) -> bool {
    !matches!(
        violation,
        ProtocolError::ResetWithoutClosingHandshake
            | ProtocolError::SendAfterClosing
            | ProtocolError::ReceivedAfterClosing
    )
}

fn to_io(error: tungstenite::Error) -> io::Error {
    match error {
        tungstenite::Error::Io(error) => error,
        tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Protocol(ProtocolError::SendAfterClosing) => {
            io::Error::new(io::ErrorKind::BrokenPipe, CloseDone)
        }
        other => io::Error::new(io::ErrorKind::InvalidData, WsError::Protocol(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noted_protocol_error_closes_with_1002_and_a_reason_that_fits() {
        assert_eq!(closing_frame(None).code, CloseCode::Normal);
        let short = "bad frame: a zero-length frame".to_string();
        let close = closing_frame(Some(&short));
        assert_eq!(close.code, CloseCode::Protocol);
        assert_eq!(close.reason.as_str(), short);
        // 'é' is two bytes: the cut must not fall inside one.
        let long = "é".repeat(100);
        let close = closing_frame(Some(&long));
        assert_eq!(close.reason.len(), 122);
        assert!(close.reason.chars().all(|c| c == 'é'));
    }
}
