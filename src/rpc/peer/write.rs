//! The writing half of a peer: queued frames gathered into batches and written, then a graceful
//! or immediate close.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{CloseReason, Lifecycle};

/// Frames queued together are written with one system call, up to this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// The writing half: frames from the outbox to the socket, until every sender is gone, a
/// graceful close (refuse new frames, write those queued within `flush_timeout`, then shut
/// down), or an abort (stop now). A write in progress is never abandoned for a graceful close,
/// so the peer never sees half a frame followed by another.
pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
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
