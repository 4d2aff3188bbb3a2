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
/// The most a connection's batch buffer keeps between writes.
const RETAINED_BATCH: usize = 2 * BATCH_BYTES;

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
        // A graceful close that comes during a write bounds that write too: a peer that stopped
        // reading must not hold the connection open for ever.
        let written = {
            let write = write_batch(&mut writer, &batch);
            tokio::pin!(write);
            loop {
                // The write first: most complete at once, and then nothing else is polled.
                tokio::select! {
                    biased;
                    written = &mut write => break written,
                    () = life.abort.cancelled() => return,
                    () = life.finish.cancelled(), if flush_by.is_none() => {
                        flush_by = Some(tokio::time::Instant::now() + flush_timeout);
                        outbox.close();
                    }
                    () = crate::shutdown::sleep_until(flush_by) => break Err(io::ErrorKind::TimedOut.into()),
                }
            }
        };
        release_large(&mut batch);
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

/// Lets go of a batch buffer grown past `RETAINED_BATCH`: one large frame must not cost an idle
/// connection its size for the rest of its life.
fn release_large(batch: &mut BytesMut) {
    if batch.capacity() > RETAINED_BATCH {
        *batch = BytesMut::new();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_grown_by_a_large_frame_is_let_go() {
        let mut batch = BytesMut::new();
        batch.extend_from_slice(&[0; 64]);
        let small = batch.capacity();
        release_large(&mut batch);
        assert_eq!(
            batch.capacity(),
            small,
            "a usual batch is kept for the next"
        );
        batch.extend_from_slice(&vec![0; 4 << 20]);
        release_large(&mut batch);
        assert!(batch.capacity() <= RETAINED_BATCH, "{}", batch.capacity());
    }
}
