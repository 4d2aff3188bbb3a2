//! Periodic pings from a peer, and the close when one goes unanswered.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::JoinSet;

use super::{CallError, CloseReason, Peer, PingConfig};
use crate::codec::Str;
use crate::rpc::envelope::Request;

/// Pings the peer every `interval`, the first time after `first_in`; a ping unanswered after
/// `timeout` closes the connection (what is queued still goes, and a WebSocket gets a Close).
pub(super) async fn ping_loop(peer: Peer, config: PingConfig, first_in: Duration) {
    let life = Arc::clone(&peer.shared.life);
    let start = tokio::time::Instant::now() + first_in;
    let mut ticker = tokio::time::interval_at(start, config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = JoinSet::new();
    let mut last_round_trip = 0.0;
    loop {
        tokio::select! {
            () = life.abort.cancelled() => break,
            () = life.finish.cancelled() => break,
            () = life.input_done.cancelled() => break,
            _ = ticker.tick() => {
                let peer = peer.clone();
                let stalls = peer.shared.reader_stalls();
                in_flight.spawn(async move {
                    (ping_once(&peer, last_round_trip, config.timeout).await, stalls)
                });
            }
            Some(joined) = in_flight.join_next() => match joined {
                Ok((Ok(round_trip), _)) => last_round_trip = round_trip,
                // While our own back-pressure kept us from reading, the answer may be waiting
                // unread in the socket: that is not the peer's silence.
                Ok((Err(CallError::Timeout(_)), stalls))
                    if peer.shared.reader_stalled_since(stalls) => {}
                Ok((Err(CallError::Timeout(after)), _)) => {
                    peer.shared.close_for(CloseReason::PingTimeout(after));
                    break;
                }
                _ => {}
            },
        }
    }
}

/// Sends one ping and returns its round trip in seconds.
async fn ping_once(peer: &Peer, last_round_trip: f64, timeout: Duration) -> Result<f64, CallError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64());
    let sent = Instant::now();
    let ping = Request::ping(Str::default(), now, last_round_trip);
    peer.call(ping.command, ping.params, Some(timeout)).await?;
    Ok(sent.elapsed().as_secs_f64())
}
