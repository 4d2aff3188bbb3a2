//! The port-843 policy server, byte by byte over loopback: the exact request, split requests,
//! telnet-style variants, garbage, silent clients held to the deadline without delaying others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amf_bench::policy::server::{
    Outcome, PolicyServer, PolicyServerConfig, PolicyStats, PolicyStore, bind,
};
use amf_bench::policy::{Allow, MetaPolicy, generate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

struct Running {
    addr: SocketAddr,
    stats: Arc<PolicyStats>,
    shutdown: CancellationToken,
    handle: JoinHandle<Arc<PolicyStats>>,
}

fn policy() -> String {
    generate(&[Allow::any_domain_to(9000)], MetaPolicy::MasterOnly)
}

async fn start(addr: &str, deadline: Duration) -> Running {
    let listener = bind(addr.parse().expect("an address")).expect("binds");
    let store = Arc::new(PolicyStore::new(&policy()));
    let config = PolicyServerConfig {
        deadline,
        ..PolicyServerConfig::default()
    };
    let server = PolicyServer::new(vec![listener], store, config);
    let addr = server.local_addrs()[0];
    let stats = server.stats();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(server.run(shutdown.clone()));
    Running {
        addr,
        stats,
        shutdown,
        handle,
    }
}

impl Running {
    async fn stop(self) -> Arc<PolicyStats> {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("stops in time")
            .expect("no panic")
    }
}

/// Sends `pieces` (flushing each), optionally half-closes, and returns everything the server
/// sent before closing.
async fn exchange(addr: SocketAddr, pieces: &[&[u8]], half_close: bool) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    for piece in pieces {
        stream.write_all(piece).await.expect("writes");
        stream.flush().await.expect("flushes");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if half_close {
        stream.shutdown().await.expect("half-closes");
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes in time");
    // Garbage is closed abruptly (a reset, with bytes unread): that too is "nothing sent".
    if let Err(error) = read {
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
    }
    answer
}

fn assert_is_the_policy(answer: &[u8]) {
    let mut expected = policy().into_bytes();
    expected.push(0);
    assert_eq!(
        String::from_utf8_lossy(answer),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(
        answer.iter().filter(|byte| **byte == 0).count(),
        1,
        "exactly one NUL"
    );
}

#[tokio::test]
async fn the_exact_request_and_telnet_variants_get_the_policy() {
    let server = start("127.0.0.1:0", WAIT).await;
    let variants: [(&[u8], bool); 6] = [
        (b"<policy-file-request/>\0", false),
        (b"<policy-file-request/>", true),
        (b"<policy-file-request/>\r\n", false),
        (b"<policy-file-request/>\n", true),
        (b"  \r\n<policy-file-request/>  \r\n", false),
        (b"\t<policy-file-request/>\0\r\n", false),
    ];
    for (request, half_close) in variants {
        let answer = exchange(server.addr, &[request], half_close).await;
        assert_is_the_policy(&answer);
    }
    let stats = server.stop().await;
    assert_eq!(stats.outcomes()[&Outcome::Answered], 6);
}

#[tokio::test]
async fn a_request_in_one_byte_pieces_gets_the_policy() {
    let server = start("127.0.0.1:0", WAIT).await;
    let pieces: Vec<&[u8]> = b"<policy-file-request/>\0".chunks(1).collect();
    assert_is_the_policy(&exchange(server.addr, &pieces, false).await);
    server.stop().await;
}

#[tokio::test]
async fn garbage_gets_nothing_and_is_counted() {
    let server = start("127.0.0.1:0", WAIT).await;
    let garbage: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"<policy-file-request/",
        b"\0\0\0\x6c\x0a\x0b\x01",
        &[b' '; 100],
    ];
    for bytes in garbage {
        assert!(
            exchange(server.addr, &[bytes], true).await.is_empty(),
            "{bytes:?}"
        );
    }
    let stats = server.stop().await;
    assert_eq!(stats.outcomes()[&Outcome::NotARequest], 4);
}

#[tokio::test]
async fn silent_clients_are_closed_at_the_deadline_without_delaying_others() {
    let server = start("127.0.0.1:0", Duration::from_secs(3)).await;
    let mut silent = Vec::new();
    for _ in 0..1_000 {
        silent.push(TcpStream::connect(server.addr).await.expect("connects"));
    }
    // A real request is answered while every silent client is still waiting for its deadline.
    assert_is_the_policy(&exchange(server.addr, &[b"<policy-file-request/>\0"], false).await);
    assert_eq!(
        server.stats.outcomes()[&Outcome::Timeout],
        0,
        "the silent ones are still open"
    );
    // Then the deadline closes them all.
    for mut stream in silent {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "closed at the deadline");
        assert!(rest.is_empty());
    }
    let stats = server.stop().await;
    assert_eq!(stats.outcomes()[&Outcome::Timeout], 1_000);
    assert_eq!(stats.outcomes()[&Outcome::Answered], 1);
}

/// A request late in the exchange's window is answered; the deadline then falling while the
/// server lingers for the client's close does not make it a time-out.
#[tokio::test]
async fn a_late_request_answered_before_the_deadline_counts_as_answered() {
    let server = start("127.0.0.1:0", Duration::from_millis(600)).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connects");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream
        .write_all(b"<policy-file-request/>\0")
        .await
        .expect("writes");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("answered and half-closed in time")
        .expect("reads");
    assert_is_the_policy(&answer);
    // Keeps the connection open past the deadline, as a client that never closes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stats = server.stop().await;
    assert_eq!(stats.outcomes()[&Outcome::Answered], 1);
    assert_eq!(stats.outcomes()[&Outcome::Timeout], 0);
}

#[tokio::test]
async fn ipv6_loopback_is_served() {
    let listener = match bind("[::1]:0".parse().expect("an address")) {
        Ok(listener) => listener,
        Err(error) => {
            let unavailable = error
                .chain()
                .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
                .any(|io| io.kind() == std::io::ErrorKind::AddrNotAvailable);
            assert!(
                unavailable,
                "binding ::1 failed for another reason: {error:#}"
            );
            return; // This host has no IPv6 loopback.
        }
    };
    let store = Arc::new(PolicyStore::new(&policy()));
    let server = PolicyServer::new(vec![listener], store, PolicyServerConfig::default());
    let addr = server.local_addrs()[0];
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(server.run(shutdown.clone()));
    assert_is_the_policy(&exchange(addr, &[b"<policy-file-request/>\0"], false).await);
    shutdown.cancel();
    handle.await.expect("stops");
}

#[tokio::test]
async fn a_replaced_policy_is_served_to_new_exchanges() {
    let listener = bind("127.0.0.1:0".parse().expect("an address")).expect("binds");
    let store = Arc::new(PolicyStore::new(&policy()));
    let server = PolicyServer::new(
        vec![listener],
        Arc::clone(&store),
        PolicyServerConfig::default(),
    );
    let addr = server.local_addrs()[0];
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(server.run(shutdown.clone()));
    let replacement = generate(&[Allow::any_domain_to(9001)], MetaPolicy::All);
    store.replace(&replacement);
    let answer = exchange(addr, &[b"<policy-file-request/>\0"], false).await;
    assert_eq!(answer, [replacement.as_bytes(), b"\0"].concat());
    shutdown.cancel();
    handle.await.expect("stops");
}

#[tokio::test]
async fn with_a_cap_of_one_each_listener_is_still_served() {
    let listeners: Vec<_> = (0..2)
        .map(|_| bind("127.0.0.1:0".parse().expect("an address")).expect("binds"))
        .collect();
    let store = Arc::new(PolicyStore::new(&policy()));
    let config = PolicyServerConfig {
        max_connections: 1,
        ..PolicyServerConfig::default()
    };
    let server = PolicyServer::new(listeners, store, config);
    let addrs = server.local_addrs();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(server.run(shutdown.clone()));
    // An idle first listener must not hold the only slot while the second has a client.
    for addr in [addrs[1], addrs[0], addrs[1]] {
        assert_is_the_policy(&exchange(addr, &[b"<policy-file-request/>\0"], false).await);
    }
    shutdown.cancel();
    handle.await.expect("stops");
}
