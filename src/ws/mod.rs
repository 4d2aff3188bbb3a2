//! WebSocket as a transport for the AMF Socket byte stream, as Ruffle's web build tunnels each
//! `flash.net.Socket` (its `socketProxy` config): the handshake (tokio-tungstenite) with an
//! Origin allowlist and a time limit, then the connection as a plain byte stream (`WsStream`)
//! for the RPC peer, or for anything else that relays bytes. A server accepts with:
//!
//! ```text
//! let stream = ws::accept(Prefixed::new(already_read, tcp), &config).await?;
//! // `stream` is AsyncRead + AsyncWrite: split it, copy it, frame it.
//! ```

mod handshake;
mod prefixed;
mod stream;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub use handshake::Refusal;
pub use prefixed::Prefixed;
pub use stream::{CloseDone, WsStream};

/// How WebSocket connections are accepted.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Origins allowed to connect (exact `scheme://host[:port]`, any case; `*` allows any). A
    /// handshake without an Origin header (not from a browser) is always accepted.
    pub origins: Vec<String>,
    /// The largest message (and frame) accepted; bounds what one connection buffers.
    pub max_message_len: usize,
    /// How long a client has to complete the handshake.
    pub handshake_timeout: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            origins: Vec::new(),
            max_message_len: MIN_MESSAGE_LEN,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// The floor of the message cap: a message may carry several small frames.
const MIN_MESSAGE_LEN: usize = 64 * 1024;

/// tungstenite's read buffer, allocated whole for every connection: 8 KiB as the TCP path reads,
/// rather than its default of 128 KiB, so idle WebSocket connections stay small.
const READ_BUFFER_LEN: usize = 8 * 1024;

impl WsConfig {
    /// A message cap that lets one message hold a whole frame of up to `max_frame_len` bytes
    /// (plus its 4-byte header), and never less than 64 KiB.
    pub fn message_cap_for_frames(max_frame_len: usize) -> usize {
        max_frame_len
            .saturating_add(crate::frame::HEADER_LEN)
            .max(MIN_MESSAGE_LEN)
    }

    /// The default configuration, with a message cap fitting frames of up to `max_frame_len`.
    pub fn for_frames(max_frame_len: usize) -> WsConfig {
        WsConfig {
            max_message_len: WsConfig::message_cap_for_frames(max_frame_len),
            ..WsConfig::default()
        }
    }

    /// Whether a handshake carrying this Origin header (or none) may connect.
    pub fn allows_origin(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        let origin = origin.trim_end_matches('/');
        self.origins.iter().any(|allowed| {
            allowed == "*" || allowed.trim_end_matches('/').eq_ignore_ascii_case(origin)
        })
    }

    fn tungstenite(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_LEN)
            .max_message_size(Some(self.max_message_len))
            .max_frame_size(Some(self.max_message_len))
    }
}

/// An `--ws-origin` value that is neither `*` nor an origin.
#[derive(Debug, thiserror::Error)]
#[error(
    "--ws-origin {0:?} is not an origin: expected '*' or scheme://host[:port], e.g. 'http://127.0.0.1:8000'"
)]
pub struct BadOrigin(pub String);

/// Checks that every allowed origin is `*` or looks like a browser's Origin header.
pub fn check_origins(origins: &[String]) -> Result<(), BadOrigin> {
    match origins.iter().find(|origin| !is_origin(origin)) {
        Some(origin) => Err(BadOrigin(origin.clone())),
        None => Ok(()),
    }
}

/// Whether `text` looks like a browser's Origin header (or is `*`).
fn is_origin(text: &str) -> bool {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"));
    text == "*"
        || rest.is_some_and(|host| !host.is_empty() && !host.trim_end_matches('/').contains('/'))
}

/// Why a WebSocket connection was refused or ended badly.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The Origin header named an origin not in the allowlist (answered 403).
    #[error("origin {0:?} is not allowed (see --ws-origin)")]
    OriginRefused(String),
    /// The client did not complete the handshake in time.
    #[error("the WebSocket handshake did not finish within {0:?}")]
    HandshakeTimeout(Duration),
    /// The request was not a WebSocket upgrade (answered with this HTTP error).
    #[error("not a WebSocket upgrade (answered HTTP {}): {}", .0.status.as_u16(), .0.reason)]
    NotUpgrade(Refusal),
    /// The handshake was not a valid WebSocket upgrade.
    #[error("bad WebSocket handshake: {0}")]
    Handshake(#[source] tokio_tungstenite::tungstenite::Error),
    /// A text message arrived: only binary messages carry the stream.
    #[error("a text message arrived; the stream travels in binary messages")]
    TextMessage,
    /// A message or frame over `max_message_len`.
    #[error("a WebSocket message over the size limit arrived")]
    MessageTooLarge,
    /// A WebSocket protocol violation after the handshake.
    #[error("WebSocket protocol error: {}", protocol_text(.0))]
    Protocol(#[source] tokio_tungstenite::tungstenite::Error),
}

/// What went wrong, without tungstenite's own "WebSocket protocol error: " before a protocol
/// violation, which `WsError::Protocol` says already.
fn protocol_text(error: &tokio_tungstenite::tungstenite::Error) -> String {
    match error {
        tokio_tungstenite::tungstenite::Error::Protocol(violation) => violation.to_string(),
        other => other.to_string(),
    }
}

impl WsError {
    /// A short name for counting by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            WsError::OriginRefused(_) => "ws_origin_refused",
            WsError::HandshakeTimeout(_) => "ws_handshake_timeout",
            WsError::NotUpgrade(_) | WsError::Handshake(_) => "ws_bad_handshake",
            WsError::TextMessage => "ws_text_message",
            WsError::MessageTooLarge => "ws_message_too_large",
            WsError::Protocol(_) => "ws_protocol_error",
        }
    }

    /// The WebSocket error inside an I/O error from a `WsStream`, if that is what it is.
    pub fn within(error: &std::io::Error) -> Option<&WsError> {
        error.get_ref()?.downcast_ref::<WsError>()
    }
}

/// What a connection's first bytes say about a WebSocket upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeSniff {
    /// A prefix of `GET `: read more.
    NeedMore,
    /// An HTTP GET: a WebSocket handshake.
    Upgrade,
    /// Anything else.
    Other,
}

/// How an HTTP upgrade request starts.
const GET: &[u8] = b"GET ";

/// Tells an HTTP GET (a WebSocket handshake) from AMF Socket traffic on a shared port. An AMF
/// Socket frame starts with its 4-byte big-endian length, and `GET ` read as one is 0x47455420,
/// about 1.2 GB: never a valid frame under any sane frame cap, so the two cannot be confused.
pub fn classify(received: &[u8]) -> UpgradeSniff {
    if received.len() >= GET.len() {
        if received.starts_with(GET) {
            UpgradeSniff::Upgrade
        } else {
            UpgradeSniff::Other
        }
    } else if GET.starts_with(received) {
        UpgradeSniff::NeedMore
    } else {
        UpgradeSniff::Other
    }
}

/// Runs the server side of the handshake on `stream` (bytes already read go first in its
/// `Prefixed`), refusing a request that is not an upgrade with an HTTP error and a disallowed
/// Origin with 403, and returns the connection as a byte stream.
pub async fn accept<S>(
    stream: Prefixed<S>,
    config: &WsConfig,
) -> Result<WsStream<Prefixed<S>>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(config.handshake_timeout, checked_handshake(stream, config))
        .await
        .unwrap_or(Err(WsError::HandshakeTimeout(config.handshake_timeout)))
}

/// The request checked (and refused with an HTTP error if it is not an upgrade), then the
/// handshake.
async fn checked_handshake<S>(
    mut stream: Prefixed<S>,
    config: &WsConfig,
) -> Result<WsStream<Prefixed<S>>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let refusal = handshake::check_request(&mut stream)
        .await
        .map_err(|error| WsError::Handshake(error.into()))?;
    if let Some(refusal) = refusal {
        // Best effort: the client may already be gone.
        let _ = handshake::refuse(&mut stream, &refusal).await;
        return Err(WsError::NotUpgrade(refusal));
    }
    handshake(stream, config).await
}

/// tungstenite's handshake, with the Origin allowlist.
async fn handshake<S>(stream: S, config: &WsConfig) -> Result<WsStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut refused_origin = None;
    // The error type is tungstenite's `Callback` contract, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let check_origin = |request: &Request, response: Response| {
        let origin = request.headers().get(header::ORIGIN);
        let origin_text = origin.map(|value| value.to_str().unwrap_or("(not text)"));
        if config.allows_origin(origin_text) {
            return Ok(response);
        }
        refused_origin = origin_text.map(str::to_owned);
        Err(forbidden())
    };
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        check_origin,
        Some(config.tungstenite()),
    );
    match handshake.await {
        Ok(websocket) => Ok(WsStream::new(websocket)),
        Err(error) => Err(match refused_origin {
            Some(origin) => WsError::OriginRefused(origin),
            None => WsError::Handshake(error),
        }),
    }
}

fn forbidden() -> ErrorResponse {
    let mut response = ErrorResponse::new(Some("origin not allowed\n".to_string()));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protocol_error_is_named_once() {
        use tokio_tungstenite::tungstenite::{Error, error::ProtocolError};
        let reset = WsError::Protocol(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake));
        assert_eq!(
            reset.to_string(),
            "WebSocket protocol error: Connection reset without closing handshake"
        );
        let closed = WsError::Protocol(Error::ConnectionClosed);
        assert_eq!(
            closed.to_string(),
            "WebSocket protocol error: Connection closed normally"
        );
    }

    #[test]
    fn get_is_told_from_frames() {
        assert_eq!(classify(b""), UpgradeSniff::NeedMore);
        assert_eq!(classify(b"GE"), UpgradeSniff::NeedMore);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), UpgradeSniff::Upgrade);
        assert_eq!(classify(b"GETX"), UpgradeSniff::Other);
        assert_eq!(classify(b"\0\0\0\x6c\x0a"), UpgradeSniff::Other);
        assert_eq!(classify(b"<policy"), UpgradeSniff::Other);
    }

    #[test]
    fn origins_match_exactly_ignoring_case_and_a_trailing_slash() {
        let config = WsConfig {
            origins: vec!["http://127.0.0.1:8000".into()],
            ..WsConfig::default()
        };
        assert!(config.allows_origin(None));
        assert!(config.allows_origin(Some("http://127.0.0.1:8000")));
        assert!(config.allows_origin(Some("HTTP://127.0.0.1:8000/")));
        assert!(!config.allows_origin(Some("http://127.0.0.1:8001")));
        assert!(!config.allows_origin(Some("http://evil.example")));
        assert!(!WsConfig::default().allows_origin(Some("http://127.0.0.1:8000")));
        let any = WsConfig {
            origins: vec!["*".into()],
            ..WsConfig::default()
        };
        assert!(any.allows_origin(Some("http://anything.example")));
    }

    #[test]
    fn the_message_cap_holds_a_whole_frame() {
        assert_eq!(WsConfig::message_cap_for_frames(1 << 20), (1 << 20) + 4);
        assert_eq!(WsConfig::message_cap_for_frames(10), MIN_MESSAGE_LEN);
    }
}
