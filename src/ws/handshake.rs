//! The HTTP request before the WebSocket handshake, checked before tungstenite sees it: a request
//! that is not a WebSocket upgrade (a browser opening the port as a page, a health check, an old
//! client) gets an HTTP error saying what is missing, where tungstenite would drop the connection
//! without a word.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::http::StatusCode;

use super::Prefixed;

/// The longest request head read before giving up: far above any browser's upgrade request.
const MAX_HEAD: usize = 16 * 1024;
/// The most header lines read (as many as tungstenite reads).
const MAX_HEADERS: usize = 124;
/// The WebSocket version this server speaks (RFC 6455).
const VERSION: &str = "13";

/// An HTTP request refused before the handshake: the status to answer and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status sent back.
    pub status: StatusCode,
    /// What was wrong, sent as the response's body.
    pub reason: String,
}

impl Refusal {
    fn new(status: StatusCode, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
        }
    }
}

/// Reads the request head into `stream`'s replay buffer, so that the handshake reads it again.
/// Returns the refusal to send when it is not a WebSocket upgrade, `None` when it is (or when the
/// connection ended first: the handshake then fails as it would have).
pub async fn check_request<S: AsyncRead + Unpin>(
    stream: &mut Prefixed<S>,
) -> io::Result<Option<Refusal>> {
    stream.buffer_until(is_decided, MAX_HEAD).await?;
    Ok(check_head(stream.buffered()).err())
}

/// Whether `received` is enough to answer: a whole request head (its lines ended by CRLF or,
/// as HTTP parsers accept, a bare LF), or bytes that cannot begin one.
fn is_decided(received: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    !matches!(
        httparse::Request::new(&mut headers).parse(received),
        Ok(httparse::Status::Partial)
    )
}

/// Whether a request head asks for a WebSocket upgrade this server can complete.
fn check_head(received: &[u8]) -> Result<(), Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(received) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) if received.len() >= MAX_HEAD => {
            return Err(Refusal::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("the request head is over {MAX_HEAD} bytes"),
            ));
        }
        // The connection ended mid-request: nobody is left to answer.
        Ok(httparse::Status::Partial) => return Ok(()),
        Err(httparse::Error::Version) => {
            return Err(Refusal::new(
                StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                "a WebSocket handshake is an HTTP/1.1 request",
            ));
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("more than {MAX_HEADERS} header lines"),
            ));
        }
        Err(error) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("not an HTTP request: {error}"),
            ));
        }
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| String::from_utf8_lossy(header.value).into_owned())
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|value| {
            value
                .split(',')
                .any(|item| item.trim().eq_ignore_ascii_case(token))
        })
    };
    if request.method != Some("GET") {
        return Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket handshake is a GET request",
        ));
    }
    // httparse reads HTTP/1.0 (0) and HTTP/1.1 (1); RFC 6455 needs 1.1 or later.
    if request.version != Some(1) {
        return Err(Refusal::new(
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "a WebSocket handshake is an HTTP/1.1 request",
        ));
    }
    // The whole Upgrade value, as tungstenite compares it.
    let upgrades_to_websocket =
        header("Upgrade").is_some_and(|value| value.trim().eq_ignore_ascii_case("websocket"));
    if !upgrades_to_websocket || !has_token("Connection", "upgrade") {
        return Err(Refusal::new(
            StatusCode::UPGRADE_REQUIRED,
            "this port takes WebSocket connections only (the AMF Socket byte stream in binary \
             messages, as Ruffle's socketProxy sends it): the request needs \
             'Connection: Upgrade' and 'Upgrade: websocket'",
        ));
    }
    if header("Sec-WebSocket-Version").as_deref().map(str::trim) != Some(VERSION) {
        return Err(Refusal::new(
            StatusCode::UPGRADE_REQUIRED,
            format!("only WebSocket version {VERSION} is spoken (Sec-WebSocket-Version)"),
        ));
    }
    let keys = request
        .headers
        .iter()
        .filter(|header| header.name.eq_ignore_ascii_case("Sec-WebSocket-Key"))
        .count();
    if keys > 1 {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "more than one Sec-WebSocket-Key header",
        ));
    }
    match header("Sec-WebSocket-Key") {
        None => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "the Sec-WebSocket-Key header is missing",
        )),
        Some(key) if !is_valid_key(&key) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "the Sec-WebSocket-Key header must be 16 random bytes in base64 (24 characters)",
        )),
        Some(_) => Ok(()),
    }
}

/// Whether a Sec-WebSocket-Key is 16 bytes in base64, as RFC 6455 requires and tungstenite checks.
fn is_valid_key(key: &str) -> bool {
    key.len() == 24
        && data_encoding::BASE64
            .decode(key.as_bytes())
            .is_ok_and(|bytes| bytes.len() == 16)
}

/// Sends the refusal as an HTTP response, then ends the connection.
pub async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, refusal: &Refusal) -> io::Result<()> {
    let upgrade_headers = if refusal.status == StatusCode::UPGRADE_REQUIRED {
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    } else {
        ""
    };
    let body = format!("{}\n", refusal.reason);
    let response = format!(
        "HTTP/1.1 {}\r\n{upgrade_headers}Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        refusal.status,
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "GET /x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n\
        Upgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    fn status(head: &str) -> Option<u16> {
        check_head(head.as_bytes())
            .err()
            .map(|refusal| refusal.status.as_u16())
    }

    #[test]
    fn an_upgrade_passes_and_what_is_missing_is_named() {
        assert_eq!(status(UPGRADE), None);
        assert_eq!(
            status(&UPGRADE.replace("keep-alive, Upgrade", "close")),
            Some(426)
        );
        assert_eq!(status(&UPGRADE.replace("WebSocket", "h2c")), Some(426));
        assert_eq!(
            status(&UPGRADE.replace("Version: 13", "Version: 8")),
            Some(426)
        );
        assert_eq!(
            status(&UPGRADE.replace("Sec-WebSocket-Key", "X-Key")),
            Some(400)
        );
        assert_eq!(status(&UPGRADE.replace("GET", "POST")), Some(405));
        assert_eq!(status(&UPGRADE.replace("HTTP/1.1", "HTTP/1.0")), Some(505));
        assert_eq!(status(&UPGRADE.replace("HTTP/1.1", "HTTP/2.0")), Some(505));
        assert_eq!(
            status(&UPGRADE.replace("\r\n", "\n")),
            None,
            "bare LF line ends"
        );
        let second_key = UPGRADE.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n",
        );
        assert_eq!(status(&second_key), Some(400));
        // tungstenite takes the whole Upgrade value, not a list.
        assert_eq!(
            status(&UPGRADE.replace("Upgrade: WebSocket", "Upgrade: websocket, h2c")),
            Some(426)
        );
        for bad_key in [
            "short",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZQ=!",
        ] {
            let head = UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", bad_key);
            assert_eq!(status(&head), Some(400), "{bad_key}");
        }
        assert_eq!(status("GET / HTTP/1.1\r\nbad header\r\n\r\n"), Some(400));
    }

    #[test]
    fn an_unfinished_head_is_left_to_the_handshake_unless_too_long() {
        assert_eq!(status("GET / HTTP/1.1\r\nHost: h\r\n"), None);
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(status(&long), Some(431));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(status(&many), Some(431));
    }

    #[test]
    fn a_head_is_decided_at_its_blank_line_or_its_first_bad_byte() {
        assert!(is_decided(b"GET / HTTP/1.1\r\n\r\nrest"));
        assert!(is_decided(b"GET / HTTP/1.1\n\n"));
        assert!(!is_decided(b"GET / HTTP/1.1\r\n"));
        assert!(!is_decided(b"GET / HTTP/1.1\nHost: h\n"));
        assert!(is_decided(b"GET / HTTP/1.1\r\nbad header\r\n"));
        assert!(is_decided(b"\x00\x00\x00\x10"));
    }
}
