//! `amf-bench policy` as users run it: serving a file, reloading it on SIGHUP, refusing a bad one,
//! and `policy check` against the running server.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::process::{Listening, run_bounded};

/// Writes `text` to the file `name` in `dir` and returns its path.
fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writes");
    path
}

fn policy_granting(ports: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<cross-domain-policy>\n  <site-control permitted-cross-domain-policies=\"master-only\"/>\n  <allow-access-from domain=\"*\" to-ports=\"{ports}\"/>\n</cross-domain-policy>\n"
    )
}

/// A policy server process on 127.0.0.1 port 0.
fn start_policy(args: &[&str]) -> Listening {
    let mut all = vec!["policy", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Listening::start(&all)
}

/// `policy check` against `server`, asking whether it grants `port`.
fn check(server: &Listening, port: &str) -> Output {
    run_bounded(&[
        "policy",
        "check",
        &server.addr,
        "--port",
        port,
        "--timeout",
        "5",
    ])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_reports_the_policy_and_whether_it_grants_a_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path(), "check.xml", &policy_granting("9000-9010"));
    let server = start_policy(&["--policy", file.to_str().expect("utf-8")]);
    let granted = check(&server, "9005");
    let stdout = text(&granted.stdout);
    assert_eq!(granted.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("to-ports=\"9000-9010\""), "{stdout}");
    assert!(stdout.contains("NUL-terminated: yes"), "{stdout}");
    assert!(stdout.contains("grants port 9005: yes"), "{stdout}");
    let refused = check(&server, "9011");
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stdout).contains("grants port 9011: no"));
}

#[test]
fn sighup_reloads_the_policy_and_keeps_it_when_the_new_file_is_bad() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path(), "reload.xml", &policy_granting("9000"));
    let mut server = start_policy(&["--policy", file.to_str().expect("utf-8")]);
    assert!(text(&check(&server, "9000").stdout).contains("grants port 9000: yes"));

    std::fs::write(&file, policy_granting("9100")).expect("rewrites");
    server.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&check(&server, "9100").stdout).contains("grants port 9100: yes") {
        assert!(
            Instant::now() < deadline,
            "the new policy is served after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    std::fs::write(&file, "<not-a-policy").expect("rewrites");
    server.signal("-HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        text(&check(&server, "9100").stdout).contains("grants port 9100: yes"),
        "the last good policy stays"
    );

    let (status, counters) = server.terminate();
    assert!(status.success());
    assert!(counters.contains("exchanges: answered "), "{counters}");
    assert!(
        counters.contains("not_a_request 0, timeout 0, io_error 0"),
        "{counters}"
    );
}

/// A SIGHUP sent the moment `listening on` is printed (a service manager's reload right after
/// start) reloads the policy; it must not find the default action, which ends the process.
#[test]
fn a_hangup_right_after_start_does_not_kill_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path(), "early-hup.xml", &policy_granting("9000"));
    for _ in 0..10 {
        let mut server = start_policy(&["--policy", file.to_str().expect("utf-8")]);
        server.signal("-HUP");
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            server.child.try_wait().expect("polls").is_none(),
            "the server died of the SIGHUP"
        );
        let (status, _) = server.terminate();
        assert!(status.success(), "{status:?}");
    }
}

#[test]
fn the_server_needs_a_policy_and_refuses_a_broken_one() {
    let output = run_bounded(&["policy", "--listen", "127.0.0.1:0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("give the policy to serve"),
        "{}",
        text(&output.stderr)
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(
        dir.path(),
        "broken.xml",
        "<cross-domain-policy><allow-access-from",
    );
    let output = run_bounded(&[
        "policy",
        "--listen",
        "127.0.0.1:0",
        "--policy",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("has errors"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn check_names_an_unreachable_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let output = run_bounded(&["policy", "check", &addr, "--timeout", "5"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains(&format!("cannot connect to {addr}")),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn lint_prints_findings_with_places_and_exits_1_on_errors() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/policies");
    let broken = run_bounded(&["policy", "lint", &format!("{dir}/broken.xml")]);
    assert_eq!(broken.status.code(), Some(1));
    let stdout = text(&broken.stdout);
    assert!(
        stdout.contains("broken.xml:5:22: error: domain 'exa mple.com' is not valid"),
        "{stdout}"
    );

    let service = run_bounded(&[
        "policy",
        "lint",
        "--port",
        "9000",
        &format!("{dir}/service.xml"),
    ]);
    assert_eq!(service.status.code(), Some(0), "{}", text(&service.stdout));

    let master_on_high_port = run_bounded(&[
        "policy",
        "lint",
        "--port",
        "9000",
        &format!("{dir}/master.xml"),
    ]);
    assert_eq!(master_on_high_port.status.code(), Some(1));
    assert!(text(&master_on_high_port.stdout).contains("grants ports below 1024"));
}

/// Socket activation as systemd does it, through `systemd-socket-activate` (installed by `.ci/run`):
/// the server serves the inherited listening socket instead of binding its own.
#[test]
fn an_inherited_systemd_socket_is_served() {
    // A free port from the kernel, released for systemd-socket-activate to bind.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut activator = Command::new("systemd-socket-activate")
        .args([
            "-l",
            &addr,
            env!("CARGO_BIN_EXE_amf-bench"),
            "policy",
            "--allow",
            "*:9000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-socket-activate runs (Debian package systemd; .ci/run installs it)");
    // The first connection starts the server, which then answers it on the inherited socket.
    let deadline = Instant::now() + Duration::from_secs(10);
    let checked = loop {
        let output = run_bounded(&["policy", "check", &addr, "--port", "9000", "--timeout", "5"]);
        if output.status.success() || Instant::now() > deadline {
            break output;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = activator.kill();
    let _ = activator.wait();
    let mut said = String::new();
    if let Some(mut stdout) = activator.stdout.take() {
        let _ = stdout.read_to_string(&mut said);
    }
    assert!(checked.status.success(), "{}", text(&checked.stdout));
    assert!(
        said.contains(&format!("listening on {addr}")),
        "the inherited socket is used: {said:?}"
    );
}

/// A server that reads the request and closes: with no byte it is no answer (2), with a policy
/// but no NUL it is a wrong answer, shown (1).
#[test]
fn check_tells_no_answer_from_an_answer_without_its_nul() {
    for (answer, status) in [(String::new(), 2), (policy_granting("9000"), 1)] {
        let sent = answer.clone();
        let (addr, server) = one_shot_server(move |stream| {
            std::io::Write::write_all(stream, sent.as_bytes()).expect("answers");
        });
        let output = run_bounded(&["policy", "check", &addr, "--timeout", "5"]);
        server.join().expect("the server thread ends");
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert_eq!(output.status.code(), Some(status), "{stdout}{stderr}");
        if answer.is_empty() {
            assert!(
                stderr.contains("closed the connection without answering"),
                "{stderr}"
            );
        } else {
            assert!(stdout.contains("NUL-terminated: no"), "{stdout}");
            assert!(stdout.contains("to-ports=\"9000\""), "{stdout}");
        }
    }
}

/// A server that answers at once but holds the connection open: the policy is shown, the missing
/// close flagged, and the time is the answer's, not the wait for the close. With `--timeout` of
/// the close's grace or less, the answer within it still counts as an answer.
#[test]
fn check_shows_a_policy_whose_server_does_not_close() {
    for timeout in ["5", "1"] {
        let (addr, server) = holding_server(format!("{}\0", policy_granting("9000")).into());
        let output = run_bounded(&[
            "policy",
            "check",
            &addr,
            "--port",
            "9000",
            "--timeout",
            timeout,
        ]);
        server.join().expect("the server thread ends");
        let stdout = text(&output.stdout);
        let failed = format!("--timeout {timeout}: {stdout}{}", text(&output.stderr));
        assert_eq!(output.status.code(), Some(1), "{failed}");
        assert!(
            stdout.contains("to-ports=\"9000\""),
            "the policy is shown: {failed}"
        );
        assert!(stdout.contains("NUL-terminated: yes"), "{failed}");
        assert!(stdout.contains("did not close the connection"), "{failed}");
        assert!(stdout.contains("grants port 9000: yes"), "{failed}");
        let millis: f64 = stdout
            .split(" bytes in ")
            .nth(1)
            .and_then(|rest| rest.split(" ms").next())
            .and_then(|number| number.parse().ok())
            .expect("the time taken");
        assert!(
            millis < 1000.0,
            "the 1 s wait for the close is not counted: {failed}"
        );
    }
}

/// A server for one check: it reads the request, then `respond`s on the connection (reads time
/// out after 10 s); returns its address and its thread.
fn one_shot_server(
    respond: impl FnOnce(&mut std::net::TcpStream) + Send + 'static,
) -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = listener.local_addr().expect("addr").to_string();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accepts");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("sets a time-out");
        let mut request = [0u8; 23];
        std::io::Read::read_exact(&mut stream, &mut request).expect("reads the request");
        respond(&mut stream);
    });
    (addr, server)
}

/// A server that reads the request, sends `answer` and holds the connection open until the
/// checker closes it (10 s at most).
fn holding_server(answer: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    one_shot_server(move |stream| {
        std::io::Write::write_all(stream, &answer).expect("answers");
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(stream, &mut rest);
    })
}

/// A server that answers without the NUL and holds the connection open: by `--timeout` its bytes
/// are an answer without its NUL, shown (1); one that sent nothing by then did not answer (2).
#[test]
fn check_shows_an_answer_without_its_nul_from_a_server_that_does_not_close() {
    const POLICY: &[u8] = b"<?xml version=\"1.0\"?><cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"9000\"/></cross-domain-policy>";
    let (addr, server) = holding_server(POLICY.to_vec());
    let output = run_bounded(&["policy", "check", &addr, "--port", "9000", "--timeout", "1"]);
    server.join().expect("the server thread ends");
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("to-ports=\"9000\""), "shown: {stdout}");
    assert!(
        stdout.contains(&format!("{} bytes in", POLICY.len())),
        "{stdout}"
    );
    assert!(stdout.contains("NUL-terminated: no"), "{stdout}");
    assert!(stdout.contains("did not close the connection"), "{stdout}");
    assert!(stdout.contains("grants port 9000: yes"), "{stdout}");

    let (addr, server) = holding_server(Vec::new());
    let output = run_bounded(&["policy", "check", &addr, "--timeout", "1"]);
    server.join().expect("the server thread ends");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{addr} did not answer")),
        "{stderr}"
    );
}

/// A server that resets the connection after reading the request: the error names the step and
/// the server, like every other error of `policy check`.
#[test]
fn check_names_the_server_that_resets_the_connection() {
    let (addr, server) = one_shot_server(|stream| {
        // Closing with a zero linger sends a reset instead of a FIN.
        socket2::SockRef::from(&*stream)
            .set_linger(Some(Duration::ZERO))
            .expect("sets SO_LINGER");
    });
    let output = run_bounded(&["policy", "check", &addr, "--timeout", "5"]);
    server.join().expect("the server thread ends");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read the answer from {addr}: ")),
        "{stderr}"
    );
}

#[test]
fn serve_lints_the_policy_it_generates_for_its_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stderr_path = dir.path().join("serve-stderr.txt");
    let mut child = common::process::amf_bench()
        .args(["serve", "--listen", "127.0.0.1:0", "--no-ping"])
        .args(["--allow", "*:80", "--allow", "*:1024-65535"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).expect("creates"))
        .spawn()
        .expect("starts amf-bench serve");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("reads the listening line");
    let addr = line.trim().strip_prefix("listening on ").map(str::to_owned);
    let checked = addr
        .as_deref()
        .map(|addr| run_bounded(&["policy", "check", addr, "--timeout", "5"]));
    common::process::signal(child.id(), "-TERM");
    common::process::wait_exit(&mut child, Duration::from_secs(20));
    let addr = addr.unwrap_or_else(|| panic!("a listening line, got {line:?}"));
    let port = addr.rsplit(':').next().expect("a port");
    let stdout = checked
        .map(|output| text(&output.stdout))
        .unwrap_or_default();
    // A policy served inline, off port 843, states no meta-policy: Flash Player would ignore it.
    assert!(stdout.contains("to-ports=\"1024-65535\""), "{stdout}");
    assert!(!stdout.contains("site-control"), "{stdout}");
    let stderr = std::fs::read_to_string(&stderr_path).expect("reads stderr");
    let expected = format!("served on port {port}: to-ports '80' grants ports below 1024");
    assert!(stderr.contains(&expected), "{stderr}");
    let warnings = stderr.lines().filter(|line| line.contains("WARN")).count();
    assert_eq!(warnings, 1, "only the ignored grant is named: {stderr}");
}

#[test]
fn a_policy_file_is_checked_for_the_port_bound_when_port_0_was_asked() {
    // Grants only port 80: an error for any served port above 1023, such as port 0's pick.
    let dir = tempfile::tempdir().expect("temp dir");
    let low = write_file(dir.path(), "low-port.xml", &policy_granting("80"));
    let low = low.to_str().expect("utf-8");
    // A log from an earlier run, which the refused proxy must leave alone.
    let earlier_log = write_file(dir.path(), "earlier.jsonl", "{\"event\":\"open\"}\n");
    for args in [
        vec!["policy", "--listen", "127.0.0.1:0", "--policy", low],
        vec!["serve", "--listen", "127.0.0.1:0", "--policy", low],
        vec![
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:1",
            "--policy",
            low,
            "--log",
            earlier_log.to_str().expect("utf-8"),
        ],
    ] {
        let output = run_bounded(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("has errors for port"), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "never announced as listening");
    }
    let kept = std::fs::read_to_string(&earlier_log).expect("the earlier log is still there");
    assert_eq!(kept, "{\"event\":\"open\"}\n", "not truncated");
    // The same file is served when it grants the port: shown by a port range that holds all.
    let all = write_file(dir.path(), "all-ports.xml", &policy_granting("1024-65535"));
    let mut server = Listening::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--policy",
        all.to_str().expect("utf-8"),
    ]);
    let (status, _) = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// Waits (10 s at most) until the file at `path` holds `expected`, and returns its text.
fn wait_for_text(path: &Path, expected: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let said = std::fs::read_to_string(path).unwrap_or_default();
        if said.contains(expected) || Instant::now() > deadline {
            return said;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--allow` grants that the port listened on would ignore are named at start, as `serve` and
/// `proxy` do, and the policy is still served.
#[test]
fn the_policy_server_warns_of_allow_grants_its_port_ignores() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stderr_path = dir.path().join("allow-stderr.txt");
    let stderr = std::fs::File::create(&stderr_path).expect("creates");
    let mut server = Listening::start_with_stderr(
        &[
            "policy",
            "--listen",
            "127.0.0.1:0",
            "--allow",
            "*:80",
            "--allow",
            "*:9000",
        ],
        Stdio::from(stderr),
    );
    let expected = format!(
        "served on port {}: to-ports '80' grants ports below 1024",
        server.port()
    );
    let said = wait_for_text(&stderr_path, &expected);
    assert!(text(&check(&server, "9000").stdout).contains("grants port 9000: yes"));
    let (status, _) = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(said.contains(&expected), "{said}");
}

/// A reload to a file with errors for the port listened on keeps the current policy.
#[test]
fn sighup_keeps_the_policy_when_the_new_file_has_errors_for_the_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path(), "reload-low.xml", &policy_granting("9000"));
    let stderr_path = dir.path().join("reload-low-stderr.txt");
    let stderr = std::fs::File::create(&stderr_path).expect("creates");
    let mut server = Listening::start_with_stderr(
        &[
            "policy",
            "--listen",
            "127.0.0.1:0",
            "--policy",
            file.to_str().expect("utf-8"),
        ],
        Stdio::from(stderr),
    );
    std::fs::write(&file, policy_granting("80")).expect("rewrites");
    server.signal("-HUP");
    let said = wait_for_text(&stderr_path, "reload failed");
    let checked = check(&server, "9000");
    let (status, _) = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(said.contains("reload failed"), "{said}");
    assert!(said.contains("grants ports below 1024"), "{said}");
    assert!(
        text(&checked.stdout).contains("grants port 9000: yes"),
        "the current policy stays: {}",
        text(&checked.stdout)
    );
}

/// With `--allow` there is no file to re-read, but a service manager's reload (SIGHUP) must not
/// end the server: it says there is nothing to reload and keeps serving.
#[test]
fn sighup_with_allow_is_logged_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stderr_path = dir.path().join("hup-allow-stderr.txt");
    let stderr = std::fs::File::create(&stderr_path).expect("creates");
    let mut server = Listening::start_with_stderr(
        &["policy", "--listen", "127.0.0.1:0", "--allow", "*:9000"],
        Stdio::from(stderr),
    );
    server.signal("-HUP");
    let said = wait_for_text(&stderr_path, "nothing to reload");
    if let Some(status) = server.child.try_wait().expect("polls") {
        panic!("the server died of the SIGHUP: {status:?}");
    }
    let checked = check(&server, "9000");
    let (status, counters) = server.terminate();
    assert!(said.contains("nothing to reload"), "{said}");
    assert!(
        text(&checked.stdout).contains("grants port 9000: yes"),
        "{}",
        text(&checked.stdout)
    );
    assert!(status.success(), "{status:?}");
    assert!(counters.contains("answered 1"), "{counters}");
}
