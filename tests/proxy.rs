//! `amf-bench proxy` over loopback: byte-exact relaying both ways for many concurrent
//! connections whatever the bytes hold, the JSON log and the recording, policy requests answered
//! or forwarded, failures on either side logged and contained, bounded memory against a slow
//! reader, and passive latency.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amf_bench::codec::json::to_canonical_json;
use amf_bench::codec::{Format, Limits, Value};
use amf_bench::policy::PolicySource;
use amf_bench::proxy::tap::TapLimits;
use amf_bench::rpc::PingConfig;
use amf_bench::rpc::wire::encode_envelope;
use amf_bench::rpc::{Encoding, Envelope};
use common::proxy::{TestProxy, proxy_config, read_log};
use common::relay::{TEST_MAX_DECODE, assert_exact, clients_through, hashing_upstream};
use common::{RawClient, TestServer, WAIT, object, request};
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_connections_relay_every_byte_both_ways() {
    let (listener, upstream_addr) = common::loopback_listener().await;
    let upstream_results = Arc::new(Mutex::new(Vec::new()));
    let upstream = tokio::spawn(hashing_upstream(
        listener,
        Arc::clone(&upstream_results),
        12,
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("exact.jsonl");
    let mut config = proxy_config(upstream_addr, Some(log.clone()));
    config.limits = TapLimits {
        max_decode: TEST_MAX_DECODE,
        max_frame: 1 << 20,
    };
    let proxy = TestProxy::start(config).await;

    let client_results = clients_through(proxy.addr, 200, 12).await;
    proxy.wait_idle(200).await;
    let summary = proxy.stop().await;
    upstream.abort();

    let upstream_results = upstream_results.lock().expect("lock").clone();
    let frames_each_way = assert_exact(&client_results, &upstream_results);
    assert_eq!(
        summary.stats.closes.get("closed"),
        Some(&200),
        "{summary:?}"
    );
    assert_eq!(summary.log_dropped, 0);

    let entries = read_log(&log);
    let frames: Vec<&Json> = entries.iter().filter(|e| e["event"] == "frame").collect();
    assert_eq!(frames.len(), frames_each_way, "one log entry per frame");
    assert!(frames.iter().any(|e| e["rpc"]["command"] == "echo"));
    assert!(frames.iter().any(|e| {
        e["error"]
            .as_str()
            .is_some_and(|error| error.contains("above the decode cap"))
            && e["hex"].as_str().is_some_and(|hex| hex.len() == 128)
    }));
    assert!(frames.iter().any(|e| {
        e["error"]
            .as_str()
            .is_some_and(|error| error.contains("undecodable AMF3"))
    }));
    assert_eq!(entries.iter().filter(|e| e["event"] == "open").count(), 200);
    assert!(!entries.iter().any(|e| e["event"] == "framing_lost"));
}

fn echo_params(index: i32) -> Value {
    object(vec![
        ("text", Value::string("hello")),
        ("n", Value::Integer(index)),
        ("list", Value::array(vec![Value::Double(0.5), Value::Null])),
    ])
}

#[tokio::test]
async fn the_log_and_the_recording_show_every_frame() {
    let server = TestServer::start(common::config()).await;
    let server_addr = server.addr;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("log.jsonl");
    let record = dir.path().join("record.jsonl");
    let mut config = proxy_config(server.addr, Some(log.clone()));
    config.outputs.record = Some(record.clone());
    let proxy = TestProxy::start(config).await;
    let mut client = RawClient::connect(proxy.addr).await;
    let client_addr = client.stream.local_addr().expect("bound").to_string();
    let mut sent = Vec::new();
    for index in 0..3 {
        let envelope = request(&format!("id-{index}"), "echo", echo_params(index));
        sent.extend_from_slice(
            &encode_envelope(envelope, Encoding::Amf3, 1 << 20).expect("encodes"),
        );
        let (result, _) = client
            .call(&format!("id-{index}"), "echo", echo_params(index))
            .await;
        assert_eq!(result, echo_params(index));
    }
    drop(client);
    proxy.wait_idle(1).await;
    proxy.stop().await;
    server.stop().await;

    let entries = read_log(&log);
    assert_eq!(entries[0]["event"], "open");
    assert_eq!(entries[0]["client"], client_addr.as_str());
    assert_eq!(entries[0]["upstream"], server_addr.to_string().as_str());
    let frames: Vec<&Json> = entries.iter().filter(|e| e["event"] == "frame").collect();
    assert_eq!(frames.len(), 6, "three requests and three replies");
    for (index, pair) in frames.chunks(2).enumerate() {
        let (request, reply) = (pair[0], pair[1]);
        let id = format!("id-{index}");
        assert_eq!(request["dir"], "c2s");
        assert_eq!(request["seq"], index + 1);
        assert_eq!(request["rpc"]["type"], "rpcRequest");
        assert_eq!(request["rpc"]["command"], "echo");
        assert_eq!(request["rpc"]["messageId"], id.as_str());
        let params =
            to_canonical_json(&echo_params(index as i32), Format::Amf3, &Limits::default())
                .expect("renders");
        assert_eq!(request["value"]["request"]["params"], params);
        assert_eq!(request["value"]["type"], "rpcRequest");
        assert_eq!(reply["dir"], "s2c");
        assert_eq!(reply["rpc"]["type"], "rpcResponse");
        assert_eq!(
            reply["rpc"]["command"], "echo",
            "a reply carries its request's command"
        );
        assert_eq!(reply["value"]["response"]["result"], params);
        assert!(reply["latency_us"].as_u64().is_some());
        let t = request["t"].as_str().expect("a time");
        assert_eq!(t.len(), "2026-11-21T10:02:03.123456Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[19] == b'.', "{t}");
    }
    let close = entries.last().expect("entries");
    assert_eq!(close["event"], "close");
    assert_eq!(close["c2s_bytes"], sent.len());

    // The recording holds the frames' bytes: the client's, put together, are what it sent.
    let lines = read_log(&record);
    assert_eq!(lines[0]["format"], "amf-bench session");
    assert_eq!(lines[0]["version"], 1);
    let recorded: Vec<u8> = lines
        .iter()
        .filter(|line| line["event"] == "frame" && line["dir"] == "c2s")
        .flat_map(|line| hex::decode(line["hex"].as_str().expect("hex")).expect("valid hex"))
        .collect();
    assert_eq!(recorded, sent);
    let offsets: Vec<u64> = lines[1..]
        .iter()
        .map(|l| l["at_us"].as_u64().expect("at_us"))
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
}

#[tokio::test]
async fn filters_choose_what_the_log_shows_and_the_recording_keeps_all() {
    let server = TestServer::start(common::config()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("filtered.jsonl");
    let record = dir.path().join("filtered-record.jsonl");
    let mut config = proxy_config(server.addr, Some(log.clone()));
    config.outputs.record = Some(record.clone());
    config.filter.commands = vec!["sleep".into()];
    config.filter.dir = Some(amf_bench::proxy::log::Direction::ServerToClient);
    config.filter.conns = vec![2];
    let proxy = TestProxy::start(config).await;
    for conn in 1..=2 {
        let mut client = RawClient::connect(proxy.addr).await;
        client.call("a", "echo", object(vec![])).await;
        let params = object(vec![("ms", Value::Integer(1))]);
        client.call(&format!("b{conn}"), "sleep", params).await;
        drop(client);
        proxy.wait_idle(conn).await;
    }
    proxy.stop().await;
    let entries = read_log(&log);
    assert!(entries.iter().all(|e| e["conn"] == 2), "{entries:?}");
    let frames: Vec<&Json> = entries.iter().filter(|e| e["event"] == "frame").collect();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["rpc"]["messageId"], "b2");
    assert_eq!(frames[0]["dir"], "s2c");
    let recorded = read_log(&record);
    let recorded_frames = recorded.iter().filter(|e| e["event"] == "frame").count();
    assert_eq!(
        recorded_frames, 8,
        "every frame of both connections is recorded"
    );
    assert!(
        recorded
            .iter()
            .any(|e| e["conn"] == 1 && e["event"] == "open")
    );
}

const POLICY_REQUEST: &[u8] = b"<policy-file-request/>\0";

#[tokio::test]
async fn a_policy_request_is_answered_inline_or_forwarded() {
    let server = TestServer::start(common::config()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("policy.jsonl");
    let mut config = proxy_config(server.addr, Some(log.clone()));
    config.policy = PolicySource::Allow(vec!["*.example.com:9000".parse().expect("valid")]);
    let answering = TestProxy::start(config).await;
    let mut client = RawClient::connect(answering.addr).await;
    for byte in POLICY_REQUEST.chunks(5) {
        client.send_bytes(byte).await;
    }
    let answer = String::from_utf8(client.read_to_end().await).expect("text");
    assert!(answer.contains(r#"domain="*.example.com""#), "{answer}");
    assert!(answer.ends_with("</cross-domain-policy>\n\0"), "{answer}");
    drop(client);
    answering.wait_idle(1).await;
    let summary = answering.stop().await;
    assert_eq!(summary.stats.policy_answered, 1);
    let entries = read_log(&log);
    assert!(
        entries
            .iter()
            .any(|e| e["event"] == "policy" && e["action"] == "answered")
    );
    assert_eq!(
        server.stats.snapshot().policy_requests,
        0,
        "the upstream never saw it"
    );

    // Forwarded (the default): the upstream's own policy comes back, logged as text.
    let forwarding = TestProxy::start(proxy_config(server.addr, Some(log.clone()))).await;
    let mut client = RawClient::connect(forwarding.addr).await;
    client.send_bytes(POLICY_REQUEST).await;
    let answer = client.read_to_end().await;
    assert!(answer.ends_with(b"</cross-domain-policy>\n\0"));
    drop(client);
    forwarding.wait_idle(1).await;
    forwarding.stop().await;
    let entries = read_log(&log);
    assert!(
        entries
            .iter()
            .any(|e| e["event"] == "policy" && e["action"] == "forwarded")
    );
    let texts: Vec<&Json> = entries.iter().filter(|e| e["event"] == "frame").collect();
    assert_eq!(texts[0]["value"], "<policy-file-request/>");
    assert!(
        texts[1]["value"]
            .as_str()
            .is_some_and(|v| v.contains("cross-domain-policy"))
    );
    assert_eq!(server.stop().await.policy_requests, 1);
}

#[tokio::test]
async fn server_first_traffic_flows_while_the_client_is_silent() {
    let mut server_config = common::config();
    server_config.peer.ping = Some(PingConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
    });
    let server = TestServer::start(server_config).await;
    let mut config = proxy_config(server.addr, None);
    config.policy = PolicySource::Allow(Vec::new());
    let proxy = TestProxy::start(config).await;
    let mut client = RawClient::connect(proxy.addr).await;
    let Envelope::Request(ping) = client.recv().await else {
        panic!("expected the server's ping")
    };
    assert_eq!(&*ping.command, "amf_socket_ping");
    drop(client);
    proxy.stop().await;
    server.stop().await;
}

/// A client that says nothing for longer than the sniffing wait and then sends the policy
/// request (a person at telnet) still gets the proxy's answer, and the upstream never sees it.
#[tokio::test]
async fn a_policy_request_after_a_silence_is_still_answered() {
    let server = TestServer::start(common::config()).await;
    let mut config = proxy_config(server.addr, None);
    config.policy = PolicySource::Allow(vec!["*:9000".parse().expect("valid")]);
    let proxy = TestProxy::start(config).await;
    let mut client = RawClient::connect(proxy.addr).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.send_bytes(POLICY_REQUEST).await;
    let answer = String::from_utf8(client.read_to_end().await).expect("text");
    assert!(answer.ends_with("</cross-domain-policy>\n\0"), "{answer}");
    drop(client);
    proxy.wait_idle(1).await;
    assert_eq!(proxy.stop().await.stats.policy_answered, 1);
    assert_eq!(server.stop().await.policy_requests, 0);
}

/// With the upstream down, Flash still gets the policy it asks for (so that the failure it sees
/// next is the upstream's, not a security error), and a client sending traffic is cut off at once.
#[tokio::test]
async fn a_policy_request_is_answered_when_the_upstream_is_unreachable() {
    let (closed, refused_addr) = common::loopback_listener().await;
    drop(closed);
    let mut config = proxy_config(refused_addr, None);
    config.policy = PolicySource::Allow(vec!["*:9000".parse().expect("valid")]);
    let proxy = TestProxy::start(config).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client.send_bytes(POLICY_REQUEST).await;
    let answer = String::from_utf8(client.read_to_end().await).expect("text");
    assert!(answer.ends_with("</cross-domain-policy>\n\0"), "{answer}");
    drop(client);

    let mut client = TcpStream::connect(proxy.addr).await.expect("connects");
    let echo = encode_envelope(
        request("1", "echo", object(vec![])),
        Encoding::Amf3,
        1 << 20,
    );
    client
        .write_all(&echo.expect("encodes"))
        .await
        .expect("writes");
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_millis(900), client.read_to_end(&mut rest))
        .await
        .expect("cut off without waiting for a policy request");
    assert!(ended.is_err() || rest.is_empty(), "{ended:?}");
    proxy.wait_idle(2).await;
    let summary = proxy.stop().await;
    assert_eq!(summary.stats.policy_answered, 1);
    assert_eq!(summary.stats.closes.get("upstream_unreachable"), Some(&1));
}

/// A client whose first bytes are a prefix of the policy tag, and which then waits for an
/// answer, is not held for ever: its bytes go upstream after the sniffing wait.
#[tokio::test]
async fn a_client_stopping_within_the_policy_tag_is_relayed_after_a_wait() {
    let (listener, upstream_addr) = common::loopback_listener().await;
    let (watched_tx, _watched) = tokio::sync::mpsc::channel(1);
    let scripts = Arc::new(Mutex::new(VecDeque::from([Script::Echo])));
    let upstream = tokio::spawn(scripted_upstream(listener, scripts, watched_tx));
    let proxy = TestProxy::start(proxy_config(upstream_addr, None)).await;
    let mut client = TcpStream::connect(proxy.addr).await.expect("connects");
    client.write_all(b"<pol").await.expect("writes");
    let mut echoed = [0u8; 4];
    tokio::time::timeout(WAIT, client.read_exact(&mut echoed))
        .await
        .expect("relayed within the wait")
        .expect("reads");
    assert_eq!(&echoed, b"<pol");
    drop(client);
    proxy.stop().await;
    upstream.abort();
}

/// What the scripted upstream does with its next connection.
#[derive(Debug, Clone, Copy)]
enum Script {
    /// Returns every byte.
    Echo,
    /// Sends half a frame, then resets.
    ResetMidFrame,
    /// Reads until the client goes, and reports how that ended.
    Watch,
}

/// An upstream doing one script per connection, in accept order.
async fn scripted_upstream(
    listener: TcpListener,
    scripts: Arc<Mutex<VecDeque<Script>>>,
    watched: tokio::sync::mpsc::Sender<std::io::Result<usize>>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let script = scripts
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or(Script::Echo);
        let watched = watched.clone();
        tokio::spawn(async move {
            match script {
                Script::Echo => {
                    let (mut reader, mut writer) = stream.split();
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                }
                Script::ResetMidFrame => {
                    let _ = stream.write_all(&[0, 0, 0, 100, 0x0A, 0x0B]).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = stream.set_zero_linger();
                }
                Script::Watch => {
                    let mut all = Vec::new();
                    let ended = stream.read_to_end(&mut all).await.map(|_| all.len());
                    let _ = watched.send(ended).await;
                }
            }
        });
    }
}

async fn echo_once(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let frame = [0, 0, 0, 2, 0x04, 0x07];
    stream.write_all(&frame).await.expect("writes");
    let mut back = [0u8; 6];
    tokio::time::timeout(WAIT, stream.read_exact(&mut back))
        .await
        .expect("in time")
        .expect("echoed");
    assert_eq!(back, frame);
}

#[tokio::test]
async fn failures_on_either_side_are_logged_and_contained() {
    // Upstream refused: a port nobody listens on.
    let (closed, refused_addr) = common::loopback_listener().await;
    drop(closed);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("failures.jsonl");
    let refusing = TestProxy::start(proxy_config(refused_addr, Some(log.clone()))).await;
    let mut client = TcpStream::connect(refusing.addr).await.expect("connects");
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(WAIT, client.read_to_end(&mut rest))
        .await
        .expect("in time");
    assert!(
        ended.is_err() || rest.is_empty(),
        "the client is cut off: {ended:?}"
    );
    refusing.wait_idle(1).await;
    let summary = refusing.stop().await;
    assert_eq!(summary.stats.closes.get("upstream_unreachable"), Some(&1));
    let entries = read_log(&log);
    let close = entries
        .iter()
        .find(|e| e["event"] == "close")
        .expect("a close");
    assert!(
        close["reason"]
            .as_str()
            .is_some_and(|r| r.contains("upstream unreachable")),
        "{close}"
    );

    // Upstream reset mid-frame, then client abort mid-frame, with a healthy connection open
    // throughout and a new one after.
    let (listener, upstream_addr) = common::loopback_listener().await;
    let scripts = Arc::new(Mutex::new(VecDeque::from([
        Script::Echo,
        Script::ResetMidFrame,
        Script::Watch,
    ])));
    let (watched_tx, mut watched) = tokio::sync::mpsc::channel(4);
    let upstream = tokio::spawn(scripted_upstream(
        listener,
        Arc::clone(&scripts),
        watched_tx,
    ));
    let proxy = TestProxy::start(proxy_config(upstream_addr, Some(log.clone()))).await;
    let mut healthy = TcpStream::connect(proxy.addr).await.expect("connects");
    healthy.write_all(&[0, 0, 0, 1]).await.expect("writes");
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut reset_victim = TcpStream::connect(proxy.addr).await.expect("connects");
    let mut received = Vec::new();
    let ended = tokio::time::timeout(WAIT, reset_victim.read_to_end(&mut received)).await;
    let ended = ended.expect("in time");
    assert_eq!(
        &received[..],
        &[0, 0, 0, 100, 0x0A, 0x0B],
        "the half frame is relayed"
    );
    assert_eq!(
        ended.expect_err("the reset is passed on").kind(),
        std::io::ErrorKind::ConnectionReset
    );

    let aborting = TcpStream::connect(proxy.addr).await.expect("connects");
    let mut aborting = aborting;
    aborting
        .write_all(&[0, 0, 0, 50, 0x0A])
        .await
        .expect("writes");
    tokio::time::sleep(Duration::from_millis(50)).await;
    aborting.set_zero_linger().expect("sets linger");
    drop(aborting);
    let upstream_saw = tokio::time::timeout(WAIT, watched.recv())
        .await
        .expect("in time");
    let upstream_saw = upstream_saw.expect("a report");
    assert!(
        upstream_saw
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the upstream sees the client's reset: {upstream_saw:?}"
    );

    // The healthy connection finishes its frame and is still served; a new one is too.
    healthy.write_all(&[0x01]).await.expect("writes");
    let mut back = [0u8; 5];
    tokio::time::timeout(WAIT, healthy.read_exact(&mut back))
        .await
        .expect("in time")
        .expect("reads");
    assert_eq!(back, [0, 0, 0, 1, 1]);
    echo_once(proxy.addr).await;
    drop(healthy);
    proxy.wait_idle(4).await;
    let summary = proxy.stop().await;
    upstream.abort();
    assert_eq!(
        summary.stats.closes.get("upstream_error"),
        Some(&1),
        "{summary:?}"
    );
    assert_eq!(
        summary.stats.closes.get("client_error"),
        Some(&1),
        "{summary:?}"
    );
    assert_eq!(summary.stats.closes.get("closed"), Some(&2), "{summary:?}");

    let entries = read_log(&log);
    let truncated: Vec<&Json> = entries
        .iter()
        .filter(|e| e["event"] == "truncated")
        .collect();
    assert_eq!(truncated.len(), 2, "{truncated:?}");
    assert!(truncated.iter().any(|e| e["dir"] == "s2c" && e["len"] == 6));
    assert!(truncated.iter().any(|e| e["dir"] == "c2s" && e["len"] == 5));
    let reasons: Vec<&str> = entries
        .iter()
        .filter(|e| e["event"] == "close")
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("upstream error")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("client error")),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_holds_back_the_writer_instead_of_growing_the_proxy() {
    let (listener, upstream_addr) = common::loopback_listener().await;
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let total = 256 * 1024 * 1024;
    let counter = Arc::clone(&written);
    let upstream = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accepts");
        // One frame bigger than the decode cap, so the tap must skip it without holding it.
        let mut header = (total as u32 - 4).to_be_bytes().to_vec();
        header.extend(vec![0u8; 64 * 1024 - 4]);
        stream.write_all(&header).await.expect("writes");
        counter.fetch_add(header.len(), std::sync::atomic::Ordering::Relaxed);
        let chunk = vec![0x5Au8; 64 * 1024];
        while counter.load(std::sync::atomic::Ordering::Relaxed) < total {
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
            counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
        }
    });
    let mut config = proxy_config(upstream_addr, None);
    config.limits.max_frame = total;
    let proxy = TestProxy::start(config).await;
    let mut slow = TcpStream::connect(proxy.addr).await.expect("connects");

    // Nobody reads: the upstream fills the socket buffers, then is held back.
    let mut last = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = written.load(std::sync::atomic::Ordering::Relaxed);
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    let stalled = written.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        stalled < 64 * 1024 * 1024,
        "the upstream wrote {stalled} bytes to a client that reads nothing"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        written.load(std::sync::atomic::Ordering::Relaxed),
        stalled,
        "the writer is held back"
    );
    let held = proxy.stats.snapshot().held_peak;
    assert!(held <= 16 * 1024, "the proxy held {held} bytes");

    // Reading resumes the flow, to the last byte.
    let mut buffer = vec![0u8; 256 * 1024];
    let mut received = 0;
    while received < total {
        let read = tokio::time::timeout(WAIT, slow.read(&mut buffer))
            .await
            .expect("in time")
            .expect("reads");
        assert!(read > 0, "ended early at {received}");
        received += read;
    }
    assert_eq!(received, total);
    drop(slow);
    upstream.abort();
    proxy.stop().await;
}

#[tokio::test]
async fn passive_latency_matches_the_sleep_command() {
    let server = TestServer::start(common::config()).await;
    let proxy = TestProxy::start(proxy_config(server.addr, None)).await;
    let mut client = RawClient::connect(proxy.addr).await;
    for index in 0..3 {
        let params = object(vec![("ms", Value::Integer(150))]);
        client.call(&format!("s{index}"), "sleep", params).await;
    }
    client
        .send(request(
            "never",
            "sleep",
            object(vec![("ms", Value::Integer(60_000))]),
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let figures = proxy.latency.snapshot();
    let sleep = &figures.commands["sleep"].histogram;
    assert_eq!(sleep.len(), 3);
    let (low, high) = (sleep.min(), sleep.max());
    assert!(
        low >= 150_000 && high < 250_000,
        "sleep 150 ms measured {low}..{high} us"
    );
    // The server holds the connection open for the long sleep: shutdown ends it, unanswered.
    let summary = proxy.stop().await;
    assert_eq!(summary.latency.commands["sleep"].unanswered, 1);
    assert!(summary.to_text().contains("sleep"));
    server.stop().await;
}

#[tokio::test]
async fn a_log_that_falls_behind_drops_entries_never_traffic() {
    let server = TestServer::start(common::config()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("dropping.jsonl");
    let mut config = proxy_config(server.addr, Some(log.clone()));
    config.outputs.queue_bytes = 1; // no event fits
    let proxy = TestProxy::start(config).await;
    let mut client = RawClient::connect(proxy.addr).await;
    for index in 0..20 {
        let (result, _) = client
            .call(&format!("{index}"), "echo", echo_params(index))
            .await;
        assert_eq!(result, echo_params(index));
    }
    drop(client);
    proxy.wait_idle(1).await;
    let summary = proxy.stop().await;
    assert!(summary.log_dropped >= 40, "{summary:?}");
    assert!(summary.to_text().contains("events dropped"));
    server.stop().await;
}

#[tokio::test]
async fn frames_larger_than_the_log_queue_are_still_logged_as_skipped() {
    // An upstream that reads everything and answers nothing.
    let (listener, upstream_addr) = common::loopback_listener().await;
    let upstream = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accepts");
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
        sink.len()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("skipped-large.jsonl");
    let mut config = proxy_config(upstream_addr, Some(log.clone()));
    // Far below the frames: only what a skipped frame's entry holds (a message and its first
    // bytes) may count against it, not the frame's length.
    config.outputs.queue_bytes = 64 * 1024;
    let proxy = TestProxy::start(config).await;
    let mut client = TcpStream::connect(proxy.addr).await.expect("connects");
    let big = 1 << 20;
    let mut bytes = (big as u32).to_be_bytes().to_vec();
    bytes.resize(4 + big, 0x0a);
    // A second frame that the stream ends inside.
    bytes.extend_from_slice(&(big as u32).to_be_bytes());
    bytes.resize(bytes.len() + big / 2, 0x0a);
    client.write_all(&bytes).await.expect("writes");
    client.shutdown().await.expect("half-closes");
    let relayed = tokio::time::timeout(WAIT, upstream)
        .await
        .expect("in time")
        .expect("the upstream task ends");
    assert_eq!(relayed, bytes.len(), "every byte relayed");
    drop(client);
    proxy.wait_idle(1).await;
    let summary = proxy.stop().await;
    assert_eq!(summary.log_dropped, 0, "{summary:?}");
    let entries = read_log(&log);
    let skipped = entries
        .iter()
        .find(|e| e["event"] == "frame")
        .expect("the large frame is logged");
    assert_eq!(skipped["len"], 4 + big);
    assert!(
        skipped["error"]
            .as_str()
            .is_some_and(|error| error.contains("above the decode cap")),
        "{skipped}"
    );
    let truncated = entries
        .iter()
        .find(|e| e["event"] == "truncated")
        .expect("the cut-off frame is logged");
    assert_eq!(truncated["len"], 4 + big / 2, "{truncated}");
}

#[tokio::test]
async fn a_frame_cut_off_by_the_other_side_or_by_shutdown_is_logged_truncated() {
    // The upstream resets its first connection once it has the client's half frame, and
    // holds its second open; each tells the test what it read.
    let (listener, upstream_addr) = common::loopback_listener().await;
    let (read_tx, mut read) = tokio::sync::mpsc::channel(2);
    let upstream = tokio::spawn(async move {
        let mut held = Vec::new();
        for reset in [true, false] {
            let (mut socket, _) = listener.accept().await.expect("accepts");
            let mut half = [0u8; 5];
            socket.read_exact(&mut half).await.expect("reads");
            read_tx.send(half).await.expect("reports");
            if reset {
                socket.set_zero_linger().expect("sets linger");
            } else {
                held.push(socket);
            }
        }
        held
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("cut-off.jsonl");
    let proxy = TestProxy::start(proxy_config(upstream_addr, Some(log.clone()))).await;
    let half = [0, 0, 0, 50, 0x0A];
    // A client that sends half a frame, once the upstream has read it.
    let mut half_frame_client = async || {
        let mut client = TcpStream::connect(proxy.addr).await.expect("connects");
        client.write_all(&half).await.expect("writes");
        let saw = tokio::time::timeout(WAIT, read.recv())
            .await
            .expect("in time");
        assert_eq!(saw, Some(half));
        client
    };

    let mut reset_client = half_frame_client().await;
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(WAIT, reset_client.read_to_end(&mut rest)).await;
    assert!(ended.expect("in time").is_err(), "the reset is passed on");
    proxy.wait_idle(1).await;

    // Held open (to the end of the test) while the proxy shuts down.
    let _held_client = half_frame_client().await;
    let summary = proxy.stop().await;
    assert_eq!(
        summary.stats.closes.get("shutdown"),
        Some(&1),
        "{summary:?}"
    );
    drop(upstream.await.expect("the upstream task ends"));

    let truncated: Vec<Json> = read_log(&log)
        .into_iter()
        .filter(|e| e["event"] == "truncated")
        .map(|e| serde_json::json!([e["conn"], e["dir"], e["len"]]))
        .collect();
    assert_eq!(
        truncated,
        [
            serde_json::json!([1, "c2s", 5]),
            serde_json::json!([2, "c2s", 5])
        ]
    );
}

/// Runs `amf-bench proxy --listen 127.0.0.1:0 ARGS`, which must exit 2 naming `expected`.
fn refused(args: &[&str], expected: &str) {
    let mut all = vec!["proxy", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let output = common::process::run_bounded(&all);
    assert_eq!(output.status.code(), Some(2), "{args:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
}

#[test]
fn bad_options_are_refused_with_what_was_wrong() {
    refused(
        &["--upstream", "nowhere"],
        "--upstream 'nowhere' is not HOST:PORT",
    );
    refused(&["--upstream", "host:0"], "is not HOST:PORT");
    let decode_above_frame = ["--max-decode", "100", "--max-frame", "10"];
    refused(
        &[&["--upstream", "127.0.0.1:1"][..], &decode_above_frame].concat(),
        "--max-decode (100)",
    );
    for (flag, value, expected) in [
        ("--log", "/nonexistent/dir/log", "/nonexistent/dir/log"),
        (
            "--log-queue",
            "0",
            "'0' is not a byte count of at least 65536",
        ),
        ("--max-depth", "0", "'0' is not a depth from 1 to"),
        (
            "--max-frame",
            "0",
            "'0' is not a byte count from 1 to 4294967295",
        ),
        ("--buffer", "10", "from 1024 to 16777216"),
        ("--stats-every", "0", "'0' must be at least 0.1 seconds"),
        (
            "--stats-every",
            "1e-9",
            "'1e-9' must be at least 0.1 seconds",
        ),
        // Every frame would be too large to decode; no connection is numbered 0.
        ("--max-decode", "4", "'4' is below 5 bytes"),
        ("--max-decode", "many", "'many' is not a number of bytes"),
        ("--conn", "0", "0 is not in 1.."),
    ] {
        refused(&["--upstream", "127.0.0.1:1", flag, value], expected);
    }
    refused(
        &[
            "--upstream",
            "127.0.0.1:1",
            "--policy",
            "/nonexistent/policy.xml",
        ],
        "cannot read policy file",
    );
}

/// `amf-bench serve` on port 0 as a child process, without pings.
fn serve_process(stderr: Stdio) -> common::process::Listening {
    let args = ["serve", "--listen", "127.0.0.1:0", "--no-ping"];
    common::process::Listening::start_with_stderr(&args, stderr)
}

/// `amf-bench proxy` on port 0 in front of `upstream`, with `extra` arguments, as a child process.
fn proxy_process(upstream: &str, extra: &[&str], stderr: Stdio) -> common::process::Listening {
    let mut args = vec!["proxy", "--listen", "127.0.0.1:0", "--upstream", upstream];
    args.extend_from_slice(extra);
    common::process::Listening::start_with_stderr(&args, stderr)
}

#[test]
fn the_binary_relays_prints_lines_and_a_summary_on_sigterm() {
    let mut server = serve_process(Stdio::null());
    let upstream = server.addr.clone();
    let mut proxy = proxy_process(&upstream, &[], Stdio::null());
    let addr: SocketAddr = proxy.addr.parse().expect("an address");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut client = RawClient::connect(addr).await;
        client
            .call("x1", "echo", object(vec![("text", Value::string("hi"))]))
            .await;
    });
    let (status, out) = proxy.terminate();
    assert!(status.success(), "{status:?}");
    assert!(out.contains("#1 -> "), "{out}");
    assert!(out.contains("rpcRequest echo id x1"), "{out}");
    assert!(out.contains("<- "), "{out}");
    assert!(out.contains("command (latency, ms)"), "{out}");
    server.terminate();
}

/// A closed terminal or SSH session (SIGHUP) stops `serve` and `proxy` as SIGTERM does: the
/// proxy's log ends with the open connection's close, and both print their summaries.
#[test]
fn sighup_stops_the_proxy_and_the_server_with_their_summaries() {
    let mut server = serve_process(Stdio::null());
    let upstream = server.addr.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("hangup.jsonl");
    let log_arg = log.to_str().expect("utf-8");
    let mut proxy = proxy_process(&upstream, &["--quiet", "--log", log_arg], Stdio::null());
    let addr: SocketAddr = proxy.addr.parse().expect("an address");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (status, out) = runtime.block_on(async {
        let mut client = RawClient::connect(addr).await;
        client
            .call("h1", "echo", object(vec![("text", Value::string("hi"))]))
            .await;
        // The client stays connected while the proxy is told to stop.
        let stopped = proxy.stop_with("-HUP");
        drop(client);
        stopped
    });
    assert!(status.success(), "{status:?}");
    assert!(out.contains("command (latency, ms)"), "{out}");
    let entries = read_log(&log);
    let close = entries.last().expect("a logged event");
    assert_eq!(close["event"], "close", "{entries:?}");
    assert_eq!(close["reason"], "proxy shutting down", "{entries:?}");
    assert_eq!(
        entries.iter().filter(|e| e["event"] == "frame").count(),
        2,
        "{entries:?}"
    );
    let (status, counters) = server.stop_with("-HUP");
    assert!(status.success(), "{status:?}");
    assert!(counters.contains("echo 1"), "{counters}");
}

/// A standard output nobody reads (a paused pager, Ctrl-S) costs terminal lines only: the JSON
/// log still gets every frame, and SIGTERM still ends the proxy.
#[test]
fn a_stalled_standard_output_holds_back_neither_the_log_nor_shutdown() {
    let mut server = serve_process(Stdio::null());
    let upstream = server.addr.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("stalled.jsonl");
    // Event lines go to standard output, which this test never reads past the first line.
    let mut proxy = proxy_process(
        &upstream,
        &["--log", log.to_str().expect("utf-8")],
        Stdio::null(),
    );
    let addr: SocketAddr = proxy.addr.parse().expect("an address");
    const MESSAGES: usize = 3_000;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // About 200 bytes of terminal line each: several times what a pipe holds.
        let mut burst = Vec::new();
        for index in 0..MESSAGES {
            let message = Envelope::Message(amf_bench::rpc::Message {
                message_id: format!("m{index}").into(),
                command: "chat".into(),
                params: object(vec![("text", Value::string(&"x".repeat(100)))]),
            });
            burst.extend_from_slice(
                &encode_envelope(message, Encoding::Amf3, 1 << 20).expect("encodes"),
            );
        }
        let mut client = RawClient::connect(addr).await;
        client.send_bytes(&burst).await;
        let frames_logged = || {
            std::fs::read_to_string(&log)
                .map(|text| text.matches("\"event\":\"frame\"").count())
                .unwrap_or(0)
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        while frames_logged() < MESSAGES {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {MESSAGES} frames logged",
                frames_logged()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let (status, _) = proxy.terminate();
    assert!(status.success(), "{status:?}");
    server.terminate();
}

/// Under traffic that never lets the log's queue run empty, `--stats-every` still prints its
/// table on time.
#[test]
fn stats_every_prints_while_traffic_is_steady() {
    let mut server = serve_process(Stdio::null());
    let upstream = server.addr.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("steady.jsonl");
    let mut proxy = proxy_process(
        &upstream,
        &[
            "--quiet",
            "--log",
            log.to_str().expect("utf-8"),
            "--stats-every",
            "0.2",
        ],
        Stdio::null(),
    );
    let addr: SocketAddr = proxy.addr.parse().expect("an address");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    runtime.block_on(async {
        let mut clients = tokio::task::JoinSet::new();
        for client_index in 0..4 {
            clients.spawn(async move {
                // Fire-and-forget messages, written as fast as the proxy takes them.
                let mut burst = Vec::new();
                for index in 0..100 {
                    let message = Envelope::Message(amf_bench::rpc::Message {
                        message_id: format!("{client_index}-{index}").into(),
                        command: "chat".into(),
                        params: object(vec![("n", Value::Integer(index))]),
                    });
                    burst.extend_from_slice(
                        &encode_envelope(message, Encoding::Amf3, 1 << 20).expect("encodes"),
                    );
                }
                let mut client = RawClient::connect(addr).await;
                while std::time::Instant::now() < until {
                    client.send_bytes(&burst).await;
                }
            });
        }
        while let Some(joined) = clients.join_next().await {
            joined.expect("a client ran");
        }
    });
    let (status, out) = proxy.terminate();
    assert!(status.success(), "{status:?}");
    let tables = out.matches("command (latency, ms)").count();
    // One every 0.2 s while the log catches up, and one on exit; the old writer printed only
    // the last.
    assert!(tables >= 4, "{tables} tables:\n{out}");
    // Each periodic table says when it was taken; the one on exit is the summary.
    let headings: Vec<&str> = out.lines().filter(|line| line.starts_with("== ")).collect();
    assert_eq!(headings.len(), tables - 1, "{out}");
    for heading in headings {
        let when = heading
            .strip_prefix("== ")
            .and_then(|rest| rest.strip_suffix(": latency since the proxy started"));
        let parsed = when.map(humantime::parse_rfc3339);
        assert!(matches!(parsed, Some(Ok(_))), "{heading}");
    }
    server.terminate();
}

/// With standard error closed (`2>&1 | head` gone), the log line a signal prints fails; the
/// signal must still stop the proxy, and the server, and exit cleanly.
#[test]
fn a_signal_stops_the_roles_when_standard_error_is_closed() {
    let mut server = serve_process(Stdio::piped());
    let mut proxy = proxy_process(&server.addr, &["--quiet"], Stdio::piped());
    drop(proxy.child.stderr.take());
    drop(server.child.stderr.take());
    let (status, _) = proxy.terminate();
    assert!(status.success(), "proxy: {status:?}");
    let (status, _) = server.terminate();
    assert!(status.success(), "serve: {status:?}");
}

#[test]
fn the_log_and_the_recording_go_on_when_standard_output_closes() {
    let mut server = serve_process(Stdio::null());
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("stdout-closed.jsonl");
    let record = dir.path().join("stdout-closed.rec");
    let mut proxy = proxy_process(
        &server.addr,
        &[
            "--log",
            log.to_str().expect("utf-8"),
            "--record",
            record.to_str().expect("utf-8"),
        ],
        Stdio::null(),
    );
    // As `amf-bench proxy ... | head -1`: the reader of the event lines goes away.
    proxy.close_stdout();
    let addr: SocketAddr = proxy.addr.parse().expect("an address");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    const CALLS: usize = 20;
    runtime.block_on(async {
        let mut client = RawClient::connect(addr).await;
        for call in 0..CALLS {
            let id = format!("x{call}");
            client
                .call(
                    &id,
                    "echo",
                    object(vec![("n", Value::Integer(call as i32))]),
                )
                .await;
        }
    });
    let (status, _) = proxy.terminate();
    assert!(status.success(), "{status:?}");
    let frames = |path: &std::path::PathBuf| {
        read_log(path)
            .iter()
            .filter(|line| line["event"] == "frame")
            .count()
    };
    assert_eq!(
        frames(&log),
        2 * CALLS,
        "every request and reply in the log"
    );
    assert_eq!(frames(&record), 2 * CALLS, "and in the recording");
    server.terminate();
}

#[tokio::test]
async fn a_log_file_that_fails_stops_alone_and_is_named() {
    if !std::path::Path::new("/dev/full").exists() {
        return;
    }
    let server = TestServer::start(common::config()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join("beside-a-full-log.rec");
    let mut config = proxy_config(server.addr, Some("/dev/full".into()));
    config.outputs.record = Some(record.clone());
    let proxy = TestProxy::start(config).await;
    let mut client = RawClient::connect(proxy.addr).await;
    const CALLS: usize = 2000;
    for call in 0..CALLS {
        let id = format!("c{call}");
        let params = object(vec![("text", Value::string(&"x".repeat(200)))]);
        let (result, _) = client.call(&id, "echo", params.clone()).await;
        assert_eq!(result, params, "the traffic goes on");
    }
    drop(client);
    proxy.wait_idle(1).await;
    let summary = proxy.stop().await;
    server.stop().await;
    assert_eq!(
        summary.log_failures.len(),
        1,
        "only the log stopped: {summary:?}"
    );
    assert!(
        summary.log_failures[0].starts_with("--log /dev/full: "),
        "{:?}",
        summary.log_failures
    );
    assert_eq!(summary.log_dropped, 0, "nothing fell behind: {summary:?}");
    let recorded = read_log(&record)
        .iter()
        .filter(|line| line["event"] == "frame")
        .count();
    assert_eq!(recorded, 2 * CALLS, "the recording has every frame");
}

/// Seconds since midnight of an RFC 3339 time as the log writes it (`...T10:02:03.123456Z`).
fn seconds_of_day(time: &Json) -> f64 {
    let time = time.as_str().expect("a time");
    let clock = &time[11..time.len() - 1];
    let parts: Vec<f64> = clock
        .split(':')
        .map(|part| part.parse().expect("a number"))
        .collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

#[tokio::test]
async fn shutdown_does_not_wait_for_an_upstream_still_connecting() {
    // An upstream whose accept queue is full: further connects get no answer.
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("binds");
    let upstream = socket.listen(1).expect("listens");
    let upstream_addr = upstream.local_addr().expect("bound");
    let mut queued = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(200),
            TcpStream::connect(upstream_addr),
        )
        .await
        {
            queued.push(stream);
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("slow-upstream.jsonl");
    let mut config = proxy_config(upstream_addr, Some(log.clone()));
    config.connect_timeout = Duration::from_secs(60);
    let proxy = TestProxy::start(config).await;
    let _client = TcpStream::connect(proxy.addr).await.expect("connects");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // `stop` allows WAIT, well under the 60 s connect time-out.
    let summary = proxy.stop().await;
    assert_eq!(
        summary.stats.closes.get("shutdown"),
        Some(&1),
        "{summary:?}"
    );
    let entries = read_log(&log);
    let open = entries
        .iter()
        .find(|e| e["event"] == "open")
        .expect("an open");
    let close = entries
        .iter()
        .find(|e| e["event"] == "close")
        .expect("a close");
    assert_eq!(close["reason"], "proxy shutting down", "{close}");
    let waited = seconds_of_day(&close["t"]) - seconds_of_day(&open["t"]);
    assert!(
        waited >= 0.25,
        "the open is stamped when the client connected, not when the dial ended: {waited} s"
    );
    drop(queued);
}
