//! Fault injection on loopback, bounded in time and count: 10,000 connections against the server
//! of which many misbehave, 10,000 silent clients of the policy server, 1,000 connections of
//! random chunks and bad frames through the proxy, a proxy whose upstream never reads, and load
//! runs against servers that never reply or close after one reply. The big servers run as their
//! own processes, so the test's sockets and theirs stay under the per-process file limit, and
//! their peak memory (VmHWM) is printed for results/BENCHMARKS.md. (The proxy's upstream refused,
//! reset mid-frame and client abort mid-frame are in tests/proxy.rs.)

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amf_bench::frame::split_frame;
use amf_bench::rpc::wire::{decode_envelope, encode_envelope};
use amf_bench::rpc::{Encoding, Envelope, Response};
use amf_bench::run::progress::Progress;
use amf_bench::run::scenario::Scenario;
use amf_bench::run::{RunResult, execute};
use bytes::BytesMut;
use common::process::Listening;
use common::proxy::{TestProxy, proxy_config};
use common::relay::{TEST_MAX_DECODE, assert_exact, clients_through, hashing_upstream};
use common::{object, request};
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Connections opened by the big tests.
const CROWD: usize = 10_000;
/// Connects in flight at once, so that a burst does not overflow the listen backlog.
const CONNECTING: usize = 256;
/// The big tests take turns: two crowds at once would pass the process's file limit.
static ONE_CROWD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The peak resident memory of process `pid`, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let attempt = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr));
    attempt.await.expect("connects in time").expect("connects")
}

/// Reads until the peer closes (or resets); false if it is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut sink = [0u8; 4096];
    let ended = async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, ended).await.is_ok()
}

/// What one client of the crowd does.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    /// Sends a request and expects its reply.
    Good,
    /// Sends a frame whose payload is not AMF.
    Garbage,
    /// Announces a 2 GiB frame.
    Oversize,
    /// Sends nothing.
    Silent,
}

fn behaviour(index: usize) -> Behaviour {
    match index % 4 {
        0 | 1 => Behaviour::Good,
        2 => Behaviour::Garbage,
        _ if index % 8 == 3 => Behaviour::Oversize,
        _ => Behaviour::Silent,
    }
}

async fn misbehave(addr: SocketAddr, index: usize, echo: Arc<Vec<u8>>) -> (Behaviour, TcpStream) {
    let kind = behaviour(index);
    let mut stream = connect(addr).await;
    let bytes: &[u8] = match kind {
        Behaviour::Good => &echo,
        Behaviour::Garbage => b"\x00\x00\x00\x06\x0a\x0b\xff\xff\xff\xff",
        Behaviour::Oversize => b"\x7f\xff\xff\xff\x0a",
        Behaviour::Silent => b"",
    };
    stream.write_all(bytes).await.expect("writes");
    (kind, stream)
}

/// Reads one reply frame and checks it answers the echo.
async fn echoed(stream: &mut TcpStream) -> bool {
    let mut buffer = BytesMut::new();
    let reply = async {
        loop {
            if let Ok(Some(payload)) = split_frame(&mut buffer, 1 << 20) {
                return Some(payload);
            }
            match stream.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    };
    let Ok(Some(payload)) = tokio::time::timeout(Duration::from_secs(20), reply).await else {
        return false;
    };
    let options = amf_bench::codec::DecodeOptions::shared_default();
    matches!(
        decode_envelope(payload, Encoding::Amf3, options),
        Ok(Envelope::Response(Response { message_id, .. })) if message_id == "crowd"
    )
}

/// 10,000 connections, half of them sending garbage, 2 GiB lengths or nothing: every good one
/// gets its reply, every bad one is closed, and the server's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_the_good_among_10000_bad_connections() {
    let _turn = ONE_CROWD_AT_A_TIME.lock().await;
    let server = Listening::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--no-ping",
        "--max-connections",
        "12000",
    ]);
    let addr: SocketAddr = server.addr.parse().expect("an address");
    let params = object(vec![("n", amf_bench::codec::Value::Integer(7))]);
    let echo = encode_envelope(request("crowd", "echo", params), Encoding::Amf3, 1 << 20)
        .expect("encodes");
    let echo = Arc::new(echo.to_vec());
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let mut clients = JoinSet::new();
    for index in 0..CROWD {
        let (gate, echo) = (Arc::clone(&gate), Arc::clone(&echo));
        clients.spawn(async move {
            let permit = gate.acquire_owned().await.expect("the gate stays open");
            let (kind, mut stream) = misbehave(addr, index, echo).await;
            drop(permit);
            let ok = match kind {
                Behaviour::Good => echoed(&mut stream).await,
                Behaviour::Garbage | Behaviour::Oversize => {
                    closed_within(&mut stream, Duration::from_secs(20)).await
                }
                // Still open: nothing was sent, pings are off.
                Behaviour::Silent => !closed_within(&mut stream, Duration::from_millis(50)).await,
            };
            (kind, ok, stream)
        });
    }
    let mut failed = Vec::new();
    let mut open = Vec::new();
    while let Some(joined) = clients.join_next().await {
        let (kind, ok, stream) = joined.expect("a client task");
        if !ok {
            failed.push(kind);
        }
        open.push(stream);
    }
    let peak = peak_kib(server.child.id());
    eprintln!("serve peak memory under {CROWD} faulty connections: {peak} KiB");
    assert!(
        failed.is_empty(),
        "{} clients failed: {failed:?}",
        failed.len()
    );
    assert!(peak < 512 * 1024, "bounded memory: {peak} KiB");
}

/// 10,000 silent connections hold the policy server; a real request still gets its policy at
/// once, and the silent ones are closed at the exchange deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_serves_a_real_request_among_10000_silent_ones() {
    let _turn = ONE_CROWD_AT_A_TIME.lock().await;
    let server = Listening::start(&[
        "policy",
        "--listen",
        "127.0.0.1:0",
        "--allow",
        "*:9000",
        "--timeout",
        "3",
        "--max-connections",
        "12000",
    ]);
    let addr: SocketAddr = server.addr.parse().expect("an address");
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let mut silent = JoinSet::new();
    for _ in 0..CROWD {
        let gate = Arc::clone(&gate);
        silent.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("the gate stays open");
            connect(addr).await
        });
    }
    let mut streams = Vec::with_capacity(CROWD);
    while let Some(joined) = silent.join_next().await {
        streams.push(joined.expect("a connect task"));
    }
    let started = tokio::time::Instant::now();
    let mut real = connect(addr).await;
    real.write_all(b"<policy-file-request/>\0")
        .await
        .expect("writes");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), real.read_to_end(&mut answer))
        .await
        .expect("answered within 2 s, before the silent ones time out")
        .expect("reads");
    assert!(started.elapsed() < Duration::from_secs(2));
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("<allow-access-from domain=\"*\" to-ports=\"9000\""),
        "{text}"
    );
    let mut still_open = 0;
    for stream in streams.iter_mut().step_by(100) {
        if !closed_within(stream, Duration::from_secs(10)).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "silent clients are closed at the deadline");
    let peak = peak_kib(server.child.id());
    eprintln!("policy peak memory under {CROWD} silent connections: {peak} KiB");
    assert!(peak < 512 * 1024, "bounded memory: {peak} KiB");
}

/// A server that accepts, reads and answers with `reply` (which may close the connection).
async fn misbehaving_server<F, Fut>(reply: F) -> (SocketAddr, CancellationToken)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (listener, addr) = common::loopback_listener().await;
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        connections.spawn(reply(stream));
                    }
                }
            }
        }
    });
    (addr, stop)
}

async fn run_against(addr: SocketAddr, steps: &str) -> (RunResult, Duration) {
    let text = format!(
        r#"
        name = "fault"
        target = "{addr}"
        connections = 5
        duration = "2s"
        timeout = "500ms"
        [load]
        model = "closed"
        [[session]]
        name = "s"
        steps = [{steps}]
        "#
    );
    let scenario = Scenario::parse(&text).expect("valid");
    let started = std::time::Instant::now();
    let result = execute(
        scenario,
        CancellationToken::new(),
        Progress::hidden(),
        || Ok(Vec::new()),
    )
    .await
    .expect("runs");
    (result, started.elapsed())
}

fn errors_of(summary: &Json, command: &str, kind: &str) -> u64 {
    summary["commands"][command]["errors"][kind]
        .as_u64()
        .unwrap_or(0)
}

/// A server that reads everything and never replies: the run ends on time, every request is a
/// timeout recorded at its timeout, and the results are complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_against_a_server_that_never_replies() {
    let (addr, stop) = misbehaving_server(|mut stream| async move {
        let mut sink = vec![0u8; 4096];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    let (result, took) = run_against(addr, r#"{ request = "echo" }"#).await;
    stop.cancel();
    let summary = &result.summary;
    assert!(took < Duration::from_secs(4), "ended on time: {took:?}");
    let count = summary["commands"]["echo"]["count"]
        .as_u64()
        .expect("count");
    // Five clients, one 500 ms timeout after another for 2 s.
    assert!((15..=25).contains(&count), "{summary:#}");
    assert_eq!(errors_of(summary, "echo", "timeout"), count, "{summary:#}");
    let latency_min_ms = summary["commands"]["echo"]["latency_us"]["p50"]
        .as_u64()
        .expect("p50")
        / 1000;
    assert!(
        latency_min_ms >= 500,
        "recorded at the timeout: {summary:#}"
    );
    assert!(!result.timeline.hlog.is_empty() && !result.html.is_empty());
}

/// A server that answers one request per connection, then closes it: each client sees its
/// connection lost during the think time after the reply, before a second request could fail
/// on it, and stops (no reconnect); the run still ends on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_against_a_server_that_closes_after_one_reply() {
    let (addr, stop) = misbehaving_server(|mut stream| async move {
        let mut buffer = BytesMut::new();
        let options = amf_bench::codec::DecodeOptions::shared_default();
        loop {
            if let Ok(Some(payload)) = split_frame(&mut buffer, 1 << 20) {
                if let Ok(Envelope::Request(request)) =
                    decode_envelope(payload, Encoding::Amf3, options)
                {
                    if request.command == "amf_socket_ping" {
                        continue;
                    }
                    let reply = Envelope::Response(Response {
                        message_id: request.message_id,
                        result: request.params,
                    });
                    if let Ok(frame) = encode_envelope(reply, Encoding::Amf3, 1 << 20) {
                        let _ = stream.write_all(&frame).await;
                    }
                }
                return;
            }
            if !matches!(stream.read_buf(&mut buffer).await, Ok(n) if n > 0) {
                return;
            }
        }
    })
    .await;
    let (result, took) = run_against(addr, r#"{ request = "echo" }, { think = "20ms" }"#).await;
    stop.cancel();
    let summary = &result.summary;
    assert!(took < Duration::from_secs(4), "ended on time: {took:?}");
    assert_eq!(summary["commands"]["echo"]["count"], 5, "{summary:#}");
    assert_eq!(
        summary["commands"]["echo"]["errors"],
        serde_json::json!({}),
        "{summary:#}"
    );
    assert_eq!(
        summary["connections"]["lost"]["server_closed"], 5,
        "{summary:#}"
    );
}

/// 1,000 connections at once through the proxy, each side sending valid, undecodable and
/// oversize frames in random write sizes: every byte arrives unchanged on every connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_relays_1000_connections_of_bad_frames_byte_for_byte() {
    let (listener, upstream_addr) = common::loopback_listener().await;
    let upstream_results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let upstream = tokio::spawn(hashing_upstream(listener, Arc::clone(&upstream_results), 4));
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("faults.jsonl");
    let mut config = proxy_config(upstream_addr, Some(log.clone()));
    config.limits.max_decode = TEST_MAX_DECODE;
    let proxy = TestProxy::start(config).await;
    let clients = clients_through(proxy.addr, 1000, 4).await;
    proxy.wait_idle(1000).await;
    let summary = proxy.stop().await;
    upstream.abort();
    let upstream_results = upstream_results.lock().expect("lock").clone();
    let frames = assert_exact(&clients, &upstream_results);
    assert!(frames >= 2000, "{frames}");
    assert_eq!(
        summary.stats.closes.get("closed"),
        Some(&1000),
        "{summary:?}"
    );
}

/// An upstream that accepts and never reads: the client's writes stall once the socket buffers
/// and the proxy's one relay buffer are full, and the proxy's memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_memory_stays_bounded_when_the_upstream_never_reads() {
    let (listener, upstream_addr) = common::loopback_listener().await;
    let holding = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let proxy = Listening::start(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream_addr.to_string(),
        "--quiet",
    ]);
    let mut client = connect(proxy.addr.parse().expect("an address")).await;
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut written = 0usize;
    // Write until a 1 MiB write has made no progress for half a second (or 256 MiB went through,
    // which would mean the proxy is buffering).
    while written < 256 << 20 {
        match tokio::time::timeout(Duration::from_millis(500), client.write_all(&chunk)).await {
            Ok(Ok(())) => written += chunk.len(),
            Ok(Err(error)) => panic!("the proxy dropped the client: {error}"),
            Err(_) => break,
        }
    }
    let peak = peak_kib(proxy.child.id());
    eprintln!(
        "proxy peak memory with an upstream that never reads: {peak} KiB after {} MiB accepted",
        written >> 20
    );
    assert!(
        written < 64 << 20,
        "the writes stalled: {written} bytes accepted"
    );
    assert!(peak < 64 * 1024, "bounded memory: {peak} KiB");
    holding.abort();
}
