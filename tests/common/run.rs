//! Helpers shared by the `amf-bench run` tests: the example scenarios, runs in this process or as
//! a child, and what their summaries say.

use std::path::{Path, PathBuf};
use std::process::Output;

use amf_bench::run::progress::Progress;
use amf_bench::run::scenario::Scenario;
use amf_bench::run::{RunResult, execute};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::process::run_bounded;

/// An example scenario of `scenarios/`, by file name.
pub fn scenario(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios")).join(name)
}

/// Runs `scenario` in this process to its end, quietly, with no Ctrl-C.
pub async fn run_to_the_end(scenario: Scenario) -> RunResult {
    execute(
        scenario,
        CancellationToken::new(),
        Progress::hidden(),
        || Ok(Vec::new()),
    )
    .await
    .expect("runs")
}

/// How many requests (or waits) of `command` a summary counts; 0 when none.
pub fn count(summary: &Json, command: &str) -> u64 {
    summary["commands"][command]["count"].as_u64().unwrap_or(0)
}

/// The `summary.json` a run wrote into `out`.
pub fn written_summary(out: &std::path::Path) -> Json {
    let text = std::fs::read_to_string(out.join("summary.json")).expect("written");
    serde_json::from_str(&text).expect("JSON")
}

/// `amf-bench run SCENARIO --quiet --out OUT`, bounded in time.
pub fn run_quietly(scenario: &std::path::Path, out: &std::path::Path) -> Output {
    run_bounded(&[
        "run",
        scenario.to_str().expect("utf-8"),
        "--quiet",
        "--out",
        out.to_str().expect("utf-8"),
    ])
}

/// A one-second closed-model echo scenario of `connections` clients on the embedded server,
/// written to `NAME.toml` in `dir`.
pub fn echo_clients(dir: &Path, name: &str, connections: usize) -> PathBuf {
    let file = dir.join(format!("{name}.toml"));
    let text = format!(
        "name = \"{name}\"\nconnections = {connections}\nconnect_rate = 5000\nduration = \"1s\"\n\
         [load]\nmodel = \"closed\"\n[[session]]\nname = \"echo\"\n\
         steps = [{{ request = \"echo\" }}, {{ think = \"50ms\" }}]\n"
    );
    std::fs::write(&file, text).expect("writes");
    file
}

/// Parses `text` as a scenario and runs it to its end, quietly, on a runtime of two workers.
pub fn run_text(text: &str) -> RunResult {
    let scenario = Scenario::parse(text).expect("valid");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime
        .block_on(execute(
            scenario,
            CancellationToken::new(),
            Progress::hidden(),
            || Ok(Vec::new()),
        ))
        .expect("runs")
}
