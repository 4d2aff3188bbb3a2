//! Byte-exactness through a relay: clients and an upstream that each send a stream of valid,
//! undecodable and oversize frames in random write sizes, hashing what they send and receive, so
//! a test can check that every byte arrived unchanged on every connection, both ways.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amf_bench::codec::Value;
use amf_bench::rpc::Encoding;
use amf_bench::rpc::wire::encode_envelope;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::proxy::Noise;
use super::{object, request};

/// The tap's decode cap in the byte-exactness tests: frames above it are oversize.
pub const TEST_MAX_DECODE: usize = 16 * 1024;

/// A stream of frames: valid echo requests, undecodable payloads and oversize frames. Returns
/// the bytes and the number of frames.
pub fn frame_stream(noise: &mut Noise, frames: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    for index in 0..frames {
        match noise.below(3) {
            0 => {
                let text = Value::string(&"x".repeat(noise.below(2000)));
                // A random message id keeps every stream unique, so connections pair up by their hashes.
                let id = format!("{:x}-{index}", noise.next());
                let envelope = request(&id, "echo", object(vec![("text", text)]));
                let frame = encode_envelope(envelope, Encoding::Amf3, 1 << 20).expect("encodes");
                out.extend_from_slice(&frame);
            }
            1 => {
                let len = 1 + noise.below(3000);
                let mut body = noise.bytes(len);
                body[0] = 0x14; // not an AMF3 marker: never decodes
                out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                out.extend_from_slice(&body);
            }
            _ => {
                let len = TEST_MAX_DECODE + noise.below(80_000);
                let body = noise.bytes(len);
                out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                out.extend_from_slice(&body);
            }
        }
    }
    (out, frames)
}

/// Writes `bytes` in random sizes, then half-closes; returns the SHA-256 of what was written.
pub async fn write_randomly(
    writer: &mut (impl AsyncWriteExt + Unpin),
    bytes: &[u8],
    noise: &mut Noise,
) -> Vec<u8> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(noise.write_size().min(rest.len()));
        writer.write_all(chunk).await.expect("writes");
        rest = after;
    }
    writer.shutdown().await.expect("half-closes");
    Sha256::digest(bytes).to_vec()
}

/// Reads to the end; returns the SHA-256 and the length of what arrived.
pub async fn read_all(reader: &mut (impl AsyncReadExt + Unpin)) -> (Vec<u8>, usize) {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let read = reader.read(&mut buffer).await.expect("reads");
        if read == 0 {
            return (hasher.finalize().to_vec(), total);
        }
        hasher.update(&buffer[..read]);
        total += read;
    }
}

/// What each side of one connection sent and received.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Exchange {
    pub sent: Vec<u8>,
    pub received: Vec<u8>,
    /// How many bytes were sent and received.
    pub sent_len: usize,
    pub received_len: usize,
}

/// An upstream that, per connection, sends its own frame stream in random writes while hashing
/// everything it receives, and half-closes when done. The test matches its connections to the
/// clients by the hash of what they received.
pub async fn hashing_upstream(
    listener: TcpListener,
    results: Arc<Mutex<Vec<(Exchange, usize)>>>,
    max_frames: usize,
) {
    let mut seed = 1u64;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        seed += 1;
        let results = Arc::clone(&results);
        tokio::spawn(async move {
            let noise = Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let exchanged = exchange(stream, noise, max_frames).await;
            results.lock().expect("lock").push(exchanged);
        });
    }
}

/// One side of a connection: sends a stream of 1 to `max_frames` frames drawn from `noise` in
/// random writes, then half-closes, while reading to the end; returns what it sent and received,
/// and how many frames it sent.
async fn exchange(stream: TcpStream, mut noise: Noise, max_frames: usize) -> (Exchange, usize) {
    let frames = 1 + noise.below(max_frames);
    let (bytes, frames) = frame_stream(&mut noise, frames);
    let (mut reader, mut writer) = stream.into_split();
    let sending = write_randomly(&mut writer, &bytes, &mut noise);
    let (sent, (received, received_len)) = tokio::join!(sending, read_all(&mut reader));
    let exchange = Exchange {
        sent,
        received,
        sent_len: bytes.len(),
        received_len,
    };
    (exchange, frames)
}

/// Runs `connections` clients through `addr` at once, each sending 1 to `max_frames` frames while
/// reading everything back; returns what each sent and received, and its frame count.
pub async fn clients_through(
    addr: SocketAddr,
    connections: u64,
    max_frames: usize,
) -> Vec<(Exchange, usize)> {
    // At most this many connects in flight: a burst of a thousand SYNs on loopback overflows a
    // busy listener's queues, and the kernel then resets some of them (not a relay's doing).
    let connecting = Arc::new(tokio::sync::Semaphore::new(64));
    let mut clients = tokio::task::JoinSet::new();
    for seed in 0..connections {
        let connecting = Arc::clone(&connecting);
        clients.spawn(async move {
            let permit = connecting.acquire().await.expect("the gate stays open");
            let stream = TcpStream::connect(addr).await.expect("connects");
            drop(permit);
            exchange(stream, Noise(0xA5A5_0000 + seed), max_frames).await
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tokio::time::timeout(Duration::from_secs(120), clients.join_next())
        .await
        .expect("clients finish in time")
    {
        results.push(joined.expect("client task"));
    }
    results
}

/// Checks that each client's bytes reached the upstream unchanged and the upstream's reached the
/// client unchanged (connections are paired by the hash of what the upstream received); returns
/// the frames sent both ways.
pub fn assert_exact(clients: &[(Exchange, usize)], upstream: &[(Exchange, usize)]) -> usize {
    assert_eq!(
        upstream.len(),
        clients.len(),
        "every connection reached the upstream"
    );
    let upstream_by_received: HashMap<&[u8], (&Exchange, usize)> = upstream
        .iter()
        .map(|(exchange, frames)| (exchange.received.as_slice(), (exchange, *frames)))
        .collect();
    let mut frames_each_way = 0;
    let mut unmatched = 0;
    let mut altered = Vec::new();
    for (client, client_frames) in clients {
        let Some((upstream_side, upstream_frames)) =
            upstream_by_received.get(client.sent.as_slice())
        else {
            unmatched += 1;
            continue;
        };
        if client.received != upstream_side.sent {
            altered.push((upstream_side.sent_len, client.received_len));
        }
        frames_each_way += client_frames + upstream_frames;
    }
    assert_eq!(
        (unmatched, altered.len()),
        (0, 0),
        "of {} connections: the upstream received something no client sent on {unmatched}, a client received something the upstream did not send on {} (bytes sent, received: {altered:?})",
        clients.len(),
        altered.len()
    );
    frames_each_way
}
