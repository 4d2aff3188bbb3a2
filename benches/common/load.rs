//! What the server and load-generator benchmarks share: a typical echo request, a minimal load
//! generator (pre-encoded requests, replies counted by their frame headers, a fixed number in
//! flight per connection), and a process's resident memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use amf_bench::codec::{Str, Value};
use amf_bench::frame::split_frame;
use amf_bench::rpc::wire::encode_envelope;
use amf_bench::rpc::{Encoding, Envelope, Request};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::BenchResult;

/// Connections the minimal generator opens.
pub const CONNECTIONS: usize = 1_000;
/// Requests each keeps outstanding.
pub const IN_FLIGHT_PER_CONNECTION: usize = 4;
const WARM_UP: Duration = Duration::from_secs(1);

/// A request as a load tester sends it: a typical small envelope.
pub fn echo_request() -> BenchResult<Vec<u8>> {
    let params = Value::object(vec![
        (Str::new_static("player"), Value::Integer(48_213)),
        (
            Str::new_static("text"),
            Value::string("hello from the bench"),
        ),
        (Str::new_static("x"), Value::Double(152.5)),
    ]);
    let request = Envelope::Request(Request {
        message_id: Str::from("1732183200123:482913374:917263514"),
        command: Str::new_static("echo"),
        params,
    });
    Ok(encode_envelope(request, Encoding::Amf3, 1 << 20)?.to_vec())
}

/// Drives `CONNECTIONS` connections for warm-up plus `measure`; returns replies per second
/// counted during `measure`.
pub fn load(addr: SocketAddr, request: &[u8], measure: Duration) -> BenchResult<f64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let replies = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CONNECTIONS {
            let stream = connect(addr).await?;
            tasks.spawn(drive(
                stream,
                request.to_vec(),
                Arc::clone(&replies),
                stop.clone(),
            ));
        }
        let rate = super::rate_over(&replies, WARM_UP, measure).await;
        stop.cancel();
        while tasks.join_next().await.is_some() {}
        Ok(rate)
    })
}

/// Connects, retrying briefly: a burst of connects can overflow a single-threaded server's
/// accept backlog, which resets the newest.
pub async fn connect(addr: SocketAddr) -> BenchResult<TcpStream> {
    let mut attempt = 0;
    loop {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(error) if attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = error;
            }
            Err(error) => return Err(format!("connecting to {addr}: {error}").into()),
        }
    }
}

/// One connection: keeps `IN_FLIGHT_PER_CONNECTION` requests outstanding, counting replies.
async fn drive(
    mut stream: TcpStream,
    request: Vec<u8>,
    replies: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let burst: Vec<u8> = request.repeat(IN_FLIGHT_PER_CONNECTION);
    if stream.write_all(&burst).await.is_err() {
        return;
    }
    let mut buffer = BytesMut::with_capacity(4096);
    loop {
        let read = tokio::select! {
            () = stop.cancelled() => return,
            read = stream.read_buf(&mut buffer) => read,
        };
        if !matches!(read, Ok(n) if n > 0) {
            return;
        }
        let mut complete = 0;
        while let Ok(Some(_)) = split_frame(&mut buffer, 1 << 20) {
            complete += 1;
        }
        replies.fetch_add(complete as u64, Ordering::Relaxed);
        if complete > 0
            && stream
                .write_all(&burst[..complete * request.len()])
                .await
                .is_err()
        {
            return;
        }
    }
}

/// The resident memory of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> BenchResult<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .ok_or("no VmRSS in /proc/PID/status")?;
    Ok(kib * 1024)
}
