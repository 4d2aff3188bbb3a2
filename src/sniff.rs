//! Reading a connection's first bytes until a classifier can tell what kind of client it is
//! (a policy request, a WebSocket upgrade, AMF Socket frames), keeping every byte read.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Reads from `reader` into `buffer` until `decide` returns a verdict for the bytes so far;
/// `at_end` is the verdict when the input ends first. Reads at most `step` bytes more per
/// attempt, so a classifier that needs a short prefix never makes a big buffer.
pub async fn read_until_decided<R, T>(
    reader: &mut R,
    buffer: &mut BytesMut,
    step: usize,
    decide: impl Fn(&[u8]) -> Option<T>,
    at_end: T,
) -> io::Result<T>
where
    R: AsyncRead + Unpin,
{
    loop {
        if let Some(verdict) = decide(buffer) {
            return Ok(verdict);
        }
        buffer.reserve(step);
        if reader.read_buf(buffer).await? == 0 {
            return Ok(at_end);
        }
    }
}
