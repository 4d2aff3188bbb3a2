//! Flash socket policy files: telling a `<policy-file-request/>` from other traffic, and answering
//! it so that the policy arrives whole (used by `serve` on its own port, the port-843 server and
//! the proxy); generating, linting and checking policies.

pub mod check;
pub mod command;
pub mod file;
pub mod lint;
pub mod server;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use file::generate_for_port;
pub use file::{Allow, MetaPolicy, PolicyError, generate};

/// Where the policy answered on a shared port (serve's, or the proxy's) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// Policy requests are not recognised: every byte is framing.
    Off,
    /// Generated from these rules; none means any domain to the served port.
    Allow(Vec<Allow>),
    /// A policy file's text, and the file, for messages about it.
    File {
        /// Where it was read.
        path: PathBuf,
        /// Its text.
        text: Arc<str>,
    },
}

impl Default for PolicySource {
    fn default() -> Self {
        PolicySource::Allow(Vec::new())
    }
}

impl PolicySource {
    /// The policy's bytes for a server on `port`, or none.
    pub fn render(&self, port: u16) -> Option<Arc<[u8]>> {
        match self {
            PolicySource::Off => None,
            PolicySource::Allow(rules) if rules.is_empty() => Some(
                generate_for_port(&[Allow::any_domain_to(port)], port)
                    .into_bytes()
                    .into(),
            ),
            PolicySource::Allow(rules) => Some(generate_for_port(rules, port).into_bytes().into()),
            PolicySource::File { text, .. } => Some(text.as_bytes().into()),
        }
    }

    /// Checks the policy for the port it is served on, once bound (`asked` is the port the
    /// listener asked for). A policy file was linted when it was read, for `asked`; when that was
    /// 0, it is checked now as [`PolicySource::check_for_served_port`] does.
    pub fn check_for_port(&self, asked: u16, port: u16) -> anyhow::Result<()> {
        match self {
            PolicySource::File { .. } if asked != 0 => Ok(()),
            _ => self.check_for_served_port(port),
        }
    }

    /// Checks, for a `port` it is served on, a policy whose file was linted for no port when read.
    /// A policy generated from `--allow` rules gets warnings for what `policy lint` finds, such as
    /// grants Flash Player ignores there; a file gets what the port brings printed, and an error
    /// refuses it. (The default policy grants exactly the served port.)
    pub fn check_for_served_port(&self, port: u16) -> anyhow::Result<()> {
        match self {
            PolicySource::Allow(rules) if !rules.is_empty() => {
                for finding in lint::lint(&generate_for_port(rules, port), Some(port)) {
                    tracing::warn!(
                        "the policy generated from --allow, served on port {port}: {}",
                        finding.message
                    );
                }
                Ok(())
            }
            PolicySource::File { path, text } => command::check_policy_for_port(path, text, port),
            _ => Ok(()),
        }
    }
}

/// What Flash Player sends, before its terminating NUL.
pub const REQUEST_TAG: &[u8] = b"<policy-file-request/>";

/// What the first bytes from a client turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// A prefix of a policy request so far: read more.
    NeedMore,
    /// A policy request (the tag is complete; a NUL or line end may follow).
    PolicyRequest,
    /// Anything else: real traffic on a shared port, or garbage on the policy port.
    Other,
}

/// Classifies the bytes a client has sent so far. A shared port must see the whole tag before it
/// decides, because other text protocols (XMLSocket) also start with `<`. `skip_whitespace`
/// tolerates leading blanks, as typed in telnet; a shared port does not, since frames may start
/// with any byte.
pub fn classify(received: &[u8], skip_whitespace: bool) -> Sniff {
    let start = if skip_whitespace {
        received
            .iter()
            .position(|byte| !byte.is_ascii_whitespace())
            .unwrap_or(received.len())
    } else {
        0
    };
    let candidate = &received[start..];
    // Too many blanks is decided first, even when the tag follows in the same read: otherwise the
    // verdict would depend on how the client's bytes were split across reads.
    if start > MAX_LEADING_WHITESPACE {
        Sniff::Other
    } else if candidate.len() >= REQUEST_TAG.len() {
        if candidate.starts_with(REQUEST_TAG) {
            Sniff::PolicyRequest
        } else {
            Sniff::Other
        }
    } else if REQUEST_TAG.starts_with(candidate) {
        Sniff::NeedMore
    } else {
        Sniff::Other
    }
}

/// Blanks tolerated before the tag: a few typed newlines, not an endless stream of spaces.
const MAX_LEADING_WHITESPACE: usize = 64;

/// Reads from `reader` into `buffer` until `classify` decides. The end of input decides
/// `Other` (with what was read left in `buffer`).
pub async fn sniff<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut BytesMut,
    skip_whitespace: bool,
) -> io::Result<Sniff> {
    let decide = |received: &[u8]| match classify(received, skip_whitespace) {
        Sniff::NeedMore => None,
        decided => Some(decided),
    };
    let step = REQUEST_TAG.len() + MAX_LEADING_WHITESPACE;
    crate::sniff::read_until_decided(reader, buffer, step, decide, Sniff::Other).await
}

/// How long the answer may take to write, and how long to wait for the client to close after it.
#[derive(Debug, Clone, Copy)]
pub struct AnswerTimeouts {
    /// Writing the policy.
    pub write: Duration,
    /// Draining the client's leftovers after our half-close.
    pub linger: Duration,
}

impl Default for AnswerTimeouts {
    fn default() -> Self {
        AnswerTimeouts {
            write: Duration::from_secs(5),
            linger: Duration::from_secs(2),
        }
    }
}

/// Bytes drained from the client after answering; a client still sending past this is cut off.
const MAX_DRAIN: usize = 4096;

/// Answers a policy request: the policy and one NUL, then a half-close, then a short drain of
/// whatever the client still sends, so that closing does not reset the connection and destroy
/// the policy in flight. Returns the bytes written.
pub async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    policy: &[u8],
    timeouts: AnswerTimeouts,
) -> io::Result<usize> {
    let sent = write_answer(stream, policy, timeouts.write).await?;
    linger(stream, timeouts.linger).await;
    Ok(sent)
}

/// The first half of `answer`: the policy and its NUL, then our half-close; returns the bytes
/// sent.
pub async fn write_answer<S: AsyncWrite + Unpin>(
    stream: &mut S,
    policy: &[u8],
    timeout: Duration,
) -> io::Result<usize> {
    let mut response = Vec::with_capacity(policy.len() + 1);
    response.extend_from_slice(policy);
    response.push(0);
    let write = async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(timeout, write)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "writing the policy timed out"))??;
    Ok(response.len())
}

/// The second half of `answer`: what the client still sends is read and dropped, for at most
/// `timeout`, so that closing does not reset the connection under the policy in flight.
pub async fn linger<R: AsyncRead + Unpin>(stream: &mut R, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, drain(stream)).await;
}

async fn drain<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut scratch = [0u8; 512];
    let mut drained = 0;
    while drained < MAX_DRAIN {
        match reader.read(&mut scratch).await {
            Ok(0) | Err(_) => return,
            Ok(read) => drained += read,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_tag_is_needed_on_a_shared_port() {
        assert_eq!(classify(b"", false), Sniff::NeedMore);
        assert_eq!(classify(b"<policy-file", false), Sniff::NeedMore);
        assert_eq!(
            classify(b"<policy-file-request/>", false),
            Sniff::PolicyRequest
        );
        assert_eq!(
            classify(b"<policy-file-request/>\0", false),
            Sniff::PolicyRequest
        );
        assert_eq!(classify(b"<msg>hello</msg>", false), Sniff::Other);
        assert_eq!(classify(b"\0\0\0\x6c\x0a", false), Sniff::Other);
        assert_eq!(classify(b" <policy-file-request/>", false), Sniff::Other);
    }

    #[test]
    fn the_policy_port_tolerates_leading_blanks_within_reason() {
        assert_eq!(
            classify(b"\r\n <policy-file-request/>\r\n", true),
            Sniff::PolicyRequest
        );
        assert_eq!(classify(b"  \n", true), Sniff::NeedMore);
        assert_eq!(classify(&[b' '; 65], true), Sniff::Other);
    }

    #[tokio::test]
    async fn sniff_reads_a_request_split_into_single_bytes() {
        let request = b"<policy-file-request/>\0";
        let mut reader = tokio_test_reader(request);
        let mut buffer = BytesMut::new();
        let sniffed = sniff(&mut reader, &mut buffer, false).await.expect("reads");
        assert_eq!(sniffed, Sniff::PolicyRequest);
    }

    /// A reader that hands out one byte per read.
    fn tokio_test_reader(bytes: &'static [u8]) -> impl AsyncRead + Unpin {
        let chunks = bytes
            .chunks(1)
            .map(|chunk| Ok(bytes::Bytes::from_static(chunk)));
        tokio_util::io::StreamReader::new(tokio_stream::iter(
            chunks.collect::<Vec<io::Result<_>>>(),
        ))
    }
}
