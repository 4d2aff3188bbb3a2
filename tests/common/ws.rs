//! A WebSocket test client speaking AMF Socket frames inside binary messages, split however a
//! test likes, every wait bounded by `WAIT`.

use std::net::SocketAddr;

use amf_bench::codec::{DecodeOptions, Value};
use amf_bench::frame::split_frame;
use amf_bench::rpc::wire::{decode_envelope, encode_envelope};
use amf_bench::rpc::{Encoding, Envelope, Message as RpcMessage};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use super::{WAIT, request, take_reply};

/// A WebSocket client on a loopback server.
pub struct WsClient {
    pub socket: WebSocketStream<TcpStream>,
    buffer: BytesMut,
}

/// An AMF3 frame holding `envelope`.
pub fn frame(envelope: Envelope) -> Bytes {
    encode_envelope(envelope, Encoding::Amf3, 1 << 20).expect("encodes")
}

impl WsClient {
    /// Opens a WebSocket to `addr`, sending `origin` as the Origin header if given; the
    /// handshake's error (e.g. an HTTP 403) is returned rather than failing the test.
    pub async fn try_connect(
        addr: SocketAddr,
        origin: Option<&str>,
    ) -> Result<WsClient, tungstenite::Error> {
        let mut handshake = format!("ws://{addr}/")
            .into_client_request()
            .expect("a valid URL");
        if let Some(origin) = origin {
            let value = HeaderValue::from_str(origin).expect("a valid header");
            handshake.headers_mut().insert("Origin", value);
        }
        let connecting = async {
            let stream = TcpStream::connect(addr).await.expect("connects");
            tokio_tungstenite::client_async(handshake, stream).await
        };
        let (socket, _) = tokio::time::timeout(WAIT, connecting)
            .await
            .expect("the handshake finishes in time")?;
        Ok(WsClient {
            socket,
            buffer: BytesMut::new(),
        })
    }

    /// Opens a WebSocket without an Origin header, as a non-browser client would.
    pub async fn connect(addr: SocketAddr) -> WsClient {
        WsClient::try_connect(addr, None).await.expect("upgrades")
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        let message = Message::Binary(Bytes::copy_from_slice(bytes));
        self.socket.send(message).await.expect("sends");
    }

    pub async fn send(&mut self, envelope: Envelope) {
        self.send_binary(&frame(envelope)).await;
    }

    /// The next WebSocket message, or none when the connection ended; fails after `WAIT`.
    pub async fn next_message(&mut self) -> Option<Result<Message, tungstenite::Error>> {
        tokio::time::timeout(WAIT, self.socket.next())
            .await
            .expect("a message or the end arrives in time")
    }

    /// The next envelope, however the server split it over binary messages.
    pub async fn recv(&mut self) -> Envelope {
        loop {
            if let Some(payload) = split_frame(&mut self.buffer, 1 << 24).expect("valid frame") {
                return decode_envelope(payload, Encoding::Amf3, DecodeOptions::shared_default())
                    .expect("a valid envelope");
            }
            match self.next_message().await {
                Some(Ok(Message::Binary(bytes))) => self.buffer.extend_from_slice(&bytes),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a binary message, got {other:?}"),
            }
        }
    }

    /// Sends a request and returns the result of its reply and the messages before it.
    pub async fn call(
        &mut self,
        id: &str,
        command: &str,
        params: Value,
    ) -> (Value, Vec<RpcMessage>) {
        self.send(request(id, command, params)).await;
        self.reply_to(id).await
    }

    /// Reads until the reply to `id`; returns its result and the messages before it.
    pub async fn reply_to(&mut self, id: &str) -> (Value, Vec<RpcMessage>) {
        let mut messages = Vec::new();
        loop {
            if let Some(result) = take_reply(self.recv().await, id, &mut messages) {
                return (result, messages);
            }
        }
    }

    /// Reads until the server's Close; returns its code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.next_message().await {
                Some(Ok(Message::Close(Some(close)))) => {
                    return (u16::from(close.code), close.reason.to_string());
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a Close, got {other:?}"),
            }
        }
    }
}
