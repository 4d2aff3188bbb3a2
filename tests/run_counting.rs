//! `amf-bench run`'s counts at the run's end: sessions cut short by the end or lost with their
//! connection, and requests still under way when the run stops waiting for them (unfinished).

mod common;

use std::time::Duration;

use amf_bench::run::execute;
use amf_bench::run::progress::Progress;
use amf_bench::run::scenario::Scenario;
use common::run::{count, run_text, run_to_the_end};
use tokio_util::sync::CancellationToken;

/// Sessions the end of the run cuts short (later steps skipped) are counted, not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_cut_short_by_the_end_are_counted() {
    let scenario = Scenario::parse(
        r#"
        name = "cut-short"
        connections = 5
        duration = "1s"
        [load]
        model = "open"
        stages = [{ rate = 20, for = "1s" }]
        [[session]]
        name = "long"
        steps = [
          { request = "echo", params = { n = "{{counter}}" } },
          { think = "10s" },
          { request = "sleep", params = { ms = 1 } },
        ]
        "#,
    )
    .expect("valid");
    let result = run_to_the_end(scenario).await;
    let summary = &result.summary;
    let started = summary["sessions"]["started"].as_u64().expect("started");
    assert!(started > 0, "{summary:#}");
    assert_eq!(count(summary, "echo"), started, "{summary:#}");
    assert_eq!(count(summary, "sleep"), 0, "{summary:#}");
    assert_eq!(summary["sessions"]["cut_short"], started, "{summary:#}");
    assert_eq!(summary["sessions"]["lost"], 0, "{summary:#}");
}

/// A session whose only steps left when the run ends are think times has nothing more to send:
/// it is not cut short, as one ending in a think time that the end interrupts is not.
#[test]
fn skipped_final_think_times_do_not_cut_a_session_short() {
    let result = run_text(
        r#"
        name = "final-thinks"
        connections = 1
        duration = "1s"
        [load]
        model = "closed"
        [[session]]
        name = "s"
        steps = [{ request = "sleep", params = { ms = 1100 } }, { think = "0ms" }, { think = "5s" }]
        "#,
    );
    let summary = &result.summary;
    assert_eq!(summary["sessions"]["started"], 1, "{summary:#}");
    assert_eq!(count(summary, "sleep"), 1, "{summary:#}");
    assert_eq!(summary["sessions"]["cut_short"], 0, "{summary:#}");
    assert_eq!(summary["sessions"]["lost"], 0, "{summary:#}");
}

/// Two sessions on one connection, which the first one's `close` ends while the
/// second is in its think time. Both had steps left that the loss skipped: both are lost, and
/// neither is cut short, since the run had not ended.
#[test]
fn sessions_stopped_by_a_lost_connection_are_lost_not_cut_short() {
    let result = run_text(
        r#"
        name = "lost"
        connections = 1
        duration = "2s"
        in_flight = 2
        [load]
        model = "open"
        stages = [{ rate = 10, for = "150ms" }]
        [[session]]
        name = "s"
        steps = [
          { request = "echo" },
          { think = "200ms" },
          { request = "close", timeout = "1s" },
          { request = "echo" },
        ]
        "#,
    );
    let summary = &result.summary;
    assert_eq!(summary["interrupted"], false, "{summary:#}");
    assert_eq!(summary["sessions"]["started"], 2, "{summary:#}");
    assert_eq!(
        summary["connections"]["lost"]["server_closed"], 1,
        "{summary:#}"
    );
    assert_eq!(
        count(summary, "echo"),
        2,
        "only the first steps: {summary:#}"
    );
    assert_eq!(summary["sessions"]["cut_short"], 0, "{summary:#}");
    assert_eq!(summary["sessions"]["lost"], 2, "{summary:#}");
    assert!(
        result
            .table
            .contains("0 cut short at the end, 2 cut short by a lost connection, 0 dropped"),
        "{}",
        result.table
    );
    assert!(
        result
            .html
            .contains("<th>sessions cut short by a lost connection</th><td>2</td>"),
        "{}",
        result.html
    );
}

/// One session at a time (`in_flight = 1`), each closing its connection before its last step,
/// with `reconnect`: no session completes, so each is lost, or cut short by the end if that
/// came first (at most one per client).
#[test]
fn every_session_a_lost_connection_stops_is_counted_as_lost() {
    let result = run_text(
        r#"
        name = "lost-one-lane"
        connections = 2
        duration = "1s"
        reconnect = "20ms"
        [load]
        model = "closed"
        [[session]]
        name = "s"
        steps = [{ request = "echo" }, { request = "close", timeout = "1s" }, { request = "echo" }]
        "#,
    );
    let summary = &result.summary;
    let sessions = &summary["sessions"];
    let started = sessions["started"].as_u64().expect("started");
    let lost = sessions["lost"].as_u64().expect("lost");
    let cut_short = sessions["cut_short"].as_u64().expect("cut_short");
    assert!(lost >= 5, "{summary:#}");
    assert!(cut_short <= 2, "{summary:#}");
    assert_eq!(started, lost + cut_short, "{summary:#}");
    // The closes before the run's end lost their connection; every one is a lost session.
    let lost_connections = summary["connections"]["lost"]["server_closed"]
        .as_u64()
        .expect("lost connections");
    assert!(lost <= lost_connections, "{summary:#}");
}

/// A session that meets the loss of its connection with only think times left is not lost.
#[test]
fn a_lost_connection_with_only_think_times_left_loses_no_session() {
    let result = run_text(
        r#"
        name = "lost-at-the-end"
        connections = 1
        duration = "1s"
        [load]
        model = "closed"
        [[session]]
        name = "s"
        steps = [{ request = "close", timeout = "1s" }, { think = "100ms" }]
        "#,
    );
    let summary = &result.summary;
    assert_eq!(summary["sessions"]["started"], 1, "{summary:#}");
    assert_eq!(
        summary["connections"]["lost"]["server_closed"], 1,
        "{summary:#}"
    );
    assert_eq!(summary["sessions"]["lost"], 0, "{summary:#}");
    assert_eq!(summary["sessions"]["cut_short"], 0, "{summary:#}");
}

/// One client's 20-second `sleep` on the embedded server, with `timeout`, in a 1 s run.
fn one_long_sleep(timeout: &str) -> Scenario {
    Scenario::parse(&format!(
        r#"
        name = "long-sleep"
        connections = 1
        duration = "1s"
        [load]
        model = "closed"
        [[session]]
        name = "s"
        steps = [{{ request = "sleep", params = {{ ms = 20000 }}, timeout = "{timeout}" }}]
        "#
    ))
    .expect("valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_under_way_at_the_end_is_waited_for_up_to_its_timeout_only() {
    let started = std::time::Instant::now();
    let result = execute(
        one_long_sleep("2s"),
        CancellationToken::new(),
        Progress::hidden(),
        || Ok(Vec::new()),
    )
    .await
    .expect("runs");
    // The request times out 2 s in; the embedded server, still sleeping on it, must not hold
    // the run for its own drain (10 s for a server on its own).
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "ended on time: {took:?}");
    let summary = &result.summary;
    assert_eq!(
        summary["commands"]["sleep"]["errors"]["timeout"], 1,
        "{summary:#}"
    );
    assert_eq!(summary["unfinished"], 0, "{summary:#}");
    assert_eq!(summary["interrupted"], false, "{summary:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_while_waiting_for_requests_under_way_stops_the_wait() {
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(execute(
        one_long_sleep("30s"),
        shutdown.clone(),
        Progress::hidden(),
        || Ok(Vec::new()),
    ));
    // After the run's second, while it waits for the sleep (up to its 30 s timeout).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !run.is_finished(),
        "the run waits for the request under way"
    );
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("Ctrl-C ends the wait")
        .expect("joins")
        .expect("runs");
    let summary = &result.summary;
    assert_eq!(summary["unfinished"], 1, "{summary:#}");
    assert_eq!(summary["interrupted"], true, "{summary:#}");
    assert!(
        summary["commands"].get("sleep").is_none(),
        "an abandoned request is not a timeout: {summary:#}"
    );
    assert!(
        result.table.contains("unfinished: 1 requests"),
        "{}",
        result.table
    );
}

/// Ctrl-C while the run waits for the request under way abandons that request's session before
/// its end: the request is unfinished, and its session cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_abandoned_in_the_final_wait_is_cut_short() {
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(execute(
        one_long_sleep("30s"),
        shutdown.clone(),
        Progress::hidden(),
        || Ok(Vec::new()),
    ));
    // After the run's second, while it waits for the sleep (up to its 30 s timeout).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("Ctrl-C ends the wait")
        .expect("joins")
        .expect("runs");
    let sessions = &result.summary["sessions"];
    assert_eq!(result.summary["unfinished"], 1, "{:#}", result.summary);
    assert_eq!(sessions["started"], 1, "{sessions}");
    assert_eq!(sessions["cut_short"], 1, "{sessions}");
    assert_eq!(sessions["lost"], 0, "{sessions}");
}

/// Ctrl-C during the run stops it at once: sessions in a think time, or with a request under
/// way, are abandoned as they stand. None of them can end within the run, so every session
/// started is cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_abandoned_by_ctrl_c_mid_run_are_all_cut_short() {
    let scenario = Scenario::parse(
        r#"
        name = "ctrl-c-mid-run"
        connections = 10
        duration = "30s"
        [load]
        model = "open"
        stages = [{ rate = 200, for = "30s" }]
        [[session]]
        name = "s"
        steps = [{ request = "sleep", params = { ms = 30 } }, { think = "10s" }, { request = "echo" }]
        "#,
    )
    .expect("valid");
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(execute(
        scenario,
        shutdown.clone(),
        Progress::hidden(),
        || Ok(Vec::new()),
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("Ctrl-C stops the run")
        .expect("joins")
        .expect("runs");
    let sessions = &result.summary["sessions"];
    let started = sessions["started"].as_u64().expect("started");
    assert!(started >= 5, "{sessions}");
    assert_eq!(sessions["cut_short"], started, "{sessions}");
    assert_eq!(sessions["lost"], 0, "{sessions}");
    assert_eq!(count(&result.summary, "echo"), 0, "{:#}", result.summary);
}
