//! A stream that first replays bytes already read from it (while sniffing what kind of client
//! connected), then reads on; writes go straight through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// `inner`, with `prefix` read first.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Prefixed<S> {
    /// Reads `prefix`, then `inner`.
    pub fn new(prefix: BytesMut, inner: S) -> Prefixed<S> {
        Prefixed { prefix, inner }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The bytes still to be replayed.
    pub fn buffered(&self) -> &[u8] {
        &self.prefix
    }
}

impl<S: AsyncRead + Unpin> Prefixed<S> {
    /// Reads from the stream into the bytes to replay until `enough` says so, `max` bytes are
    /// held, or the stream ends.
    pub async fn buffer_until(
        &mut self,
        enough: impl Fn(&[u8]) -> bool,
        max: usize,
    ) -> io::Result<()> {
        while !enough(&self.prefix) && self.prefix.len() < max {
            let room = max - self.prefix.len();
            let read = (&mut self.inner)
                .take(room as u64)
                .read_buf(&mut self.prefix)
                .await?;
            if read == 0 {
                break;
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let count = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix.split_to(count));
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_prefix_comes_before_the_rest() {
        let rest: &[u8] = b" / HTTP/1.1";
        let mut stream = Prefixed::new(BytesMut::from(&b"GET"[..]), rest);
        let mut read = Vec::new();
        stream.read_to_end(&mut read).await.expect("reads");
        assert_eq!(read, b"GET / HTTP/1.1");
    }

    #[tokio::test]
    async fn buffering_stops_at_enough_or_the_cap_and_is_replayed() {
        let rest: &[u8] = b"bc\ndef\nghi";
        let mut stream = Prefixed::new(BytesMut::from(&b"a"[..]), rest);
        stream
            .buffer_until(|held| held.contains(&b'\n'), 100)
            .await
            .expect("reads");
        assert!(stream.buffered().starts_with(b"abc\n"));
        let mut read = Vec::new();
        stream.read_to_end(&mut read).await.expect("reads");
        assert_eq!(read, b"abc\ndef\nghi");

        let rest: &[u8] = b"defgh";
        let mut capped = Prefixed::new(BytesMut::from(&b"abc"[..]), rest);
        capped.buffer_until(|_| false, 5).await.expect("reads");
        assert_eq!(capped.buffered(), b"abcde");
    }
}
