//! Server capacity over loopback: echo replies per second from one server core with 1,000
//! connections, against a frame-echo baseline (framing only, no AMF) measured the same way in
//! the same run; and the memory of an idle connection in the `amf-bench serve` process.
//!
//! The server runs on a single-threaded runtime on its own thread (one core); the load generator
//! runs on another thread and does as little as it can: it sends pre-encoded request frames and
//! counts reply frames by their headers, keeping a fixed number of requests in flight per
//! connection. `scripts/bench-serve.sh` runs this several times and reports medians.
//!
//! Run: `cargo bench --bench serve [-- SECONDS]` (default 5 s of measurement per server).

mod common;

use std::process::Command;
use std::time::Duration;

use amf_bench::frame::{HEADER_LEN, split_frame};
use amf_bench::serve::{PolicySource, ServeConfig, Server};
use bytes::BytesMut;
use common::load::{CONNECTIONS, IN_FLIGHT_PER_CONNECTION, connect, echo_request, load, rss_bytes};
use common::{BenchResult, Listening, on_one_core};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const IDLE_CONNECTIONS: usize = 10_000;

fn main() -> BenchResult<()> {
    let seconds = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<u64>().ok())
        .unwrap_or(5);
    let measure = Duration::from_secs(seconds);
    let request = echo_request()?;
    println!(
        "echo request: {} bytes; {CONNECTIONS} connections, {IN_FLIGHT_PER_CONNECTION} requests in flight each",
        request.len()
    );

    let baseline = on_one_core(frame_echo_server)?;
    let baseline_rate = load(baseline.addr, &request, measure)?;
    baseline.stop();
    let ours = on_one_core(amf_bench_server)?;
    let ours_rate = load(ours.addr, &request, measure)?;
    ours.stop();
    println!("frame echo (baseline): {baseline_rate:.0} replies/s");
    println!("amf-bench serve echo:  {ours_rate:.0} replies/s");
    println!("ratio: {:.2}", ours_rate / baseline_rate);

    let per_connection = idle_memory(&request)?;
    println!(
        "idle connection: {:.1} KiB of server RSS each ({IDLE_CONNECTIONS} connections)",
        per_connection / 1024.0
    );
    Ok(())
}

/// The baseline: returns every frame unchanged, never decoding it.
async fn frame_echo_server(listener: TcpListener, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut stream, _)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let mut buffer = BytesMut::with_capacity(4096);
            let mut out = Vec::with_capacity(4096);
            loop {
                match stream.read_buf(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                out.clear();
                while let Ok(Some(payload)) = split_frame(&mut buffer, 1 << 20) {
                    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                    out.extend_from_slice(&payload);
                }
                if stream.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// `amf-bench serve` as the library runs it, pings off (the load does not answer them).
async fn amf_bench_server(listener: TcpListener, shutdown: CancellationToken) {
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    drop(listener);
    let mut config = ServeConfig {
        listen: addr,
        policy: PolicySource::Off,
        ..ServeConfig::default()
    };
    config.peer.ping = None;
    let Ok(server) = Server::bind(config).await else {
        return;
    };
    server.run(shutdown).await;
}

/// Server RSS growth per connection: `IDLE_CONNECTIONS` connections each make one echo round
/// trip against a separate `amf-bench serve` process, then stay open and idle.
fn idle_memory(request: &[u8]) -> BenchResult<f64> {
    let server = Listening::start(
        Command::new(env!("CARGO_BIN_EXE_amf-bench"))
            .args(["serve", "--listen", "127.0.0.1:0", "--threads", "1"])
            .args(["--max-connections", "20000"]),
    )?;
    let addr = server.addr;
    let pid = server.child.id();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        let before = rss_bytes(pid)?;
        let mut open = Vec::with_capacity(IDLE_CONNECTIONS);
        for _ in 0..IDLE_CONNECTIONS {
            let mut stream = connect(addr).await?;
            stream.write_all(request).await?;
            let mut header = [0u8; HEADER_LEN];
            stream.read_exact(&mut header).await?;
            let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
            stream.read_exact(&mut payload).await?;
            open.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_bytes(pid)?;
        drop(open);
        BenchResult::Ok((after.saturating_sub(before)) as f64 / IDLE_CONNECTIONS as f64)
    });
    drop(server);
    outcome
}
