//! `amf-bench run` end to end against the embedded server: the example scenarios, latency from
//! intended send times, thresholds and exit codes, scenario errors, and Ctrl-C.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use amf_bench::run::execute;
use amf_bench::run::scenario::Scenario;
use common::process::{amf_bench, run_bounded, signal, wait_exit};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios")).join(name)
}

fn count(summary: &Json, command: &str) -> u64 {
    summary["commands"][command]["count"].as_u64().unwrap_or(0)
}

#[test]
fn every_example_scenario_parses() {
    let dir =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios")).expect("scenarios/");
    let mut parsed = 0;
    for entry in dir {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            let scenario = Scenario::load(&path)
                .unwrap_or_else(|error| panic!("{}: {error:#}", path.display()));
            amf_bench::run::report::parse_thresholds(&scenario).expect("valid thresholds");
            parsed += 1;
        }
    }
    assert!(parsed >= 2, "the examples are there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smoke_scenario_runs_without_errors() {
    let scenario = Scenario::load(&scenario("smoke.toml")).expect("valid");
    let result = execute(scenario, CancellationToken::new())
        .await
        .expect("runs");
    let summary = &result.summary;
    assert_eq!(summary["error_rate_percent"], 0.0, "{summary:#}");
    assert_eq!(summary["connections"]["connected"], 50);
    let planned = summary["sessions"]["planned"].as_u64().expect("planned");
    let started = summary["sessions"]["started"].as_u64().expect("started");
    let dropped = summary["sessions"]["dropped"].as_u64().expect("dropped");
    assert_eq!(planned, 700, "100/s for 1 s, then 300/s for 2 s");
    assert_eq!(started + dropped, planned);
    // Every session starts with one request; sessions cut short at the end skip later steps.
    let first_steps = count(summary, "echo") + count(summary, "push");
    assert_eq!(first_steps, started);
    assert!(count(summary, "sleep") <= count(summary, "echo"));
    assert!(count(summary, "sleep") + 50 >= count(summary, "echo"));
    assert!(count(summary, "wait_message:news") + 50 >= count(summary, "push"));
    assert!(
        result.thresholds.iter().all(|outcome| outcome.ok),
        "{:?}",
        result.thresholds
    );
}

/// The server is slower than the arrivals: latency, measured from the intended start, includes
/// the time arrivals waited for the busy client; service time does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_counts_from_the_intended_start() {
    let scenario = Scenario::load(&scenario("stall.toml")).expect("valid");
    let result = execute(scenario, CancellationToken::new())
        .await
        .expect("runs");
    let sleep = &result.summary["commands"]["sleep"];
    let latency_max = sleep["latency_us"]["max"].as_u64().expect("latency");
    let service_p99 = sleep["service_us"]["p99"].as_u64().expect("service");
    assert!(
        service_p99 < 400_000,
        "each request takes about 100 ms: {sleep:#}"
    );
    assert!(
        latency_max > 1_000_000,
        "queued arrivals waited over a second: {sleep:#}"
    );
    let lag_max = sleep["lag_us"]["max"].as_u64().expect("lag");
    assert!(lag_max > 900_000, "{sleep:#}");
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("amf-bench-run-{}-{name}", std::process::id()))
}

#[test]
fn a_failed_threshold_exits_1_and_results_are_written() {
    let text = std::fs::read_to_string(scenario("smoke.toml"))
        .expect("reads")
        .replace("\"echo.p99\" = \"< 500ms\"", "\"echo.p99\" = \"< 1us\"")
        .replace("duration = \"3s\"", "duration = \"1s\"");
    let file = temp_path("strict.toml");
    std::fs::write(&file, text).expect("writes");
    let out = temp_path("strict-out");
    let output = run_bounded(&[
        "run",
        file.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("threshold echo.p99 < 1us: measured"),
        "{stdout}"
    );
    assert!(stdout.contains("FAILED"), "{stdout}");
    let summary: Json =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("written"))
            .expect("JSON");
    assert_eq!(summary["thresholds"][1]["ok"], false, "{summary:#}");
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn scenario_errors_exit_2_naming_the_key() {
    let text = std::fs::read_to_string(scenario("smoke.toml"))
        .expect("reads")
        .replace("\"3s\"", "\"3 sec\"");
    let file = temp_path("bad.toml");
    std::fs::write(&file, text).expect("writes");
    let output = run_bounded(&["run", file.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("duration: '3 sec' is not a duration"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn ctrl_c_stops_early_and_still_writes_results() {
    let text = std::fs::read_to_string(scenario("smoke.toml"))
        .expect("reads")
        .replace("duration = \"3s\"", "duration = \"60s\"");
    let file = temp_path("long.toml");
    std::fs::write(&file, text).expect("writes");
    let out = temp_path("long-out");
    let mut child = amf_bench()
        .args([
            "run",
            file.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    std::thread::sleep(Duration::from_millis(1500));
    signal(child.id(), "-INT");
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.code().is_some_and(|code| code <= 1), "{status:?}");
    let summary: Json =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("written"))
            .expect("JSON");
    assert_eq!(summary["interrupted"], true);
    assert!(
        summary["duration_s"].as_f64().is_some_and(|s| s < 30.0),
        "{summary:#}"
    );
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_dir_all(out);
}
