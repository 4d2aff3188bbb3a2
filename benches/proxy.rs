//! The proxy's cost over loopback, side by side in one run: the client straight to the server
//! (`direct`), through a minimal tokio `copy_bidirectional` relay (`relay`, the baseline),
//! through socat when it is installed (`socat`), and through `amf-bench proxy` decoding every
//! frame and writing the JSON log to a file (`proxy`), and for reference the proxy decoding
//! every frame and matching replies without writing a log (`proxy-nolog`).
//!
//! For each frame size (100 B, 1 KiB, 64 KiB): **throughput**, with 50 connections keeping 4
//! requests each in flight, in replies per second and MB/s each way; and **latency** at a
//! moderate fixed rate (10 connections, one request at a time, 1,000 requests per second in all),
//! p50 and p99 round trips from an HdrHistogram, once the relays and proxies are idle again
//! after the throughput test (the logged proxy's writer may still be draining its queue). The
//! server is a frame-level stand-in: it answers the n-th request of a connection with a
//! pre-encoded reply of the same size carrying the same message id, so the proxy sees real
//! request/reply pairs and matches them.
//!
//! Threads: the server, the relay and the load each run on a single-threaded runtime of their
//! own; the proxy is a child process with `--threads 1` (plus its log writer thread), and so is
//! `relay-process` (this bench run again with `AMF_BENCH_RELAY_UPSTREAM` set), which separates
//! what the proxy's own work costs from what a process of its own costs on two cores.
//! `scripts/bench-proxy.sh` runs this several times and reports medians.
//!
//! Run: `cargo bench --bench proxy [-- SECONDS]` (default 3 s per measurement). With
//! `AMF_BENCH_PROXY_BIN=PATH`, the proxy run is that binary instead of this build's.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amf_bench::codec::{Str, Value};
use amf_bench::frame::{HEADER_LEN, parse_header};
use amf_bench::rpc::wire::encode_envelope;
use amf_bench::rpc::{Encoding, Envelope, Request, Response};
use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

mod common;

use common::{BenchResult, Listening, on_one_core};

const SIZES: [(&str, usize); 3] = [("100B", 100), ("1KiB", 1024), ("64KiB", 64 * 1024)];
/// Distinct message ids per size: requests cycle through them, in order.
const IDS: usize = 64;
const CONNECTIONS: usize = 50;
const IN_FLIGHT: usize = 4;
const LATENCY_CONNECTIONS: usize = 10;
const LATENCY_RATE_PER_CONNECTION: u64 = 100;
const WARM_UP: Duration = Duration::from_millis(500);
/// How often `settle` reads the CPU time, what counts as idle over that span (one clock tick of
/// the stat files), and the longest it waits.
const SETTLE_STEP: Duration = Duration::from_millis(200);
const SETTLE_IDLE: Duration = Duration::from_millis(10);
const SETTLE_MAX: Duration = Duration::from_secs(30);

fn main() -> BenchResult<()> {
    if let Some(upstream) = std::env::var_os("AMF_BENCH_RELAY_UPSTREAM") {
        return relay_process(upstream.to_string_lossy().parse()?);
    }
    let seconds = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<f64>().ok())
        .unwrap_or(3.0);
    let measure = Duration::from_secs_f64(seconds);
    let socat = which("socat");
    if socat.is_none() {
        println!("socat: not installed, skipped (apt-get install socat)");
    }
    let logs = tempfile::tempdir()?;
    for (name, size) in SIZES {
        let frames = Arc::new(Frames::new(size)?);
        let server = on_one_core({
            let frames = Arc::clone(&frames);
            move |listener, stop| reply_server(listener, stop, frames)
        })?;
        let relay = on_one_core(move |listener, stop| copy_relay(listener, stop, server.addr))?;
        let socat_relay = socat
            .as_ref()
            .map(|path| Socat::start(path, server.addr))
            .transpose()?;
        let log = logs.path().join(format!("{name}.jsonl"));
        let relay_process = start_relay_process(server.addr)?;
        let mut proxy = start_proxy(server.addr, Some(&log))?;
        let mut unlogged = start_proxy(server.addr, None)?;
        let mut targets = vec![
            ("direct", server.addr),
            ("relay", relay.addr),
            ("relay-process", relay_process.addr),
        ];
        if let Some(socat) = &socat_relay {
            targets.push(("socat", socat.addr));
        }
        targets.push(("proxy", proxy.addr));
        targets.push(("proxy-nolog", unlogged.addr));
        let mut rates = Vec::new();
        let mut p99s = Vec::new();
        // Where each path's CPU time can be read: the in-process relay's thread, the other
        // relay's and the proxies' processes.
        let stats = [
            ("relay", relay.stat.clone()),
            ("relay-process", proc_stat(relay_process.child.id())),
            ("proxy", proc_stat(proxy.child.id())),
            ("proxy-nolog", proc_stat(unlogged.child.id())),
        ];
        for (target, addr) in &targets {
            let stat = stats
                .iter()
                .find(|(t, _)| t == target)
                .map(|(_, stat)| stat);
            let (rate, cpu) = throughput(*addr, &frames, measure, stat)?;
            let waited = settle(&stats)?;
            println!(
                "settle {name} {target}: {} ms until the relays and proxies were idle",
                waited.as_millis()
            );
            let latency = latency(*addr, &frames, measure)?;
            println!(
                "throughput {name} {target}: {rate:.0} replies/s, {:.1} MB/s each way",
                rate * frames.request_len() as f64 / 1e6
            );
            if let Some(cpu) = cpu {
                println!("cpu {name} {target}: {cpu:.2} us per frame");
            }
            println!(
                "latency {name} {target}: p50 {} us, p99 {} us, max {} us",
                latency.value_at_quantile(0.5),
                latency.value_at_quantile(0.99),
                latency.max()
            );
            rates.push((*target, rate));
            p99s.push((*target, latency.value_at_quantile(0.99) as f64));
        }
        let dropped = stop_proxy(&mut proxy)?;
        stop_proxy(&mut unlogged)?;
        let log_bytes = std::fs::metadata(&log).map_or(0, |m| m.len());
        let _ = std::fs::remove_file(&log);
        report(name, &rates, &p99s, dropped, log_bytes);
        relay.stop();
        server.stop();
        drop(socat_relay);
        drop(relay_process);
    }
    Ok(())
}

fn report(name: &str, rates: &[(&str, f64)], p99s: &[(&str, f64)], dropped: u64, log: u64) {
    let find = |list: &[(&str, f64)], key: &str| {
        list.iter()
            .find(|(target, _)| *target == key)
            .map_or(f64::NAN, |(_, value)| *value)
    };
    for baseline in ["relay", "relay-process"] {
        let base = find(rates, baseline);
        for (target, rate) in rates {
            println!("ratio {name} {target}/{baseline}: {:.3}", rate / base);
        }
    }
    let direct = find(p99s, "direct");
    for (target, p99) in p99s {
        println!("added-p99 {name} {target}: {:.0} us", p99 - direct);
    }
    println!("proxy-log {name}: {log} bytes written, {dropped} events dropped");
}

/// Pre-encoded requests and replies of about `size` bytes each, one per message id.
struct Frames {
    requests: Vec<Vec<u8>>,
    replies: Vec<Vec<u8>>,
}

impl Frames {
    fn new(size: usize) -> BenchResult<Frames> {
        let mut requests = Vec::with_capacity(IDS);
        let mut replies = Vec::with_capacity(IDS);
        for index in 0..IDS {
            let id = Str::from(format!("1732183200123:{index:09}:917263514"));
            // The envelope around the text takes about 90 bytes.
            let text = Value::string(&"x".repeat(size.saturating_sub(90).max(1)));
            let params = Value::object(vec![(Str::new_static("text"), text)]);
            let request = Envelope::Request(Request {
                message_id: id.clone(),
                command: Str::new_static("echo"),
                params: params.clone(),
            });
            let reply = Envelope::Response(Response {
                message_id: id,
                result: params,
            });
            requests.push(encode_envelope(request, Encoding::Amf3, 1 << 24)?.to_vec());
            replies.push(encode_envelope(reply, Encoding::Amf3, 1 << 24)?.to_vec());
        }
        Ok(Frames { requests, replies })
    }

    fn request_len(&self) -> usize {
        self.requests[0].len()
    }
}

/// Accepts until `stop`, running `handle` on each connection.
async fn serve_each<F, Fut>(listener: TcpListener, stop: CancellationToken, handle: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    tokio::task::spawn_local(handle(stream));
                }
            }
        })
        .await;
}

/// Answers the n-th frame of each connection with reply n mod `IDS`, decoding nothing.
async fn reply_server(listener: TcpListener, stop: CancellationToken, frames: Arc<Frames>) {
    serve_each(listener, stop, move |mut stream| {
        let frames = Arc::clone(&frames);
        async move {
            let mut buffer = BytesMut::with_capacity(128 * 1024);
            let mut out = Vec::with_capacity(128 * 1024);
            let mut count = 0usize;
            loop {
                match stream.read_buf(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                out.clear();
                while let Ok(Some(len)) = parse_header(&buffer, 1 << 24) {
                    if buffer.len() < HEADER_LEN + len {
                        break;
                    }
                    buffer.advance(HEADER_LEN + len);
                    out.extend_from_slice(&frames.replies[count % IDS]);
                    count += 1;
                }
                if stream.write_all(&out).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
}

/// The baseline relay: tokio's `copy_bidirectional` per connection.
async fn copy_relay(listener: TcpListener, stop: CancellationToken, upstream: SocketAddr) {
    serve_each(listener, stop, move |mut client| async move {
        let Ok(mut server) = TcpStream::connect(upstream).await else {
            return;
        };
        let _ = server.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    })
    .await;
}

/// `copy_relay` as a process of its own (this bench, run again), on one single-threaded runtime.
fn start_relay_process(upstream: SocketAddr) -> BenchResult<Listening> {
    Listening::start(
        Command::new(std::env::current_exe()?)
            .env("AMF_BENCH_RELAY_UPSTREAM", upstream.to_string()),
    )
}

/// The child side of `start_relay_process`: prints where it listens, then relays until killed.
fn relay_process(upstream: SocketAddr) -> BenchResult<()> {
    runtime()?.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on {}", listener.local_addr()?);
        std::io::Write::flush(&mut std::io::stdout())?;
        copy_relay(listener, CancellationToken::new(), upstream).await;
        Ok(())
    })
}

/// socat forking a relay per connection.
struct Socat {
    child: Child,
    addr: SocketAddr,
}

impl Socat {
    fn start(path: &PathBuf, upstream: SocketAddr) -> BenchResult<Socat> {
        let port = free_port()?;
        let child = Command::new(path)
            .arg(format!(
                "TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,nodelay"
            ))
            .arg(format!("TCP:{upstream},nodelay"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                return Err("socat did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Socat { child, addr })
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> BenchResult<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn which(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// `amf-bench proxy` decoding every frame; with `log`, every frame is also written to that file
/// as JSON.
fn start_proxy(upstream: SocketAddr, log: Option<&std::path::Path>) -> BenchResult<Listening> {
    // `AMF_BENCH_PROXY_BIN` runs another build of the proxy, e.g. to compare before and after.
    let program = std::env::var_os("AMF_BENCH_PROXY_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_amf-bench").into());
    let mut command = Command::new(program);
    command
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--quiet",
            "--threads",
            "1",
        ])
        .arg("--upstream")
        .arg(upstream.to_string());
    if let Some(log) = log {
        command.arg("--log").arg(log);
    }
    Listening::start(&mut command)
}

/// Stops the proxy; returns the log events it dropped, from its summary.
fn stop_proxy(proxy: &mut Listening) -> BenchResult<u64> {
    Command::new("kill")
        .args(["-TERM", &proxy.child.id().to_string()])
        .status()?;
    let mut summary = String::new();
    if let Some(stdout) = proxy.child.stdout.as_mut() {
        stdout.read_to_string(&mut summary)?;
    }
    proxy.child.wait()?;
    let dropped = summary
        .lines()
        .find_map(|line| line.strip_prefix("log: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or(0);
    Ok(dropped)
}

fn runtime() -> BenchResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Replies per second with `CONNECTIONS` connections keeping `IN_FLIGHT` requests each, and
/// with `stat` (a process's or thread's `/proc` stat file), the CPU time (user and system) it
/// spent per frame relayed (a request or a reply) over the same span, in microseconds.
fn throughput(
    addr: SocketAddr,
    frames: &Arc<Frames>,
    measure: Duration,
    stat: Option<&PathBuf>,
) -> BenchResult<(f64, Option<f64>)> {
    runtime()?.block_on(async {
        let replies = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CONNECTIONS {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let drive = keep_in_flight(stream, Arc::clone(frames), Arc::clone(&replies));
            let stop = stop.clone();
            tasks.spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = drive => {}
                }
            });
        }
        tokio::time::sleep(WARM_UP).await;
        let before = (
            replies.load(Ordering::Relaxed),
            stat.map(cpu_time).transpose()?,
        );
        let started = Instant::now();
        tokio::time::sleep(measure).await;
        let counted = replies.load(Ordering::Relaxed) - before.0;
        let cpu = match (before.1, stat.map(cpu_time).transpose()?) {
            (Some(from), Some(to)) => Some((to - from).as_secs_f64() * 1e6 / (2 * counted) as f64),
            _ => None,
        };
        let rate = counted as f64 / started.elapsed().as_secs_f64();
        stop.cancel();
        while tasks.join_next().await.is_some() {}
        Ok((rate, cpu))
    })
}

/// Waits, at most `SETTLE_MAX`, until the relays and proxies (their `stat` files) stop using CPU:
/// after a throughput test the logged proxy's writer may still be draining its queue for a
/// while, and the latency test that follows is meant to measure a moderate load, not that.
/// Returns the time waited.
fn settle(stats: &[(&str, PathBuf)]) -> BenchResult<Duration> {
    let started = Instant::now();
    let used = || -> BenchResult<Duration> { stats.iter().map(|(_, stat)| cpu_time(stat)).sum() };
    let mut before = used()?;
    while started.elapsed() < SETTLE_MAX {
        std::thread::sleep(SETTLE_STEP);
        let now = used()?;
        if now.saturating_sub(before) <= SETTLE_IDLE {
            break;
        }
        before = now;
    }
    Ok(started.elapsed())
}

/// The stat file of process `pid`.
fn proc_stat(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/stat"))
}

/// The CPU time a process or thread has used so far, user and system, from its stat file (in
/// clock ticks of 1/100 s, Linux's `USER_HZ`).
fn cpu_time(path: &PathBuf) -> BenchResult<Duration> {
    let stat = std::fs::read_to_string(path)?;
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // Fields after the name start at 3 (state); utime and stime are fields 14 and 15.
    let mut fields = after_name.split_whitespace().skip(11);
    let mut tick = || -> BenchResult<u64> { Ok(fields.next().ok_or("short stat")?.parse()?) };
    let ticks = tick()? + tick()?;
    Ok(Duration::from_millis(ticks * 10))
}

/// Keeps `IN_FLIGHT` requests outstanding, sending the next id for each reply counted.
async fn keep_in_flight(mut stream: TcpStream, frames: Arc<Frames>, replies: Arc<AtomicU64>) {
    let mut next = 0usize;
    let mut out = Vec::new();
    for _ in 0..IN_FLIGHT {
        out.extend_from_slice(&frames.requests[next % IDS]);
        next += 1;
    }
    let mut buffer = BytesMut::with_capacity(128 * 1024);
    loop {
        if stream.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
        let complete = loop {
            match stream.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let complete = take_frames(&mut buffer);
            if complete > 0 {
                break complete;
            }
        };
        replies.fetch_add(complete as u64, Ordering::Relaxed);
        for _ in 0..complete {
            out.extend_from_slice(&frames.requests[next % IDS]);
            next += 1;
        }
    }
}

/// Removes the whole frames at the front of `buffer`; returns how many.
fn take_frames(buffer: &mut BytesMut) -> usize {
    let mut complete = 0;
    while let Ok(Some(len)) = parse_header(buffer, 1 << 24) {
        if buffer.len() < HEADER_LEN + len {
            break;
        }
        buffer.advance(HEADER_LEN + len);
        complete += 1;
    }
    complete
}

/// Round trips at a moderate fixed rate: each connection sends one request every
/// 1/`LATENCY_RATE_PER_CONNECTION` s (on schedule, never accumulating) and waits for its reply.
fn latency(
    addr: SocketAddr,
    frames: &Arc<Frames>,
    measure: Duration,
) -> BenchResult<Histogram<u64>> {
    runtime()?.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        let until = Instant::now() + WARM_UP + measure;
        for _ in 0..LATENCY_CONNECTIONS {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            tasks.spawn(round_trips(stream, Arc::clone(frames), until));
        }
        let mut all = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3)?;
        while let Some(joined) = tasks.join_next().await {
            all.add(joined??)?;
        }
        Ok(all)
    })
}

async fn round_trips(
    mut stream: TcpStream,
    frames: Arc<Frames>,
    until: Instant,
) -> BenchResult<Histogram<u64>> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3)?;
    let interval = Duration::from_secs(1) / LATENCY_RATE_PER_CONNECTION as u32;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let measure_from = Instant::now() + WARM_UP;
    let mut buffer = BytesMut::with_capacity(128 * 1024);
    let mut next = 0usize;
    while Instant::now() < until {
        ticks.tick().await;
        let sent = Instant::now();
        stream.write_all(&frames.requests[next % IDS]).await?;
        next += 1;
        while take_frames(&mut buffer) == 0 {
            if stream.read_buf(&mut buffer).await? == 0 {
                return Err("the server closed the connection".into());
            }
        }
        if sent >= measure_from {
            histogram.record(sent.elapsed().as_micros() as u64)?;
        }
    }
    Ok(histogram)
}
