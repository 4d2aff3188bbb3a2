//! Policy exchanges per second over loopback: `amf-bench policy` against the npm `policyfile`
//! package's server, in one run, each server pinned to the same one core, both with no idle
//! connections and with 10,000 idle connections held open. `scripts/bench-policy.sh` installs
//! the npm package, runs this several times and reports medians.
//!
//! Run: `cargo bench --bench policy -- NODE_MODULES_DIR [SECONDS]` (default 3 s per measurement).

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use common::{BenchResult, Listening};

const CONCURRENCY: usize = 32;
const IDLE: usize = 10_000;
/// The core the servers run on; the load generator gets the other one.
const SERVER_CORE: &str = "1";

fn main() -> BenchResult<()> {
    let bench = std::env::args().any(|arg| arg == "--bench");
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let Some(modules) = args.next() else {
        // `cargo test --all-targets` runs benches without arguments: nothing to compare against.
        if !bench {
            println!("policy bench skipped: usage: policy NODE_MODULES_DIR [SECONDS]");
            return Ok(());
        }
        return Err("usage: policy NODE_MODULES_DIR [SECONDS]".into());
    };
    let seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let measure = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/policyfile-server.js");
    let policyfile = format!("{modules}/policyfile");
    let servers: [(&str, Vec<&str>); 2] = [
        ("npm policyfile", vec!["node", script, &policyfile]),
        (
            "amf-bench policy",
            vec![
                env!("CARGO_BIN_EXE_amf-bench"),
                "policy",
                "--listen",
                "127.0.0.1:0",
                "--allow",
                "*:*",
                "--timeout",
                "60",
                "--max-connections",
                "15000",
            ],
        ),
    ];
    for (name, command) in servers {
        let server = start_server(&command)?;
        let (busy, busy_failed) = runtime.block_on(load(server.addr, measure, 0))?;
        let (held, held_failed) = runtime.block_on(load(server.addr, measure, IDLE))?;
        println!(
            "{name}: {busy:.0} exchanges/s ({busy_failed:.0}/s failed); {held:.0} exchanges/s with {IDLE} idle connections held ({held_failed:.0}/s failed)"
        );
        drop(server);
    }
    Ok(())
}

/// A server process pinned to `SERVER_CORE`, with its log output discarded.
fn start_server(command: &[&str]) -> BenchResult<Listening> {
    Listening::start(
        Command::new("taskset")
            .args(["-c", SERVER_CORE])
            .args(command)
            .env("RUST_LOG", "warn"),
    )
}

/// Holds `idle` silent connections open, then runs `CONCURRENCY` clients doing whole exchanges
/// (connect, request, read to the end) for `measure`; returns whole policies received per second,
/// and failed exchanges (reset, or an incomplete policy) per second.
async fn load(addr: SocketAddr, measure: Duration, idle: usize) -> BenchResult<(f64, f64)> {
    let mut held = Vec::with_capacity(idle);
    for _ in 0..idle {
        held.push(TcpStream::connect(addr).await?);
    }
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (done, failed, stop) = (Arc::clone(&done), Arc::clone(&failed), stop.clone());
        clients.spawn(async move {
            while !stop.is_cancelled() {
                match exchange(addr).await {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let started = Instant::now();
    tokio::time::sleep(measure).await;
    let elapsed = started.elapsed().as_secs_f64();
    let rate = (done.load(Ordering::Relaxed) - before.0) as f64 / elapsed;
    let failed_rate = (failed.load(Ordering::Relaxed) - before.1) as f64 / elapsed;
    stop.cancel();
    while clients.join_next().await.is_some() {}
    drop(held);
    Ok((rate, failed_rate))
}

/// One exchange as Flash Player makes it; an answer without the policy's end is a failure.
async fn exchange(addr: SocketAddr) -> BenchResult<()> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(b"<policy-file-request/>\0").await?;
    let mut answer = Vec::with_capacity(512);
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    if !text
        .trim_end_matches(['\0', '\r', '\n'])
        .ends_with("</cross-domain-policy>")
    {
        return Err("incomplete policy".into());
    }
    Ok(())
}
