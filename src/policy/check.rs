//! `amf-bench policy check HOST:PORT`: asks for the policy as Flash Player does and reports what
//! came back, how long it took, and whether it grants a port.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::file::parse_port_item;
use super::lint::parse_policy;

/// The request exactly as Flash Player sends it.
pub const FLASH_REQUEST: &[u8] = b"<policy-file-request/>\0";
/// A server sending more than this without a NUL is not sending a policy.
const MAX_ANSWER: usize = 64 * 1024;
/// How long after the NUL the server has to close before it is reported as holding the
/// connection open.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What a policy server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The bytes before the NUL (or all of them, without one).
    pub policy: Vec<u8>,
    /// Whether a NUL ended the policy, as Flash Player requires.
    pub nul_terminated: bool,
    /// Bytes after the NUL, which a correct server never sends.
    pub trailing: usize,
    /// Whether the server closed the connection after its answer (within [`CLOSE_GRACE`] of the
    /// NUL), as a policy server must.
    pub closed: bool,
    /// From connecting to the NUL (or, without one, to the close, or to the last byte when the
    /// server did not close by the deadline).
    pub elapsed: Duration,
}

/// Connects to `target` (`HOST:PORT`), sends the request and reads the answer until the server
/// closes, or until [`CLOSE_GRACE`] after the NUL. The NUL-ended answer must come within
/// `timeout`; the wait for the close after it is the grace's, however late the NUL came. Bytes
/// that came by then with neither a NUL nor a close are an answer without its NUL; only a server
/// that sent nothing by then did not answer. An error says which step failed, and names `target`.
pub async fn fetch(target: &str, timeout: Duration) -> anyhow::Result<Answer> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let late = || anyhow::anyhow!("{target} did not answer within {timeout:?}");
    let mut stream = tokio::time::timeout_at(deadline, async {
        let mut stream = TcpStream::connect(target)
            .await
            .with_context(|| format!("cannot connect to {target}"))?;
        stream
            .write_all(FLASH_REQUEST)
            .await
            .with_context(|| format!("cannot send the request to {target}"))?;
        anyhow::Ok(stream)
    })
    .await
    .map_err(|_| late())??;
    let Reading {
        received,
        closed,
        answered,
    } = read_answer(&mut stream, target, deadline)
        .await?
        .ok_or_else(late)?;
    let elapsed = answered.saturating_duration_since(started);
    Ok(match received.iter().position(|byte| *byte == 0) {
        Some(nul) => Answer {
            trailing: received.len() - nul - 1,
            policy: received[..nul].to_vec(),
            nul_terminated: true,
            closed,
            elapsed,
        },
        None => Answer {
            policy: received,
            nul_terminated: false,
            trailing: 0,
            closed,
            elapsed,
        },
    })
}

/// What the server sent.
struct Reading {
    received: Vec<u8>,
    /// Whether it closed the connection.
    closed: bool,
    /// When the NUL came, or else the close, or else (the deadline passed first) the last byte.
    answered: Instant,
}

/// Reads until the server closes, or until [`CLOSE_GRACE`] has passed since a NUL arrived, or
/// until `deadline` passes with neither; `None` when the deadline passes with nothing received.
async fn read_answer(
    stream: &mut TcpStream,
    target: &str,
    deadline: tokio::time::Instant,
) -> anyhow::Result<Option<Reading>> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut nul_at = None::<Instant>;
    let mut last_byte_at = None::<Instant>;
    loop {
        let due = nul_at.map_or(deadline, |at| {
            tokio::time::Instant::from_std(at) + CLOSE_GRACE
        });
        let Ok(read) = tokio::time::timeout_at(due, stream.read(&mut chunk)).await else {
            return Ok(nul_at.or(last_byte_at).map(|answered| Reading {
                received,
                closed: false,
                answered,
            }));
        };
        let read = read.with_context(|| format!("cannot read the answer from {target}"))?;
        if read == 0 {
            if received.is_empty() {
                bail!("{target} closed the connection without answering");
            }
            return Ok(Some(Reading {
                received,
                closed: true,
                answered: nul_at.unwrap_or_else(Instant::now),
            }));
        }
        last_byte_at = Some(Instant::now());
        if nul_at.is_none() && chunk[..read].contains(&0) {
            nul_at = last_byte_at;
        }
        received.extend_from_slice(&chunk[..read]);
        if received.len() > MAX_ANSWER {
            bail!("{target} sent more than {MAX_ANSWER} bytes: not a policy answer");
        }
    }
}

/// Whether a policy's `allow-access-from` rules grant `port` (to some domain). Unparsable
/// policies grant nothing.
pub fn grants(policy: &str, port: u16) -> bool {
    let Ok(document) = parse_policy(policy) else {
        return false;
    };
    document
        .root_element()
        .children()
        .filter(|node| node.has_tag_name("allow-access-from"))
        .filter_map(|node| node.attribute("to-ports"))
        .any(|ports| {
            ports == "*"
                || ports
                    .split(',')
                    .filter_map(|item| parse_port_item(item.trim()))
                    .any(|(first, last)| (first..=last).contains(&port))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_reads_ports_ranges_lists_and_star() {
        let policy = |ports: &str| {
            format!(
                "<cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"{ports}\"/></cross-domain-policy>"
            )
        };
        assert!(grants(&policy("9000"), 9000));
        assert!(grants(&policy("843,8000-8100"), 8050));
        assert!(!grants(&policy("843,8000-8100"), 8101));
        assert!(grants(&policy("*"), 1));
        assert!(!grants("<cross-domain-policy/>", 9000));
        let generated = crate::policy::generate(
            &[crate::policy::Allow::any_domain_to(9000)],
            crate::policy::MetaPolicy::MasterOnly,
        );
        assert!(grants(&generated, 9000), "a DOCTYPE line is allowed");
        assert!(!grants("not xml", 9000));
    }
}
