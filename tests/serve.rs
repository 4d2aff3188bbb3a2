//! `amf-bench serve` over loopback with a raw client: the built-in commands, pings both ways,
//! policy requests on the RPC port, bad frames closing only their own connection, and shutdown.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use amf_bench::codec::{Str, Value};
use amf_bench::rpc::wire::encode_envelope;
use amf_bench::rpc::{Encoding, Envelope, PING_COMMAND, PingConfig, Request, Response};
use amf_bench::serve::{PolicySource, Responses};
use common::{RawClient, TestServer, config, error_code, object, request};

fn text(s: &str) -> Value {
    Value::string(s)
}

#[tokio::test]
async fn echo_replies_with_the_params_unchanged() {
    let server = TestServer::start(config()).await;
    let mut client = RawClient::connect(server.addr).await;
    let params = object(vec![
        ("text", text("hello")),
        ("n", Value::Integer(42)),
        ("list", Value::array(vec![Value::Double(1.5), Value::Null])),
        (
            "typed",
            Value::typed_object(
                "com.example.Point",
                vec![(Str::from("x"), Value::Integer(1))],
            ),
        ),
    ]);
    let (result, _) = client.call("id-1", "echo", params.clone()).await;
    assert_eq!(result, params);
    let snapshot = server.stop().await;
    assert_eq!(snapshot.requests["echo"], 1);
}

#[tokio::test]
async fn a_client_ping_is_answered_with_null() {
    let server = TestServer::start(config()).await;
    let mut client = RawClient::connect(server.addr).await;
    client
        .send(Envelope::Request(Request::ping(
            Str::from("p1"),
            1.7e9,
            0.01,
        )))
        .await;
    assert_eq!(
        client.recv().await,
        Envelope::Response(Response {
            message_id: Str::from("p1"),
            result: Value::Null
        })
    );
    // Counted at once, not only when the connection ends.
    let (live, _) = client.call("s", "stats", object(vec![])).await;
    let live_pings = live
        .as_object()
        .and_then(|stats| stats.get("requests"))
        .and_then(Value::as_object)
        .and_then(|requests| requests.get(PING_COMMAND))
        .and_then(Value::as_f64);
    assert_eq!(live_pings, Some(1.0), "{live:?}");
    drop(client);
    let snapshot = server
        .wait_for("the connection to end", |s| s.connections_active == 0)
        .await;
    assert_eq!(snapshot.requests[PING_COMMAND], 1);
}

/// A client that pings the server itself still has to answer the server's pings: answering a
/// client's ping is not a stall of the server's reading that would excuse a missed answer.
#[tokio::test]
async fn a_client_that_pings_but_never_answers_is_still_closed() {
    let mut config = config();
    config.peer.ping = Some(PingConfig {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(400),
    });
    let server = TestServer::start(config).await;
    let mut client = RawClient::connect(server.addr).await;
    let started = Instant::now();
    let mut closed = false;
    for index in 0..40 {
        let ping = Request::ping(Str::from(format!("c{index}")), 1.7e9, 0.0);
        if client.stream.write_all(&ping_frame(ping)).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut scratch = [0u8; 4096];
        let read = tokio::time::timeout(
            Duration::from_millis(1),
            tokio::io::AsyncReadExt::read(&mut client.stream, &mut scratch),
        )
        .await;
        if matches!(read, Ok(Ok(0) | Err(_))) {
            closed = true;
            break;
        }
    }
    assert!(closed, "still open after {:?}", started.elapsed());
    let snapshot = server
        .wait_for("the connection to end", |s| s.connections_active == 0)
        .await;
    assert_eq!(snapshot.closes["ping_timeout"], 1, "{snapshot:?}");
    server.stop().await;
}

fn ping_frame(ping: Request) -> bytes::Bytes {
    encode_envelope(Envelope::Request(ping), Encoding::Amf3, 1 << 20).expect("encodes")
}

/// The server waits one ping interval for a client's first bytes (a policy request may come);
/// that wait is the first interval, so the first ping follows it at once, not an interval later.
#[tokio::test]
async fn a_silent_client_gets_its_first_ping_after_one_interval() {
    let interval = Duration::from_secs(1);
    let mut config = config();
    config.peer.ping = Some(PingConfig {
        interval,
        timeout: Duration::from_secs(10),
    });
    let server = TestServer::start(config).await;
    let connected = Instant::now();
    let mut silent = RawClient::connect(server.addr).await;
    let Envelope::Request(ping) = silent.recv().await else {
        panic!("expected a ping")
    };
    let waited = connected.elapsed();
    assert_eq!(&*ping.command, PING_COMMAND);
    assert!(waited >= interval, "no ping before an interval: {waited:?}");
    assert!(
        waited < interval + interval / 2,
        "the first ping came {waited:?} after connecting, with a {interval:?} interval"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_server_pings_and_closes_a_client_that_does_not_answer() {
    let mut config = config();
    config.peer.ping = Some(PingConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
    });
    let server = TestServer::start(config).await;

    // The answering client answers every ping, concurrently with everything below.
    let mut answering = RawClient::connect(server.addr).await;
    let answerer = tokio::spawn(async move {
        for _ in 0..6 {
            let Envelope::Request(ping) = answering.recv().await else {
                panic!("expected a ping")
            };
            let pong = Response {
                message_id: ping.message_id,
                result: text("pong"),
            };
            answering.send(Envelope::Response(pong)).await;
        }
        answering
    });
    let mut silent = RawClient::connect(server.addr).await;
    // The silent client receives a ping, ignores it, and is closed.
    let Envelope::Request(ping) = silent.recv().await else {
        panic!("expected a ping")
    };
    assert_eq!(&*ping.command, PING_COMMAND);
    let params = ping.params.as_object().expect("object params");
    assert!(
        params
            .get("time")
            .and_then(Value::as_f64)
            .is_some_and(|t| t > 1.7e9)
    );
    assert!(params.get("latency").and_then(Value::as_f64).is_some());
    silent.read_to_end().await;

    // The answering client kept its connection through six ping rounds.
    let mut answering = answerer.await.expect("answers");
    answering
        .send(request("after-pings", "echo", object(vec![])))
        .await;
    loop {
        match answering.recv().await {
            Envelope::Response(reply) => {
                assert_eq!(&*reply.message_id, "after-pings");
                break;
            }
            Envelope::Request(ping) => {
                let pong = Response {
                    message_id: ping.message_id,
                    result: text("pong"),
                };
                answering.send(Envelope::Response(pong)).await;
            }
            Envelope::Message(other) => panic!("unexpected {other:?}"),
        }
    }
    let snapshot = server.stop().await;
    assert_eq!(snapshot.closes["ping_timeout"], 1);
}

#[tokio::test]
async fn push_delivers_count_messages_in_order_then_replies() {
    let server = TestServer::start(config()).await;
    let mut client = RawClient::connect(server.addr).await;
    let params = object(vec![
        ("count", Value::Integer(25)),
        ("interval_ms", Value::Integer(2)),
        ("command", text("tick")),
    ]);
    let (result, messages) = client.call("push-1", "push", params).await;
    assert_eq!(result, object(vec![("pushed", Value::Integer(25))]));
    assert_eq!(messages.len(), 25);
    for (index, message) in messages.iter().enumerate() {
        assert_eq!(&*message.command, "tick");
        let got = message
            .params
            .as_object()
            .and_then(|p| p.get("index"))
            .and_then(Value::as_f64);
        assert_eq!(got, Some(index as f64));
    }
    server.stop().await;
}

#[tokio::test]
async fn sleep_delays_its_reply_without_holding_up_other_requests() {
    let server = TestServer::start(config()).await;
    let mut client = RawClient::connect(server.addr).await;
    let started = Instant::now();
    client
        .send(request(
            "slow",
            "sleep",
            object(vec![("ms", Value::Integer(300))]),
        ))
        .await;
    client.send(request("fast", "echo", object(vec![]))).await;
    let Envelope::Response(first) = client.recv().await else {
        panic!("expected a reply")
    };
    assert_eq!(
        &*first.message_id, "fast",
        "echo overtakes the sleeping request"
    );
    let Envelope::Response(second) = client.recv().await else {
        panic!("expected a reply")
    };
    assert_eq!(&*second.message_id, "slow");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

/// Clients that reset their connections with a long `sleep` in flight free their slots at once:
/// nobody is left to answer, so the sleeps are not waited out. (Several, since which of two
/// ready events the connection's task saw first decided it.)
#[tokio::test]
async fn a_reset_connection_ends_without_waiting_for_its_work() {
    const CLIENTS: u64 = 8;
    let server = TestServer::start(config()).await;
    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        let mut client = RawClient::connect(server.addr).await;
        let sleep = object(vec![("ms", Value::Integer(60_000))]);
        client
            .send(request(&format!("long{index}"), "sleep", sleep))
            .await;
        clients.push(client);
    }
    server
        .wait_for("the sleeps under way", |s| {
            s.requests.get("sleep") == Some(&CLIENTS)
        })
        .await;
    for client in clients {
        // A linger of zero turns the close into a reset.
        client.stream.set_zero_linger().expect("sets a zero linger");
    }
    let snapshot = server
        .wait_for("the reset connections to end", |s| {
            s.connections_active == 0
        })
        .await;
    assert_eq!(
        snapshot.closes.get("io_error"),
        Some(&CLIENTS),
        "{snapshot:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_commands_fail_and_close_closes() {
    let server = TestServer::start(config()).await;
    let mut client = RawClient::connect(server.addr).await;
    let (result, _) = client.call("u", "no.such.command", object(vec![])).await;
    assert_eq!(error_code(&result), Some("unknown_command"));
    let (result, _) = client
        .call("f", "fail", object(vec![("message", text("boom"))]))
        .await;
    assert_eq!(error_code(&result), Some("fail"));
    client.send(request("c", "close", object(vec![]))).await;
    assert!(
        client.read_to_end().await.is_empty(),
        "close sends no reply"
    );
    let snapshot = server.stop().await;
    assert_eq!(snapshot.closes["closed"], 1);
}

#[tokio::test]
async fn stats_reports_the_counters() {
    let server = TestServer::start(config()).await;
    let mut client = RawClient::connect(server.addr).await;
    client.call("1", "echo", object(vec![])).await;
    client
        .send(Envelope::Message(amf_bench::rpc::Message {
            message_id: Str::from("m"),
            command: Str::from("chat"),
            params: object(vec![]),
        }))
        .await;
    let (result, _) = client.call("2", "stats", object(vec![])).await;
    let stats = result.as_object().expect("an object");
    let count = |table: &str, name: &str| {
        stats
            .get(table)
            .and_then(Value::as_object)
            .and_then(|t| t.get(name))
            .and_then(Value::as_f64)
    };
    assert_eq!(count("requests", "echo"), Some(1.0));
    assert_eq!(count("requests", "stats"), Some(1.0));
    assert_eq!(count("messages", "chat"), Some(1.0));
    assert_eq!(
        stats.get("connectionsActive").and_then(Value::as_f64),
        Some(1.0)
    );
    server.stop().await;
}

#[tokio::test]
async fn canned_responses_take_precedence_with_their_delay() {
    let responses = Responses::parse(
        r#"
        [commands.login]
        result = { _class = "com.example.Session", token = "abc" }
        delay_ms = 150
        [commands.echo]
        result = "canned"
        "#,
    )
    .expect("valid");
    let mut config = config();
    config.responses = Arc::new(responses);
    let server = TestServer::start(config).await;
    let mut client = RawClient::connect(server.addr).await;
    let started = Instant::now();
    let (result, _) = client.call("l", "login", object(vec![])).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    let session = result.as_object().expect("an object");
    assert_eq!(&*session.class_name, "com.example.Session");
    assert_eq!(session.get("token"), Some(&text("abc")));
    let (result, _) = client
        .call("e", "echo", object(vec![("x", Value::Integer(1))]))
        .await;
    assert_eq!(result, text("canned"));
    server.stop().await;
}

#[tokio::test]
async fn json_encoding_speaks_the_same_envelope() {
    let mut config = config();
    config.peer.encoding = Encoding::Json;
    let server = TestServer::start(config).await;
    let mut client = RawClient::connect(server.addr).await;
    client.send_bytes(&json_frame(r#"{"type":"rpcRequest","request":{"messageId":"j1","command":"echo","params":{"a":[1,"b",null]}}}"#)).await;
    let reply = client.read_frame_text().await;
    assert_eq!(
        reply,
        r#"{"response":{"messageId":"j1","result":{"a":[1,"b",null]}},"type":"rpcResponse"}"#
    );
    server.stop().await;
}

fn json_frame(text: &str) -> Vec<u8> {
    let mut frame = (text.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(text.as_bytes());
    frame
}

trait ReadText {
    async fn read_frame_text(&mut self) -> String;
}

impl ReadText for RawClient {
    async fn read_frame_text(&mut self) -> String {
        use tokio::io::AsyncReadExt;
        let mut header = [0u8; 4];
        tokio::time::timeout(common::WAIT, self.stream.read_exact(&mut header))
            .await
            .expect("in time")
            .expect("a header");
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        tokio::time::timeout(common::WAIT, self.stream.read_exact(&mut body))
            .await
            .expect("in time")
            .expect("a body");
        String::from_utf8(body).expect("utf-8")
    }
}

/// Each kind of bad input closes its own connection, names the kind in the counters, and leaves
/// another client's connection working.
#[tokio::test]
async fn bad_frames_close_only_their_own_connection() {
    let server = TestServer::start(config()).await;
    let mut bystander = RawClient::connect(server.addr).await;
    let not_an_envelope = {
        let mut frame = vec![0, 0, 0, 2];
        frame.extend_from_slice(&[0x04, 0x05]); // the integer 5
        frame
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty_frame", vec![0, 0, 0, 0]),
        ("oversize_frame", vec![0x7f, 0xff, 0xff, 0xff]),
        ("undecodable_frame", vec![0, 0, 0, 2, 0x0a, 0x99]),
        ("bad_envelope", not_an_envelope),
        ("oversize_frame", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
    ];
    for (round, (kind, bytes)) in cases.iter().enumerate() {
        let mut bad = RawClient::connect(server.addr).await;
        bad.send_bytes(bytes).await;
        bad.read_to_end().await;
        server
            .wait_for(kind, |s| s.closes.get(*kind).copied().unwrap_or(0) >= 1)
            .await;
        let id = format!("still-{round}");
        let (result, _) = bystander
            .call(
                &id,
                "echo",
                object(vec![("round", Value::Integer(round as i32))]),
            )
            .await;
        assert_eq!(
            result,
            object(vec![("round", Value::Integer(round as i32))]),
            "{kind}"
        );
    }
    let snapshot = server.stop().await;
    assert_eq!(
        snapshot.errors().values().sum::<u64>(),
        cases.len() as u64,
        "{snapshot:?}"
    );
}

#[tokio::test]
async fn a_torn_frame_is_told_apart_from_a_clean_close() {
    let server = TestServer::start(config()).await;
    let mut torn = RawClient::connect(server.addr).await;
    torn.send_bytes(&[0, 0, 0, 10, 0x0a]).await;
    torn.stream.shutdown().await.expect("half-closes");
    torn.read_to_end().await;
    let mut clean = RawClient::connect(server.addr).await;
    clean.call("c", "echo", object(vec![])).await;
    clean.stream.shutdown().await.expect("half-closes");
    clean.read_to_end().await;
    let snapshot = server
        .wait_for("both ends", |s| {
            s.connections_active == 0 && s.closes.len() == 2
        })
        .await;
    assert_eq!(snapshot.closes["torn_frame"], 1);
    assert_eq!(snapshot.closes["peer_closed"], 1);
    server.stop().await;
}

/// Requests that arrive in the same read as a later bad frame are answered before the close:
/// what the client gets must not depend on how TCP split its bytes.
#[tokio::test]
async fn requests_before_a_bad_frame_in_the_same_read_are_answered() {
    let server = TestServer::start(config()).await;
    for round in 0..20 {
        let mut client = RawClient::connect(server.addr).await;
        let mut bytes = Vec::new();
        for id in ["first", "second"] {
            let echo = request(id, "echo", object(vec![("round", Value::Integer(round))]));
            bytes.extend(encode_envelope(echo, Encoding::Amf3, 1 << 20).expect("encodes"));
        }
        bytes.extend_from_slice(&[0, 0, 0, 2, 0x0a, 0x99]);
        client.send_bytes(&bytes).await;
        for id in ["first", "second"] {
            let Envelope::Response(reply) = client.recv().await else {
                panic!("round {round}: expected the reply to {id}")
            };
            assert_eq!(&*reply.message_id, id, "round {round}");
        }
        assert!(client.read_to_end().await.is_empty(), "round {round}");
    }
    let snapshot = server
        .wait_for("every connection closed", |s| s.connections_active == 0)
        .await;
    assert_eq!(snapshot.closes["undecodable_frame"], 20, "{snapshot:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_half_closed_client_still_gets_its_replies() {
    let server = TestServer::start(config()).await;
    let mut client = RawClient::connect(server.addr).await;
    client
        .send(request(
            "h",
            "sleep",
            object(vec![("ms", Value::Integer(50))]),
        ))
        .await;
    client.stream.shutdown().await.expect("half-closes");
    let Envelope::Response(reply) = client.recv().await else {
        panic!("expected a reply")
    };
    assert_eq!(&*reply.message_id, "h");
    server.stop().await;
}

use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_policy_request_on_the_rpc_port_gets_the_policy_and_one_nul() {
    let server = TestServer::start(config()).await;
    for pieces in [
        vec![&b"<policy-file-request/>\0"[..]],
        b"<policy-file-request/>\0".chunks(1).collect(),
    ] {
        let mut client = RawClient::connect(server.addr).await;
        for piece in pieces {
            client.send_bytes(piece).await;
            client.stream.flush().await.expect("flushes");
        }
        let answer = client.read_to_end().await;
        let text = String::from_utf8(answer).expect("utf-8");
        assert!(text.ends_with("</cross-domain-policy>\n\0"), "{text}");
        assert_eq!(text.matches('\0').count(), 1);
        let grant = format!(
            "<allow-access-from domain=\"*\" to-ports=\"{}\"/>",
            server.addr.port()
        );
        assert!(text.contains(&grant), "{text}");
    }
    // Real traffic on the same port is unaffected.
    let mut client = RawClient::connect(server.addr).await;
    client.call("after", "echo", object(vec![])).await;
    let snapshot = server.stop().await;
    assert_eq!(snapshot.policy_requests, 2);
}

#[tokio::test]
async fn policy_sources_are_honoured() {
    let mut custom = config();
    custom.policy = PolicySource::Allow(vec!["*.example.com:9000-9010".parse().expect("valid")]);
    let server = TestServer::start(custom).await;
    let mut client = RawClient::connect(server.addr).await;
    client.send_bytes(b"<policy-file-request/>\0").await;
    let text = String::from_utf8(client.read_to_end().await).expect("utf-8");
    assert!(
        text.contains("domain=\"*.example.com\" to-ports=\"9000-9010\""),
        "{text}"
    );
    server.stop().await;

    let mut off = config();
    off.policy = PolicySource::Off;
    let server = TestServer::start(off).await;
    let mut client = RawClient::connect(server.addr).await;
    client.send_bytes(b"<policy-file-request/>\0").await;
    assert!(
        client.read_to_end().await.is_empty(),
        "read as an oversized frame, not answered"
    );
    let snapshot = server.stop().await;
    assert_eq!(snapshot.closes["oversize_frame"], 1);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_then_closes() {
    let server = TestServer::start(config()).await;
    let mut client = RawClient::connect(server.addr).await;
    client
        .send(request(
            "inflight",
            "sleep",
            object(vec![("ms", Value::Integer(300))]),
        ))
        .await;
    server
        .wait_for("the request", |s| s.requests.contains_key("sleep"))
        .await;
    let addr = server.addr;
    let stopping = tokio::spawn(server.stop());
    // New connections are refused once shutdown has begun (the listener is closed).
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener closes on shutdown");
    let Envelope::Response(reply) = client.recv().await else {
        panic!("expected the reply")
    };
    assert_eq!(&*reply.message_id, "inflight");
    assert!(
        client.read_to_end().await.is_empty(),
        "then the server closes"
    );
    let snapshot = stopping.await.expect("stops");
    assert_eq!(snapshot.connections_active, 0);
}

#[tokio::test]
async fn the_drain_deadline_bounds_shutdown() {
    let mut config = config();
    config.drain_timeout = Duration::from_millis(200);
    let server = TestServer::start(config).await;
    let mut client = RawClient::connect(server.addr).await;
    client
        .send(request(
            "long",
            "sleep",
            object(vec![("ms", Value::Integer(60_000))]),
        ))
        .await;
    server
        .wait_for("the request", |s| s.requests.contains_key("sleep"))
        .await;
    stop_promptly(server).await;
    assert!(
        client.read_to_end().await.is_empty(),
        "no reply, then closed"
    );
}

/// Stops the server, which must take less than 5 s (the drain deadlines here are far shorter),
/// and returns its counters.
async fn stop_promptly(server: TestServer) -> amf_bench::serve::Snapshot {
    let started = Instant::now();
    let snapshot = server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    snapshot
}

/// A connection whose receive buffer is small, for a client that will not read.
async fn connect_without_reading(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    socket.connect(addr).await.expect("connects")
}

/// A client that sends requests but never reads their replies holds the server's reply inside
/// its connection's loop; shutdown still ends at the drain deadline.
#[tokio::test]
async fn a_client_that_does_not_read_cannot_hold_shutdown_past_the_drain_deadline() {
    let mut config = config();
    config.drain_timeout = Duration::from_millis(300);
    let server = TestServer::start(config).await;
    let stream = connect_without_reading(server.addr).await;
    let (_unread, mut writer) = stream.into_split();
    let payload = Value::ByteArray(bytes::Bytes::from(vec![7u8; 100_000]));
    let sending = tokio::spawn(async move {
        for index in 0..300 {
            let echo = request(
                &index.to_string(),
                "echo",
                object(vec![("b", payload.clone())]),
            );
            let frame = encode_envelope(echo, Encoding::Amf3, 1 << 20).expect("encodes");
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    server
        .wait_for("the echoes to back up", |s| {
            s.requests.get("echo").is_some_and(|&count| count >= 20)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let snapshot = stop_promptly(server).await;
    assert_eq!(snapshot.connections_active, 0);
    sending.abort();
}

/// A connection still waiting for its first bytes (a policy request may come) does not hold
/// shutdown for the rest of a ping interval.
#[tokio::test]
async fn a_silent_new_connection_does_not_hold_shutdown() {
    let mut config = config();
    config.drain_timeout = Duration::from_millis(200);
    config.peer.ping = Some(PingConfig {
        interval: Duration::from_secs(60),
        timeout: Duration::from_secs(60),
    });
    let server = TestServer::start(config).await;
    let _silent = RawClient::connect(server.addr).await;
    server
        .wait_for("the connection", |s| s.connections_active == 1)
        .await;
    stop_promptly(server).await;
}

/// A policy client that reads its answer but never closes is drained for 2 s; shutdown cuts
/// that short at the drain deadline.
#[tokio::test]
async fn a_policy_client_that_stays_does_not_hold_shutdown() {
    let mut config = config();
    config.drain_timeout = Duration::from_millis(100);
    let server = TestServer::start(config).await;
    let mut client = RawClient::connect(server.addr).await;
    client.send_bytes(b"<policy-file-request/>\0").await;
    let text = String::from_utf8(client.read_to_end().await).expect("utf-8");
    assert!(text.ends_with('\0'), "the policy arrived: {text}");
    let started = Instant::now();
    let snapshot = server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert_eq!(snapshot.policy_requests, 1);
    drop(client);
}

/// Once the drain deadline passes, a graceful close does not go on to flush for the flush
/// timeout to a client that does not read.
#[tokio::test]
async fn a_zero_drain_closes_a_client_that_does_not_read_at_once() {
    let mut config = config();
    config.drain_timeout = Duration::ZERO;
    config.peer.flush_timeout = Duration::from_secs(30);
    let server = TestServer::start(config).await;
    let mut client = connect_without_reading(server.addr).await;
    let flood = object(vec![
        ("count", Value::Integer(100_000)),
        ("interval_ms", Value::Integer(0)),
        ("command", Value::string(&"x".repeat(200))),
    ]);
    let frame =
        encode_envelope(request("flood", "push", flood), Encoding::Amf3, 1 << 20).expect("encodes");
    client.write_all(&frame).await.expect("sends");
    server
        .wait_for("the push", |s| s.requests.contains_key("push"))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_promptly(server).await;
}

/// A pushed message too large to send ends the push with an error result, not silence.
#[tokio::test]
async fn a_push_whose_messages_cannot_be_sent_gets_an_error_result() {
    let mut config = config();
    config.peer.max_frame_len = 300;
    let server = TestServer::start(config).await;
    let mut client = RawClient::connect(server.addr).await;
    let params = object(vec![
        ("count", Value::Integer(1)),
        ("command", Value::string(&"c".repeat(210))),
    ]);
    let frame = encode_envelope(
        request("p", "push", params.clone()),
        Encoding::Amf3,
        1 << 20,
    )
    .expect("encodes");
    assert!(frame.len() - 4 <= 300, "the request fits: {}", frame.len());
    let (result, messages) = client.call("p", "push", params).await;
    assert!(messages.is_empty(), "{messages:?}");
    assert_eq!(error_code(&result), Some("reply_not_sent"), "{result:?}");
    let (still, _) = client.call("e", "echo", object(vec![])).await;
    assert_eq!(still, object(vec![]), "the connection is still served");
    server.stop().await;
}

#[tokio::test]
async fn a_reply_too_large_to_send_comes_back_as_an_error_result() {
    let mut config = config();
    config.peer.max_frame_len = 400;
    let server = TestServer::start(config).await;
    let mut client = RawClient::connect(server.addr).await;
    // The unknown-command reply repeats the name and lists the built-ins: above 400 bytes, while
    // the request is under them.
    let long_name = "x".repeat(250);
    let (result, _) = client.call("big", &long_name, object(vec![])).await;
    assert_eq!(error_code(&result), Some("reply_not_sent"), "{result:?}");
    let (result, _) = client
        .call("after", "echo", object(vec![("n", Value::Integer(1))]))
        .await;
    assert_eq!(
        result,
        object(vec![("n", Value::Integer(1))]),
        "still served"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_reply_that_cannot_be_sent_at_all_closes_the_connection() {
    let mut config = config();
    config.peer.max_frame_len = 400;
    let server = TestServer::start(config).await;
    let mut client = RawClient::connect(server.addr).await;
    // Even the error result carries the message id: at 300 bytes, nothing fits in 400 with
    // the 250-byte command name's reply or with the error's text.
    let id = "i".repeat(300);
    client.send(request(&id, "stats", object(vec![]))).await;
    let rest = client.read_to_end().await;
    assert!(rest.is_empty(), "no reply, but no wait for ever either");
    server.stop().await;
}

#[tokio::test]
async fn an_empty_command_name_is_counted_and_stats_still_replies() {
    let server = TestServer::start(config()).await;
    let mut client = RawClient::connect(server.addr).await;
    client
        .send(Envelope::Message(amf_bench::rpc::Message {
            message_id: Str::from("m"),
            command: Str::from(""),
            params: object(vec![]),
        }))
        .await;
    let (result, _) = client.call("r", "", object(vec![])).await;
    assert_eq!(error_code(&result), Some("unknown_command"), "{result:?}");
    let (stats, _) = client.call("s", "stats", object(vec![])).await;
    let counted = |table: &str| {
        stats
            .as_object()
            .and_then(|stats| stats.get(table))
            .and_then(Value::as_object)
            .and_then(|counts| counts.get("(empty)"))
            .cloned()
    };
    assert_eq!(counted("messages"), Some(Value::Integer(1)), "{stats:?}");
    assert_eq!(counted("requests"), Some(Value::Integer(1)), "{stats:?}");
    server.stop().await;
}

/// Echoes `params` through a server decoding up to 160 levels (above the encoder's default of
/// 128, as `serve --max-depth 512` allows in release) and returns the result.
async fn echo_deep(params: &Value) -> Value {
    use amf_bench::codec::{DecodeOptions, Limits};
    use amf_bench::frame::split_frame;
    use tokio::io::AsyncReadExt;
    let limits = Limits {
        max_depth: 160,
        ..Limits::default()
    };
    let options = DecodeOptions {
        limits,
        ..DecodeOptions::default()
    };
    let mut config = config();
    config.peer.decode = Arc::new(options.clone());
    let server = TestServer::start(config).await;
    let envelope = request("deep", "echo", params.clone()).into_value();
    let mut frame = bytes::BytesMut::new();
    amf_bench::frame::encode_frame_within(&envelope, 1 << 20, &limits, &mut frame)
        .expect("encodes");
    let mut client = RawClient::connect(server.addr).await;
    client.send_bytes(&frame).await;
    let mut received = bytes::BytesMut::new();
    let payload = tokio::time::timeout(common::WAIT, async {
        loop {
            if let Some(payload) = split_frame(&mut received, 1 << 20).expect("a frame") {
                return payload;
            }
            let read = client.stream.read_buf(&mut received).await.expect("reads");
            assert!(read > 0, "the server closed instead of replying");
        }
    })
    .await
    .expect("a reply in time");
    let reply = amf_bench::codec::amf3::decode(payload, &options).expect("decodes");
    let Ok(Envelope::Response(response)) = Envelope::from_owned_within(reply, &limits) else {
        panic!("a reply")
    };
    server.stop().await;
    response.result
}

fn nested(levels: usize) -> Value {
    let mut value = object(vec![]);
    for _ in 0..levels {
        value = Value::object(vec![(Str::from("a"), value)]);
    }
    value
}

#[tokio::test]
async fn whatever_nesting_the_server_accepts_it_can_echo() {
    let params = nested(150);
    assert_eq!(echo_deep(&params).await, params);
}

/// References are resolved within the server's own depth limit, not the default one.
#[tokio::test]
async fn deep_params_holding_a_reference_are_echoed_too() {
    // Within the params, table entry 0 is the params object itself and 1 is `first`.
    let params = Value::object(vec![
        (Str::from("first"), object(vec![("n", Value::Integer(1))])),
        (Str::from("deep"), nested(150)),
        (Str::from("again"), Value::Reference(1)),
    ]);
    let result = echo_deep(&params).await;
    let members = result.as_object().expect("an object");
    assert_eq!(members.get("deep"), Some(&nested(150)));
    assert!(members.get("again").is_some(), "{result:?}");
}

#[tokio::test]
async fn a_close_ends_even_a_connection_whose_client_stopped_reading() {
    let mut config = config();
    config.peer.flush_timeout = Duration::from_millis(300);
    let server = TestServer::start(config).await;
    let mut client = RawClient::connect(server.addr).await;
    // Far more than the sockets hold, and never read: the server's writer blocks mid-write.
    let params = object(vec![
        ("count", Value::Integer(2000)),
        ("command", Value::string(&"x".repeat(60_000))),
    ]);
    client.send(request("p", "push", params)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.send(request("c", "close", object(vec![]))).await;
    let started = Instant::now();
    let snapshot = server
        .wait_for("the connection to close", |s| s.connections_active == 0)
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "within the flush time-out, not WAIT: {:?}",
        started.elapsed()
    );
    assert_eq!(snapshot.closes.get("closed"), Some(&1), "{snapshot:?}");
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn a_client_answering_pings_is_not_closed_while_the_server_holds_back_its_requests() {
    let mut config = config();
    config.max_in_flight = 2;
    config.peer.inbox_len = 2;
    config.peer.ping = Some(PingConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
    });
    let server = TestServer::start(config).await;
    let mut client = RawClient::connect(server.addr).await;
    // Twice what the server takes at once: it stops reading (back-pressure), so the client's
    // answers to its pings wait unread, for longer than the ping time-out.
    const REQUESTS: usize = 8;
    for index in 0..REQUESTS {
        let params = object(vec![("ms", Value::Integer(700))]);
        client
            .send(request(&format!("s{index}"), "sleep", params))
            .await;
    }
    let mut replies = 0;
    let mut pings = 0;
    while replies < REQUESTS {
        match client.recv().await {
            Envelope::Request(ping) => {
                pings += 1;
                let pong = Response {
                    message_id: ping.message_id,
                    result: Value::Null,
                };
                client.send(Envelope::Response(pong)).await;
            }
            Envelope::Response(_) => replies += 1,
            Envelope::Message(message) => panic!("unexpected {message:?}"),
        }
    }
    assert!(pings >= 5, "pinged throughout: {pings}");
    let snapshot = server.stop().await;
    assert!(
        !snapshot.closes.contains_key("ping_timeout"),
        "{snapshot:?}"
    );
}

#[tokio::test]
async fn requests_queued_on_a_reset_connection_are_not_worked_on() {
    let mut config = config();
    config.max_in_flight = 2;
    config.peer.inbox_len = 4;
    let server = TestServer::start(config).await;
    let mut client = RawClient::connect(server.addr).await;
    for index in 0..8 {
        let params = object(vec![("ms", Value::Integer(300))]);
        client
            .send(request(&format!("s{index}"), "sleep", params))
            .await;
    }
    server
        .wait_for("the first requests to be taken", |s| {
            s.requests.get("sleep") == Some(&2)
        })
        .await;
    client.stream.set_zero_linger().expect("sets linger");
    drop(client);
    // The reset shows when the first replies cannot be written, by which time the next two
    // may have started; the ones still queued behind them have nobody to answer: not started.
    let snapshot = server
        .wait_for("the reset connection to end", |s| s.connections_active == 0)
        .await;
    let worked_on = snapshot.requests.get("sleep").copied().unwrap_or(0);
    assert!((2..=4).contains(&worked_on), "{snapshot:?}");
    server.stop().await;
}
