//! The load generator's own cost, against an `amf-bench serve` process pinned to core 1 while
//! this bench and the `amf-bench run` processes it starts stay on core 0 (scripts/bench-run.sh
//! pins them):
//! - echo requests per second `amf-bench run` drives from one core (closed model, 1,000
//!   connections, 4 sessions in flight each), against the minimal generator of benches/serve.rs
//!   (pre-encoded frames, no histograms) measured the same way in the same run;
//! - the schedule lag p99 of an open-model run at 80% of that capacity;
//! - the memory of an idle simulated client: RSS of a run with 10,000 idle clients against one
//!   with a single client, both sampled after every client has connected.
//!
//! Run: `scripts/bench-run.sh [RUNS] [SECONDS]`, or `cargo bench --bench run [-- SECONDS]`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::load::{CONNECTIONS, IN_FLIGHT_PER_CONNECTION, echo_request, load, rss_bytes};
use common::{BenchResult, Listening};

const IDLE_CLIENTS: usize = 10_000;
const PARAMS: &str = r#"{ player = 48213, text = "hello from the bench", x = 152.5 }"#;

fn main() -> BenchResult<()> {
    let seconds = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<u64>().ok())
        .unwrap_or(5);
    let server = start_server()?;
    let scratch = std::env::temp_dir().join(format!("amf-bench-run-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;

    let baseline = load(server.addr, &echo_request()?, Duration::from_secs(seconds))?;
    let capacity = run_capacity(server.addr, seconds, &scratch)?;
    println!("minimal generator (baseline): {baseline:.0} requests/s");
    println!("amf-bench run:                {capacity:.0} requests/s");
    println!("ratio: {:.2}", capacity / baseline);

    let rate = (capacity * 0.8).round();
    let (lag_p99, latency_p99) = run_lag(server.addr, rate, seconds, &scratch)?;
    println!("lag p99 at {rate:.0}/s (80%): {lag_p99} us (latency p99 {latency_p99} us)");

    let per_client = idle_memory(server.addr, &scratch)?;
    println!(
        "idle client: {:.1} KiB of run RSS each ({IDLE_CLIENTS} clients)",
        per_client / 1024.0
    );
    let _ = std::fs::remove_dir_all(&scratch);
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
            .args(["--max-connections", "20000"]),
    )
}

/// Writes `scenario` and starts `amf-bench run` on it against `addr`, results in `out`.
fn start_run(addr: SocketAddr, scenario: &str, dir: &Path, name: &str) -> BenchResult<Child> {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, scenario)?;
    Ok(Command::new(env!("CARGO_BIN_EXE_amf-bench"))
        .args(["run", "--quiet", "--target", &addr.to_string(), "--out"])
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

/// The echo lag and latency p99 (microseconds) of an open-model run at `rate` sessions/s.
fn run_lag(addr: SocketAddr, rate: f64, seconds: u64, dir: &Path) -> BenchResult<(u64, u64)> {
    let scenario = format!(
        r#"
        name = "lag"
        connections = {CONNECTIONS}
        connect_rate = 20000
        duration = "{seconds}s"
        in_flight = {IN_FLIGHT_PER_CONNECTION}
        [load]
        model = "open"
        stages = [{{ rate = {rate}, for = "{seconds}s" }}]
        [[session]]
        name = "echo"
        steps = [{{ request = "echo", params = {PARAMS} }}]
        "#
    );
    let summary = summary_of(start_run(addr, &scenario, dir, "lag")?, dir, "lag")?;
    let echo = &summary["commands"]["echo"];
    let lag = echo["lag_us"]["p99"].as_u64().ok_or("no lag")?;
    let latency = echo["latency_us"]["p99"].as_u64().ok_or("no latency")?;
    Ok((lag, latency))
}

/// RSS of the run process with `clients` idle clients, once all have connected.
fn idle_rss(addr: SocketAddr, clients: usize, dir: &Path) -> BenchResult<u64> {
    let name = format!("idle-{clients}");
    let scenario = format!(
        r#"
        name = "{name}"
        connections = {clients}
        connect_rate = 5000
        duration = "8s"
        [load]
        model = "closed"
        [[session]]
        name = "idle"
        steps = [{{ think = "1h" }}]
        "#
    );
    let child = start_run(addr, &scenario, dir, &name)?;
    std::thread::sleep(Duration::from_secs(6));
    let rss = rss_bytes(child.id());
    let summary = summary_of(child, dir, &name)?;
    let connected = summary["connections"]["connected"].as_u64().unwrap_or(0);
    if connected != clients as u64 {
        return Err(format!("{connected} of {clients} idle clients connected").into());
    }
    rss
}

/// Bytes of run RSS per idle client.
fn idle_memory(addr: SocketAddr, dir: &Path) -> BenchResult<f64> {
    let one = idle_rss(addr, 1, dir)?;
    let many = idle_rss(addr, IDLE_CLIENTS, dir)?;
    Ok(many.saturating_sub(one) as f64 / (IDLE_CLIENTS - 1) as f64)
}
