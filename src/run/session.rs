//! One session on a client's connection: its steps run in order, each request and wait recorded
//! against the time it was due; a session the run's end or the connection's loss stops counted
//! as cut short or lost, and a request or wait abandoned under way as unfinished.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::Shared;
use super::mailbox::Mailbox;
use super::metrics::{ErrorKind, Metrics, Sample};
use super::scenario::{Session, Step};
use super::template::RenderContext;
use crate::codec::{Str, Value};
use crate::rpc::{CallError, CloseReason, Peer};

/// One of a connection's `in_flight` lanes, running one session at a time.
pub(super) struct Client {
    pub(super) peer: Peer,
    pub(super) mailbox: Arc<Mailbox>,
    pub(super) shared: Arc<Shared>,
    /// The run's stop, or this connection's loss (`shared.stop` says which).
    pub(super) stop: CancellationToken,
    pub(super) render: RenderContext,
}

/// Why a request failed, as a reported kind.
fn error_kind(error: &CallError) -> ErrorKind {
    match error {
        CallError::Timeout(_) => ErrorKind::Timeout,
        CallError::Encode(_) => ErrorKind::ProtocolError,
        CallError::Closed(reason) => close_kind(reason),
    }
}

/// Why a connection ended, as a reported kind.
pub(super) fn close_kind(reason: &CloseReason) -> ErrorKind {
    match reason {
        CloseReason::Io(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
            ErrorKind::Reset
        }
        CloseReason::TornFrame { .. } | CloseReason::BadFrame(_) | CloseReason::BadPayload(_) => {
            ErrorKind::ProtocolError
        }
        CloseReason::PingTimeout(_) => ErrorKind::Timeout,
        _ => ErrorKind::ServerClosed,
    }
}

/// Whether `steps` hold anything but think times: skipping only think times leaves a session
/// with nothing unsent, so it is neither cut short nor lost.
fn sends_anything(steps: &[Step]) -> bool {
    steps.iter().any(|step| !matches!(step, Step::Think(_)))
}

/// Whether a result follows the failure convention `{error: {...}}`.
fn is_error_result(result: &Value) -> bool {
    result
        .as_object()
        .and_then(|object| object.get("error"))
        .is_some_and(|error| error.as_object().is_some())
}

/// A started session until it ends. Dropped before then, because the run stopped waiting for it
/// (Ctrl-C, or past the longest timeout), it counts as cut short if a request, message or wait
/// was left: the one abandoned under way (also `unfinished`) or one after it.
pub(super) struct OpenSession<'a> {
    metrics: &'a Metrics,
    steps: &'a [Step],
    /// The step under way; none once the session has ended.
    under_way: Option<usize>,
}

impl<'a> OpenSession<'a> {
    pub(super) fn new(metrics: &'a Metrics, steps: &'a [Step]) -> OpenSession<'a> {
        OpenSession {
            metrics,
            steps,
            under_way: Some(0),
        }
    }

    /// Step `index` is under way.
    fn at(&mut self, index: usize) {
        self.under_way = Some(index);
    }

    /// The session ended by itself, and counted itself if it had to.
    pub(super) fn ended(mut self) {
        self.under_way = None;
    }
}

impl Drop for OpenSession<'_> {
    fn drop(&mut self) {
        let left = self.under_way.map(|index| &self.steps[index..]);
        if left.is_some_and(sends_anything) {
            self.metrics.session_cut_short();
        }
    }
}

impl Client {
    pub(super) async fn run_session(
        &mut self,
        session: &Session,
        intended: Instant,
        open: &mut OpenSession<'_>,
    ) -> Result<(), ErrorKind> {
        let mut due = intended;
        for (index, step) in session.steps.iter().enumerate() {
            open.at(index);
            // A session counted as started runs its first step even if the run stopped since
            // (on another thread, before this future was first polled): otherwise it would be
            // started with nothing recorded. Later steps are skipped once the run stops.
            if index > 0 && (self.stop.is_cancelled() || self.shared.ended()) {
                self.stopped_before(&session.steps[index..]);
                return Ok(());
            }
            due = match self.run_step(step, due).await {
                Ok(next) => next,
                // The step met the connection's loss: the steps after it cannot run.
                Err(lost) => {
                    self.stopped_before(&session.steps[index + 1..]);
                    return Err(lost);
                }
            };
        }
        Ok(())
    }

    /// Counts a session stopped with `rest` not run: cut short when the run has ended, else
    /// lost with its connection; neither when `rest` holds only think times.
    fn stopped_before(&self, rest: &[Step]) {
        if !sends_anything(rest) {
            return;
        }
        // The run's end is checked first: it would have skipped these steps all the same.
        if self.shared.ended() {
            self.shared.metrics.session_cut_short();
        } else {
            self.shared.metrics.session_lost();
        }
    }

    /// Runs one step due at `due`; returns when the next step is due (this one's completion).
    async fn run_step(&mut self, step: &Step, due: Instant) -> Result<Instant, ErrorKind> {
        match step {
            Step::Think(think) => {
                let until = due + think.sample();
                tokio::select! {
                    () = self.shared.clock.sleep_until(until) => {}
                    () = self.stop.cancelled() => {}
                }
                Ok(until)
            }
            Step::Message { command, params } => {
                let params = params.render(&mut self.render);
                match self.peer.send_message(command.clone(), params).await {
                    Ok(()) => Ok(Instant::now()),
                    Err(CallError::Encode(_)) => {
                        self.message_not_encoded(command, due).await;
                        Ok(Instant::now())
                    }
                    Err(error) => Err(error_kind(&error)),
                }
            }
            Step::Request {
                command,
                params,
                timeout,
            } => {
                let params = params.render(&mut self.render);
                self.request(command, params, *timeout, due).await
            }
            Step::WaitMessage { command, timeout } => {
                let started = Instant::now();
                let under_way = UnderWay::new(&self.shared.metrics);
                // A connection that can deliver nothing more ends the wait at once, as it
                // fails a request, rather than after the time-out.
                let waited = tokio::select! {
                    biased;
                    arrived = self.mailbox.wait(command, started + *timeout) => Ok(arrived),
                    reason = self.peer.input_ended() => Err(close_kind(&reason)),
                };
                under_way.ended();
                let deadline = started + *timeout;
                let (end, error) = match waited {
                    // A message that came before the wait is the client's from the wait's start:
                    // its own lateness counts, as for a request sent late. One that came in the
                    // timer's lateness after the deadline is a timeout, as for a request.
                    Ok(Some(arrived)) if arrived <= deadline => (arrived.max(started), None),
                    Ok(_) => (deadline, Some(ErrorKind::Timeout)),
                    Err(lost) => (Instant::now(), Some(lost)),
                };
                let sample = Sample {
                    latency: end.saturating_duration_since(due),
                    service: Some(end.saturating_duration_since(started)),
                    lag: Some(started.saturating_duration_since(due)),
                    error,
                };
                self.shared
                    .metrics
                    .record(&format!("wait_message:{command}"), sample);
                match waited {
                    Err(lost) => Err(lost),
                    Ok(_) => Ok(Instant::now()),
                }
            }
        }
    }

    /// Counts a message whose params could not be encoded (over the frame cap) as a protocol
    /// error of `message:COMMAND`: nothing was sent, the connection is sound, the session goes on.
    async fn message_not_encoded(&self, command: &Str, due: Instant) {
        let now = Instant::now();
        let sample = Sample {
            latency: now.saturating_duration_since(due),
            service: None,
            lag: None,
            error: Some(ErrorKind::ProtocolError),
        };
        self.shared
            .metrics
            .record(&format!("message:{command}"), sample);
        // As for a request that failed to encode: no I/O to wait for, so let the runtime run.
        tokio::task::yield_now().await;
    }

    /// Sends a request and records it against `due`; a timeout is recorded at the timeout so the
    /// tail is not cut short.
    async fn request(
        &mut self,
        command: &Str,
        params: Value,
        timeout: Duration,
        due: Instant,
    ) -> Result<Instant, ErrorKind> {
        if due > Instant::now() {
            self.shared.clock.sleep_until(due).await;
        }
        let sent = Instant::now();
        let under_way = UnderWay::new(&self.shared.metrics);
        let outcome = self.peer.call(command.clone(), params, Some(timeout)).await;
        under_way.ended();
        let now = Instant::now();
        let deadline = sent + timeout;
        // The timer fires up to a millisecond late: a reply after the deadline is a timeout all
        // the same, so that a timeout below a millisecond means what it says.
        let timed_out = match &outcome {
            Err(CallError::Timeout(_)) => true,
            Ok(_) => now > deadline,
            Err(_) => false,
        };
        let ended = if timed_out { deadline } else { now };
        let error = match &outcome {
            _ if timed_out => Some(ErrorKind::Timeout),
            Ok(result) if is_error_result(result) => Some(ErrorKind::ErrorResult),
            Ok(_) => None,
            Err(error) => Some(error_kind(error)),
        };
        // A request that could not be encoded never left: it has no send to time.
        let was_sent = !matches!(outcome, Err(CallError::Encode(_)));
        let sample = Sample {
            latency: ended.saturating_duration_since(due),
            service: was_sent.then(|| ended.saturating_duration_since(sent)),
            lag: was_sent.then(|| sent.saturating_duration_since(due)),
            error,
        };
        self.shared.metrics.record(command, sample);
        match outcome {
            Err(CallError::Closed(reason)) => Err(close_kind(&reason)),
            Err(CallError::Encode(_)) => {
                // Failed here, without any I/O to wait for: a closed model would otherwise loop
                // on it without ever letting the runtime run anything else, its stop included.
                tokio::task::yield_now().await;
                Ok(Instant::now())
            }
            _ => Ok(Instant::now()),
        }
    }
}

/// A request or wait in progress: counted as unfinished if its future is dropped (the run
/// stopped waiting for it) before `ended`.
struct UnderWay<'a> {
    metrics: Option<&'a Metrics>,
}

impl<'a> UnderWay<'a> {
    fn new(metrics: &'a Metrics) -> UnderWay<'a> {
        UnderWay {
            metrics: Some(metrics),
        }
    }

    fn ended(mut self) {
        self.metrics = None;
    }
}

impl Drop for UnderWay<'_> {
    fn drop(&mut self) {
        if let Some(metrics) = self.metrics {
            metrics.unfinished();
        }
    }
}
