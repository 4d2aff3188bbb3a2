//! Log events and their way out: connections hand events to a bounded queue without ever
//! waiting (a full queue drops the events and counts them), in batches (all the frames of one
//! relayed chunk travel together), and one writer thread renders them to the terminal (through
//! `terminal.rs`, which never makes it wait), the JSON-lines log and the session recording, and
//! prints the latency table.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::Transport;
use super::decode::{Decoded, Rpc};
use super::format::{json_line, terminal_line};
use super::latency::LatencyBook;
use super::record::Recorder;
use super::terminal::Terminal;
use crate::codec::DecodeOptions;

/// A direction of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Direction {
    /// Client to server (upstream).
    #[value(name = "c2s")]
    ClientToServer,
    /// Server (upstream) to client.
    #[value(name = "s2c")]
    ServerToClient,
}

impl Direction {
    /// `c2s` or `s2c`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::ClientToServer => "c2s",
            Direction::ServerToClient => "s2c",
        }
    }

    /// The other direction.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        }
    }
}

/// When something happened: the wall clock for the log, the monotonic clock for the recording.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    /// For `t` in the log.
    pub wall: SystemTime,
    /// For offsets in the recording and for latency.
    pub mono: Instant,
}

impl Stamp {
    /// Now.
    pub fn now() -> Stamp {
        Stamp {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }
}

/// One thing worth logging, from one connection.
#[derive(Debug)]
pub struct Event {
    /// When.
    pub at: Stamp,
    /// The connection's id (1, 2, ... in accept order).
    pub conn: u64,
    /// What.
    pub what: What,
    /// Whether it passed the filters and goes to the log (else it is only recorded).
    pub logged: bool,
}

/// What happened.
#[derive(Debug)]
pub enum What {
    /// A client connected and the upstream answered (or not: a `Close` follows at once).
    Open {
        /// The client's address.
        client: SocketAddr,
        /// The upstream's address, or the target as given when it could not be reached.
        upstream: String,
        /// How the client connected.
        transport: Transport,
    },
    /// The client's first bytes were a policy request.
    Policy {
        /// The client's address.
        client: SocketAddr,
        /// `answered`, `forwarded` or `failed`.
        action: &'static str,
        /// What failed, when it did.
        error: Option<String>,
    },
    /// The connection ended.
    Close {
        /// Why, e.g. `client closed`, `upstream reset`.
        reason: String,
        /// Bytes relayed client to server.
        c2s: u64,
        /// Bytes relayed server to client.
        s2c: u64,
        /// How the client connected.
        transport: Transport,
    },
    /// A frame, or a framing problem, in one direction.
    Frame(Box<FrameEntry>),
    /// Relayed bytes the tap no longer frames (after the framing was lost): recorded only.
    Chunk {
        /// Which way.
        dir: Direction,
        /// The bytes.
        bytes: Bytes,
    },
}

/// A frame as logged and recorded.
#[derive(Debug)]
pub struct FrameEntry {
    /// Which way.
    pub dir: Direction,
    /// 1, 2, ... per direction of the connection.
    pub seq: u64,
    /// What it says.
    pub decoded: Decoded,
    /// For a reply, the time since its request.
    pub latency: Option<Duration>,
    /// The frame's bytes, when the tap kept them (not for skipped frames).
    pub raw: Option<Bytes>,
}

impl Event {
    /// Queue bytes this event holds, what `--log-queue` counts.
    pub fn queue_cost(&self) -> usize {
        EVENT_OVERHEAD
            + match &self.what {
                // What the entry holds (not what the frame declared); the raw bytes come on top.
                What::Frame(entry) => {
                    entry.decoded.held() + entry.raw.as_ref().map_or(0, Bytes::len)
                }
                What::Chunk { bytes, .. } => bytes.len(),
                _ => 0,
            }
    }
}

/// Queue bytes every event counts besides its content: its slot in a batch (twice its size, as a
/// growing vector may hold), its boxed entry, and the allocator's share of the few small blocks
/// it owns (texts, message ids).
const EVENT_OVERHEAD: usize = 2 * size_of::<Event>() + size_of::<FrameEntry>() + 4 * 32;

/// Which frames the log shows (`--command`, `--dir`, `--conn`); every event is still recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only frames with one of these commands (a reply has its request's); empty: all.
    pub commands: Vec<String>,
    /// Only frames going this way.
    pub dir: Option<Direction>,
    /// Only these connections (their events too); empty: all.
    pub conns: Vec<u64>,
}

impl Filter {
    /// Whether events of connection `conn` are shown at all.
    pub fn shows_conn(&self, conn: u64) -> bool {
        self.conns.is_empty() || self.conns.contains(&conn)
    }

    /// Whether a frame is shown.
    pub fn shows_frame(&self, conn: u64, dir: Direction, rpc: Option<&Rpc>) -> bool {
        let command = rpc.and_then(|rpc| rpc.command.as_deref());
        self.shows_conn(conn)
            && self.dir.is_none_or(|only| only == dir)
            && (self.commands.is_empty()
                || command.is_some_and(|command| self.commands.iter().any(|c| c == command)))
    }
}

/// Batches a queue may hold at once, whatever their size.
const QUEUE_BATCHES: usize = 65_536;

/// How long the writer sleeps before looking at an empty queue again, while events come.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// Empty looks before the writer sleeps until an event comes.
const IDLE_POLLS: u32 = 20;
/// How long the end of the log waits for standard output to take its last lines.
const TERMINAL_FINISH: Duration = Duration::from_secs(2);

/// Events that travel through the queue together, and the queue bytes they hold.
struct Batch {
    events: Vec<Event>,
    cost: usize,
    /// Events dropped since the last batch queued: noted just before this one's, where they
    /// would have been.
    dropped_before: u64,
}

/// The connections' side of the log queue. Never waits: when the queue is full or holds its
/// byte budget, the events are dropped and counted.
#[derive(Clone)]
pub struct LogSender {
    queue: SyncSender<Batch>,
    counters: Arc<QueueCounters>,
}

#[derive(Debug, Default)]
struct QueueCounters {
    queued_bytes: AtomicUsize,
    budget: usize,
    dropped: AtomicU64,
    /// Drops not yet carried by a queued batch.
    unnoted: AtomicU64,
}

impl LogSender {
    /// Queues `event`, or drops and counts it when the writer is behind.
    pub fn send(&self, event: Event) {
        self.send_all(vec![event]);
    }

    /// Queues `events` (in this order, as one batch), or drops and counts them all when the
    /// writer is behind.
    pub fn send_all(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let cost = events.iter().map(Event::queue_cost).sum();
        let counters = &self.counters;
        let before = counters.queued_bytes.fetch_add(cost, Ordering::Relaxed);
        let count = events.len() as u64;
        let dropped = |counters: &QueueCounters, unnoted: u64| {
            counters.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
            counters.dropped.fetch_add(count, Ordering::Relaxed);
            counters
                .unnoted
                .fetch_add(unnoted + count, Ordering::Relaxed);
        };
        if before + cost > counters.budget {
            dropped(counters, 0);
            return;
        }
        let dropped_before = counters.unnoted.swap(0, Ordering::Relaxed);
        let batch = Batch {
            events,
            cost,
            dropped_before,
        };
        if self.queue.try_send(batch).is_err() {
            dropped(counters, dropped_before);
        }
    }

    /// Events dropped so far because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

/// Where the writer sends what.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// One readable line per event on standard output.
    pub terminal: bool,
    /// The JSON-lines log file.
    pub json: Option<PathBuf>,
    /// The session recording file.
    pub record: Option<PathBuf>,
    /// Print the latency table this often.
    pub stats_every: Option<Duration>,
    /// Bytes of events the queue may hold (the writer's lag, bounded).
    pub queue_bytes: usize,
}

/// One of the writer's outputs, which stops alone at its first failed write: a log file that
/// fills its disk, or a terminal that goes away, must cost neither the traffic nor the others.
struct Output<W> {
    writer: Option<W>,
    /// What it is, for the message when it fails: `--log FILE`, `--record FILE`.
    label: String,
}

impl<W> Output<W> {
    fn new(writer: Option<W>, label: String) -> Output<W> {
        Output { writer, label }
    }

    /// Runs `work` on the output if it still runs; on failure, stops it and notes why (a closed
    /// pipe on standard output quietly, as elsewhere: `amf-bench proxy | head` is a choice).
    fn write(&mut self, failures: &mut Vec<String>, work: impl FnOnce(&mut W) -> io::Result<()>) {
        let Some(writer) = &mut self.writer else {
            return;
        };
        if let Err(error) = work(writer) {
            self.writer = None;
            if error.kind() != io::ErrorKind::BrokenPipe {
                let failure = format!("{}: {error}", self.label);
                tracing::warn!("{failure}: writing it stops here; the traffic goes on");
                failures.push(failure);
            }
        }
    }
}

/// The writer thread, and what it needs to render events.
pub struct LogWriter {
    events: Receiver<Batch>,
    counters: Arc<QueueCounters>,
    /// Event lines (with `show_lines`) and the latency table.
    terminal: Terminal,
    show_lines: bool,
    json: Output<BufWriter<File>>,
    recorder: Output<Recorder>,
    /// Why outputs stopped, in order.
    failures: Vec<String>,
    stats_every: Option<Duration>,
    latency: Arc<LatencyBook>,
    /// How logged payloads are decoded for rendering: as the relay checked them.
    decode: DecodeOptions,
    /// The JSON line being written, reused from event to event.
    line: String,
}

/// Opens the outputs and returns both ends of the queue; `recorder` writes the recording's
/// header line.
pub fn open(
    outputs: &Outputs,
    recorder: impl FnOnce(BufWriter<File>) -> io::Result<Recorder>,
    latency: Arc<LatencyBook>,
    decode: DecodeOptions,
) -> io::Result<(LogSender, LogWriter)> {
    let json = outputs.json.as_ref().map(create).transpose()?;
    let recorder = outputs
        .record
        .as_ref()
        .map(create)
        .transpose()?
        .map(recorder)
        .transpose()?;
    let (queue, events) = sync_channel(QUEUE_BATCHES);
    let counters = Arc::new(QueueCounters {
        budget: outputs.queue_bytes,
        ..QueueCounters::default()
    });
    let sender = LogSender {
        queue,
        counters: Arc::clone(&counters),
    };
    let label = |flag: &str, path: &Option<PathBuf>| {
        let path = path.as_deref().unwrap_or(Path::new(""));
        format!("{flag} {}", path.display())
    };
    let writer = LogWriter {
        events,
        counters,
        terminal: Terminal::start()?,
        show_lines: outputs.terminal,
        json: Output::new(json, label("--log", &outputs.json)),
        recorder: Output::new(recorder, label("--record", &outputs.record)),
        failures: Vec::new(),
        stats_every: outputs.stats_every,
        latency,
        decode,
        line: String::new(),
    };
    Ok((sender, writer))
}

fn create(path: &PathBuf) -> io::Result<BufWriter<File>> {
    File::create(path)
        .map(|file| BufWriter::with_capacity(256 * 1024, file))
        .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", path.display())))
}

impl LogWriter {
    /// Writes events until every sender is gone, then flushes, and returns why any output
    /// stopped early. Runs on its own thread: file and terminal writes may block, relaying must
    /// not. It drains the queue to the end even when every output has stopped, so that only a
    /// writer really behind counts drops.
    pub fn run(mut self) -> Vec<String> {
        let mut next_stats = self.stats_every.map(|every| Instant::now() + every);
        loop {
            // Checked on every turn: under steady traffic the queue is never empty.
            if next_stats.is_some_and(|due| Instant::now() >= due) {
                self.print_stats();
                next_stats = self.stats_every.map(|every| Instant::now() + every);
            }
            let mut batch = match self.events.try_recv() {
                Ok(batch) => batch,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    self.flush();
                    match self.wait(next_stats) {
                        Ok(batch) => batch,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            if let Some(first) = batch.events.first() {
                self.note_drops(batch.dropped_before, first.at);
            }
            for event in &mut batch.events {
                self.write(event);
            }
            self.counters
                .queued_bytes
                .fetch_sub(batch.cost, Ordering::Relaxed);
        }
        let unnoted = self.counters.unnoted.swap(0, Ordering::Relaxed);
        self.note_drops(unnoted, Stamp::now());
        self.flush();
        let mut failures = self.failures;
        failures.extend(self.terminal.finish(TERMINAL_FINISH));
        failures
    }

    /// Waits for the next batch, or until `until` (for the latency table). While events keep
    /// coming it sleeps a little and looks again, so that senders find it awake and never have
    /// to wake it (a system call and a context switch per batch, on the relay's core); only
    /// after `IDLE_POLLS` empty looks does it sleep in the queue.
    fn wait(&self, until: Option<Instant>) -> Result<Batch, RecvTimeoutError> {
        for _ in 0..IDLE_POLLS {
            if until.is_some_and(|until| Instant::now() >= until) {
                return Err(RecvTimeoutError::Timeout);
            }
            std::thread::sleep(POLL_INTERVAL);
            match self.events.try_recv() {
                Ok(batch) => return Ok(batch),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
        }
        match until {
            Some(until) => self
                .events
                .recv_timeout(until.saturating_duration_since(Instant::now())),
            None => self
                .events
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        }
    }

    fn write(&mut self, event: &mut Event) {
        let failures = &mut self.failures;
        self.recorder
            .write(failures, |recorder| recorder.write(event));
        if !event.logged {
            return;
        }
        if let What::Frame(entry) = &mut event.what {
            entry.decoded.content.decode_payload(&self.decode);
        }
        let line = &mut self.line;
        self.json.write(failures, |json| {
            line.clear();
            json_line(event, line);
            json.write_all(line.as_bytes())
        });
        if self.show_lines {
            let mut line = Vec::new();
            // Writing into a Vec cannot fail.
            let _ = terminal_line(event, &mut line);
            self.terminal.print(line);
        }
    }

    /// Notes in the outputs that `count` events were dropped here, at `at`: the time of the
    /// first event queued after them, so that `t` keeps to the order of the lines around it.
    fn note_drops(&mut self, count: u64, at: Stamp) {
        if count == 0 {
            return;
        }
        let note = serde_json::json!({
            "t": super::format::rfc3339(at.wall),
            "event": "dropped",
            "count": count,
        });
        let failures = &mut self.failures;
        self.json.write(failures, |json| writeln!(json, "{note}"));
        self.recorder
            .write(failures, |recorder| recorder.dropped(count, at.mono));
        if self.show_lines {
            let note = format!("!! {count} log events dropped: the log fell behind\n");
            self.terminal.print(note.into_bytes());
        }
    }

    /// The table so far, under a line saying when: one `--stats-every` table from the next.
    fn print_stats(&mut self) {
        let when = humantime::format_rfc3339_seconds(SystemTime::now());
        let table = self.latency.snapshot().table();
        let text = format!("== {when}: latency since the proxy started\n{table}");
        self.terminal.print(text.into_bytes());
    }

    fn flush(&mut self) {
        let failures = &mut self.failures;
        self.json.write(failures, |json| json.flush());
        self.recorder.write(failures, Recorder::flush);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::record::Header;
    use crate::proxy::tap::Framing;

    fn close(conn: u64) -> Event {
        Event {
            at: Stamp::now(),
            conn,
            what: What::Close {
                reason: "client closed".into(),
                c2s: 0,
                s2c: 0,
                transport: Transport::Tcp,
            },
            logged: true,
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .expect("reads")
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    #[test]
    fn a_drop_is_noted_where_it_happened_and_in_time_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let json = dir.path().join("drops.jsonl");
        let record = dir.path().join("drops.rec");
        let outputs = Outputs {
            json: Some(json.clone()),
            record: Some(record.clone()),
            queue_bytes: close(0).queue_cost(), // one event at a time
            ..Outputs::default()
        };
        let header = Header {
            framing: Framing::AmfSocket,
            upstream: "127.0.0.1:1".into(),
            listen: "127.0.0.1:2".into(),
        };
        let latency = Arc::new(LatencyBook::new().expect("a book"));
        let (sender, writer) = open(
            &outputs,
            |out| Recorder::start(out, &header),
            latency,
            DecodeOptions::default(),
        )
        .expect("opens");
        sender.send(close(1));
        sender.send(close(2)); // over the budget while the first waits
        std::thread::sleep(Duration::from_millis(2));
        let counters = Arc::clone(&sender.counters);
        let writing = std::thread::spawn(move || writer.run());
        for _ in 0..5_000 {
            if counters.queued_bytes.load(Ordering::Relaxed) == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(counters.queued_bytes.load(Ordering::Relaxed), 0);
        std::thread::sleep(Duration::from_millis(2));
        sender.send(close(3));
        drop(sender);
        assert!(writing.join().expect("the writer ends").is_empty());

        let logged = lines(&json);
        let events: Vec<_> = logged.iter().map(|line| &line["event"]).collect();
        assert_eq!(events, ["close", "dropped", "close"], "{logged:?}");
        assert_eq!(logged[1]["count"], 1);
        assert_eq!(logged[2]["conn"], 3);
        assert!(
            logged[0]["t"].as_str() < logged[1]["t"].as_str(),
            "{logged:?}"
        );
        assert_eq!(
            logged[1]["t"], logged[2]["t"],
            "noted at the next event's time"
        );

        let recorded = lines(&record);
        let at: Vec<_> = recorded[1..]
            .iter()
            .map(|line| line["at_us"].as_u64())
            .collect();
        assert_eq!(recorded[2]["event"], "dropped", "{recorded:?}");
        assert!(at[0] < at[1] && at[1] == at[2], "{recorded:?}");
    }
}
