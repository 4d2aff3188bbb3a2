//! What an accepted connection is, before anything is relayed: on the WebSocket listener, a
//! handshake; on the main listener with `--ws-on-tcp`, a WebSocket upgrade or a raw client, told
//! apart by the first bytes (`GET `); otherwise a raw client. A refused handshake is counted
//! under its kind and never reaches the upstream.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::connection::{self, Accepted};
use super::log::{Stamp, What};
use super::{Shared, Transport};
use crate::listener::Which;
use crate::sniff;
use crate::ws::{self, Prefixed, UpgradeSniff};

/// How long a client of the main port may stay silent (with `--ws-on-tcp`) before it is taken
/// for a raw client: a browser sends its upgrade request as soon as it connects.
pub const UPGRADE_WAIT: Duration = Duration::from_secs(1);

/// Bytes read per attempt while looking for `GET `.
const SNIFF_STEP: usize = 128;

/// Takes an accepted connection to the relay, through a WebSocket handshake when it is one.
pub(super) async fn accepted(
    shared: Arc<Shared>,
    conn: u64,
    mut stream: TcpStream,
    addr: SocketAddr,
    listener: Which,
    shutdown: CancellationToken,
) {
    let at = Stamp::now();
    let _ = stream.set_nodelay(true);
    let mut first = BytesMut::new();
    let upgrade = match listener {
        Which::WebSocket => true,
        Which::Main if shared.config.ws_on_tcp => {
            let sniffing = is_upgrade(&mut stream, &mut first);
            let who = Who { conn, addr, at };
            let refused = |kind, reason| refused(&shared, who, Transport::Tcp, kind, reason);
            match tokio::select! {
                sniffed = sniffing => sniffed,
                () = shutdown.cancelled() => {
                    return refused("shutdown", "proxy shutting down".into());
                }
            } {
                Ok(upgrade) => upgrade,
                Err(error) => return refused("client_error", format!("client error: {error}")),
            }
        }
        Which::Main => false,
    };
    let accepted = Accepted {
        client: stream,
        addr,
        first,
        at,
    };
    if upgrade {
        handshake(shared, conn, accepted, shutdown).await;
    } else {
        connection::handle(shared, conn, accepted, shutdown).await;
    }
}

/// Reads the first bytes into `first` until they say whether they start a WebSocket upgrade; a
/// client silent for `UPGRADE_WAIT`, or one that ends first, is a raw client.
async fn is_upgrade(stream: &mut TcpStream, first: &mut BytesMut) -> io::Result<bool> {
    let decide = |received: &[u8]| match ws::classify(received) {
        UpgradeSniff::NeedMore => None,
        UpgradeSniff::Upgrade => Some(true),
        UpgradeSniff::Other => Some(false),
    };
    let sniffing = sniff::read_until_decided(stream, first, SNIFF_STEP, decide, false);
    tokio::time::timeout(UPGRADE_WAIT, sniffing)
        .await
        .unwrap_or(Ok(false))
}

/// Completes the WebSocket handshake (replaying the bytes already read), then relays.
async fn handshake(
    shared: Arc<Shared>,
    conn: u64,
    accepted: Accepted<TcpStream>,
    shutdown: CancellationToken,
) {
    let Accepted {
        client,
        addr,
        first,
        at,
    } = accepted;
    let who = Who { conn, addr, at };
    let refused = |kind, reason| refused(&shared, who, Transport::WebSocket, kind, reason);
    let handshake = ws::accept(Prefixed::new(first, client), &shared.config.websocket);
    let outcome = tokio::select! {
        outcome = handshake => outcome,
        () = shutdown.cancelled() => return refused("shutdown", "proxy shutting down".into()),
    };
    match outcome {
        Ok(client) => {
            shared.stats.websocket_opened();
            let accepted = Accepted {
                client,
                addr,
                first: BytesMut::new(),
                at,
            };
            connection::handle(shared, conn, accepted, shutdown).await;
        }
        Err(error) => {
            tracing::info!(conn, client = %addr, "WebSocket connection refused: {error}");
            refused(
                error.kind(),
                format!("WebSocket connection refused: {error}"),
            );
        }
    }
}

/// Which connection, for its log events.
#[derive(Clone, Copy)]
struct Who {
    conn: u64,
    addr: SocketAddr,
    /// When it was accepted.
    at: Stamp,
}

/// Counts and logs a connection that ended before it was relayed, under `kind`: an `open` (the
/// upstream never dialed, so named as given) and a `close` giving `reason`, as every connection
/// has.
fn refused(shared: &Shared, who: Who, transport: Transport, kind: &'static str, reason: String) {
    shared.stats.opened();
    shared.stats.closed(kind, 0, 0);
    let open = What::Open {
        client: who.addr,
        upstream: shared.config.upstream.clone(),
        transport,
    };
    connection::send_at(shared, who.conn, who.at, open);
    let close = What::Close {
        reason,
        c2s: 0,
        s2c: 0,
        transport,
    };
    connection::send_at(shared, who.conn, Stamp::now(), close);
}
