//! `amf-bench run` refusing to start: scenario, threshold and target errors, open-file limits, a
//! results directory that cannot be made, and worker threads; each exits 2 before any run.

mod common;

use std::process::{Command, Output};

use common::process::{run_bounded, run_bounded_command};
use common::run::{echo_clients, run_quietly, scenario, written_summary};
use serde_json::Value as Json;

#[test]
fn scenario_errors_exit_2_naming_the_key() {
    let text = std::fs::read_to_string(scenario("smoke.toml"))
        .expect("reads")
        .replace("\"3s\"", "\"3 sec\"");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, text).expect("writes");
    let output = run_bounded(&["run", file.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("duration: '3 sec' is not a duration"),
        "{stderr}"
    );
}

/// Errors about the thresholds and the target are about the scenario's contents too: they say
/// which file, as its other errors do; a `--target` given on the command line is named as such.
#[test]
fn threshold_target_and_client_errors_name_the_scenario_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, extra: &str| {
        let file = dir.path().join(name);
        let text = format!(
            "name = \"t\"\nconnections = 1\nduration = \"1s\"\n{extra}\n[load]\n\
             model = \"closed\"\n[[session]]\nname = \"s\"\nsteps = [{{ request = \"echo\" }}]\n"
        );
        std::fs::write(&file, text).expect("writes");
        file
    };
    let threshold = write(
        "threshold.toml",
        "thresholds = { \"nope.p99\" = \"< 5ms\" }",
    );
    let target = write("target.toml", "target = \"nohost\"");
    // Against the embedded server, which listens on IPv4.
    let family = write("family.toml", "source_addresses = [\"::1\"]");
    let cases = [
        (
            vec![family.to_str().expect("utf-8")],
            format!(
                "amf-bench: error: in scenario {}: source_addresses[0]: ::1 is IPv6 but the \
                 embedded server is IPv4",
                family.display()
            ),
        ),
        (
            vec![threshold.to_str().expect("utf-8")],
            format!(
                "amf-bench: error: in scenario {}: thresholds.\"nope.p99\": no step of the \
                 scenario sends 'nope'",
                threshold.display()
            ),
        ),
        (
            vec![target.to_str().expect("utf-8")],
            format!(
                "amf-bench: error: in scenario {}: target: 'nohost' is not HOST:PORT that resolves",
                target.display()
            ),
        ),
        (
            vec![target.to_str().expect("utf-8"), "--target", "elsewhere"],
            "amf-bench: error: --target: 'elsewhere' is not HOST:PORT that resolves".to_string(),
        ),
    ];
    for (args, expected) in cases {
        let out = dir.path().join("out");
        let out = out.to_str().expect("utf-8");
        let output = run_bounded(&[&["run", "--quiet", "--out", out], args.as_slice()].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with(&expected), "{args:?}: {stderr}");
        assert!(
            !dir.path().join("out").exists(),
            "refused before making --out"
        );
    }
}

#[test]
fn a_results_directory_that_cannot_be_made_fails_before_the_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blocker = dir.path().join("out-is-a-file");
    std::fs::write(&blocker, "a file where the directory should go").expect("writes");
    let output = run_quietly(&scenario("smoke.toml"), &blocker);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot create the results directory"),
        "{stderr}"
    );
    // The table is printed after a run: none means the scenario's seconds were not spent.
    assert!(output.stdout.is_empty(), "nothing ran");
}

/// `amf-bench run SCENARIO --quiet --out OUT` started by a shell that first ran `ulimit LIMIT`.
fn run_under_ulimit(limit: &str, scenario: &std::path::Path, out: &std::path::Path) -> Output {
    let mut command = std::process::Command::new("sh");
    command.args([
        "-c",
        &format!("ulimit {limit} && exec \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_amf-bench"),
        "run",
        scenario.to_str().expect("utf-8"),
        "--quiet",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    run_bounded_command(command)
}

#[test]
fn clients_past_the_open_file_limit_exit_2_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = echo_clients(dir.path(), "files-over", 100);
    let root = dir.path().join("files-over-out");
    let out = root.join("a").join("b");
    // 100 clients and the embedded server's 100 ends need 264 files with the reserve.
    let output = run_under_ulimit("-n 200", &file, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "in scenario {}: connections = 100: the clients need 264 open files at once",
            file.display()
        )) && stderr.contains("this process may open 200"),
        "{stderr}"
    );
    assert!(
        !root.exists(),
        "no results, nor the directories made for them, for a run that never started"
    );
    // Nor does it touch an earlier run's results in the directory it was given.
    std::fs::create_dir_all(&out).expect("makes the directory");
    for earlier in ["latency.hlog", "summary.json"] {
        std::fs::write(out.join(earlier), "earlier").expect("writes");
    }
    let output = run_under_ulimit("-n 200", &file, &out);
    assert_eq!(output.status.code(), Some(2));
    for earlier in ["latency.hlog", "summary.json"] {
        assert_eq!(
            std::fs::read_to_string(out.join(earlier)).expect("kept"),
            "earlier"
        );
    }
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let (_, hard) = rlimit::Resource::NOFILE.get().expect("reads the limit");
    // 150 clients on the embedded server need 364 files, more than the soft limit set below.
    assert!(
        hard >= 364,
        "this test needs a hard open-file limit of 364, not {hard}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = echo_clients(dir.path(), "files-raised", 150);
    let out = dir.path().join("files-raised-out");
    let output = run_under_ulimit("-S -n 100", &file, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let summary = written_summary(&out);
    assert_eq!(summary["connections"]["connected"], 150, "{summary:#}");
    assert_eq!(
        summary["connections"]["errors"],
        serde_json::json!({}),
        "{summary:#}"
    );
    assert_eq!(
        summary["connections"]["first_error"],
        Json::Null,
        "{summary:#}"
    );
}

/// More worker threads than the address space allows stacks for: a clear error and exit 2,
/// not the runtime's panic and hang, and no results directory made. (An address-space limit,
/// since a limit on processes does not bind root.)
#[test]
fn more_threads_than_can_start_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("threads-out");
    let smoke = scenario("smoke.toml");
    let mut command = Command::new("sh");
    command.args([
        "-c",
        "ulimit -v 2000000 && exec \"$0\" \"$@\"",
        env!("CARGO_BIN_EXE_amf-bench"),
        "run",
        smoke.to_str().expect("utf-8"),
        "--quiet",
        "--threads",
        "2000",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let output = run_bounded_command(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot start 2000 worker threads") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(!out.exists(), "a refused run makes no directory");
}

#[test]
fn threads_sets_the_workers_and_rejects_zero() {
    let output = run_bounded(&["run", "--threads", "0", "scenario.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid value '0' for '--threads <N>'"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("threads-out");
    let output = run_bounded(&[
        "run",
        "--quiet",
        "--threads",
        "1",
        "--out",
        out.to_str().expect("utf-8"),
        scenario("smoke.toml").to_str().expect("utf-8"),
    ]);
    // The smoke scenario's latency thresholds may fail on a loaded machine (exit 1); what this
    // test holds is the worker count the run used.
    assert!(
        output.status.code().is_some_and(|code| code <= 1),
        "{output:?}"
    );
    let summary = written_summary(&out);
    assert_eq!(summary["generator"]["threads"], 1, "{summary:#}");
    assert_eq!(summary["error_rate_percent"], 0.0, "{summary:#}");
}
