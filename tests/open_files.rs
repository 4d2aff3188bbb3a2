//! The open-file limit as the servers meet it: started under a low limit, `serve` and `proxy` warn
//! when a `--max-connections` they are given cannot all be open at once, say nothing when it can,
//! and without one hold only as many connections as the limit allows, saying so once they listen.

mod common;

use std::process::{Command, Output};

use common::process::run_bounded_command;

/// `amf-bench ARGS` under `ulimit -n 200`, stopped with SIGTERM after a second.
fn under_200_files(args: &[&str]) -> Output {
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            "ulimit -n 200 && exec timeout -s TERM 1 \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_amf-bench"),
        ])
        .args(args);
    run_bounded_command(command)
}

/// `amf-bench proxy` to a closed port, with `args`, under `ulimit -n 200`.
fn proxy_under_200_files(args: &[&str]) -> Output {
    let proxy = [
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9",
    ];
    under_200_files(&[&proxy[..], args].concat())
}

#[test]
fn servers_warn_when_their_connections_cannot_all_be_open() {
    let serve = under_200_files(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--max-connections",
        "500",
    ]);
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(
        stderr.contains(
            "--max-connections 500 needs 564 open files (1 per connection, and 64 more), but \
             this process may open 200"
        ),
        "{stderr}"
    );
    // The proxy holds a client's socket and its upstream's.
    let proxy = proxy_under_200_files(&["--max-connections", "100"]);
    let stderr = String::from_utf8_lossy(&proxy.stderr);
    assert!(
        stderr.contains("--max-connections 100 needs 264 open files (2 per connection"),
        "{stderr}"
    );
}

#[test]
fn servers_whose_connections_fit_say_nothing_of_it() {
    let serve = under_200_files(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--max-connections",
        "100",
    ]);
    let stdout = String::from_utf8_lossy(&serve.stdout);
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(stdout.starts_with("listening on 127.0.0.1:"), "{stdout}");
    assert!(!stderr.contains("open files"), "{stderr}");
}

#[test]
fn without_a_bound_the_servers_hold_what_the_limit_allows() {
    // 200 files, 64 kept in reserve: 136 served connections, or 68 proxied ones (two files each).
    let serve = under_200_files(&["serve", "--listen", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(
        stderr.contains("holding at most 136 connections at once: the open-file limit (200 files)"),
        "{stderr}"
    );
    let proxy = proxy_under_200_files(&[]);
    let stderr = String::from_utf8_lossy(&proxy.stderr);
    assert!(
        stderr.contains("holding at most 68 connections at once")
            && stderr.contains("at 2 per connection"),
        "{stderr}"
    );
    let policy = under_200_files(&["policy", "--listen", "127.0.0.1:0", "--allow", "*:9000"]);
    let stderr = String::from_utf8_lossy(&policy.stderr);
    assert!(
        stderr.contains("holding at most 136 connections"),
        "{stderr}"
    );
    for stderr in [&serve.stderr, &proxy.stderr, &policy.stderr] {
        assert!(!String::from_utf8_lossy(stderr).contains("needs"));
    }
}

#[test]
fn a_failed_start_prints_its_error_alone() {
    let proxy = proxy_under_200_files(&["--log", "/nonexistent/amf-bench/proxy.jsonl"]);
    let stderr = String::from_utf8_lossy(&proxy.stderr);
    assert_eq!(proxy.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("error: cannot open the log or recording file"),
        "{stderr}"
    );
    assert!(!stderr.contains("holding at most"), "{stderr}");
}
