//! `amf-bench run SCENARIO.toml`: simulated clients from a scenario against a target (or the
//! embedded `amf-bench serve`), latency measured from intended send times, results written to
//! `results/<name>-<UTC time>/`, thresholds deciding the exit status.

pub mod busy;
pub mod checks;
pub mod client;
pub mod clock;
pub mod data;
pub mod html;
pub mod mailbox;
pub mod metrics;
pub mod plan;
pub mod points;
pub mod progress;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod session;
pub mod svg;
pub mod template;
pub mod timeline;

use std::cell::Cell;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{LineWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::serve::{ServeConfig, Server};
pub use checks::Checked;
use checks::check_scenario;
use client::Shared;
use metrics::Metrics;
use plan::Arrivals;
use progress::Progress;
use queue::ArrivalQueue;
use report::{Outcome, RunFacts};
use scenario::{Load, Scenario, Step};
use timeline::{Sampler, Timeline};

/// What a finished run produced; `W` is where its interval log went.
pub struct RunResult<W = Vec<u8>> {
    /// The `summary.json` document.
    pub summary: serde_json::Value,
    /// The terminal table.
    pub table: String,
    /// Each threshold's verdict.
    pub thresholds: Vec<Outcome>,
    /// The run over time, and its interval log.
    pub timeline: Timeline<W>,
    /// `report.html`.
    pub html: String,
}

/// Runs `amf-bench run` on the console.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init();
    let mut scenario = Scenario::load(&args.scenario)?;
    if let Some(target) = &args.target {
        scenario.target = Some(target.clone());
    }
    let checked = check_scenario(scenario, args)?;
    let scenario = checked.scenario();
    if let Some(warning) = scenario.connect_ramp_warning() {
        tracing::warn!("{warning}");
    }
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => default_out_dir(&scenario.name),
    };
    let dir = ResultsDir::make(out)?;
    let runtime = crate::listener::runtime(args.threads);
    let progress = Progress::new(!args.quiet, scenario.duration);
    let result = runtime.and_then(|runtime| {
        runtime.block_on(async {
            let shutdown = crate::shutdown::on_signal(crate::shutdown::Hangup::Stops);
            let open_log = || dir.open_log();
            execute_checked(checked, shutdown, progress.clone(), open_log).await
        })
    });
    let result = match result {
        Ok(result) => result,
        Err(error) => {
            dir.abandon();
            return Err(error);
        }
    };
    progress.finish();
    let mut text = result.table.clone();
    for outcome in &result.thresholds {
        let verdict = if outcome.ok { "ok" } else { "FAILED" };
        // A latency of a command that never ended is NaN: say so rather than "NaNms".
        let measured = if outcome.measured.is_finite() {
            format!("measured {:.3}{}", outcome.measured, outcome.unit)
        } else {
            "nothing measured".to_string()
        };
        let _ = writeln!(
            text,
            "threshold {} {}: {measured} ... {verdict}",
            outcome.name, outcome.condition
        );
    }
    // The results are written whatever became of standard output (`| head` closes it).
    let shown = show(&text);
    let out = &dir.path;
    write_results(out, &result)?;
    shown.and_then(|()| show(&format!("results: {}\n", out.display())))?;
    if let Some(error) = &result.timeline.log_error {
        bail!(
            "the run stopped early: {error}; the results in {} cover the run up to then",
            out.display()
        );
    }
    Ok(if result.thresholds.iter().all(|outcome| outcome.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints `text` on standard output; a closed pipe is not an error (the exit status still says
/// how the thresholds went).
fn show(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(error).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

/// The most characters of the scenario's name in the default results directory's name: far
/// below the 255 bytes a file name may have, with room for the time.
const NAME_IN_DIR: usize = 100;

/// `results/<name>-<UTC time>`: the name's first `NAME_IN_DIR` characters, those other than
/// letters, digits, '-' and '_' written as '_'.
fn default_out_dir(name: &str) -> PathBuf {
    let stamp = crate::codec::display::format_date(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |elapsed| elapsed.as_millis() as f64),
    )
    .replace([':', '.'], "-");
    let safe: String = name
        .chars()
        .take(NAME_IN_DIR)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Path::new("results").join(format!("{safe}-{stamp}"))
}

/// The results directory of one run: made before the run, so that one that cannot be made does
/// not cost a run; its log opened once the run starts; taken back if the run does not start.
struct ResultsDir {
    path: PathBuf,
    /// The directories made for it, deepest first.
    made: Vec<PathBuf>,
    /// Whether `latency.hlog` was opened.
    log_opened: Cell<bool>,
    /// The directory, open and locked for as long as the run writes to it.
    _lock: Option<File>,
}

impl ResultsDir {
    fn make(path: PathBuf) -> anyhow::Result<ResultsDir> {
        let made = path
            .ancestors()
            .take_while(|dir| !dir.as_os_str().is_empty() && !dir.exists())
            .map(Path::to_path_buf)
            .collect();
        create_out_dir(&path)?;
        let mut dir = ResultsDir {
            path,
            made,
            log_opened: Cell::new(false),
            _lock: None,
        };
        match lock_dir(&dir.path) {
            Ok(lock) => dir._lock = lock,
            Err(error) => {
                dir.abandon();
                return Err(error);
            }
        }
        Ok(dir)
    }

    fn log_path(&self) -> PathBuf {
        self.path.join("latency.hlog")
    }

    /// Opens `latency.hlog` for the run starting, and removes an earlier run's summary and
    /// report, so that the directory never holds the files of two runs.
    fn open_log(&self) -> anyhow::Result<LineWriter<File>> {
        for earlier in ["summary.json", "report.html"] {
            let path = self.path.join(earlier);
            match std::fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error)
                        .with_context(|| format!("cannot replace {}", path.display()));
                }
                _ => {}
            }
        }
        let path = self.log_path();
        let file =
            File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
        self.log_opened.set(true);
        Ok(LineWriter::new(file))
    }

    /// Takes back what was made for a run that did not start, or failed: a log it did not
    /// finish is not a result.
    fn abandon(&self) {
        if self.log_opened.get() {
            let _ = std::fs::remove_file(self.log_path());
        }
        for dir in &self.made {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Locks `dir` against another run writing to it at the same time, which would interleave the
/// two runs' logs. Where the file system cannot lock a directory, the run goes on unlocked.
fn lock_dir(dir: &Path) -> anyhow::Result<Option<File>> {
    let Ok(opened) = File::open(dir) else {
        return Ok(None);
    };
    match opened.try_lock() {
        Ok(()) => Ok(Some(opened)),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another run is writing its results to {}; give each run its own --out",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(_)) => Ok(None),
    }
}

fn create_out_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the results directory {}", dir.display()))
}

/// Writes `summary.json` and `report.html` into `dir`, beside the `latency.hlog` written during
/// the run.
pub fn write_results<W>(dir: &Path, result: &RunResult<W>) -> anyhow::Result<()> {
    create_out_dir(dir)?;
    let summary = serde_json::to_string_pretty(&result.summary)? + "\n";
    let files = [
        ("summary.json", summary.as_bytes()),
        ("report.html", result.html.as_bytes()),
    ];
    for (name, contents) in files {
        let path = dir.join(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Runs a scenario until its duration ends or `shutdown` is cancelled, and gathers the results,
/// showing `progress` once a second and writing the interval log as the run goes, to what
/// `open_hlog` gives once the run's checks have passed. The scenario's thresholds and target
/// are checked first, as [`Checked::new`] does.
pub async fn execute<W, F>(
    scenario: Scenario,
    shutdown: CancellationToken,
    progress: Progress,
    open_hlog: F,
) -> anyhow::Result<RunResult<W>>
where
    W: Write + Send + 'static,
    F: FnOnce() -> anyhow::Result<W>,
{
    let checked = Checked::new(scenario).await?;
    execute_checked(checked, shutdown, progress, open_hlog).await
}

/// [`execute`] for a scenario already checked: its target is not resolved again.
pub async fn execute_checked<W, F>(
    checked: Checked,
    shutdown: CancellationToken,
    progress: Progress,
    open_hlog: F,
) -> anyhow::Result<RunResult<W>>
where
    W: Write + Send + 'static,
    F: FnOnce() -> anyhow::Result<W>,
{
    let Checked {
        scenario,
        thresholds,
        target,
    } = checked;
    let (embedded, target, target_name) = match target {
        Some(addr) => {
            let name = scenario.target.clone();
            (None, addr, name.unwrap_or_else(|| addr.to_string()))
        }
        None => {
            let server = Server::bind(embedded_server_config(&scenario)).await?;
            let addr = server.local_addr()?;
            let stop = CancellationToken::new();
            let handle = tokio::spawn(server.run(stop.clone()));
            (
                Some((stop, handle)),
                addr,
                format!("embedded amf-bench serve on {addr}"),
            )
        }
    };
    let hlog = open_hlog()?;
    let scenario = Arc::new(scenario);
    let metrics = Arc::new(Metrics::new()?);
    // Ctrl-C, or a log that cannot be written: the run ends at once, without waiting for the
    // requests under way.
    let cut_short = shutdown.child_token();
    let stop = cut_short.child_token();
    let start = Instant::now() + Duration::from_millis(10);
    let wall_start = SystemTime::now() + Duration::from_millis(10);
    let arrivals = match &scenario.load {
        Load::Open { stages, spacing } => Some(Arc::new(ArrivalQueue::new(
            Arrivals::new(stages, *spacing, scenario.duration),
            start,
            queue_len(scenario.connections),
            Arc::clone(&metrics),
        ))),
        Load::Closed => None,
    };
    let shared = Arc::new(Shared {
        scenario: Arc::clone(&scenario),
        target,
        metrics: Arc::clone(&metrics),
        stop: stop.clone(),
        end: start + scenario.duration,
        clock: clock::Clock::start(arrivals.clone(), stop.clone())?,
        arrivals,
    });
    let busy_clock = busy::BusyClock::start();
    let mut clients = tokio::task::JoinSet::new();
    for index in 0..scenario.connections {
        let connect_at = start + plan::connect_offset(index, scenario.connect_rate);
        clients.spawn(client::run(index, connect_at, Arc::clone(&shared)));
    }
    let sampled = CancellationToken::new();
    let (next_due, mut next_sample) = timeline::next_sample(start);
    let sampler = tokio::spawn(
        Sampler {
            metrics: Arc::clone(&metrics),
            start,
            wall_start,
            stages: match &scenario.load {
                Load::Open { stages, .. } => Some(stages.clone()),
                Load::Closed => None,
            },
            duration: scenario.duration,
            progress: progress.clone(),
            stop_run: cut_short.clone(),
            next_due,
        }
        .run(sampled.clone(), hlog),
    );
    tokio::select! {
        // The run's own clock: tokio's timer would end the run up to a millisecond late, and a
        // run of microseconds many times its length.
        () = shared.clock.sleep_until(shared.end) => next_sample.taken(shared.end, &stop).await,
        () = stop.cancelled() => {}
    }
    let elapsed = start.elapsed();
    let (generator_busy, generator_threads) = busy_clock.read();
    stop.cancel();
    finish_clients(clients, longest_wait(&scenario), &cut_short, &progress).await;
    // Ctrl-C during the wait for steps under way cuts the results short as well.
    let interrupted = cut_short.is_cancelled();
    sampled.cancel();
    let timeline = sampler.await.context("the sampler failed")??;
    let embedded_server = embedded.is_some();
    if let Some((stop_server, handle)) = embedded {
        stop_server.cancel();
        let _ = handle.await;
    }
    let recorded = metrics.snapshot();
    let planned_sessions = match &scenario.load {
        Load::Open { stages, spacing } => Some(Arrivals::planned(
            stages,
            *spacing,
            elapsed.min(scenario.duration),
        )),
        Load::Closed => None,
    };
    let facts = RunFacts {
        target: target_name,
        elapsed,
        planned_sessions,
        interrupted,
        generator_busy,
        generator_threads,
        embedded_server,
    };
    let outcomes = report::evaluate(&thresholds, &recorded, &facts);
    let summary = report::summary(&scenario, &recorded, &facts, &outcomes);
    let html = html::report(&summary, &recorded, &timeline.points);
    Ok(RunResult {
        summary,
        table: report::table(&recorded, &facts),
        thresholds: outcomes,
        timeline,
        html,
    })
}

/// The embedded server: on loopback, serving every client at once (its default cap, 10,000
/// connections, would leave the rest waiting in the listen backlog), and stopping at once when
/// the run ends (its clients are gone by then: nothing it still works on has anyone to answer).
/// Where the embedded server listens (port 0: the system picks one).
const EMBEDDED_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

fn embedded_server_config(scenario: &Scenario) -> ServeConfig {
    let defaults = ServeConfig::default();
    ServeConfig {
        listen: EMBEDDED_LISTEN,
        max_connections: scenario.connections.max(defaults.max_connections),
        drain_timeout: Duration::ZERO,
        ..defaults
    }
}

/// The longest a step in progress may still take when the run ends: the longest timeout of any
/// request or wait.
fn longest_wait(scenario: &Scenario) -> Duration {
    let steps = scenario.sessions.iter().flat_map(|session| &session.steps);
    steps
        .filter_map(|step| match step {
            Step::Request { timeout, .. } | Step::WaitMessage { timeout, .. } => Some(*timeout),
            Step::Message { .. } | Step::Think(_) => None,
        })
        .fold(scenario.timeout, Duration::max)
}

/// Arrivals that may wait for a free client, keeping their intended times; beyond this they are
/// dropped and counted. Ten per client (at least 1,000) lets a stalled server's backlog show in
/// the latencies rather than vanish into drops.
fn queue_len(connections: usize) -> usize {
    connections.saturating_mul(10).max(1000)
}

/// How long the end of a run waits for steps under way before saying so.
const QUIET_FINISH: Duration = Duration::from_secs(1);

/// Lets clients finish the step under way (each bounded by its timeout, the longest of which is
/// `timeout`), unless `shutdown` comes (Ctrl-C, before or during the wait); then stops the rest,
/// whose requests and waits are counted as unfinished.
async fn finish_clients(
    mut clients: tokio::task::JoinSet<()>,
    timeout: Duration,
    shutdown: &CancellationToken,
    progress: &Progress,
) {
    let started = Instant::now();
    let deadline = started + timeout + Duration::from_secs(1);
    let mut told = false;
    loop {
        let tell_at = if told {
            deadline
        } else {
            started + QUIET_FINISH
        };
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            joined = clients.join_next() => if joined.is_none() { break },
            () = tokio::time::sleep_until(tell_at.min(deadline)) => {
                if Instant::now() >= deadline {
                    break;
                }
                told = true;
                progress.note(&format!(
                    "waiting up to {:.1?} for the requests under way on {} clients (Ctrl-C \
                     stops waiting)",
                    deadline.saturating_duration_since(Instant::now()),
                    clients.len()
                ));
            }
        }
    }
    clients.abort_all();
    while clients.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use checks::tests::scenario;

    #[test]
    fn the_embedded_server_takes_every_client_at_once() {
        let config = embedded_server_config(&scenario("", 50_000));
        assert_eq!(config.max_connections, 50_000);
        assert!(config.listen.ip().is_loopback() && config.listen.port() == 0);
        let small = embedded_server_config(&scenario("", 10));
        assert_eq!(
            small.max_connections,
            ServeConfig::default().max_connections
        );
    }

    /// A checked scenario runs against the address its target was resolved to then: its target
    /// (here one that cannot resolve) is not looked up again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checked_target_is_not_resolved_again() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let addr = listener.local_addr().expect("bound");
        let unresolvable = scenario("target = \"nohost\"\n", 1);
        let error = Checked::new(unresolvable.clone())
            .await
            .err()
            .expect("refused");
        assert_eq!(
            format!("{error:#}"),
            "target: 'nohost' is not HOST:PORT that resolves: invalid socket address"
        );
        let checked = Checked {
            thresholds: Vec::new(),
            target: Some(addr),
            scenario: Scenario {
                duration: Duration::from_millis(200),
                ..unresolvable
            },
        };
        let result = execute_checked(
            checked,
            CancellationToken::new(),
            Progress::hidden(),
            || Ok(Vec::new()),
        )
        .await
        .expect("runs without resolving 'nohost'");
        assert_eq!(result.summary["target"], "nohost");
        assert_eq!(result.summary["connections"]["connected"], 1);
        drop(listener);
    }

    #[test]
    fn a_long_or_strange_name_makes_a_directory_name_that_fits() {
        let dir = default_out_dir(&"é/".repeat(300));
        let file_name = dir.file_name().expect("a name").to_str().expect("ascii");
        assert!(file_name.len() < 255, "{} bytes", file_name.len());
        assert!(
            file_name.starts_with(&format!("{}-", "_".repeat(NAME_IN_DIR))),
            "{file_name}"
        );
        assert_eq!(dir.parent(), Some(Path::new("results")));
    }
}
