//! `amf-bench serve` over WebSocket on loopback: the byte stream split across binary messages
//! either way, text and oversized messages refused with a Close, the Origin allowlist at the
//! handshake, Close propagated both ways, and `--ws-on-tcp` serving raw AMF Socket, WebSocket
//! and policy clients on one port.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use amf_bench::codec::Value;
use amf_bench::rpc::{Envelope, PingConfig};
use amf_bench::serve::ServeConfig;
use common::ws::{WsClient, frame};
use common::{RawClient, TestServer, config, object, request, text_param};
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, Message};

/// A test server with a WebSocket listener on loopback.
fn ws_config() -> ServeConfig {
    ServeConfig {
        ws_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..config()
    }
}

async fn start_ws(config: ServeConfig) -> (TestServer, SocketAddr) {
    let server = TestServer::start(config).await;
    let addr = server.ws_addr.expect("a WebSocket listener");
    (server, addr)
}

#[tokio::test]
async fn one_frame_split_over_several_messages_is_reassembled() {
    let (server, addr) = start_ws(ws_config()).await;
    let mut client = WsClient::connect(addr).await;
    let bytes = frame(request("split", "echo", text_param("in pieces")));
    // The first piece is shorter than the frame's length header.
    for piece in [&bytes[..2], &bytes[2..9], &bytes[9..]] {
        client.send_binary(piece).await;
    }
    let (result, _) = client.reply_to("split").await;
    assert_eq!(result, text_param("in pieces"));
    let snapshot = server.stop().await;
    assert_eq!(snapshot.requests["echo"], 1);
    assert_eq!(snapshot.websocket_connections, 1);
}

#[tokio::test]
async fn several_frames_in_one_message_each_get_a_reply() {
    let (server, addr) = start_ws(ws_config()).await;
    let mut client = WsClient::connect(addr).await;
    let mut message = Vec::new();
    for index in 0..3 {
        let id = format!("batch-{index}");
        message.extend_from_slice(&frame(request(&id, "echo", text_param(&id))));
    }
    // Half of a fourth frame rides along; its rest follows in the next message.
    let fourth = frame(request("batch-3", "echo", text_param("batch-3")));
    message.extend_from_slice(&fourth[..5]);
    client.send_binary(&message).await;
    client.send_binary(&fourth[5..]).await;
    for index in 0..4 {
        let id = format!("batch-{index}");
        let (result, _) = client.reply_to(&id).await;
        assert_eq!(result, text_param(&id));
    }
    let snapshot = server.stop().await;
    assert_eq!(snapshot.requests["echo"], 4);
}

#[tokio::test]
async fn a_frame_larger_than_one_outgoing_message_comes_back_whole() {
    let (server, addr) = start_ws(ws_config()).await;
    let mut client = WsClient::connect(addr).await;
    // The reply (about 300 KB) leaves the server in several binary messages of at most 64 KiB.
    let big = text_param(&"0123456789".repeat(30_000));
    let (result, _) = client.call("big", "echo", big.clone()).await;
    assert_eq!(result, big);
    server.stop().await;
}

#[tokio::test]
async fn pushed_messages_reach_a_websocket_client() {
    let (server, addr) = start_ws(ws_config()).await;
    let mut client = WsClient::connect(addr).await;
    let params = object(vec![
        ("count", Value::Integer(5)),
        ("interval_ms", Value::Integer(0)),
        ("command", Value::string("tick")),
    ]);
    let (result, messages) = client.call("push", "push", params).await;
    assert_eq!(result, object(vec![("pushed", Value::Integer(5))]));
    let commands: Vec<&str> = messages.iter().map(|m| &*m.command).collect();
    assert_eq!(commands, ["tick"; 5]);
    server.stop().await;
}

#[tokio::test]
async fn a_text_message_is_refused_with_a_close_and_counted() {
    let (server, addr) = start_ws(ws_config()).await;
    let mut client = WsClient::connect(addr).await;
    let (result, _) = client.call("before", "echo", text_param("ok")).await;
    assert_eq!(result, text_param("ok"));
    let text = Message::Text("{\"type\":\"rpcRequest\"}".into());
    client.socket.send(text).await.expect("sends");
    let reason = expect_refusal(server, client, 1003, "ws_text_message").await;
    assert!(reason.contains("binary"), "{reason}");
}

/// The client gets a Close with `code`, and the server counts the connection's end as `kind`;
/// returns the Close's reason.
async fn expect_refusal(server: TestServer, mut client: WsClient, code: u16, kind: &str) -> String {
    let (got, reason) = client.expect_close().await;
    assert_eq!(got, code, "{reason}");
    let snapshot = server
        .wait_for("the refused connection to end", |s| {
            s.connections_active == 0
        })
        .await;
    assert_eq!(snapshot.closes[kind], 1, "{snapshot:?}");
    server.stop().await;
    reason
}

#[tokio::test]
async fn a_message_over_the_cap_is_refused() {
    let mut config = ws_config();
    config.websocket.max_message_len = 1024;
    let (server, addr) = start_ws(config).await;
    let mut client = WsClient::connect(addr).await;
    client.send_binary(&[0u8; 2048]).await;
    expect_refusal(server, client, 1009, "ws_message_too_large").await;
}

#[tokio::test]
async fn a_message_far_over_the_cap_still_gets_its_close() {
    let mut config = ws_config();
    config.websocket.max_message_len = 1024;
    let (server, addr) = start_ws(config).await;
    let mut client = WsClient::connect(addr).await;
    // More than the sockets' buffers hold: the server refuses it while the client still sends,
    // and must not reset the connection under the Close it sent.
    let message = tungstenite::Message::Binary(bytes::Bytes::from(vec![0u8; 4 << 20]));
    let sent = client.socket.send(message).await;
    assert!(sent.is_ok(), "the client finishes sending: {sent:?}");
    expect_refusal(server, client, 1009, "ws_message_too_large").await;
}

/// Bad AMF Socket framing inside good WebSocket messages ends with a Close 1002 saying what was
/// wrong, not a dropped connection (which a browser reports as an abnormal close, 1006), nor an
/// orderly 1000.
#[tokio::test]
async fn a_bad_amf_frame_ends_the_connection_with_a_protocol_error_close() {
    for (frame, kind, said) in [
        (vec![0u8, 0, 0, 0], "empty_frame", "bad frame"),
        (
            vec![0x7f, 0xff, 0xff, 0xff, 0x0a],
            "oversize_frame",
            "above the cap",
        ),
        (vec![0, 0, 0, 1, 0xff], "undecodable_frame", "bad payload"),
    ] {
        let (server, addr) = start_ws(ws_config()).await;
        let mut client = WsClient::connect(addr).await;
        client.send_binary(&frame).await;
        let reason = expect_refusal(server, client, 1002, kind).await;
        assert!(reason.contains(said), "{kind}: {reason}");
    }
}

/// A frame that breaks RFC 6455 itself (unmasked from a client, a reserved opcode, a reserved
/// bit, a Close reason that is not UTF-8) fails the connection with a Close 1002 naming the
/// violation, as RFC 6455 7.1.7 asks.
#[tokio::test]
async fn a_websocket_protocol_violation_is_refused_with_1002() {
    for (raw, said) in [
        (vec![0x82, 0x01, 0x00], "unmasked"),
        (vec![0x83, 0x80, 1, 2, 3, 4], "invalid opcode"),
        (vec![0xc2, 0x80, 1, 2, 3, 4], "reserved bits"),
        // A Close whose reason is not UTF-8 (code 1000, then 0xff; mask 0).
        (vec![0x88, 0x83, 0, 0, 0, 0, 0x03, 0xe8, 0xff], "utf-8"),
    ] {
        let (server, addr) = start_ws(ws_config()).await;
        let mut client = WsClient::connect(addr).await;
        client
            .socket
            .get_mut()
            .write_all(&raw)
            .await
            .expect("sends");
        let reason = expect_refusal(server, client, 1002, "ws_protocol_error").await;
        assert!(reason.to_lowercase().contains(said), "{said}: {reason}");
    }
}

/// A client that never answers the server's pings gets a Close 1002 saying so, not a dropped
/// connection.
#[tokio::test]
async fn an_unanswered_ping_ends_the_connection_with_a_close() {
    let mut config = ws_config();
    config.peer.ping = Some(PingConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(200),
    });
    let (server, addr) = start_ws(config).await;
    let client = WsClient::connect(addr).await;
    let reason = expect_refusal(server, client, 1002, "ping_timeout").await;
    assert!(reason.contains("did not answer a ping"), "{reason}");
}

#[tokio::test]
async fn origins_outside_the_allowlist_get_403_at_the_handshake() {
    let mut config = ws_config();
    config.websocket.origins = vec!["http://127.0.0.1:8000".into()];
    let (server, addr) = start_ws(config).await;
    let refused = WsClient::try_connect(addr, Some("http://evil.example")).await;
    match refused {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        Err(other) => panic!("expected HTTP 403, got {other:?}"),
        Ok(_) => panic!("a disallowed origin was accepted"),
    }
    let mut allowed = WsClient::try_connect(addr, Some("http://127.0.0.1:8000"))
        .await
        .expect("an allowed origin upgrades");
    let (result, _) = allowed.call("a", "echo", text_param("allowed")).await;
    assert_eq!(result, text_param("allowed"));
    let mut no_origin = WsClient::connect(addr).await;
    let (result, _) = no_origin.call("n", "echo", text_param("none")).await;
    assert_eq!(result, text_param("none"));
    let snapshot = server.stop().await;
    assert_eq!(snapshot.closes["ws_origin_refused"], 1);
    assert_eq!(snapshot.websocket_connections, 2);
}

/// A plain HTTP request (a browser opening the port as a page) gets an HTTP answer saying what
/// the port is, not a dropped connection.
#[tokio::test]
async fn a_plain_http_request_gets_426_saying_what_the_port_takes() {
    let (server, addr) = start_ws(ws_config()).await;
    let response = http_answer(
        addr,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 426 "), "{response}");
    assert!(
        response.contains("\r\nUpgrade: websocket\r\n"),
        "{response}"
    );
    assert!(
        response.contains("WebSocket connections only"),
        "{response}"
    );
    let snapshot = server
        .wait_for("the refused connection to end", |s| {
            s.connections_active == 0
        })
        .await;
    assert_eq!(snapshot.closes["ws_bad_handshake"], 1, "{snapshot:?}");
    server.stop().await;
}

/// Sends `head` and reads the whole answer until the server closes.
async fn http_answer(addr: SocketAddr, head: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    stream.write_all(head.as_bytes()).await.expect("sends");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("answered and closed in time")
        .expect("reads");
    String::from_utf8_lossy(&response).into_owned()
}

/// Upgrades that tungstenite would refuse (a key that is not 16 bytes in base64, HTTP/1.0) get
/// an HTTP error naming the fault, not a connection closed without a word.
#[tokio::test]
async fn a_malformed_upgrade_gets_an_http_error_naming_it() {
    let (server, addr) = start_ws(ws_config()).await;
    let upgrade = |version: &str, key: &str| {
        format!(
            "GET / HTTP/{version}\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    for (head, status, said) in [
        (upgrade("1.1", "short"), "400", "Sec-WebSocket-Key"),
        (
            upgrade("1.0", "dGhlIHNhbXBsZSBub25jZQ=="),
            "505",
            "HTTP/1.1",
        ),
    ] {
        let response = http_answer(addr, &head).await;
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{response}"
        );
        assert!(response.contains(said), "{response}");
    }
    server.stop().await;
}

#[tokio::test]
async fn any_origin_is_refused_by_default() {
    let (server, addr) = start_ws(ws_config()).await;
    let refused = WsClient::try_connect(addr, Some("http://127.0.0.1:8000")).await;
    assert!(
        matches!(&refused, Err(tungstenite::Error::Http(response)) if response.status() == 403),
        "{:?}",
        refused.err()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_close_ends_the_connection_as_a_peer_close() {
    let (server, addr) = start_ws(ws_config()).await;
    let mut client = WsClient::connect(addr).await;
    let (result, _) = client.call("x", "echo", text_param("bye")).await;
    assert_eq!(result, text_param("bye"));
    client.socket.close(None).await.expect("sends a Close");
    // The server answers the Close, then ends the stream.
    let (code, _) = client.expect_close().await;
    assert_eq!(code, 1005, "the echo of a Close without a code");
    let snapshot = server
        .wait_for("the connection to end", |s| s.connections_active == 0)
        .await;
    assert_eq!(snapshot.closes["peer_closed"], 1);
    assert!(snapshot.errors().is_empty(), "{snapshot:?}");
    server.stop().await;
}

/// A client whose TCP connection ends without a WebSocket Close (a tab killed, a network
/// gone) has ended its stream, as a FIN ends one on TCP: no protocol error is counted.
#[tokio::test]
async fn a_tcp_end_without_a_close_is_a_peer_close() {
    let (server, addr) = start_ws(ws_config()).await;
    let mut client = WsClient::connect(addr).await;
    let (result, _) = client.call("x", "echo", text_param("bye")).await;
    assert_eq!(result, text_param("bye"));
    client
        .socket
        .get_mut()
        .shutdown()
        .await
        .expect("sends a FIN");
    let snapshot = server
        .wait_for("the connection to end", |s| s.connections_active == 0)
        .await;
    assert_eq!(snapshot.closes.get("peer_closed"), Some(&1), "{snapshot:?}");
    assert!(snapshot.errors().is_empty(), "{snapshot:?}");
    server.stop().await;
}

#[tokio::test]
async fn server_shutdown_sends_a_close() {
    let (server, addr) = start_ws(ws_config()).await;
    let mut client = WsClient::connect(addr).await;
    let (result, _) = client.call("x", "echo", text_param("still here")).await;
    assert_eq!(result, text_param("still here"));
    let stopping = tokio::spawn(server.stop());
    let (code, reason) = client.expect_close().await;
    assert_eq!((code, reason.as_str()), (1000, "end of stream"));
    let snapshot = stopping.await.expect("stops");
    assert_eq!(snapshot.connections_active, 0);
}

#[tokio::test]
async fn a_server_close_command_sends_a_close() {
    let (server, addr) = start_ws(ws_config()).await;
    let mut client = WsClient::connect(addr).await;
    client.send(request("c", "close", object(vec![]))).await;
    assert_eq!(client.expect_close().await.0, 1000);
    server.stop().await;
}

#[tokio::test]
async fn one_port_serves_raw_websocket_and_policy_clients_with_ws_on_tcp() {
    let server = TestServer::start(ServeConfig {
        ws_on_tcp: true,
        ..config()
    })
    .await;
    let mut raw = RawClient::connect(server.addr).await;
    let (result, _) = raw.call("raw", "echo", text_param("raw")).await;
    assert_eq!(result, text_param("raw"));

    let mut websocket = WsClient::connect(server.addr).await;
    let (result, _) = websocket.call("ws", "echo", text_param("ws")).await;
    assert_eq!(result, text_param("ws"));

    let mut policy = RawClient::connect(server.addr).await;
    policy.send_bytes(b"<policy-file-request/>\0").await;
    let answer = String::from_utf8(policy.read_to_end().await).expect("text");
    assert!(answer.contains("<cross-domain-policy>"), "{answer}");
    assert!(answer.ends_with('\0'), "{answer}");

    let snapshot = server.stop().await;
    assert_eq!(snapshot.requests["echo"], 2);
    assert_eq!(snapshot.websocket_connections, 1);
    assert_eq!(snapshot.policy_requests, 1);
}

#[tokio::test]
async fn without_ws_on_tcp_a_get_is_just_bad_framing() {
    let server = TestServer::start(config()).await;
    let refused = WsClient::try_connect(server.addr, None).await;
    assert!(
        refused.is_err(),
        "the main port upgraded without --ws-on-tcp"
    );
    let snapshot = server
        .wait_for("the connection to end", |s| s.connections_active == 0)
        .await;
    assert_eq!(snapshot.closes["oversize_frame"], 1, "{snapshot:?}");
    assert_eq!(snapshot.websocket_connections, 0);
    server.stop().await;
}

#[tokio::test]
async fn the_connection_cap_counts_both_ports() {
    let (server, addr) = start_ws(ServeConfig {
        max_connections: 1,
        ..ws_config()
    })
    .await;
    let mut first = WsClient::connect(addr).await;
    let (result, _) = first.call("1", "echo", text_param("first")).await;
    assert_eq!(result, text_param("first"));
    // The second waits in the backlog: its handshake cannot finish while the first is open.
    let mut raw = RawClient::connect(server.addr).await;
    raw.send(request("2", "echo", text_param("second"))).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(server.stats.snapshot().connections_accepted, 1);
    first.socket.close(None).await.expect("closes");
    let Envelope::Response(reply) = raw.recv().await else {
        panic!("expected the reply")
    };
    assert_eq!(reply.result, text_param("second"));
    server.stop().await;
}
