//! Byte-exact relaying of one direction: read into a fixed buffer, write all of it to the other
//! side, show the observer a copy, and only then read again. So a side that does not read holds
//! back the other (TCP back-pressure) instead of growing the proxy's memory, and bytes are never
//! added, dropped or reordered. End of input becomes a half-close of the other side.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::log::Stamp;
use super::observe::Observer;
use crate::policy::{self, Sniff};

/// How one direction ended.
#[derive(Debug)]
pub(super) enum Ended {
    /// The reading side closed; the writing side was half-closed in turn.
    Closed,
    /// Reading failed (typically a reset by that peer).
    ReadFailed(io::Error),
    /// Writing failed (the other peer is gone).
    WriteFailed(io::Error),
    /// The client's first bytes were a policy request to answer here (nothing was relayed).
    PolicyRequest,
}

/// Bytes read and not yet written, over all connections: at most one buffer per direction.
#[derive(Debug, Default)]
pub struct Held {
    now: AtomicU64,
    peak: AtomicU64,
}

impl Held {
    fn add(&self, bytes: usize) {
        let now = self.now.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn remove(&self, bytes: usize) {
        self.now.fetch_sub(bytes as u64, Ordering::Relaxed);
    }

    /// Bytes held now.
    pub fn now(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    /// The most ever held at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

/// Relays `reader` to `writer` until either ends, through `buffer`.
pub(super) async fn pump<R, W>(
    reader: &mut R,
    writer: &mut W,
    buffer: &mut [u8],
    observer: &mut Observer<'_>,
    held: &Held,
) -> Ended
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let read = match reader.read(buffer).await {
            Ok(0) => {
                observer.finish();
                return match writer.shutdown().await {
                    Ok(()) => Ended::Closed,
                    Err(error) => Ended::WriteFailed(error),
                };
            }
            Ok(read) => read,
            Err(error) => {
                observer.finish();
                return Ended::ReadFailed(error);
            }
        };
        let at = Stamp::now();
        if let Err(ended) = forward(writer, &buffer[..read], observer, held, at).await {
            return ended;
        }
    }
}

/// Writes one chunk, then lets the observer see it.
async fn forward<W: AsyncWrite + Unpin>(
    writer: &mut W,
    chunk: &[u8],
    observer: &mut Observer<'_>,
    held: &Held,
    at: Stamp,
) -> Result<(), Ended> {
    held.add(chunk.len());
    // A WebSocket client's writer queues messages until flushed; for TCP the flush is free.
    let written = match writer.write_all(chunk).await {
        Ok(()) => writer.flush().await,
        Err(error) => Err(error),
    };
    held.remove(chunk.len());
    written.map_err(Ended::WriteFailed)?;
    observer.observe(chunk, at);
    Ok(())
}

/// How long a client's first bytes, while still a prefix of `<policy-file-request/>`, wait for
/// the rest before they are taken for traffic. Flash Player sends the whole tag at once. The
/// wait starts at the first byte: a silent client has nothing to relay meanwhile, and a person
/// typing the request into telnet takes longer than this to begin.
pub(super) const SNIFF_WAIT: Duration = Duration::from_secs(1);

/// How the client side starts.
pub(super) struct Opening<F> {
    /// Bytes already read from the client (while telling a WebSocket upgrade from traffic).
    pub(super) first: BytesMut,
    /// Whether `first` was already found not to be a policy request.
    pub(super) sniffed: bool,
    /// Whether a policy request is answered here (else it goes upstream).
    pub(super) answer: bool,
    /// Called when a policy request goes upstream.
    pub(super) on_policy_forwarded: F,
}

/// The client side: waits for the first bytes to tell a policy request from traffic (the
/// upstream's bytes flow meanwhile), forwards what was read, then relays like `pump`.
pub(super) async fn client_side<R, W>(
    reader: &mut R,
    writer: &mut W,
    opening: Opening<impl FnOnce()>,
    buffer: &mut [u8],
    observer: &mut Observer<'_>,
    held: &Held,
) -> Ended
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Opening {
        mut first,
        sniffed,
        answer,
        on_policy_forwarded,
    } = opening;
    let sniffed = if sniffed {
        Ok(Sniff::Other)
    } else {
        sniff_policy_request(reader, &mut first).await
    };
    let at = Stamp::now();
    match sniffed {
        Err(error) => return Ended::ReadFailed(error),
        Ok(Sniff::PolicyRequest) if answer => return Ended::PolicyRequest,
        Ok(Sniff::PolicyRequest) => on_policy_forwarded(),
        Ok(_) => {}
    }
    if !first.is_empty()
        && let Err(ended) = forward(writer, &first, observer, held, at).await
    {
        return ended;
    }
    pump(reader, writer, buffer, observer, held).await
}

/// Waits for the client's first bytes however long they take, then tells a policy request from
/// traffic. A client that sends a prefix of the tag and then waits for an answer is not held for
/// ever: `SNIFF_WAIT` after its first bytes, they go upstream as traffic. Bytes read stay in
/// `first`.
pub(super) async fn sniff_policy_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    first: &mut BytesMut,
) -> io::Result<Sniff> {
    if first.is_empty() && reader.read_buf(first).await? == 0 {
        return Ok(Sniff::Other);
    }
    tokio::time::timeout(SNIFF_WAIT, policy::sniff(reader, first, false))
        .await
        .unwrap_or(Ok(Sniff::Other))
}
