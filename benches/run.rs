//! The load generator's own cost, against an `amf-bench serve` process pinned to core 1 while
//! this bench and the `amf-bench run --threads 1` processes it starts stay on core 0
//! (scripts/bench-run.sh pins them):
//! - echo requests per second `amf-bench run` drives from one core (closed model, 1,000
//!   connections, 4 sessions in flight each), against the minimal generator of benches/serve.rs
//!   (pre-encoded frames, no histograms) measured the same way in the same run;
//! - the open model's own capacity: the highest session rate an open-model run of the same
//!   shape keeps up with (every planned session started, none dropped, median lag under 1 ms),
//!   found by bisection between 30% and 100% of the closed model's rate; an open model costs
//!   more per session (a session waits for its arrival rather than following the last reply);
//! - the schedule lag p99 of open-model runs at 80% of each capacity, after a second at rate 0
//!   in which every connection opens (the lag of the schedule, not of the connection ramp),
//!   with the server's reply time p99, the generator's busy share and the time the hypervisor
//!   took from each core (steal) during the run, what the lag tail may follow on a shared
//!   virtual machine;
//! - the memory of an idle simulated client: RSS of a run with 10,000 idle clients, and of one
//!   with 50,000, against one with a single client, all sampled after every client has
//!   connected. Where the open-file limit will not let one process hold 50,000 sockets (the
//!   run's and the server's), the second count is the most it allows, and the line says so.
//!
//! Run: `scripts/bench-run.sh [RUNS] [SECONDS]`, or `cargo bench --bench run [-- SECONDS]`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::load::{CONNECTIONS, IN_FLIGHT_PER_CONNECTION, echo_request, load, rss_bytes};
use common::{BenchResult, Listening};

/// Idle clients whose memory is measured.
const IDLE_CLIENTS: [usize; 2] = [10_000, 50_000];
/// Files a run or server process keeps open beside its client sockets, and then some.
const FILE_HEADROOM: u64 = 1_000;
const PARAMS: &str = r#"{ player = 48213, text = "hello from the bench", x = 152.5 }"#;

fn main() -> BenchResult<()> {
    let seconds = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<u64>().ok())
        .unwrap_or(5);
    let server = start_server()?;
    let scratch = tempfile::tempdir()?;

    let baseline = load(server.addr, &echo_request()?, Duration::from_secs(seconds))?;
    let capacity = run_capacity(server.addr, seconds, scratch.path())?;
    println!("minimal generator (baseline): {baseline:.0} requests/s");
    println!("amf-bench run:                {capacity:.0} requests/s");
    println!("ratio: {:.2}", capacity / baseline);

    let open = open_capacity(server.addr, capacity, seconds, scratch.path())?;
    println!("open-model capacity:          {open:.0} sessions/s");
    for (rate, of) in [(open * 0.8, "open"), (capacity * 0.8, "closed")] {
        let steal_before = steal_ms();
        let lag = run_lag(server.addr, rate.round(), seconds, scratch.path())?;
        let steal = steal_ms().zip(steal_before).map(|(after, before)| {
            let [core0, core1] = [0, 1].map(|core| after[core].saturating_sub(before[core]));
            format!(", steal core 0 {core0} ms, core 1 {core1} ms")
        });
        println!(
            "lag p99 at 80% of {of}: {} us at {rate:.0}/s (p50 {} us, latency p99 {} us, \
             service p99 {} us, dropped {}, generator busy {:.0}%{})",
            lag.p99,
            lag.p50,
            lag.latency_p99,
            lag.service_p99,
            lag.dropped,
            lag.busy_percent,
            steal.unwrap_or_default()
        );
    }

    let (one, _) = idle_rss(server.addr, 1, scratch.path())?;
    for wanted in IDLE_CLIENTS {
        let (clients, limited) = idle_clients_allowed(wanted);
        let (many, connected) = idle_rss(server.addr, clients, scratch.path())?;
        // Clients still connecting hold less than connected ones: dividing by those connected
        // overstates the cost, never understates it.
        let per_client =
            many.saturating_sub(one) as f64 / connected.saturating_sub(1).max(1) as f64;
        println!(
            "idle client: {:.1} KiB of run RSS each ({clients} clients{}{})",
            per_client / 1024.0,
            limited
                .map(|limit| format!(", not {wanted}: {limit} open files per process here"))
                .unwrap_or_default(),
            if connected < clients as u64 {
                format!(", of which {connected} connected in time")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

/// `amf-bench serve` on core 1, one worker thread, no pings (the minimal generator does not
/// answer them).
fn start_server() -> BenchResult<Listening> {
    Listening::start(
        Command::new("taskset")
            .args(["-c", "1", env!("CARGO_BIN_EXE_amf-bench")])
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--threads",
                "1",
                "--no-ping",
            ])
            .args(["--max-connections", "60000"]),
    )
}

/// Writes `scenario` and starts `amf-bench run` on it against `addr`, results in `out`.
fn start_run(addr: SocketAddr, scenario: &str, dir: &Path, name: &str) -> BenchResult<Child> {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, scenario)?;
    Ok(Command::new(env!("CARGO_BIN_EXE_amf-bench"))
        .args(["run", "--quiet", "--threads", "1"])
        .args(["--target", &addr.to_string(), "--out"])
        .arg(dir.join(name))
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

fn summary_of(mut child: Child, dir: &Path, name: &str) -> BenchResult<serde_json::Value> {
    child.wait()?;
    let path: PathBuf = dir.join(name).join("summary.json");
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

/// Echo requests per second of a closed-model run as busy as the minimal generator.
fn run_capacity(addr: SocketAddr, seconds: u64, dir: &Path) -> BenchResult<f64> {
    let scenario = format!(
        r#"
        name = "capacity"
        connections = {CONNECTIONS}
        connect_rate = 20000
        duration = "{seconds}s"
        in_flight = {IN_FLIGHT_PER_CONNECTION}
        [load]
        model = "closed"
        [[session]]
        name = "echo"
        steps = [{{ request = "echo", params = {PARAMS} }}]
        "#
    );
    let summary = summary_of(
        start_run(addr, &scenario, dir, "capacity")?,
        dir,
        "capacity",
    )?;
    let count = summary["commands"]["echo"]["count"]
        .as_f64()
        .ok_or("no echo count")?;
    let elapsed = summary["duration_s"].as_f64().ok_or("no duration")?;
    Ok(count / elapsed)
}

/// What an open-model run measured: echo lag and latency in microseconds, and its sessions.
struct Lag {
    p50: u64,
    p99: u64,
    latency_p99: u64,
    /// The server's reply time p99: when it is long, lag follows (arrivals wait for a lane).
    service_p99: u64,
    /// The share of the run the generator's worker was busy, in percent.
    busy_percent: f64,
    dropped: u64,
    /// Sessions started, of those planned.
    started: u64,
    planned: u64,
}

impl Lag {
    /// Whether the run kept up with its schedule: none dropped, all but the last moment's
    /// sessions started (99.9%), and arrivals not piling up (a median lag under 1 ms).
    fn kept_up(&self) -> bool {
        self.dropped == 0 && self.started * 1000 >= self.planned * 999 && self.p50 < 1_000
    }
}

/// The highest open-model rate (sessions/s) that keeps up, by bisection between 30% and 100%
/// of the closed model's `capacity`, to 1/64 of that range.
fn open_capacity(addr: SocketAddr, capacity: f64, seconds: u64, dir: &Path) -> BenchResult<f64> {
    let (mut low, mut high) = (capacity * 0.3, capacity);
    for _ in 0..6 {
        let rate = ((low + high) / 2.0).round();
        if run_lag(addr, rate, seconds, dir)?.kept_up() {
            low = rate;
        } else {
            high = rate;
        }
    }
    Ok(low)
}

/// An open-model run at `rate` sessions/s for `seconds`, after a second at rate 0 in which the
/// connections open.
fn run_lag(addr: SocketAddr, rate: f64, seconds: u64, dir: &Path) -> BenchResult<Lag> {
    let scenario = format!(
        r#"
        name = "lag"
        connections = {CONNECTIONS}
        connect_rate = 20000
        duration = "{}s"
        in_flight = {IN_FLIGHT_PER_CONNECTION}
        [load]
        model = "open"
        stages = [{{ rate = 0, for = "1s" }}, {{ rate = {rate}, for = "{seconds}s" }}]
        [[session]]
        name = "echo"
        steps = [{{ request = "echo", params = {PARAMS} }}]
        "#,
        seconds + 1
    );
    let summary = summary_of(start_run(addr, &scenario, dir, "lag")?, dir, "lag")?;
    let echo = &summary["commands"]["echo"];
    let sessions = &summary["sessions"];
    let field = |value: &serde_json::Value| value.as_u64().ok_or("a missing figure");
    Ok(Lag {
        p50: field(&echo["lag_us"]["p50"])?,
        p99: field(&echo["lag_us"]["p99"])?,
        latency_p99: field(&echo["latency_us"]["p99"])?,
        service_p99: field(&echo["service_us"]["p99"])?,
        busy_percent: summary["generator"]["busy_percent"]
            .as_f64()
            .ok_or("a missing figure")?,
        dropped: field(&sessions["dropped"])?,
        started: field(&sessions["started"])?,
        planned: field(&sessions["planned"])?,
    })
}

/// Milliseconds the hypervisor ran something else while cores 0 and 1 had work ("steal" in
/// /proc/stat, in ticks of 10 ms), or `None` where that is not readable. A core that loses
/// hundreds of ms in a run stalls the server or the generator on it, whatever either does.
fn steal_ms() -> Option<[u64; 2]> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let steal_of = |core: &str| -> Option<u64> {
        let line = stat
            .lines()
            .find(|line| line.split_whitespace().next() == Some(core))?;
        Some(line.split_whitespace().nth(8)?.parse::<u64>().ok()? * 10)
    };
    Some([steal_of("cpu0")?, steal_of("cpu1")?])
}

/// RSS of the run process with `clients` idle clients once they have had time to connect, and
/// how many did. Past 25,000 clients their sockets come from three loopback addresses, as one
/// address has about 28,000 ephemeral ports.
fn idle_rss(addr: SocketAddr, clients: usize, dir: &Path) -> BenchResult<(u64, u64)> {
    // Slow enough that the server's accept queue rarely overflows; a connect whose SYN is
    // dropped anyway (a server core lost to the hypervisor) is retried after 1, 3 and 7 s, so
    // the wait covers all three.
    const CONNECT_RATE: usize = 2_000;
    const RETRIES: u64 = 1 + 3 + 7;
    let name = format!("idle-{clients}");
    let connected_after = Duration::from_secs((clients / CONNECT_RATE) as u64 + RETRIES + 2);
    let sources = if clients > 25_000 {
        r#"source_addresses = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]"#
    } else {
        ""
    };
    let scenario = format!(
        r#"
        name = "{name}"
        connections = {clients}
        connect_rate = {CONNECT_RATE}
        duration = "{}s"
        {sources}
        [load]
        model = "closed"
        [[session]]
        name = "idle"
        steps = [{{ think = "1h" }}]
        "#,
        connected_after.as_secs() + 2
    );
    let child = start_run(addr, &scenario, dir, &name)?;
    std::thread::sleep(connected_after);
    let rss = rss_bytes(child.id());
    let summary = summary_of(child, dir, &name)?;
    let connected = summary["connections"]["connected"].as_u64().unwrap_or(0);
    if connected == 0 {
        return Err(format!("none of {clients} idle clients connected").into());
    }
    Ok((rss?, connected))
}

/// `wanted` idle clients, or the most one process may hold under the hard open-file limit
/// (amf-bench raises its soft limit to it), rounded down to a thousand, with that limit.
fn idle_clients_allowed(wanted: usize) -> (usize, Option<u64>) {
    match rlimit::Resource::NOFILE.get() {
        Ok((_, hard)) if wanted as u64 + FILE_HEADROOM > hard => {
            let allowed = hard.saturating_sub(FILE_HEADROOM) / 1_000 * 1_000;
            (allowed.max(2) as usize, Some(hard))
        }
        _ => (wanted, None),
    }
}
