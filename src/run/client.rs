//! One simulated client: a persistent connection with an RPC peer (which answers the server's
//! pings), running sessions (`session.rs`) as arrivals come (open model) or back to back (closed
//! model), reconnecting when the scenario says so, and counting its connection's loss.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::mailbox::Mailbox;
use super::metrics::{ErrorKind, Metrics};
use super::plan;
use super::queue::ArrivalQueue;
use super::scenario::Scenario;
use super::session::{Client, OpenSession, close_kind};
use super::template::RenderContext;
use crate::codec::Value;
use crate::rpc::{BadEnvelopes, Incoming, Peer, PeerConfig};

/// What every client shares.
pub struct Shared {
    /// The scenario.
    pub scenario: Arc<Scenario>,
    /// Where to connect.
    pub target: SocketAddr,
    /// Where results go.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the run ends (its duration, or Ctrl-C).
    pub stop: CancellationToken,
    /// When the schedule ends (the run's start plus its duration). `stop` may come a moment
    /// after (once the sampler has taken the interval that ends with it), but nothing that
    /// starts a session, a step or a connection does so at or after this instant.
    pub end: Instant,
    /// Arrivals, for an open model; none for a closed one.
    pub arrivals: Option<Arc<ArrivalQueue>>,
    /// Precise wake-ups for the steps after a think time.
    pub clock: Clock,
}

impl Shared {
    /// Whether the run has ended: stopped, or past the end of its schedule.
    pub fn ended(&self) -> bool {
        self.stop.is_cancelled() || Instant::now() >= self.end
    }
}

/// Runs client `index`: connects at `connect_at`, then runs sessions (`in_flight` at once) until
/// the run stops. A lost connection ends the client, or with `reconnect` is opened again after
/// that delay (as is one that failed to open).
pub async fn run(index: usize, connect_at: Instant, shared: Arc<Shared>) {
    if !pause_until(connect_at, &shared).await {
        return;
    }
    let render = RenderContext::new(index as u64);
    let mut attempt = 0u64;
    loop {
        if attempt > 0 {
            shared.metrics.reconnected();
        }
        attempt += 1;
        let lost = match connect(&shared, index).await {
            Some((peer, inbox)) => {
                let outcome = run_connection(peer, inbox, &render, &shared).await;
                shared.metrics.connection_ended();
                match outcome {
                    Ok(()) => return,
                    Err(kind) => {
                        shared.metrics.disconnected(kind);
                        true
                    }
                }
            }
            None => true,
        };
        let Some(delay) = shared.scenario.reconnect.filter(|_| lost) else {
            return;
        };
        if !pause_until(Instant::now() + delay, &shared).await {
            return;
        }
    }
}

/// Sleeps until `until`; false when the run ended first.
async fn pause_until(until: Instant, shared: &Shared) -> bool {
    tokio::select! {
        () = tokio::time::sleep_until(until) => !shared.ended(),
        () = shared.stop.cancelled() => false,
    }
}

/// Runs the scenario's sessions on one connection, `in_flight` at once, until the run stops
/// (`Ok`) or the connection is lost (the first session to see it says how). The sessions are
/// futures of this one task rather than tasks of their own: one wake-up starts as many due
/// arrivals as there are free lanes, and their requests leave in one write.
async fn run_connection(
    peer: Peer,
    inbox: mpsc::Receiver<Incoming>,
    render: &RenderContext,
    shared: &Arc<Shared>,
) -> Result<(), ErrorKind> {
    let mailbox = Arc::new(Mailbox::default());
    let reading = tokio::spawn(read_inbox(inbox, peer.clone(), Arc::clone(&mailbox)));
    // Stops the other sessions when one finds the connection lost; their requests in progress
    // fail at once (and are recorded) because the peer is closed.
    let lost = shared.stop.child_token();
    let mut free: Vec<Client> = (0..shared.scenario.in_flight)
        .map(|_| Client {
            peer: peer.clone(),
            mailbox: Arc::clone(&mailbox),
            shared: Arc::clone(shared),
            stop: lost.clone(),
            render: render.lane(),
        })
        .collect();
    let mut running = FuturesUnordered::new();
    let mut starts = Vec::with_capacity(free.len());
    let stopped = shared.stop.cancelled();
    tokio::pin!(stopped);
    // A server that closes an idle connection is seen at once, not by the next request to fail
    // on it: the loss is counted and `reconnect` acts while the client waits for work.
    let input_ended = peer.input_ended();
    tokio::pin!(input_ended);
    let mut outcome = Ok(());
    // Until no more sessions will come; the client then waits for the run's stop, still
    // connected (the last second counts it) and watching for the connection's loss.
    let mut more = true;
    loop {
        if let Some(arrivals) = &shared.arrivals {
            arrivals.try_release();
        }
        tokio::select! {
            biased;
            Some((lane, ended)) = running.next() => {
                if let Err(kind) = ended {
                    outcome = loss(shared, kind);
                    break;
                }
                free.push(lane);
                // A session that waits for nothing (zero think times) ends as it starts; in a
                // closed model the next starts at once, and without this the task would never
                // let the runtime run its timers and signals, the run's end and Ctrl-C included.
                tokio::task::coop::consume_budget().await;
            }
            () = &mut stopped => break,
            reason = &mut input_ended => {
                outcome = loss(shared, close_kind(&reason));
                break;
            }
            coming = next_starts(shared, free.len(), &mut starts), if more && !free.is_empty() => {
                more = coming;
                for intended in starts.drain(..) {
                    let (Some(mut lane), Some(session)) =
                        (free.pop(), plan::pick(&shared.scenario.sessions))
                    else {
                        break;
                    };
                    shared.metrics.session_started();
                    // Made now, not on the future's first poll: a session the run stops waiting
                    // for before it ever ran is cut short all the same.
                    let mut open = OpenSession::new(&shared.metrics, &session.steps);
                    running.push(async move {
                        let ended = lane.run_session(session, intended, &mut open).await;
                        open.ended();
                        (lane, ended)
                    });
                }
            }
        }
    }
    if outcome.is_err() {
        lost.cancel();
        peer.close("the connection was lost");
    }
    // Sessions under way finish their step in progress (bounded by its timeout), then stop.
    while let Some((_, ended)) = running.next().await {
        if let (Err(kind), Ok(())) = (ended, &outcome) {
            outcome = loss(shared, kind);
            if outcome.is_err() {
                lost.cancel();
                peer.close("the connection was lost");
            }
        }
    }
    peer.close("the run ended");
    reading.abort();
    shared.metrics.objects_dropped(peer.envelopes_dropped());
    outcome
}

/// The loss of the connection (of `kind`), noticed now, as the run counts it: lost during the
/// run; once the run has ended (in its wait for the steps under way) it is not one of the run's
/// losses: the step that met it is an error of its command, and the run's end, not the loss,
/// stopped its session (cut short).
fn loss(shared: &Shared, kind: ErrorKind) -> Result<(), ErrorKind> {
    if shared.ended() { Ok(()) } else { Err(kind) }
}

/// Fills `starts` with the intended start times of up to `free` sessions: due arrivals (open
/// model; waits for the first, then takes those already queued behind it, so one wake-up serves
/// several) or `free` times now (closed model). False when no more will come: no session starts
/// at or after the schedule's end (an arrival taken then stays unstarted).
async fn next_starts(shared: &Shared, free: usize, starts: &mut Vec<Instant>) -> bool {
    let Some(arrivals) = &shared.arrivals else {
        if shared.ended() {
            return false;
        }
        starts.extend(std::iter::repeat_n(Instant::now(), free));
        return true;
    };
    let Some(first) = arrivals.recv().await else {
        return false;
    };
    if shared.ended() {
        return false;
    }
    starts.push(first);
    arrivals.take(free - 1, starts);
    true
}

/// Keeps the peer's inbox drained: messages go to the mailbox, and the server's own requests
/// (other than pings, which the peer answers) get a null result.
async fn read_inbox(mut inbox: mpsc::Receiver<Incoming>, peer: Peer, mailbox: Arc<Mailbox>) {
    while let Some(incoming) = inbox.recv().await {
        match incoming {
            Incoming::Message(message) => mailbox.put(message.command),
            Incoming::Request(request) => {
                let _ = peer.respond(request.message_id, Value::Null).await;
            }
        }
    }
}

/// Opens a socket to `target`, from `source` (any port) when given.
pub async fn open_socket(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(target).await;
    };
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(target).await
}

/// The kind a failed connect is counted as: only the server's refusal is `connect_refused`; a
/// machine out of local ports or files must not look like a server turning clients away.
fn connect_error_kind(error: &io::Error) -> ErrorKind {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
        io::ErrorKind::ConnectionReset => ErrorKind::Reset,
        io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
        _ => ErrorKind::ConnectFailed,
    }
}

async fn connect(shared: &Shared, index: usize) -> Option<(Peer, mpsc::Receiver<Incoming>)> {
    let started = Instant::now();
    let sources = &shared.scenario.source_addresses;
    let source = (!sources.is_empty()).then(|| sources[index % sources.len()]);
    let attempt =
        tokio::time::timeout(shared.scenario.timeout, open_socket(shared.target, source)).await;
    let stream = match attempt {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            shared
                .metrics
                .connect_failed(connect_error_kind(&error), &error);
            return None;
        }
        Err(_) => {
            // Worded only if it is the first: `connect_failed` keeps one message.
            let waited = format_args!("no connection within {:?}", shared.scenario.timeout);
            shared
                .metrics
                .connect_failed(ErrorKind::ConnectTimeout, &waited);
            return None;
        }
    };
    shared.metrics.connected(started.elapsed());
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    // As the ActionScript client: pings answered "pong", objects that are not envelopes dropped.
    let config = PeerConfig {
        ping_reply: Value::string("pong"),
        bad_envelopes: BadEnvelopes::Drop,
        ..PeerConfig::default()
    };
    Some(Peer::start(reader, writer, bytes::BytesMut::new(), config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_a_refusal_by_the_server_counts_as_connect_refused() {
        let kind = |error: io::ErrorKind| connect_error_kind(&io::Error::from(error));
        assert_eq!(
            kind(io::ErrorKind::ConnectionRefused),
            ErrorKind::ConnectRefused
        );
        assert_eq!(kind(io::ErrorKind::ConnectionReset), ErrorKind::Reset);
        assert_eq!(kind(io::ErrorKind::TimedOut), ErrorKind::ConnectTimeout);
        // Out of local ports (EADDRNOTAVAIL), no route, out of files (EMFILE): this machine's.
        assert_eq!(
            kind(io::ErrorKind::AddrNotAvailable),
            ErrorKind::ConnectFailed
        );
        assert_eq!(
            kind(io::ErrorKind::HostUnreachable),
            ErrorKind::ConnectFailed
        );
        #[cfg(target_os = "linux")]
        assert_eq!(
            connect_error_kind(&io::Error::from_raw_os_error(24)),
            ErrorKind::ConnectFailed
        );
    }

    /// The schedule's end, not the run's stop that follows it, is when sessions stop starting:
    /// a closed model starts none at or after it.
    #[tokio::test]
    async fn no_session_starts_at_or_after_the_schedule_s_end() {
        let scenario = Scenario::parse(
            "name = \"s\"\nconnections = 1\nduration = \"1s\"\n[load]\nmodel = \"closed\"\n\
             [[session]]\nname = \"s\"\nsteps = [{ request = \"echo\" }]\n",
        )
        .expect("valid");
        let stop = CancellationToken::new();
        let shared = |end| Shared {
            scenario: Arc::new(scenario.clone()),
            target: SocketAddr::from(([127, 0, 0, 1], 9)),
            metrics: Arc::new(Metrics::new().expect("bounds")),
            stop: stop.clone(),
            end,
            arrivals: None,
            clock: Clock::start(None, stop.clone()).expect("a clock"),
        };
        let mut starts = Vec::new();
        let running = shared(Instant::now() + Duration::from_secs(60));
        assert!(next_starts(&running, 3, &mut starts).await);
        assert_eq!(starts.len(), 3);
        starts.clear();
        let over = shared(Instant::now());
        assert!(!over.stop.is_cancelled() && over.ended());
        assert!(!next_starts(&over, 3, &mut starts).await);
        assert!(starts.is_empty());
    }
}
