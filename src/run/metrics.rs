//! Measurements of a run: per command, HdrHistograms of `latency` (reply minus intended send: the
//! headline), `service` (reply minus actual send) and `lag` (actual minus intended send), in
//! microseconds from 1 us to 60 s at 3 significant digits; errors by kind; connect times.
//!
//! Histograms are large (a hundred KiB each), so there is one set per command for the whole run,
//! shared by every client behind a lock, never one per client. Beside the run's totals, each
//! command has a latency histogram for the current interval, which `rotate` hands over and resets
//! (once a second) for the interval log, the report's time series and the progress line.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The highest value recorded, in microseconds; longer ones are clamped to it.
const MAX_MICROS: u64 = 60_000_000;

/// Kinds of error, as counted and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The connection was refused.
    ConnectRefused,
    /// Connecting failed here, not at the server: no local port or file left, no route, or
    /// another error of this machine's.
    ConnectFailed,
    /// Connecting took longer than the scenario's timeout.
    ConnectTimeout,
    /// The connection was reset.
    Reset,
    /// No reply, or no awaited message, within the timeout.
    Timeout,
    /// The server sent something that is not AMF Socket RPC.
    ProtocolError,
    /// The server closed the connection.
    ServerClosed,
    /// The reply was an error result (`{error: {...}}`).
    ErrorResult,
}

impl ErrorKind {
    /// The kind's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::ConnectFailed => "connect_failed",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::ProtocolError => "protocol_error",
            ErrorKind::ServerClosed => "server_closed",
            ErrorKind::ErrorResult => "error_result",
        }
    }
}

fn micros(duration: Duration) -> u64 {
    (duration.as_micros() as u64).clamp(1, MAX_MICROS)
}

/// One command's measurements.
#[derive(Debug, Clone)]
pub struct CommandMetrics {
    /// Reply minus intended send.
    pub latency: Histogram<u64>,
    /// Reply minus actual send.
    pub service: Histogram<u64>,
    /// Actual minus intended send.
    pub lag: Histogram<u64>,
    /// Requests or waits that ended (successfully or not).
    pub count: u64,
    /// Errors by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Latency since the last `rotate`.
    interval: Histogram<u64>,
    /// Errors since the last `rotate`.
    interval_errors: u64,
}

impl CommandMetrics {
    fn new(empty: &Histogram<u64>) -> CommandMetrics {
        CommandMetrics {
            latency: empty.clone(),
            service: empty.clone(),
            lag: empty.clone(),
            count: 0,
            errors: BTreeMap::new(),
            interval: empty.clone(),
            interval_errors: 0,
        }
    }
}

/// One command's share of an interval.
#[derive(Debug, Clone)]
pub struct IntervalCommand {
    /// The command (or `wait_message:COMMAND`).
    pub command: String,
    /// Latencies of the requests that ended in the interval.
    pub latency: Histogram<u64>,
    /// How many of them failed.
    pub errors: u64,
}

/// What `rotate` hands over: the interval's latencies by command, and the gauges at its end.
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    /// Commands with at least one request ending in the interval.
    pub commands: Vec<IntervalCommand>,
    /// Connections open now.
    pub connected: u64,
    /// Sessions started since the run began.
    pub sessions_started: u64,
    /// Errors (of requests, connections and waits) since the run began.
    pub errors: u64,
}

/// One finished request (or awaited message), to be recorded.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Reply (or timeout) minus intended send.
    pub latency: Duration,
    /// Reply (or timeout) minus actual send; none when nothing was sent (a request over the
    /// frame cap), so that the service times describe only what the target saw.
    pub service: Option<Duration>,
    /// Actual minus intended send; none when nothing was sent.
    pub lag: Option<Duration>,
    /// Why it failed, if it did.
    pub error: Option<ErrorKind>,
}

/// Everything measured in a run.
#[derive(Debug)]
pub struct Metrics {
    /// An empty histogram with the run's bounds, cloned for each new one.
    empty: Histogram<u64>,
    inner: Mutex<Recorded>,
}

/// The measurements, read at the end.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// By command.
    pub commands: BTreeMap<String, CommandMetrics>,
    /// Time to connect, per connection that succeeded.
    pub connect: Option<Histogram<u64>>,
    /// Connection attempts that failed, by kind.
    pub connect_errors: BTreeMap<ErrorKind, u64>,
    /// The first failed attempt's error, as the system worded it: the kind alone does not say
    /// which of this machine's limits `connect_failed` met.
    pub first_connect_error: Option<String>,
    /// Connections that ended during the run, by kind.
    pub disconnects: BTreeMap<ErrorKind, u64>,
    /// Sessions started.
    pub sessions_started: u64,
    /// Sessions started whose later steps (think times at their end aside) were skipped, or
    /// whose request, message or wait under way was abandoned, because the run ended.
    pub sessions_cut_short: u64,
    /// Sessions started whose later steps (think times at their end aside) were skipped because
    /// their connection was lost during the run.
    pub sessions_lost: u64,
    /// Arrivals dropped because no client was free and the queue was full.
    pub dropped: u64,
    /// Connections open now.
    pub connected_now: u64,
    /// Connection attempts after a client's first (with `reconnect`), successful or not.
    pub reconnects: u64,
    /// Frames from the server that decoded but were not envelopes (an unknown `type`), dropped
    /// as the ActionScript client drops them.
    pub objects_dropped: u64,
    /// Requests and waits under way when the run stopped waiting for them (Ctrl-C, or the
    /// end of the run plus the longest timeout): in no histogram.
    pub unfinished: u64,
}

impl Metrics {
    /// Empty measurements.
    pub fn new() -> Result<Metrics, hdrhistogram::CreationError> {
        Ok(Metrics {
            empty: Histogram::new_with_bounds(1, MAX_MICROS, 3)?,
            inner: Mutex::default(),
        })
    }

    fn with<R>(&self, work: impl FnOnce(&mut Recorded) -> R) -> R {
        let mut recorded = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        work(&mut recorded)
    }

    /// Records a finished request or wait for `command`.
    pub fn record(&self, command: &str, sample: Sample) {
        self.with(|recorded| {
            // Look up before inserting: the name is copied once per command, not per request.
            if !recorded.commands.contains_key(command) {
                let metrics = CommandMetrics::new(&self.empty);
                recorded.commands.insert(command.to_string(), metrics);
            }
            let Some(metrics) = recorded.commands.get_mut(command) else {
                return;
            };
            metrics.count += 1;
            let latency = micros(sample.latency);
            let _ = metrics.latency.record(latency);
            let _ = metrics.interval.record(latency);
            if let Some(service) = sample.service {
                let _ = metrics.service.record(micros(service));
            }
            if let Some(lag) = sample.lag {
                let _ = metrics.lag.record(micros(lag));
            }
            if let Some(kind) = sample.error {
                *metrics.errors.entry(kind).or_default() += 1;
                metrics.interval_errors += 1;
            }
        });
    }

    /// Records a connection attempt that succeeded in `took`.
    pub fn connected(&self, took: Duration) {
        self.with(|recorded| {
            let histogram = recorded.connect.get_or_insert_with(|| self.empty.clone());
            let _ = histogram.record(micros(took));
            recorded.connected_now += 1;
        });
    }

    /// Records a connection attempt that failed, with the error's own words.
    pub fn connect_failed(&self, kind: ErrorKind, error: &dyn std::fmt::Display) {
        self.with(|recorded| {
            *recorded.connect_errors.entry(kind).or_default() += 1;
            if recorded.first_connect_error.is_none() {
                recorded.first_connect_error = Some(format!("{}: {error}", kind.name()));
            }
        });
    }

    /// Records a connection that ended before the run did.
    pub fn disconnected(&self, kind: ErrorKind) {
        self.with(|recorded| *recorded.disconnects.entry(kind).or_default() += 1);
    }

    /// Records the end of a connection (for whatever reason), for the gauge of open ones.
    pub fn connection_ended(&self) {
        self.with(|recorded| recorded.connected_now = recorded.connected_now.saturating_sub(1));
    }

    /// Records what a connection dropped for not being envelopes.
    pub fn objects_dropped(&self, count: u64) {
        if count > 0 {
            self.with(|recorded| recorded.objects_dropped += count);
        }
    }

    /// Records a connection attempt after the first.
    pub fn reconnected(&self) {
        self.with(|recorded| recorded.reconnects += 1);
    }

    /// Hands over the latencies recorded since the last call, and starts a new interval.
    pub fn rotate(&self) -> Rotation {
        self.with(|recorded| {
            let mut rotation = Rotation {
                commands: Vec::new(),
                connected: recorded.connected_now,
                sessions_started: recorded.sessions_started,
                errors: recorded.connect_errors.values().sum::<u64>()
                    + recorded.disconnects.values().sum::<u64>(),
            };
            for (command, metrics) in &mut recorded.commands {
                rotation.errors += metrics.errors.values().sum::<u64>();
                if metrics.interval.is_empty() {
                    continue;
                }
                rotation.commands.push(IntervalCommand {
                    command: command.clone(),
                    latency: std::mem::replace(&mut metrics.interval, self.empty.clone()),
                    errors: std::mem::take(&mut metrics.interval_errors),
                });
            }
            rotation
        })
    }

    /// Records a request or wait abandoned when the run stopped.
    pub fn unfinished(&self) {
        self.with(|recorded| recorded.unfinished += 1);
    }

    /// Records a session start.
    pub fn session_started(&self) {
        self.with(|recorded| recorded.sessions_started += 1);
    }

    /// Records a session whose later steps were skipped, or whose step under way was abandoned,
    /// because the run ended.
    pub fn session_cut_short(&self) {
        self.with(|recorded| recorded.sessions_cut_short += 1);
    }

    /// Records a session whose later steps were skipped because its connection was lost.
    pub fn session_lost(&self) {
        self.with(|recorded| recorded.sessions_lost += 1);
    }

    /// Records an arrival that found no room in the queue.
    pub fn dropped(&self) {
        self.with(|recorded| recorded.dropped += 1);
    }

    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> Recorded {
        self.with(|recorded| recorded.clone())
    }
}
