//! `amf-bench run` end to end: the example scenarios against the embedded server (counted as a
//! server of their own counts them, latency from intended send times), thresholds and exit codes,
//! and the results they write.

mod common;

use amf_bench::run::progress::Progress;
use amf_bench::run::scenario::Scenario;
use amf_bench::run::{RunResult, execute};
use common::run::{count, run_quietly, run_to_the_end, scenario, written_summary};
use common::{TestServer, config};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

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
    assert!(parsed >= 4, "the examples are there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smoke_scenario_runs_without_errors() {
    let scenario = Scenario::load(&scenario("smoke.toml")).expect("valid");
    let result = run_to_the_end(scenario).await;
    let summary = &result.summary;
    assert_eq!(summary["error_rate_percent"], 0.0, "{summary:#}");
    assert_eq!(summary["connections"]["connected"], 50);
    let planned = summary["sessions"]["planned"].as_u64().expect("planned");
    let started = summary["sessions"]["started"].as_u64().expect("started");
    let dropped = summary["sessions"]["dropped"].as_u64().expect("dropped");
    let unstarted = summary["sessions"]["unstarted"]
        .as_u64()
        .expect("unstarted");
    assert_eq!(planned, 700, "100/s for 1 s, then 300/s for 2 s");
    assert_eq!(started + dropped + unstarted, planned);
    assert!(started >= planned * 95 / 100, "{summary:#}");
    // Every session starts with one request; sessions cut short at the end skip later steps.
    let first_steps = count(summary, "echo") + count(summary, "push");
    assert_eq!(first_steps, started);
    // A session without its sleep or its wait was cut short by the end (errors are zero).
    let cut_short = summary["sessions"]["cut_short"]
        .as_u64()
        .expect("cut_short");
    let skipped = count(summary, "echo") - count(summary, "sleep") + count(summary, "push")
        - count(summary, "wait_message:news");
    assert!(skipped <= cut_short && cut_short <= 50, "{summary:#}");
    assert!(
        result.thresholds.iter().all(|outcome| outcome.ok),
        "{:?}",
        result.thresholds
    );
    let logged = hlog_counts(&result);
    for (command, entry) in summary["commands"].as_object().expect("commands") {
        assert_eq!(
            logged.get(command).copied().unwrap_or(0),
            entry["count"].as_u64().expect("count"),
            "latency.hlog holds every request of {command}"
        );
        assert!(
            result.html.contains(command.as_str()),
            "report.html names {command}"
        );
    }
    assert!(result.html.contains("<svg") && result.html.contains("by percentile"));
    assert_eq!(summary["generator"]["threads"], 2, "{summary:#}");
    let busy = summary["generator"]["busy_percent"].as_f64().expect("busy");
    assert!(busy > 0.0 && busy <= 100.0, "{summary:#}");
    assert!(result.table.contains("generator: 2 worker thread(s) busy"));
    assert!(result.html.contains("<th>generator busy (%)</th>"));
}

/// A closed model with nothing to wait for keeps its one worker busy all the time: the run says
/// its own queueing is in the latencies.
#[test]
fn a_saturated_generator_is_reported() {
    let scenario = Scenario::parse(
        r#"
        name = "flat-out"
        connections = 20
        duration = "500ms"
        in_flight = 4
        [load]
        model = "closed"
        [[session]]
        name = "echo"
        steps = [{ request = "echo", params = { text = "hi" } }]
        "#,
    )
    .expect("valid");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let result = runtime
        .block_on(execute(
            scenario,
            CancellationToken::new(),
            Progress::hidden(),
            || Ok(Vec::new()),
        ))
        .expect("runs");
    let generator = &result.summary["generator"];
    assert_eq!(generator["saturated"], true, "{generator}");
    assert!(
        result.table.contains(
            "warning: the generator's 1 worker thread(s), shared with the embedded server, were busy"
        ),
        "{}",
        result.table
    );
}

/// Requests per command tag, summed over the intervals of `latency.hlog`.
fn hlog_counts(result: &RunResult) -> std::collections::BTreeMap<String, u64> {
    use base64::Engine;
    use hdrhistogram::Histogram;
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let mut counts = std::collections::BTreeMap::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&result.timeline.hlog) {
        if let LogEntry::Interval(interval) = entry.expect("a valid interval log") {
            let bytes = base64::prelude::BASE64_STANDARD
                .decode(interval.encoded_histogram())
                .expect("base64");
            let histogram: Histogram<u64> = deserializer
                .deserialize(&mut bytes.as_slice())
                .expect("a histogram");
            let tag = interval.tag().expect("tagged").as_str().to_string();
            *counts.entry(tag).or_default() += histogram.len();
        }
    }
    counts
}

/// The server is slower than the arrivals: latency, measured from the intended start, includes
/// the time arrivals waited for the busy client; service time does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_counts_from_the_intended_start() {
    let scenario = Scenario::load(&scenario("stall.toml")).expect("valid");
    let result = run_to_the_end(scenario).await;
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

#[test]
fn a_failed_threshold_exits_1_and_results_are_written() {
    let text = std::fs::read_to_string(scenario("smoke.toml"))
        .expect("reads")
        .replace("\"echo.p99\" = \"< 500ms\"", "\"echo.p99\" = \"< 1us\"")
        .replace("duration = \"3s\"", "duration = \"1s\"");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("strict.toml");
    std::fs::write(&file, text).expect("writes");
    let out = dir.path().join("strict-out");
    let output = run_quietly(&file, &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("threshold echo.p99 < 1us: measured"),
        "{stdout}"
    );
    assert!(stdout.contains("FAILED"), "{stdout}");
    let summary = written_summary(&out);
    // In the file's order: echo.p99 comes first in smoke.toml.
    assert_eq!(summary["thresholds"][0]["name"], "echo.p99", "{summary:#}");
    assert_eq!(summary["thresholds"][0]["ok"], false, "{summary:#}");
}

#[test]
fn clients_that_cannot_connect_fail_the_error_rate_and_latency_thresholds() {
    // A port that was just free: nothing listens there, so every connect is refused.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binds");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("refused.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"refused\"\ntarget = \"{refused}\"\nconnections = 5\nduration = \"1s\"\n\
             [load]\nmodel = \"closed\"\n[[session]]\nname = \"echo\"\n\
             steps = [{{ request = \"echo\" }}]\n[thresholds]\n\
             error_rate = \"< 1%\"\n\"echo.p99\" = \"< 1s\"\n"
        ),
    )
    .expect("writes");
    let out = dir.path().join("refused-out");
    let output = run_quietly(&file, &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("threshold error_rate < 1%: measured 100.000% ... FAILED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("threshold echo.p99 < 1s: nothing measured ... FAILED"),
        "{stdout}"
    );
    // A closed model plans no sessions, so the line claims no share of a plan.
    assert!(
        stdout.contains("sessions: 0 started, 0 cut short at the end, 0 cut short by a lost connection, 0 dropped; connections: 0 connected, 5 failed"),
        "{stdout}"
    );
    let summary = written_summary(&out);
    assert_eq!(summary["error_rate_percent"], 100.0, "{summary:#}");
    let first_error = summary["connections"]["first_error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        first_error.starts_with("connect_refused: ") && first_error.contains("refused"),
        "{summary:#}"
    );
    assert!(
        stdout.contains(&format!("first connect error: {first_error}\n")),
        "{stdout}"
    );
    assert_eq!(
        summary["connections"]["errors"]["connect_refused"], 5,
        "{summary:#}"
    );
    assert_eq!(
        summary["thresholds"][0]["name"], "error_rate",
        "{summary:#}"
    );
    assert_eq!(summary["thresholds"][1]["name"], "echo.p99", "{summary:#}");
    assert_eq!(
        summary["thresholds"][1]["measured"],
        Json::Null,
        "{summary:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_counts_equal_the_servers_own() {
    let server = TestServer::start(config()).await;
    let mut scenario = Scenario::load(&scenario("smoke.toml")).expect("valid");
    scenario.target = Some(server.addr.to_string());
    let result = run_to_the_end(scenario).await;
    let counters = server.stop().await;
    for command in ["echo", "sleep", "push"] {
        assert_eq!(
            Some(count(&result.summary, command)),
            counters.requests.get(command).copied(),
            "{command}: {:#}",
            result.summary
        );
    }
    assert!(count(&result.summary, "echo") > 100);
}

#[test]
fn templates_read_csv_files_beside_the_scenario() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = scratch.path();
    std::fs::write(dir.join("users.csv"), "user,password\nann,a1\nbob,b2\n").expect("writes");
    let text = r#"
        name = "csv"
        connections = 2
        duration = "1s"
        [csv.users]
        file = "users.csv"
        [load]
        model = "closed"
        [[session]]
        name = "s"
        steps = [{ request = "echo", params = { user = "{{users.user}}", password = "{{users.password}}" } }, { think = "50ms" }]
    "#;
    std::fs::write(dir.join("csv.toml"), text).expect("writes");
    let scenario = Scenario::load(&dir.join("csv.toml")).expect("valid");
    let amf_bench::run::scenario::Step::Request { params, .. } = &scenario.sessions[0].steps[0]
    else {
        panic!("a request step");
    };
    let value = params.render(&mut amf_bench::run::template::RenderContext::new(1));
    let object = value.as_object().expect("an object");
    assert_eq!(object.get("user").and_then(|v| v.as_str()), Some("bob"));
    assert_eq!(object.get("password").and_then(|v| v.as_str()), Some("b2"));
    let missing = Scenario::parse_in(&text.replace("users.csv", "nobody.csv"), dir)
        .expect_err("no such file");
    assert!(
        format!("{missing:#}").contains("csv.users.file: cannot read"),
        "{missing:#}"
    );
}

/// The ramp (Poisson arrivals, two sessions in flight per client) and the message stream run
/// cleanly against the embedded server and meet their own thresholds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ramp_and_message_stream_examples_run_cleanly() {
    for name in ["ramp.toml", "messages.toml"] {
        let scenario = Scenario::load(&scenario(name)).expect("valid");
        let result = run_to_the_end(scenario).await;
        let summary = &result.summary;
        assert_eq!(summary["error_rate_percent"], 0.0, "{name}: {summary:#}");
        assert!(
            result.thresholds.iter().all(|outcome| outcome.ok),
            "{name}: {:?}",
            result.thresholds
        );
        if name == "ramp.toml" {
            // 0 -> 400/s over 2 s, 400/s for 2 s, 400 -> 0 over 1 s: 400 + 800 + 200 expected,
            // a seeded Poisson draw around that.
            let planned = summary["sessions"]["planned"].as_u64().expect("planned");
            assert!((1300..1500).contains(&planned), "{summary:#}");
            assert_eq!(summary["arrivals"]["poisson_seed"], 42);
        } else {
            let pushes = count(summary, "push");
            assert!(pushes > 50, "{summary:#}");
            assert!(
                count(summary, "wait_message:tick") + 100 >= pushes * 5,
                "{summary:#}"
            );
        }
    }
}
