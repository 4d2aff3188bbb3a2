//! The run over time: once a second, each command's latency histogram for that second goes to
//! `latency.hlog` (an HdrHistogram interval log, tagged by command) as it is taken, and its rate
//! and percentiles to the report's time series (at most `MAX_POINTS` points, whatever the run's
//! length) and the progress line.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics::{Metrics, Rotation};
use super::plan;
use super::points::{Point, PointCommand, Points};
use super::progress::{Progress, Status};
use super::scenario::Stage;

/// How long each interval lasts.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The run's points, and its interval log once written.
#[derive(Debug, Clone, Default)]
pub struct Timeline<W> {
    /// In order, covering the run; each covers one interval unless the run outgrew `MAX_POINTS`.
    pub points: Vec<Point>,
    /// Where `latency.hlog` went, each interval as it was taken.
    pub hlog: W,
    /// Why the log stopped being written, if it did: the run was stopped then, and the log
    /// holds the intervals before.
    pub log_error: Option<String>,
}

/// What the sampler needs to know of the run.
pub struct Sampler {
    /// Where the measurements accumulate.
    pub metrics: Arc<Metrics>,
    /// When the run began.
    pub start: Instant,
    /// The same moment on the wall clock, for the log's StartTime.
    pub wall_start: SystemTime,
    /// The open model's stages, for the planned rate; none for a closed model.
    pub stages: Option<Vec<Stage>>,
    /// How long the run lasts: no sessions are planned after.
    pub duration: Duration,
    /// Where to show progress.
    pub progress: Progress,
    /// Cancelled if the interval log cannot be written, so that the run stops at once (as at
    /// Ctrl-C) rather than going on unlogged.
    pub stop_run: CancellationToken,
    /// Where the sampler tells the run, through [`NextSample`], the end of the next interval it
    /// will take.
    pub next_due: watch::Sender<Instant>,
}

/// The end of the next interval the sampler will take, as the run sees it.
pub struct NextSample(watch::Receiver<Instant>);

/// A sampler's `next_due` for a run that starts at `start`, and the run's view of it.
pub fn next_sample(start: Instant) -> (watch::Sender<Instant>, NextSample) {
    let (next_due, seen) = watch::channel(start + INTERVAL);
    (next_due, NextSample(seen))
}

impl NextSample {
    /// Waits for the sampler to have taken the interval that ends at `end` (the schedule's), if
    /// one does, unless `stop` comes first: the clients stop once the schedule has ended, and the
    /// interval must count those it had, not those left as they close (the run and the sampler
    /// wake at about the same instant, in either order). At once if the sampler stopped.
    pub async fn taken(&mut self, end: Instant, stop: &CancellationToken) {
        tokio::select! {
            _ = self.0.wait_for(|next| *next > end) => {}
            () = stop.cancelled() => {}
        }
    }
}

/// One interval's measurements, on their way from the sampler to the writer.
struct Interval {
    rotation: Rotation,
    /// From the start of the run.
    start: Duration,
    length: Duration,
}

impl Sampler {
    /// Samples every `INTERVAL` until `done` is cancelled, then once more for the part interval
    /// since (so that every request recorded is in the log).
    ///
    /// Only taking the interval's histograms happens here, on the clients' runtime. Writing them
    /// to the log and summing them up happen on a thread of their own: compressing the histograms
    /// took 0.1 to 16 ms a second, which on a client thread delayed every client's sends by as
    /// much (the run's largest schedule lag).
    /// The log goes to `hlog` a line at a time: give it a `LineWriter` of a file, and the file
    /// can be read while the run goes on, and keeps all but the last second of a run killed.
    pub async fn run<W: Write + Send + 'static>(
        self,
        done: CancellationToken,
        hlog: W,
    ) -> anyhow::Result<Timeline<W>> {
        let (sender, intervals) = std::sync::mpsc::channel();
        let timeline_writer = TimelineWriter {
            wall_start: self.wall_start,
            stages: self.stages,
            duration: self.duration,
            progress: self.progress,
            stop_run: self.stop_run.clone(),
        };
        // A thread of its own rather than `spawn_blocking`: a blocking task that lasts the whole
        // run would stop a paused test clock from advancing.
        let (written, writer) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("timeline".into())
            .spawn(move || written.send(timeline_writer.write(&intervals, hlog)))
            .context("cannot start the timeline writer")?;
        let mut interval_start = self.start;
        loop {
            let due = interval_start + INTERVAL;
            let finished = tokio::select! {
                () = tokio::time::sleep_until(due) => false,
                () = done.cancelled() => true,
            };
            let now = if finished { Instant::now() } else { due };
            let interval = Interval {
                rotation: self.metrics.rotate(),
                start: interval_start.saturating_duration_since(self.start),
                length: now.saturating_duration_since(interval_start),
            };
            // A send fails only when the writer has stopped, which it says below.
            if sender.send(interval).is_err() {
                self.stop_run.cancel();
                break;
            }
            if finished {
                break;
            }
            interval_start = now;
            self.next_due.send_replace(interval_start + INTERVAL);
        }
        drop(sender);
        writer.await.context("the timeline writer stopped")
    }
}

/// What the writer needs: the log's start time, what the progress line shows, and whom to tell
/// when the log cannot be written.
struct TimelineWriter {
    wall_start: SystemTime,
    stages: Option<Vec<Stage>>,
    duration: Duration,
    progress: Progress,
    stop_run: CancellationToken,
}

impl TimelineWriter {
    /// Writes each interval received to the log, the points and the progress line, until the
    /// sampler hangs up. A log that cannot be written stops the run and is written no more;
    /// the points go on to the end.
    fn write<W: Write>(self, intervals: &Receiver<Interval>, mut hlog: W) -> Timeline<W> {
        let mut serializer = V2DeflateSerializer::new();
        let mut log_error = None;
        let mut stop_logging = |error: String| {
            self.stop_run.cancel();
            log_error.get_or_insert(format!("cannot write latency.hlog: {error}"));
        };
        let mut log = IntervalLogWriterBuilder::new()
            .add_comment("[Histogram log format version 1.3]")
            .add_comment("[amf-bench run: latency (reply minus intended send) in microseconds, one interval per command per second]")
            .with_start_time(self.wall_start)
            .with_base_time(self.wall_start)
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut hlog, &mut serializer)
            .map_err(|error| stop_logging(error.to_string()))
            .ok();
        let mut points = Points::new();
        let mut tags = Tags::default();
        let mut last_sessions = 0;
        for Interval {
            rotation,
            start,
            length,
        } in intervals
        {
            if let Some(writer) = &mut log {
                for command in &rotation.commands {
                    let (tag, renamed) = tags.of(&command.command);
                    let commented = match renamed {
                        Some(comment) => writer.write_comment(&comment).map_err(|e| e.to_string()),
                        None => Ok(()),
                    };
                    let written = commented.and_then(|()| {
                        writer
                            .write_histogram(&command.latency, start, length, Tag::new(&tag))
                            .map_err(|error| error.to_string())
                    });
                    if let Err(error) = written {
                        stop_logging(error);
                        log = None;
                        break;
                    }
                }
            }
            let point = point(&rotation, start, length, last_sessions);
            last_sessions = rotation.sessions_started;
            self.progress.update(&self.status(&rotation, &point));
            points.push(point);
        }
        drop(log);
        if let Err(error) = hlog.flush() {
            stop_logging(error.to_string());
        }
        Timeline {
            points: points.finish(),
            hlog,
            log_error,
        }
    }

    /// What the progress line shows at the end of `point`: its rates, each over the point's
    /// interval, the planned one included.
    fn status(&self, rotation: &Rotation, point: &Point) -> Status {
        let seconds = point.length.as_secs_f64().max(1e-3);
        let mut all = None::<Histogram<u64>>;
        for command in &rotation.commands {
            match &mut all {
                Some(all) => {
                    let _ = all.add(&command.latency);
                }
                None => all = Some(command.latency.clone()),
            }
        }
        Status {
            elapsed: point.start + point.length,
            connected: rotation.connected,
            sessions_rate: point.sessions as f64 / seconds,
            planned_rate: self
                .stages
                .as_ref()
                .map(|stages| plan::planned_rate(stages, point.start, point.length, self.duration)),
            requests_rate: point.commands.iter().map(|c| c.count).sum::<u64>() as f64 / seconds,
            p99_us: all.map(|all| all.value_at_quantile(0.99)),
            errors: rotation.errors,
        }
    }
}

fn point(rotation: &Rotation, start: Duration, length: Duration, last_sessions: u64) -> Point {
    Point {
        start,
        length,
        connected: rotation.connected,
        sessions: rotation.sessions_started.saturating_sub(last_sessions),
        commands: rotation
            .commands
            .iter()
            .map(|command| PointCommand {
                command: command.command.clone(),
                count: command.latency.len(),
                errors: command.errors,
                p50_us: command.latency.value_at_quantile(0.5),
                p99_us: command.latency.value_at_quantile(0.99),
                max_us: command.latency.max(),
            })
            .collect(),
    }
}

/// Each command's tag in the interval log, fixed at its first interval. A tag may not hold
/// commas or white space (readers split lines on them), so they become `_`; a name that would
/// then take an earlier command's tag gets `~2`, `~3`, ... instead, so that no two commands
/// ever share one.
#[derive(Debug, Default)]
struct Tags {
    by_command: HashMap<String, String>,
    taken: HashSet<String>,
}

impl Tags {
    /// The tag of `command`; and, the first time a tag that is not the name itself is given,
    /// the comment that says whose it is.
    fn of(&mut self, command: &str) -> (String, Option<String>) {
        if let Some(tag) = self.by_command.get(command) {
            return (tag.clone(), None);
        }
        let base = tag_for(command);
        let mut tag = base.clone();
        let mut suffix = 1;
        while self.taken.contains(&tag) {
            suffix += 1;
            tag = format!("{base}~{suffix}");
        }
        self.taken.insert(tag.clone());
        self.by_command.insert(command.to_string(), tag.clone());
        let renamed = (tag != command).then(|| format!("[Tag {tag} is the command {command:?}]"));
        (tag, renamed)
    }
}

/// `command` with commas and white space (which readers split lines on) made `_`.
fn tag_for(command: &str) -> String {
    command
        .chars()
        .map(|c| {
            if c == ',' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::metrics::Sample;
    use crate::run::points::tests::second;
    use base64::Engine;
    use base64::prelude::BASE64_STANDARD;
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    fn sample(ms: u64) -> Sample {
        Sample {
            latency: Duration::from_millis(ms),
            service: Some(Duration::from_millis(ms)),
            lag: Some(Duration::ZERO),
            error: None,
        }
    }

    /// Each second's line sets the sessions started in it beside the plan's rate over that same
    /// second, and is labelled with the time at its end: at a stage boundary, the rate of the
    /// stage that ended, not of the one beginning.
    #[test]
    fn the_progress_line_plans_over_the_interval_it_measures() {
        let steady = |rate| Stage {
            from: rate,
            to: rate,
            length: Duration::from_secs(1),
        };
        let writer = TimelineWriter {
            wall_start: SystemTime::UNIX_EPOCH,
            stages: Some(vec![steady(10.0), steady(1000.0), steady(10.0)]),
            duration: Duration::from_secs(3),
            progress: Progress::hidden(),
            stop_run: CancellationToken::new(),
        };
        let rotation = Rotation {
            commands: Vec::new(),
            connected: 5,
            sessions_started: 0,
            errors: 0,
        };
        let shown = |index: u64, sessions: u64| {
            let point = Point {
                sessions,
                ..second(index, 0, 0)
            };
            let status = writer.status(&rotation, &point);
            crate::run::progress::line(&status, Duration::from_secs(3))
        };
        let figures = |line: String| line.split(" clients").next().map(str::to_string);
        assert!(shown(0, 11).contains("   1/3 s ["), "{}", shown(0, 11));
        assert!(
            shown(0, 11).contains("sessions 11/s of 10 "),
            "{}",
            shown(0, 11)
        );
        assert!(shown(1, 1000).contains("   2/3 s ["), "{}", shown(1, 1000));
        assert!(
            shown(1, 1000).contains("sessions 1000/s of 1000 "),
            "{}",
            shown(1, 1000)
        );
        assert!(
            shown(2, 9).contains("sessions 9/s of 10 "),
            "{}",
            shown(2, 9)
        );
        assert_eq!(
            figures(shown(2, 9)).as_deref(),
            Some("   3/3 s [====================]")
        );
        let after = Point {
            start: Duration::from_secs(3),
            length: Duration::from_millis(400),
            ..second(3, 0, 0)
        };
        let status = writer.status(&rotation, &after);
        assert_eq!(status.planned_rate, Some(0.0), "none planned after the run");
    }

    #[test]
    fn tags_hold_no_commas_nor_white_space() {
        assert_eq!(tag_for("get room,a\tb\u{a0}c\r\n"), "get_room_a_b_c__");
        assert_eq!(tag_for("getRoom"), "getRoom");
    }

    #[test]
    fn commands_that_differ_in_white_space_get_tags_of_their_own() {
        let mut tags = Tags::default();
        assert_eq!(tags.of("getRoom"), ("getRoom".to_string(), None));
        let (first, said) = tags.of("a b");
        assert_eq!(first, "a_b");
        assert_eq!(said.as_deref(), Some("[Tag a_b is the command \"a b\"]"));
        assert_eq!(tags.of("a\tb").0, "a_b~2");
        assert_eq!(tags.of("a_b").0, "a_b~3");
        assert_eq!(
            tags.of("a\tb"),
            ("a_b~2".to_string(), None),
            "fixed, said once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn every_second_goes_to_the_log_tagged_by_command() {
        let metrics = Arc::new(Metrics::new().expect("bounds"));
        let done = CancellationToken::new();
        let sampler = Sampler {
            metrics: Arc::clone(&metrics),
            start: Instant::now(),
            wall_start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            stages: None,
            duration: Duration::from_secs(2),
            progress: Progress::hidden(),
            stop_run: CancellationToken::new(),
            next_due: next_sample(Instant::now()).0,
        };
        let task = tokio::spawn(sampler.run(done.clone(), Vec::new()));
        metrics.record("echo", sample(2));
        metrics.record("get room", sample(5));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        metrics.record("echo", sample(40));
        tokio::time::sleep(Duration::from_millis(200)).await;
        done.cancel();
        let timeline = task.await.expect("joins").expect("writes");
        assert_eq!(timeline.points.len(), 2);
        assert_eq!(timeline.points[1].start, Duration::from_secs(1));
        assert_eq!(timeline.points[1].length, Duration::from_millis(700));
        let probe = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        assert_eq!(
            timeline.points[1].commands[0].max_us,
            probe.highest_equivalent(40_000)
        );
        let text = String::from_utf8(timeline.hlog.clone()).expect("text");
        assert!(text.contains("#[StartTime: 1800000000.000"), "{text}");
        assert!(
            text.contains("#[Tag get_room is the command \"get room\"]"),
            "{text}"
        );
        let mut deserializer = Deserializer::new();
        let mut seen = Vec::new();
        for entry in IntervalLogIterator::new(&timeline.hlog) {
            if let LogEntry::Interval(interval) = entry.expect("parses") {
                let bytes = BASE64_STANDARD
                    .decode(interval.encoded_histogram())
                    .expect("base64");
                let histogram: Histogram<u64> = deserializer
                    .deserialize(&mut bytes.as_slice())
                    .expect("a histogram");
                seen.push((
                    interval.tag().map(|tag| tag.as_str().to_string()),
                    interval.start_timestamp(),
                    histogram.len(),
                ));
            }
        }
        assert_eq!(
            seen,
            [
                (Some("echo".into()), Duration::ZERO, 1),
                (Some("get_room".into()), Duration::ZERO, 1),
                (Some("echo".into()), Duration::from_secs(1), 1),
            ]
        );
    }

    /// The clients stop once the schedule has ended, as the interval that ends with it is taken:
    /// that interval counts the clients it had, whichever of the two wakes first.
    #[tokio::test(start_paused = true)]
    async fn the_interval_ending_with_the_schedule_counts_its_clients() {
        let metrics = Arc::new(Metrics::new().expect("bounds"));
        for _ in 0..3 {
            metrics.connected(Duration::from_millis(1));
        }
        let start = Instant::now();
        let (next_due, mut next) = next_sample(start);
        let done = CancellationToken::new();
        let sampler = Sampler {
            metrics: Arc::clone(&metrics),
            start,
            wall_start: SystemTime::UNIX_EPOCH,
            stages: None,
            duration: Duration::from_secs(2),
            progress: Progress::hidden(),
            stop_run: CancellationToken::new(),
            next_due,
        };
        let task = tokio::spawn(sampler.run(done.clone(), Vec::new()));
        let end = start + Duration::from_secs(2);
        tokio::time::sleep_until(end).await;
        next.taken(end, &CancellationToken::new()).await;
        assert_eq!(Instant::now(), end, "no later than the schedule's end");
        // The clients stop, as the run does at once when the schedule has ended.
        for _ in 0..3 {
            metrics.connection_ended();
        }
        done.cancel();
        let timeline = task.await.expect("joins").expect("writes");
        let connected: Vec<_> = timeline.points.iter().map(|p| p.connected).collect();
        assert_eq!(connected, [3, 3, 0], "{:?}", timeline.points);
    }

    /// A run stopped early (Ctrl-C) does not wait for the sampler.
    #[tokio::test(start_paused = true)]
    async fn a_stopped_run_does_not_wait_for_the_sampler() {
        let start = Instant::now();
        let (_next_due, mut next) = next_sample(start);
        let stop = CancellationToken::new();
        stop.cancel();
        next.taken(start + Duration::from_secs(60), &stop).await;
        assert_eq!(Instant::now(), start);
    }
}
