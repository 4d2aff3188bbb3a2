//! The RPC peer as a client against `serve`: replies routed to their callers by message id,
//! per-request timeouts, pings answered, and pending requests failed when the connection ends.

mod common;

use std::time::Duration;

use amf_bench::codec::{Str, Value};
use amf_bench::rpc::wire::encode_envelope;
use amf_bench::rpc::{
    BadEnvelopes, CallError, CloseReason, Incoming, Peer, PeerConfig, PingConfig,
};
use amf_bench::rpc::{Encoding, Envelope, Message};
use common::{TestServer, WAIT, config, object};
use tokio::net::TcpStream;

async fn connect(
    server: &TestServer,
    config: PeerConfig,
) -> (Peer, tokio::sync::mpsc::Receiver<Incoming>) {
    let stream = TcpStream::connect(server.addr).await.expect("connects");
    let (reader, writer) = stream.into_split();
    Peer::start(reader, writer, bytes::BytesMut::new(), config)
}

fn command(name: &'static str) -> Str {
    Str::new_static(name)
}

#[tokio::test]
async fn concurrent_calls_get_their_own_replies() {
    let server = TestServer::start(config()).await;
    let (peer, _inbox) = connect(&server, PeerConfig::default()).await;
    let mut calls = tokio::task::JoinSet::new();
    for index in 0..200 {
        let peer = peer.clone();
        calls.spawn(async move {
            // Every fifth call sleeps, so replies come back out of order.
            let (name, params) = if index % 5 == 0 {
                (
                    "sleep",
                    object(vec![
                        ("ms", Value::Integer(20)),
                        ("i", Value::Integer(index)),
                    ]),
                )
            } else {
                ("echo", object(vec![("i", Value::Integer(index))]))
            };
            let result = peer
                .call(command(name), params.clone(), Some(WAIT))
                .await
                .expect("replied");
            assert_eq!(result, params);
        });
    }
    while let Some(joined) = calls.join_next().await {
        joined.expect("each call gets its own reply");
    }
    assert_eq!(peer.pending_requests(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_call_times_out_and_leaves_nothing_pending() {
    let server = TestServer::start(config()).await;
    let (peer, _inbox) = connect(&server, PeerConfig::default()).await;
    let slow = object(vec![("ms", Value::Integer(500))]);
    let outcome = peer
        .call(command("sleep"), slow, Some(Duration::from_millis(100)))
        .await;
    assert!(
        matches!(outcome, Err(CallError::Timeout(limit)) if limit == Duration::from_millis(100)),
        "{outcome:?}"
    );
    assert_eq!(
        peer.pending_requests(),
        0,
        "the timed-out waiter is removed"
    );
    // The connection still works, and the late reply is dropped quietly.
    let result = peer
        .call(command("echo"), object(vec![]), Some(WAIT))
        .await
        .expect("replied");
    assert_eq!(result, object(vec![]));
    server.stop().await;
}

#[tokio::test]
async fn a_disconnect_fails_every_pending_request_with_the_reason() {
    let server = TestServer::start(config()).await;
    let (peer, _inbox) = connect(&server, PeerConfig::default()).await;
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let peer = peer.clone();
        waiting.push(tokio::spawn(async move {
            peer.call(
                command("sleep"),
                object(vec![("ms", Value::Integer(10_000))]),
                None,
            )
            .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Ask the server to close the connection.
    let closing = peer.call(command("close"), object(vec![]), None).await;
    assert!(
        matches!(closing, Err(CallError::Closed(CloseReason::PeerClosed))),
        "{closing:?}"
    );
    for waiter in waiting {
        let outcome = tokio::time::timeout(WAIT, waiter)
            .await
            .expect("fails in time")
            .expect("joins");
        assert!(
            matches!(outcome, Err(CallError::Closed(CloseReason::PeerClosed))),
            "{outcome:?}"
        );
    }
    // New calls fail at once with the same reason.
    let late = peer.call(command("echo"), object(vec![]), None).await;
    assert!(
        matches!(late, Err(CallError::Closed(CloseReason::PeerClosed))),
        "{late:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_peer_answers_server_pings_and_receives_pushes() {
    let mut server_config = config();
    server_config.peer.ping = Some(PingConfig {
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
    });
    let server = TestServer::start(server_config).await;
    let client_config = PeerConfig {
        ping_reply: Value::string("pong"),
        ..PeerConfig::default()
    };
    let (peer, mut inbox) = connect(&server, client_config).await;
    let params = object(vec![
        ("count", Value::Integer(3)),
        ("command", Value::string("news")),
    ]);
    let result = peer
        .call(command("push"), params, Some(WAIT))
        .await
        .expect("replied");
    assert_eq!(result, object(vec![("pushed", Value::Integer(3))]));
    for expected in 0..3 {
        let incoming = tokio::time::timeout(WAIT, inbox.recv())
            .await
            .expect("in time");
        let Some(Incoming::Message(message)) = incoming else {
            panic!("expected a message")
        };
        assert_eq!(&*message.command, "news");
        let index = message
            .params
            .as_object()
            .and_then(|p| p.get("index"))
            .and_then(Value::as_f64);
        assert_eq!(index, Some(f64::from(expected)));
    }
    // Stay connected through several server pings.
    let deadline = tokio::time::Instant::now() + WAIT;
    while peer.pings_answered() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "pings arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let result = peer.call(command("echo"), object(vec![]), Some(WAIT)).await;
    assert!(result.is_ok(), "{result:?}");
    peer.close("test done");
    assert!(matches!(
        peer.closed().await,
        CloseReason::Closed("test done")
    ));
    server.stop().await;
}

/// An object that is not an envelope (an unknown `type`) is dropped by a peer told to drop
/// them, as the ActionScript client does, and what follows still arrives; by default it closes
/// the connection, as the Ruby server does.
#[tokio::test]
async fn an_unknown_envelope_type_is_dropped_or_closes_as_configured() {
    for bad_envelopes in [BadEnvelopes::Drop, BadEnvelopes::Close] {
        let (listener, addr) = common::loopback_listener().await;
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut socket, _) = listener.accept().await.expect("accepts");
            let mut bytes = bytes::BytesMut::new();
            let weird = object(vec![("type", Value::string("weird"))]);
            amf_bench::frame::encode_frame(&weird, 1 << 20, &mut bytes).expect("encodes");
            let news = Envelope::Message(Message {
                message_id: Str::from("m1"),
                command: command("news"),
                params: object(vec![]),
            });
            bytes.extend(encode_envelope(news, Encoding::Amf3, 1 << 20).expect("encodes"));
            socket.write_all(&bytes).await.expect("writes");
            // Held open until the client has seen what it will see.
            let mut rest = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut socket, &mut rest).await;
        });
        let stream = TcpStream::connect(addr).await.expect("connects");
        let (reader, writer) = stream.into_split();
        let config = PeerConfig {
            bad_envelopes,
            ..PeerConfig::default()
        };
        let (peer, mut inbox) = Peer::start(reader, writer, bytes::BytesMut::new(), config);
        let incoming = tokio::time::timeout(WAIT, inbox.recv())
            .await
            .expect("in time");
        match bad_envelopes {
            BadEnvelopes::Drop => {
                let Some(Incoming::Message(message)) = incoming else {
                    panic!("expected the message after the dropped object, got {incoming:?}")
                };
                assert_eq!(&*message.command, "news");
                assert_eq!(peer.envelopes_dropped(), 1);
                peer.close("test done");
            }
            BadEnvelopes::Close => {
                assert!(incoming.is_none(), "{incoming:?}");
                // The owner closes once the inbox ends; the reason stays the peer's fault.
                peer.close("the inbox ended");
                let reason = tokio::time::timeout(WAIT, peer.closed())
                    .await
                    .expect("closes");
                assert_eq!(reason.kind(), "bad_envelope", "{reason}");
            }
        }
        tokio::time::timeout(WAIT, server)
            .await
            .expect("the server ends")
            .expect("the server task");
    }
}
