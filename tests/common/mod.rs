//! Helpers shared by the network tests: a server on 127.0.0.1 port 0, and a raw AMF Socket client
//! that reads and writes frames byte for byte, every wait bounded.
#![allow(dead_code)]

pub mod bounded;
pub mod process;
pub mod proxy;
pub mod relay;
pub mod run;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amf_bench::codec::{DecodeOptions, Str, Value};
use amf_bench::frame::split_frame;
use amf_bench::rpc::wire::{decode_envelope, encode_envelope};
use amf_bench::rpc::{Encoding, Envelope, Message, Request, Response};
use amf_bench::serve::{PolicySource, ServeConfig, Server, Snapshot, Stats};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A listener on 127.0.0.1 with a port the system picked, and its address.
pub async fn loopback_listener() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds 127.0.0.1:0");
    let addr = listener.local_addr().expect("a bound address");
    (listener, addr)
}

/// A server configuration for tests: loopback port 0, no pings unless a test turns them on.
pub fn config() -> ServeConfig {
    let mut config = ServeConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        policy: PolicySource::default(),
        drain_timeout: Duration::from_secs(5),
        ..ServeConfig::default()
    };
    config.peer.ping = None;
    config
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The WebSocket listener's address, when the configuration asked for one.
    pub ws_addr: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    pub stats: Arc<Stats>,
    handle: JoinHandle<Snapshot>,
}

impl TestServer {
    pub async fn start(config: ServeConfig) -> TestServer {
        let server = Server::bind(config).await.expect("binds");
        let addr = server.local_addr().expect("bound");
        let ws_addr = server.ws_local_addr().expect("bound");
        let stats = server.stats();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(server.run(shutdown.clone()));
        TestServer {
            addr,
            ws_addr,
            shutdown,
            stats,
            handle,
        }
    }

    /// Shuts down and returns the final counters.
    pub async fn stop(self) -> Snapshot {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("the server stops in time")
            .expect("the server task does not panic")
    }

    /// Waits until `check` holds for the live counters.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let snapshot = self.stats.snapshot();
            if check(&snapshot) {
                return snapshot;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {snapshot:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// An object with these members.
pub fn object(members: Vec<(&'static str, Value)>) -> Value {
    Value::object(
        members
            .into_iter()
            .map(|(name, value)| (Str::new_static(name), value))
            .collect(),
    )
}

/// Parameters {text: value}.
pub fn text_param(value: &str) -> Value {
    object(vec![("text", Value::string(value))])
}

/// A request envelope.
pub fn request(id: &str, command: &str, params: Value) -> Envelope {
    Envelope::Request(Request {
        message_id: Str::from(id),
        command: Str::from(command),
        params,
    })
}

/// A client that speaks frames directly.
pub struct RawClient {
    pub stream: TcpStream,
    buffer: BytesMut,
    pub encoding: Encoding,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connects in time")
            .expect("connects");
        RawClient {
            stream,
            buffer: BytesMut::new(),
            encoding: Encoding::Amf3,
        }
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("writes");
    }

    pub async fn send(&mut self, envelope: Envelope) {
        let frame = encode_envelope(envelope, self.encoding, 1 << 20).expect("encodes");
        self.send_bytes(&frame).await;
    }

    /// The next envelope; fails the test on end of input or after `WAIT`.
    pub async fn recv(&mut self) -> Envelope {
        tokio::time::timeout(WAIT, self.next())
            .await
            .expect("an envelope arrives in time")
            .expect("the connection stays open")
    }

    async fn next(&mut self) -> Option<Envelope> {
        loop {
            if let Some(payload) = split_frame(&mut self.buffer, 1 << 24).expect("valid frame") {
                let envelope =
                    decode_envelope(payload, self.encoding, DecodeOptions::shared_default())
                        .expect("a valid envelope");
                return Some(envelope);
            }
            if self.stream.read_buf(&mut self.buffer).await.ok()? == 0 {
                return None;
            }
        }
    }

    /// Sends a request and returns the result of its reply (skipping messages, which it returns
    /// too, in order).
    pub async fn call(&mut self, id: &str, command: &str, params: Value) -> (Value, Vec<Message>) {
        self.send(request(id, command, params)).await;
        let mut messages = Vec::new();
        loop {
            if let Some(result) = take_reply(self.recv().await, id, &mut messages) {
                return (result, messages);
            }
        }
    }

    /// Reads until the server closes the connection; returns what arrived.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut rest = self.buffer.split().to_vec();
        let read = tokio::time::timeout(WAIT, self.stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the server closes the connection in time");
        rest
    }
}

/// While waiting for the reply to `id`: its result, or none after keeping a message for later.
/// Fails the test on a request from the server or a reply to another id.
pub fn take_reply(envelope: Envelope, id: &str, messages: &mut Vec<Message>) -> Option<Value> {
    match envelope {
        Envelope::Response(Response { message_id, result }) => {
            assert_eq!(&*message_id, id, "the reply carries the request's id");
            Some(result)
        }
        Envelope::Message(message) => {
            messages.push(message);
            None
        }
        Envelope::Request(other) => panic!("unexpected request {other:?}"),
    }
}

/// The `error.code` of a failure result.
pub fn error_code(result: &Value) -> Option<&str> {
    result
        .as_object()?
        .get("error")?
        .as_object()?
        .get("code")?
        .as_str()
}
