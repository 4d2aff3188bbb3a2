//! Periodic pings from a peer, and the close when one goes unanswered.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::JoinSet;

use super::{CallError, CloseReason, Peer, PingConfig};
use crate::codec::Str;
use crate::rpc::envelope::Request;

/// Pings the peer every `interval`; a ping unanswered after `timeout` aborts the connection.
pub(super) async fn ping_loop(peer: Peer, config: PingConfig) {
    let life = Arc::clone(&peer.shared.life);
    let start = tokio::time::Instant::now() + config.interval;
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
                in_flight.spawn(async move { ping_once(&peer, last_round_trip, config.timeout).await });
            }
            Some(joined) = in_flight.join_next() => match joined {
                Ok(Ok(round_trip)) => last_round_trip = round_trip,
                Ok(Err(CallError::Timeout(after))) => {
                    peer.abort(CloseReason::PingTimeout(after));
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
