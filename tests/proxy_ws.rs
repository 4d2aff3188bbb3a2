//! `amf-bench proxy --ws-listen` on loopback: WebSocket clients relayed to a TCP upstream, the
//! byte stream split across binary messages either way and relayed byte for byte, text messages
//! and disallowed origins refused, Close and FIN passed on as each other, the JSON log showing
//! the frames, and `--ws-on-tcp` serving raw, WebSocket and policy clients on one port.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use amf_bench::policy::PolicySource;
use amf_bench::proxy::ProxyConfig;
use bytes::Bytes;
use common::proxy::{Noise, TestProxy, proxy_config, read_log};
use common::ws::{WsClient, frame};
use common::{RawClient, TestServer, WAIT, request, text_param};
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::{self, Message};

/// A proxy to `upstream` with a WebSocket listener on loopback, logging to `log` when given.
fn ws_proxy_config(upstream: SocketAddr, log: Option<std::path::PathBuf>) -> ProxyConfig {
    ProxyConfig {
        ws_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..proxy_config(upstream, log)
    }
}

async fn start_ws(config: ProxyConfig) -> (TestProxy, SocketAddr) {
    let proxy = TestProxy::start(config).await;
    let addr = proxy.ws_addr.expect("a WebSocket listener");
    (proxy, addr)
}

/// A WebSocket client connected through a proxy, and the upstream's end of its connection.
async fn client_and_upstream() -> (TestProxy, WsClient, tokio::net::TcpStream) {
    let (listener, upstream_addr) = common::loopback_listener().await;
    let (proxy, addr) = start_ws(ws_proxy_config(upstream_addr, None)).await;
    let client = WsClient::connect(addr).await;
    let (upstream, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("dialled")
        .expect("accepts");
    (proxy, client, upstream)
}

#[tokio::test]
async fn requests_split_over_messages_reach_serve_and_the_log_shows_them() {
    let server = TestServer::start(common::config()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("ws.jsonl");
    let (proxy, addr) = start_ws(ws_proxy_config(server.addr, Some(log.clone()))).await;
    let mut client = WsClient::connect(addr).await;
    let bytes = frame(request("split", "echo", text_param("in pieces")));
    // The first piece is shorter than the frame's length header.
    for piece in [&bytes[..2], &bytes[2..9], &bytes[9..]] {
        client.send_binary(piece).await;
    }
    let (result, _) = client.reply_to("split").await;
    assert_eq!(result, text_param("in pieces"));
    // Two frames and half a third in one message, the rest in the next.
    let third = frame(request("c", "echo", text_param("c")));
    let mut message = [
        frame(request("a", "echo", text_param("a"))),
        frame(request("b", "echo", text_param("b"))),
    ]
    .concat();
    message.extend_from_slice(&third[..5]);
    client.send_binary(&message).await;
    client.send_binary(&third[5..]).await;
    for id in ["a", "b", "c"] {
        assert_eq!(client.reply_to(id).await.0, text_param(id));
    }
    client.socket.close(None).await.expect("closes");
    proxy.wait_idle(1).await;
    let summary = proxy.stop().await;
    assert_eq!(server.stop().await.requests["echo"], 4);
    assert_eq!(summary.stats.websocket, 1);
    assert_eq!(summary.stats.closes.get("closed"), Some(&1), "{summary:?}");

    let entries = read_log(&log);
    assert_eq!(entries[0]["event"], "open");
    assert_eq!(entries[0]["transport"], "websocket");
    let frames: Vec<_> = entries.iter().filter(|e| e["event"] == "frame").collect();
    assert_eq!(
        frames.len(),
        8,
        "four requests and four replies: {entries:?}"
    );
    let ids: Vec<_> = frames
        .iter()
        .filter(|e| e["dir"] == "c2s")
        .map(|e| e["rpc"]["messageId"].clone())
        .collect();
    assert_eq!(ids, ["split", "a", "b", "c"]);
    assert!(frames.iter().all(|e| e["rpc"]["command"] == "echo"));
    let close = entries.last().expect("entries");
    assert_eq!(
        (&close["event"], &close["transport"]),
        (&"close".into(), &"websocket".into())
    );
}

/// What one connection of the echo upstream received (and so sent back): its SHA-256.
type Hashes = Arc<Mutex<Vec<Vec<u8>>>>;

/// An upstream that echoes every byte back, hashing them, until the client's FIN; then it
/// closes its side too.
async fn echo_upstream(listener: TcpListener, hashes: Hashes) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let hashes = Arc::clone(&hashes);
        tokio::spawn(async move {
            let mut hasher = Sha256::new();
            let mut buffer = vec![0u8; 32 * 1024];
            loop {
                let read = stream.read(&mut buffer).await.expect("reads");
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
                stream.write_all(&buffer[..read]).await.expect("echoes");
            }
            stream.shutdown().await.expect("closes");
            hashes
                .lock()
                .expect("lock")
                .push(hasher.finalize().to_vec());
        });
    }
}

/// Sends `bytes` in binary messages of random sizes while reading the echo back, then closes;
/// returns the SHA-256 of what came back.
async fn echo_through(addr: SocketAddr, bytes: Vec<u8>, mut noise: Noise) -> Vec<u8> {
    let client = WsClient::connect(addr).await;
    let (mut sink, mut stream) = client.socket.split();
    let expected = bytes.len();
    let sending = async move {
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(noise.write_size().min(rest.len()));
            sink.send(Message::Binary(Bytes::copy_from_slice(chunk)))
                .await
                .expect("sends");
            rest = after;
        }
        sink
    };
    let receiving = async {
        let (mut hasher, mut received) = (Sha256::new(), 0);
        while received < expected {
            match tokio::time::timeout(WAIT, stream.next())
                .await
                .expect("bytes arrive in time")
            {
                Some(Ok(Message::Binary(chunk))) => {
                    hasher.update(&chunk);
                    received += chunk.len();
                }
                other => panic!("expected a binary message, got {other:?}"),
            }
        }
        hasher.finalize().to_vec()
    };
    let (mut sink, hash) = tokio::join!(sending, receiving);
    sink.close().await.expect("sends a Close");
    hash
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_byte_is_relayed_both_ways_over_concurrent_websockets() {
    let (listener, upstream_addr) = common::loopback_listener().await;
    let hashes = Hashes::default();
    let upstream = tokio::spawn(echo_upstream(listener, Arc::clone(&hashes)));
    let (proxy, addr) = start_ws(ws_proxy_config(upstream_addr, None)).await;
    const CLIENTS: u64 = 16;
    let mut clients = tokio::task::JoinSet::new();
    for seed in 0..CLIENTS {
        clients.spawn(async move {
            let mut noise = Noise(0x5EED_0000 + seed);
            let len = 50_000 + noise.below(400_000);
            let bytes = noise.bytes(len);
            let sent = Sha256::digest(&bytes).to_vec();
            let received = echo_through(addr, bytes, noise).await;
            (sent, received)
        });
    }
    let mut sent_by_clients = Vec::new();
    while let Some(joined) = tokio::time::timeout(WAIT * 3, clients.join_next())
        .await
        .expect("clients finish in time")
    {
        let (sent, received) = joined.expect("client task");
        assert_eq!(sent, received, "what came back is exactly what was sent");
        sent_by_clients.push(sent);
    }
    proxy.wait_idle(CLIENTS).await;
    let summary = proxy.stop().await;
    upstream.abort();
    let mut received_upstream = hashes.lock().expect("lock").clone();
    received_upstream.sort();
    sent_by_clients.sort();
    assert_eq!(
        received_upstream, sent_by_clients,
        "the upstream received exactly what each client sent"
    );
    assert_eq!(
        summary.stats.closes.get("closed"),
        Some(&CLIENTS),
        "{summary:?}"
    );
}

/// Sends a text message on `client` and expects the Close 1003 that refuses it.
async fn text_is_refused(mut client: WsClient) {
    client
        .socket
        .send(Message::Text("{}".into()))
        .await
        .expect("sends");
    let (code, reason) = client.expect_close().await;
    assert_eq!(code, 1003, "{reason}");
}

/// While the upstream is sending, a refused text message is still counted as one: the write
/// towards the client that fails once the Close went must not report a client error instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_message_refused_while_the_upstream_sends_is_counted_as_one() {
    let (listener, upstream_addr) = common::loopback_listener().await;
    let upstream = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![7u8; 16 * 1024];
                while stream.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    const CLIENTS: u64 = 5;
    let (proxy, addr) = start_ws(ws_proxy_config(upstream_addr, None)).await;
    for _ in 0..CLIENTS {
        text_is_refused(WsClient::connect(addr).await).await;
    }
    proxy.wait_idle(CLIENTS).await;
    let summary = proxy.stop().await;
    upstream.abort();
    assert_eq!(
        summary.stats.closes.get("ws_text_message"),
        Some(&CLIENTS),
        "{summary:?}"
    );
}

#[tokio::test]
async fn a_text_message_is_refused_with_1003() {
    refused_after_an_echo(text_is_refused, "ws_text_message").await;
}

/// A client's frame that breaks RFC 6455 (here unmasked) gets a Close 1002 from the proxy too,
/// and the connection counts under `ws_protocol_error`.
#[tokio::test]
async fn a_websocket_protocol_violation_is_refused_with_1002() {
    let unmasked = async |mut client: WsClient| {
        let frame = [0x82, 0x01, 0x00];
        client
            .socket
            .get_mut()
            .write_all(&frame)
            .await
            .expect("sends");
        let (code, reason) = client.expect_close().await;
        assert_eq!(code, 1002, "{reason}");
        assert!(reason.contains("unmasked"), "{reason}");
    };
    refused_after_an_echo(unmasked, "ws_protocol_error").await;
}

/// A client through the proxy echoes once, then `refuse` makes the proxy refuse it; the
/// connection's end counts under `kind`.
async fn refused_after_an_echo(refuse: impl AsyncFnOnce(WsClient), kind: &str) {
    let server = TestServer::start(common::config()).await;
    let (proxy, addr) = start_ws(ws_proxy_config(server.addr, None)).await;
    let mut client = WsClient::connect(addr).await;
    assert_eq!(
        client.call("x", "echo", text_param("ok")).await.0,
        text_param("ok")
    );
    refuse(client).await;
    proxy.wait_idle(1).await;
    let summary = proxy.stop().await;
    assert_eq!(summary.stats.closes.get(kind), Some(&1), "{summary:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_disallowed_origin_gets_403_and_never_reaches_the_upstream() {
    let server = TestServer::start(common::config()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("ws-refused.jsonl");
    let mut config = ws_proxy_config(server.addr, Some(log.clone()));
    config.websocket.origins = vec!["http://127.0.0.1:8000".into()];
    let (proxy, addr) = start_ws(config).await;
    match WsClient::try_connect(addr, Some("http://evil.example")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        Err(other) => panic!("expected HTTP 403, got {other:?}"),
        Ok(_) => panic!("a disallowed origin was accepted"),
    }
    let mut allowed = WsClient::try_connect(addr, Some("http://127.0.0.1:8000"))
        .await
        .expect("upgrades");
    assert_eq!(
        allowed.call("a", "echo", text_param("a")).await.0,
        text_param("a")
    );
    drop(allowed);
    proxy.wait_idle(2).await;
    let summary = proxy.stop().await;
    assert_eq!(
        summary.stats.closes.get("ws_origin_refused"),
        Some(&1),
        "{summary:?}"
    );
    assert_eq!(
        server.stop().await.connections_accepted,
        1,
        "only the allowed client was relayed"
    );
    // The refused connection is in the log too: opened, and closed saying why.
    let refused: Vec<_> = read_log(&log)
        .into_iter()
        .filter(|e| e["conn"] == 1)
        .collect();
    let events: Vec<_> = refused.iter().map(|e| e["event"].clone()).collect();
    assert_eq!(events, ["open", "close"], "{refused:?}");
    assert_eq!(refused[0]["transport"], "websocket", "{refused:?}");
    assert!(
        refused[1]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("WebSocket connection refused: ")),
        "{refused:?}"
    );
    assert_eq!(refused[1]["c2s_bytes"], 0);
}

#[tokio::test]
async fn a_client_close_reaches_the_upstream_as_a_fin() {
    let (proxy, mut client, mut upstream) = client_and_upstream().await;
    client.send_binary(b"last words").await;
    client.socket.close(None).await.expect("sends a Close");
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT, upstream.read_to_end(&mut received))
        .await
        .expect("a FIN in time");
    assert!(read.is_ok(), "a FIN, not a reset: {read:?}");
    assert_eq!(received, b"last words");
    assert_eq!(
        client.expect_close().await.0,
        1005,
        "the echo of the client's Close"
    );
    drop(upstream);
    proxy.wait_idle(1).await;
    let summary = proxy.stop().await;
    assert_eq!(summary.stats.closes.get("closed"), Some(&1), "{summary:?}");
}

/// A client that closes while the upstream is still sending (a browser tab closed during a
/// server push) gets every byte relayed so far and the echo of its Close, not a reset; only the
/// upstream is reset, and the connection counts as closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_while_the_upstream_sends_is_answered_not_reset() {
    let (listener, upstream_addr) = common::loopback_listener().await;
    let upstream = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accepts");
        let chunk = vec![7u8; 10_000];
        for _ in 0..200 {
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    let (proxy, addr) = start_ws(ws_proxy_config(upstream_addr, None)).await;
    let mut client = WsClient::connect(addr).await;
    // Busy elsewhere for a while: the proxy's writes to it queue up.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    client
        .socket
        .send(Message::Close(None))
        .await
        .expect("sends a Close");
    let (code, _) = client.expect_close().await;
    assert_eq!(code, 1005, "the echo of the client's Close");
    proxy.wait_idle(1).await;
    let summary = proxy.stop().await;
    upstream.abort();
    assert_eq!(summary.stats.closes.get("closed"), Some(&1), "{summary:?}");
}

#[tokio::test]
async fn an_upstream_fin_reaches_the_client_as_a_close() {
    let (proxy, mut client, mut upstream) = client_and_upstream().await;
    upstream.write_all(b"goodbye").await.expect("writes");
    upstream.shutdown().await.expect("sends a FIN");
    match client.next_message().await {
        Some(Ok(Message::Binary(bytes))) => assert_eq!(&bytes[..], b"goodbye"),
        other => panic!("expected the bytes, got {other:?}"),
    }
    let (code, reason) = client.expect_close().await;
    assert_eq!((code, reason.as_str()), (1000, "end of stream"));
    // tungstenite queued its answer to the Close; a browser sends it at once.
    let _ = client.socket.flush().await;
    // The client's Close, answered, ends the other direction: the upstream sees a FIN too.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, upstream.read_to_end(&mut rest))
        .await
        .expect("a FIN in time");
    assert!(read.is_ok() && rest.is_empty(), "{read:?} {rest:?}");
    proxy.wait_idle(1).await;
    let summary = proxy.stop().await;
    assert_eq!(summary.stats.closes.get("closed"), Some(&1), "{summary:?}");
}

/// A client whose TCP connection ends without a WebSocket Close has ended its stream: the
/// upstream gets its bytes and then a FIN, as from a TCP client, and nobody is counted at fault.
#[tokio::test]
async fn a_client_tcp_end_without_a_close_reaches_the_upstream_as_a_fin() {
    let (proxy, mut client, mut upstream) = client_and_upstream().await;
    client.send_binary(b"last words").await;
    client
        .socket
        .get_mut()
        .shutdown()
        .await
        .expect("sends a FIN");
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT, upstream.read_to_end(&mut received))
        .await
        .expect("a FIN in time");
    assert!(read.is_ok(), "{read:?}");
    assert_eq!(received, b"last words");
    upstream.shutdown().await.expect("sends a FIN");
    proxy.wait_idle(1).await;
    let summary = proxy.stop().await;
    assert_eq!(summary.stats.closes.get("closed"), Some(&1), "{summary:?}");
}

#[tokio::test]
async fn proxy_shutdown_sends_the_client_a_close() {
    let (proxy, mut client, _upstream) = client_and_upstream().await;
    let stopping = tokio::spawn(proxy.stop());
    let (code, _) = client.expect_close().await;
    assert_eq!(code, 1000);
    let summary = stopping.await.expect("stops");
    assert_eq!(
        summary.stats.closes.get("shutdown"),
        Some(&1),
        "{summary:?}"
    );
}

#[tokio::test]
async fn one_port_serves_raw_websocket_and_policy_clients_with_ws_on_tcp() {
    let server = TestServer::start(common::config()).await;
    let mut config = proxy_config(server.addr, None);
    config.ws_on_tcp = true;
    config.policy = PolicySource::Allow(vec!["*:9000".parse().expect("an allow")]);
    let proxy = TestProxy::start(config).await;
    let mut raw = RawClient::connect(proxy.addr).await;
    assert_eq!(
        raw.call("raw", "echo", text_param("raw")).await.0,
        text_param("raw")
    );
    let mut websocket = WsClient::connect(proxy.addr).await;
    assert_eq!(
        websocket.call("ws", "echo", text_param("ws")).await.0,
        text_param("ws")
    );
    let mut policy = RawClient::connect(proxy.addr).await;
    policy.send_bytes(b"<policy-file-request/>\0").await;
    let answer = String::from_utf8(policy.read_to_end().await).expect("text");
    assert!(answer.contains("<cross-domain-policy>"), "{answer}");
    drop((raw, websocket));
    proxy.wait_idle(3).await;
    let summary = proxy.stop().await;
    assert_eq!(
        (summary.stats.websocket, summary.stats.policy_answered),
        (1, 1)
    );
    assert_eq!(server.stop().await.requests["echo"], 2);
}
