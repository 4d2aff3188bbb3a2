//! `amf-bench run`'s connections: reconnection, source addresses, a connection the server closes
//! (during a wait, or while idle), and objects from the server that are not envelopes.

mod common;

use std::time::Duration;

use amf_bench::run::execute;
use amf_bench::run::progress::Progress;
use amf_bench::run::scenario::Scenario;
use common::run::{count, run_text, run_to_the_end};
use tokio_util::sync::CancellationToken;

#[test]
fn clients_reconnect_when_the_scenario_says_so() {
    let result = run_text(
        r#"
        name = "reconnect"
        connections = 2
        duration = "1s"
        reconnect = "20ms"
        [load]
        model = "closed"
        [[session]]
        name = "s"
        steps = [{ request = "echo" }, { request = "close", timeout = "1s" }]
        "#,
    );
    let summary = &result.summary;
    let reconnects = summary["connections"]["reconnects"]
        .as_u64()
        .expect("reconnects");
    let lost = summary["connections"]["lost"]["server_closed"]
        .as_u64()
        .expect("lost");
    assert!(reconnects >= 10, "{summary:#}");
    assert!(lost >= reconnects, "{summary:#}");
    assert_eq!(
        summary["connections"]["connected"].as_u64(),
        Some(reconnects + 2),
        "{summary:#}"
    );
    assert!(count(summary, "echo") >= reconnects, "{summary:#}");
    assert_eq!(
        summary["commands"]["close"]["errors"]["server_closed"].as_u64(),
        Some(count(summary, "close"))
    );
}

/// Client sockets are spread over the listed local addresses, and an address that cannot be
/// bound here is one clear error before the run starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sockets_come_from_the_listed_source_addresses() {
    let (listener, addr) = common::loopback_listener().await;
    let text = format!(
        r#"
        name = "sources"
        target = "{addr}"
        connections = 4
        duration = "300ms"
        source_addresses = ["127.0.0.2", "127.0.0.3"]
        [load]
        model = "closed"
        [[session]]
        name = "s"
        steps = [{{ think = "100ms" }}]
        "#
    );
    let accepting = tokio::spawn(async move {
        let mut peers = std::collections::BTreeSet::new();
        let mut open = Vec::new();
        for _ in 0..4 {
            let (stream, peer) = listener.accept().await.expect("accepts");
            peers.insert(peer.ip().to_string());
            open.push(stream);
        }
        (peers, open)
    });
    let scenario = Scenario::parse(&text).expect("valid");
    let result = run_to_the_end(scenario).await;
    assert_eq!(result.summary["connections"]["connected"], 4);
    let (peers, _open) = tokio::time::timeout(Duration::from_secs(10), accepting)
        .await
        .expect("in time")
        .expect("joins");
    assert_eq!(
        peers.into_iter().collect::<Vec<_>>(),
        ["127.0.0.2", "127.0.0.3"]
    );
    let foreign = text.replace("127.0.0.3", "192.0.2.1");
    let scenario = Scenario::parse(&foreign).expect("valid");
    let error = execute(
        scenario,
        CancellationToken::new(),
        Progress::hidden(),
        || Ok(Vec::new()),
    )
    .await
    .err()
    .expect("refused");
    assert!(
        format!("{error:#}").contains("source_addresses[1]: 192.0.2.1 cannot be bound"),
        "{error:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_a_message_ends_when_the_connection_does() {
    // A server that accepts, says nothing, and closes after a moment.
    let (listener, addr) = common::loopback_listener().await;
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accepts");
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(socket);
    });
    let scenario = Scenario::parse(&format!(
        r#"
        name = "wait-lost"
        target = "{addr}"
        connections = 1
        duration = "1s"
        [load]
        model = "closed"
        [[session]]
        name = "s"
        steps = [{{ wait_message = "never", timeout = "30s" }}]
        "#
    ))
    .expect("valid");
    let run = execute(
        scenario,
        CancellationToken::new(),
        Progress::hidden(),
        || Ok(Vec::new()),
    );
    // Well under the wait's 30 s time-out.
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the run ends when the connection does, not at the time-out")
        .expect("runs");
    let summary = &result.summary;
    let wait = &summary["commands"]["wait_message:never"];
    assert_eq!(wait["count"], 1, "{summary:#}");
    assert_eq!(wait["errors"]["server_closed"], 1, "{summary:#}");
    assert_eq!(
        summary["connections"]["lost"]["server_closed"], 1,
        "{summary:#}"
    );
    server.await.expect("the server task ends");
}

/// An object that is not an envelope (an unknown `type`) is dropped, as the ActionScript client
/// drops it: the message after it still arrives, nothing is lost, and the drop is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_envelope_type_from_the_server_is_dropped_and_counted() {
    use amf_bench::codec::{Str, Value};
    use amf_bench::rpc::wire::encode_envelope;
    use amf_bench::rpc::{Encoding, Envelope, Message};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (listener, addr) = common::loopback_listener().await;
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accepts");
        let mut bytes = bytes::BytesMut::new();
        let weird = common::object(vec![("type", Value::string("weird"))]);
        amf_bench::frame::encode_frame(&weird, 1 << 20, &mut bytes).expect("encodes");
        let news = Envelope::Message(Message {
            message_id: Str::from("m1"),
            command: Str::from("news"),
            params: common::object(vec![]),
        });
        bytes.extend(encode_envelope(news, Encoding::Amf3, 1 << 20).expect("encodes"));
        socket.write_all(&bytes).await.expect("writes");
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest).await;
    });
    let scenario = Scenario::parse(&format!(
        r#"
        name = "weird"
        target = "{addr}"
        connections = 1
        duration = "300ms"
        [load]
        model = "closed"
        [[session]]
        name = "s"
        steps = [{{ wait_message = "news", timeout = "5s" }}, {{ think = "1s" }}]
        "#
    ))
    .expect("valid");
    let result = run_to_the_end(scenario).await;
    let summary = &result.summary;
    let wait = &summary["commands"]["wait_message:news"];
    assert_eq!(wait["count"], 1, "{summary:#}");
    assert_eq!(wait["errors"], serde_json::json!({}), "{summary:#}");
    assert_eq!(
        summary["connections"]["lost"],
        serde_json::json!({}),
        "{summary:#}"
    );
    assert_eq!(summary["connections"]["objects_dropped"], 1, "{summary:#}");
    assert!(result.table.contains("objects dropped"), "{}", result.table);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server ends when the run closes")
        .expect("the server task");
}

/// A server that closes connections its clients are not using: the losses are counted as they
/// happen, and `reconnect` opens each again, though no request ever failed on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_closed_by_the_server_is_lost_and_reopened() {
    // Accepts, says nothing, and closes each connection after a moment, for ever.
    let (listener, addr) = common::loopback_listener().await;
    let server = tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                drop(socket);
            });
        }
    });
    let scenario = Scenario::parse(&format!(
        r#"
        name = "idle-lost"
        target = "{addr}"
        connections = 2
        duration = "2s"
        reconnect = "100ms"
        [load]
        model = "open"
        # One session at the very end: until then the clients wait, idle.
        stages = [{{ rate = 0, for = "1s" }}, {{ rate = 1, for = "1s" }}]
        [[session]]
        name = "s"
        steps = [{{ request = "echo" }}]
        "#
    ))
    .expect("valid");
    let result = run_to_the_end(scenario).await;
    server.abort();
    let summary = &result.summary;
    let connections = &summary["connections"];
    let lost = connections["lost"]["server_closed"].as_u64();
    let lost = lost.unwrap_or_else(|| panic!("no connection lost: {summary:#}"));
    // Each client's connection lasts 200 ms and is reopened 100 ms later: about six times each
    // in the two seconds, and far more often than the one session could have found out.
    assert!(lost >= 4, "{summary:#}");
    let reconnects = connections["reconnects"].as_u64().expect("reconnects");
    assert!(reconnects >= 4, "{summary:#}");
}

/// A server that closes the connection once the schedule has ended, while the run waits for the
/// request under way: the request fails as `server_closed`, but the connection was not lost
/// during the run, and the run's end, not the loss, stopped its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_in_the_final_wait_is_not_lost_during_the_run() {
    // Accepts, reads and never answers, and closes a second after the run's one second (having
    // read everything: unread bytes would make the close a reset).
    let (listener, addr) = common::loopback_listener().await;
    let server = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut socket, _) = listener.accept().await.expect("accepts");
        let mut read = Vec::new();
        let reading = socket.read_to_end(&mut read);
        let _ = tokio::time::timeout(Duration::from_secs(2), reading).await;
        drop(socket);
    });
    let scenario = Scenario::parse(&format!(
        r#"
        name = "closed-after-the-end"
        target = "{addr}"
        connections = 1
        duration = "1s"
        [load]
        model = "closed"
        [[session]]
        name = "s"
        steps = [{{ request = "echo", timeout = "30s" }}, {{ request = "echo" }}]
        "#
    ))
    .expect("valid");
    let run = run_to_the_end(scenario);
    let result = tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("the run ends when the connection does, not at the time-out");
    let summary = &result.summary;
    assert_eq!(
        summary["commands"]["echo"]["errors"]["server_closed"], 1,
        "{summary:#}"
    );
    assert_eq!(
        summary["connections"]["lost"],
        serde_json::json!({}),
        "{summary:#}"
    );
    assert_eq!(summary["sessions"]["lost"], 0, "{summary:#}");
    assert_eq!(summary["sessions"]["cut_short"], 1, "{summary:#}");
    assert_eq!(summary["interrupted"], false, "{summary:#}");
    server.await.expect("the server task ends");
}
