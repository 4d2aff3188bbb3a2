//! `amf-bench run SCENARIO.toml`: simulated clients from a scenario against a target (or the
//! embedded `amf-bench serve`), latency measured from intended send times, results written to
//! `results/<name>-<UTC time>/`, thresholds deciding the exit status.

pub mod busy;
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
use crate::open_files;
use crate::serve::{ServeConfig, Server};
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
    check_scenario(&scenario, args)?;
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
            execute(scenario.clone(), shutdown, progress.clone(), open_log).await
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

/// Checks, before anything is made, what `execute` reads from the scenario beyond its own
/// validation, its thresholds and its target, so that their errors too say which file they are
/// about, as the scenario's other errors do; a target given with `--target` is named so instead.
fn check_scenario(scenario: &Scenario, args: &RunArgs) -> anyhow::Result<()> {
    let in_file = || format!("in scenario {}", args.scenario.display());
    report::parse_thresholds(scenario).with_context(in_file)?;
    match (&args.target, &scenario.target) {
        (Some(target), _) => check_target("--target", target),
        (None, Some(target)) => check_target("target", target).with_context(in_file),
        (None, None) => Ok(()),
    }
}

/// Fails unless `target` (the value of `key`) resolves to an address, as `execute` will resolve
/// it.
fn check_target(key: &str, target: &str) -> anyhow::Result<()> {
    let addrs = std::net::ToSocketAddrs::to_socket_addrs(target);
    first_address(key, target, addrs).map(drop)
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
/// `open_hlog` gives once the run's checks have passed.
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
    let thresholds = report::parse_thresholds(&scenario)?;
    check_open_files(&scenario, open_files::current_limit())?;
    check_local_ports(&scenario, local_port_count())?;
    let (embedded, target, target_name) = match &scenario.target {
        Some(target) => (None, resolve(target).await?, target.clone()),
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
    check_source_addresses(&scenario.source_addresses, target)?;
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
    next_sample
        .schedule_end(start + scenario.duration, &stop)
        .await;
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
fn embedded_server_config(scenario: &Scenario) -> ServeConfig {
    let defaults = ServeConfig::default();
    ServeConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_connections: scenario.connections.max(defaults.max_connections),
        drain_timeout: Duration::ZERO,
        ..defaults
    }
}

/// Fails, before any connection opens, when the clients (and the embedded server's end of each)
/// cannot all be open at once under the open-file `limit`: past it, connections fail by the
/// hundred with the accepts the server refuses, and the run measures nothing it was meant to.
fn check_open_files(scenario: &Scenario, limit: Option<u64>) -> anyhow::Result<()> {
    let Some(limit) = limit else {
        return Ok(());
    };
    let (per_client, why, remedy) = match scenario.target {
        Some(_) => (1, "its socket", ""),
        None => (
            2,
            "its socket and the embedded server's end of it",
            ", or run the server in a process of its own and give its address as `target`",
        ),
    };
    let needed = open_files::needed(scenario.connections as u64, per_client);
    if needed > limit {
        bail!(
            "connections = {}: the clients need {needed} open files at once ({per_client} per \
             client, {why}, and {} more), but this process may open {limit}; raise the hard \
             limit (`ulimit -Hn`: amf-bench raises its own soft limit up to it), lower \
             connections{remedy}",
            scenario.connections,
            open_files::RESERVED,
        );
    }
    Ok(())
}

/// How many local ports the kernel hands out to outgoing connections (Linux's
/// `ip_local_port_range`), where that can be read.
fn local_port_count() -> Option<u64> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = range
        .split_whitespace()
        .map(|bound| bound.parse::<u64>().ok());
    let (Some(Some(low)), Some(Some(high))) = (bounds.next(), bounds.next()) else {
        return None;
    };
    Some(high.saturating_sub(low) + 1)
}

/// Fails, before any connection opens, when the clients need more local ports than one source
/// address has for the target (`ports` each): past it, every further connect fails here.
fn check_local_ports(scenario: &Scenario, ports: Option<u64>) -> anyhow::Result<()> {
    let Some(ports) = ports else {
        return Ok(());
    };
    let sources = scenario.source_addresses.len().max(1) as u64;
    if scenario.connections as u64 > ports * sources {
        bail!(
            "connections = {}: one source address has {ports} local ports for the target \
             (ip_local_port_range), so {} clients need at least {} addresses; list them in \
             source_addresses (e.g. \"127.0.0.2\", \"127.0.0.3\" for a target on 127.0.0.1)",
            scenario.connections,
            scenario.connections,
            (scenario.connections as u64).div_ceil(ports)
        );
    }
    Ok(())
}

/// Fails unless every source address can be bound here and is of the target's family, so that a
/// typo or a foreign address is one clear error rather than every connection failing.
fn check_source_addresses(
    addresses: &[std::net::IpAddr],
    target: SocketAddr,
) -> anyhow::Result<()> {
    for (index, address) in addresses.iter().enumerate() {
        if address.is_ipv4() != target.is_ipv4() {
            let family = |ipv4: bool| if ipv4 { "IPv4" } else { "IPv6" };
            bail!(
                "source_addresses[{index}]: {address} is {} but the target {target} is {}; \
                 connections leave from an address of the target's family",
                family(address.is_ipv4()),
                family(target.is_ipv4())
            );
        }
        std::net::TcpListener::bind((*address, 0)).with_context(|| {
            format!("source_addresses[{index}]: {address} cannot be bound on this machine")
        })?;
    }
    Ok(())
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

async fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    first_address("target", target, tokio::net::lookup_host(target).await)
}

/// The first of the addresses `target` (the value of `key`) resolved to, or why there is none.
fn first_address(
    key: &str,
    target: &str,
    resolved: std::io::Result<impl Iterator<Item = SocketAddr>>,
) -> anyhow::Result<SocketAddr> {
    let mut addrs =
        resolved.with_context(|| format!("{key}: '{target}' is not HOST:PORT that resolves"))?;
    match addrs.next() {
        Some(addr) => Ok(addr),
        None => bail!("{key}: '{target}' resolves to no address"),
    }
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
                    "waiting up to {:.0?} for the requests under way on {} clients (Ctrl-C \
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

    /// A closed-model scenario of `connections` idle clients, with the keys of `extra`.
    fn scenario(extra: &str, connections: usize) -> Scenario {
        Scenario::parse(&format!(
            "name = \"files\"\n{extra}connections = {connections}\nduration = \"1s\"\n\
             [load]\nmodel = \"closed\"\n[[session]]\nname = \"idle\"\nsteps = [{{ think = \"1s\" }}]\n"
        ))
        .expect("parses")
    }

    #[test]
    fn clients_need_one_file_each_against_a_target_and_two_on_the_embedded_server() {
        let target = "target = \"127.0.0.1:9\"\n";
        assert!(check_open_files(&scenario(target, 936), Some(1000)).is_ok());
        let error = check_open_files(&scenario(target, 937), Some(1000)).expect_err("over");
        assert!(
            error.to_string().starts_with(
                "connections = 937: the clients need 1001 open files at once (1 per client, \
                 its socket, and 64 more), but this process may open 1000"
            ),
            "{error}"
        );
        assert!(check_open_files(&scenario("", 468), Some(1000)).is_ok());
        let error = check_open_files(&scenario("", 469), Some(1000)).expect_err("over");
        assert!(
            error.to_string().contains("give its address as `target`"),
            "{error}"
        );
        assert!(check_open_files(&scenario("", 1_000_000), None).is_ok());
    }

    #[test]
    fn clients_past_one_address_s_ports_need_more_source_addresses() {
        assert!(check_local_ports(&scenario("", 28_232), Some(28_232)).is_ok());
        let error = check_local_ports(&scenario("", 28_233), Some(28_232)).expect_err("over");
        assert!(
            error.to_string().starts_with(
                "connections = 28233: one source address has 28232 local ports for the target \
                 (ip_local_port_range), so 28233 clients need at least 2 addresses"
            ),
            "{error}"
        );
        let two_sources = "source_addresses = [\"127.0.0.1\", \"127.0.0.2\"]\n";
        assert!(check_local_ports(&scenario(two_sources, 56_464), Some(28_232)).is_ok());
        assert!(check_local_ports(&scenario(two_sources, 56_465), Some(28_232)).is_err());
        assert!(check_local_ports(&scenario("", 1_000_000), None).is_ok());
    }

    #[test]
    fn source_addresses_must_be_of_the_target_s_family() {
        let v4_target = SocketAddr::from(([127, 0, 0, 1], 9));
        let v6_source = ["::1".parse().expect("an address")];
        let error = check_source_addresses(&v6_source, v4_target).expect_err("mixed");
        assert!(
            error
                .to_string()
                .starts_with("source_addresses[0]: ::1 is IPv6 but the target 127.0.0.1:9 is IPv4"),
            "{error}"
        );
        let v4_source = ["127.0.0.1".parse().expect("an address")];
        assert!(check_source_addresses(&v4_source, v4_target).is_ok());
    }

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

    #[test]
    fn this_machine_s_local_port_range_is_read() {
        if std::path::Path::new("/proc/sys/net/ipv4/ip_local_port_range").exists() {
            assert!(local_port_count().is_some_and(|ports| ports > 0));
        }
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
