//! `amf-bench run` stopped early or losing an output: Ctrl-C and SIGHUP, an interval log that
//! cannot be written, a server killed mid-run, and a closed standard output; results still written.

mod common;

use std::process::Stdio;
use std::time::Duration;

use amf_bench::run::execute;
use amf_bench::run::progress::Progress;
use amf_bench::run::scenario::Scenario;
use common::process::{KillOnDrop, Listening, amf_bench, run_bounded, signal, wait_exit};
use common::run::{count, echo_clients, scenario, written_summary};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

#[test]
fn the_interval_log_is_written_during_the_run_and_ctrl_c_keeps_the_results() {
    interrupted_run_keeps_its_results("-INT");
}

/// A closed terminal or SSH session ends a run as Ctrl-C does, its results written.
#[test]
fn sighup_keeps_the_results_too() {
    interrupted_run_keeps_its_results("-HUP");
}

/// Starts a 60-second run, waits for its first logged interval, sends `signal`, and checks the
/// run stopped early with its results written.
fn interrupted_run_keeps_its_results(signal_name: &str) {
    let text = std::fs::read_to_string(scenario("smoke.toml"))
        .expect("reads")
        .replace("duration = \"3s\"", "duration = \"60s\"");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("long.toml");
    std::fs::write(&file, text).expect("writes");
    let out = dir.path().join("long-out");
    // An earlier run's results in the same directory.
    std::fs::create_dir_all(&out).expect("makes the directory");
    for earlier in ["summary.json", "report.html"] {
        std::fs::write(out.join(earlier), "earlier").expect("writes");
    }
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
    // The interval log is written as the run goes, not kept for the end.
    let hlog = out.join("latency.hlog");
    let has_an_interval = || {
        std::fs::read_to_string(&hlog).is_ok_and(|text| text.lines().any(|l| l.starts_with("Tag=")))
    };
    let mut waited = Duration::ZERO;
    while !has_an_interval() {
        assert!(
            waited < Duration::from_secs(20),
            "no interval in latency.hlog during the run"
        );
        std::thread::sleep(Duration::from_millis(100));
        waited += Duration::from_millis(100);
    }
    assert!(
        !out.join("summary.json").exists() && !out.join("report.html").exists(),
        "a running run's log never stands beside an earlier run's summary"
    );
    // A second run on the same directory meanwhile is refused: its log would be spliced into
    // this one's.
    let second = run_bounded(&[
        "run",
        file.to_str().expect("utf-8"),
        "--quiet",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let said = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{said}");
    assert!(said.contains("another run is writing"), "{said}");
    assert!(has_an_interval(), "the first run's log is untouched");
    signal(child.id(), signal_name);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.code().is_some_and(|code| code <= 1), "{status:?}");
    assert!(has_an_interval());
    let summary = written_summary(&out);
    assert_eq!(summary["interrupted"], true);
    assert!(
        summary["duration_s"].as_f64().is_some_and(|s| s < 30.0),
        "{summary:#}"
    );
}

/// Takes `room` bytes (the interval log's header is 273), then fails every write, as a disk that
/// fills up does.
struct FillsUp {
    room: usize,
    kept: Vec<u8>,
}

impl std::io::Write for FillsUp {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if bytes.len() > self.room {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "no space left on device",
            ));
        }
        self.room -= bytes.len();
        self.kept.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Two clients, each with a 20-second request under way for most of a 60-second run.
const SLOW_REQUESTS: &str = r#"
    name = "slow-requests"
    connections = 2
    duration = "60s"
    [load]
    model = "closed"
    [[session]]
    name = "slow"
    steps = [{ request = "echo" }, { request = "sleep", params = { ms = 20000 }, timeout = "30s" }]
"#;

/// A run whose interval log cannot be written (a full disk) stops at once, as at Ctrl-C, without
/// waiting for the requests under way; what it logged before stays, and its results say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stops_at_once_when_its_interval_log_cannot_be_written() {
    let scenario = Scenario::parse(SLOW_REQUESTS).expect("valid");
    let run = execute(
        scenario,
        CancellationToken::new(),
        Progress::hidden(),
        || {
            Ok(FillsUp {
                room: 300,
                kept: Vec::new(),
            })
        },
    );
    let result = tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("stops long before its 60 s, and without waiting 20 s for the requests")
        .expect("runs");
    let error = result.timeline.log_error.expect("the log failed");
    assert!(
        error.contains("cannot write latency.hlog") && error.contains("no space left"),
        "{error}"
    );
    assert_eq!(result.summary["interrupted"], true, "{:#}", result.summary);
    assert_eq!(count(&result.summary, "echo"), 2, "{:#}", result.summary);
    let kept = String::from_utf8_lossy(&result.timeline.hlog.kept);
    assert!(
        kept.starts_with("#[Histogram log format version 1.3]"),
        "{kept}"
    );
}

/// On the command line, such a run still writes its summary and report, then exits 2 naming
/// the failure.
#[test]
fn a_run_whose_log_cannot_be_written_writes_its_results_and_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("slow-requests.toml");
    std::fs::write(&file, SLOW_REQUESTS).expect("writes");
    let out = dir.path().join("log-full-out");
    std::fs::create_dir_all(&out).expect("makes the directory");
    std::os::unix::fs::symlink("/dev/full", out.join("latency.hlog")).expect("links");
    let started = std::time::Instant::now();
    let output = run_bounded(&[
        "run",
        file.to_str().expect("utf-8"),
        "--quiet",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopped at once"
    );
    assert!(
        stderr.contains("the run stopped early: cannot write latency.hlog")
            && stderr.contains("No space left on device"),
        "{stderr}"
    );
    let summary = written_summary(&out);
    assert_eq!(summary["interrupted"], true, "{summary:#}");
    assert!(out.join("report.html").exists());
}

/// The server dies a second into a three-second run: the run still ends on time, counts the lost
/// connections and the refused reconnections by kind, and writes its results.
#[test]
fn killing_the_server_mid_run_ends_on_time_with_errors_by_kind() {
    let mut server = Listening::start(&["serve", "--listen", "127.0.0.1:0"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("kill.toml");
    let text = format!(
        r#"
        name = "kill"
        target = "{}"
        connections = 10
        duration = "3s"
        timeout = "1s"
        reconnect = "100ms"
        [load]
        model = "closed"
        [[session]]
        name = "s"
        steps = [{{ request = "echo" }}, {{ think = "10ms" }}]
        "#,
        server.addr
    );
    std::fs::write(&file, text).expect("writes");
    let out = dir.path().join("kill-out");
    let started = std::time::Instant::now();
    let mut run = amf_bench()
        .args(["run", "--quiet", file.to_str().expect("utf-8"), "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    std::thread::sleep(Duration::from_secs(1));
    server.child.kill().expect("kills the server");
    // The run's peak memory while it counts the failures, for results/BENCHMARKS.md.
    std::thread::sleep(Duration::from_millis(1500));
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", run.id())) {
        let peak = status.lines().find(|line| line.starts_with("VmHWM:"));
        eprintln!("run peak memory with its server killed mid-run: {peak:?}");
    }
    let status = wait_exit(&mut run, Duration::from_secs(20));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "ended on time: {took:?}");
    assert!(status.code().is_some_and(|code| code <= 1), "{status:?}");
    let summary = written_summary(&out);
    let lost: u64 = summary["connections"]["lost"]
        .as_object()
        .expect("lost")
        .values()
        .filter_map(Json::as_u64)
        .sum();
    assert_eq!(lost, 10, "every connection was lost: {summary:#}");
    assert!(
        summary["connections"]["errors"]["connect_refused"]
            .as_u64()
            .is_some_and(|refused| refused >= 10),
        "reconnections were refused: {summary:#}"
    );
    assert!(count(&summary, "echo") > 100, "{summary:#}");
    assert!(out.join("latency.hlog").exists() && out.join("report.html").exists());
}

#[test]
fn a_closed_standard_output_still_gets_the_results_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = echo_clients(dir.path(), "closed-stdout", 5);
    std::fs::write(
        &file,
        std::fs::read_to_string(&file).expect("reads") + "[thresholds]\nerror_rate = \"< 1%\"\n",
    )
    .expect("writes");
    let out = dir.path().join("closed-stdout-out");
    let mut child = amf_bench()
        .args(["run", "--quiet", file.to_str().expect("utf-8"), "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    // As `| head -1` that has gone: the table has nowhere to go.
    drop(child.stdout.take());
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("reads stderr");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(written_summary(&out)["thresholds"][0]["ok"], true);
}

/// Whether process `pid` catches signal `number` (its `SigCgt` mask in /proc says so).
fn catches(pid: u32, number: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok());
    mask.is_some_and(|mask| mask & (1 << (number - 1)) != 0)
}

/// Ctrl-C (or SIGTERM) while `run` is still setting up, here blocked reading its scenario from a
/// pipe, does not kill it: the signal is watched from the start, and the run, once it starts,
/// stops at once and writes its results, as at any Ctrl-C.
#[test]
fn a_signal_before_the_run_starts_stops_it_with_its_results_written() {
    const SIGINT: u32 = 2;
    const SIGTERM: u32 = 15;
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("scenario.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("runs mkfifo");
    assert!(made.success(), "mkfifo");
    let out = dir.path().join("early-out");
    let mut child = KillOnDrop(
        amf_bench()
            .args(["run", "--quiet", fifo.to_str().expect("utf-8"), "--out"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts"),
    );
    let child = &mut child.0;
    // Still opening its scenario (the pipe has no writer yet): nothing of the run is set up.
    let mut waited = Duration::ZERO;
    while !(catches(child.id(), SIGINT) && catches(child.id(), SIGTERM)) {
        assert!(
            waited < Duration::from_secs(10) && child.try_wait().expect("waits").is_none(),
            "SIGINT and SIGTERM are not caught while the scenario is read"
        );
        std::thread::sleep(Duration::from_millis(10));
        waited += Duration::from_millis(10);
    }
    signal(child.id(), "-INT");
    let scenario = std::fs::read_to_string(echo_clients(dir.path(), "early", 2)).expect("reads");
    std::fs::write(&fifo, scenario).expect("writes the scenario into the pipe");
    let status = wait_exit(child, Duration::from_secs(20));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("reads stderr");
    assert!(
        status.code().is_some_and(|code| code <= 1),
        "{status:?}: {stderr}"
    );
    let summary = written_summary(&out);
    assert_eq!(summary["interrupted"], true, "{summary:#}");
    assert_eq!(summary["sessions"]["started"], 0, "{summary:#}");
}
