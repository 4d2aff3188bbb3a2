//! The proxy under test: in-process on loopback port 0, its JSON log read back, and a cheap
//! deterministic byte source for traffic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use amf_bench::proxy::latency::LatencyBook;
use amf_bench::proxy::{Proxy, ProxyConfig, ProxyStats, Summary};
use serde_json::Value as Json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::WAIT;

/// A proxy running in-process.
pub struct TestProxy {
    pub addr: SocketAddr,
    /// The WebSocket listener's address, when the configuration asked for one.
    pub ws_addr: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    pub stats: Arc<ProxyStats>,
    pub latency: Arc<LatencyBook>,
    handle: JoinHandle<Summary>,
}

impl TestProxy {
    pub async fn start(config: ProxyConfig) -> TestProxy {
        let proxy = Proxy::bind(config).await.expect("binds");
        let addr = proxy.local_addr().expect("bound");
        let ws_addr = proxy.ws_local_addr().expect("bound");
        let (stats, latency) = (proxy.stats(), proxy.latency());
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(proxy.run(shutdown.clone()));
        TestProxy {
            addr,
            ws_addr,
            shutdown,
            stats,
            latency,
            handle,
        }
    }

    pub async fn stop(self) -> Summary {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("the proxy stops in time")
            .expect("the proxy does not panic")
    }

    /// Waits until every connection has ended.
    pub async fn wait_idle(&self, accepted: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let snapshot = self.stats.snapshot();
            if snapshot.accepted >= accepted && snapshot.active == 0 {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{snapshot:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A quiet proxy to `upstream`, logging to `log` when given.
pub fn proxy_config(upstream: SocketAddr, log: Option<PathBuf>) -> ProxyConfig {
    let mut config = ProxyConfig {
        upstream: upstream.to_string(),
        ..ProxyConfig::default()
    };
    config.outputs.json = log;
    config
}

pub fn read_log(path: &PathBuf) -> Vec<Json> {
    std::fs::read_to_string(path)
        .expect("the log exists")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

/// A fast deterministic byte source (xorshift), so tests can make megabytes cheaply.
pub struct Noise(pub u64);

impl Noise {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// A write size from 1 byte to 64 KiB, small ones as likely as large ones in log scale.
    pub fn write_size(&mut self) -> usize {
        let bits = 1 + self.below(16);
        1 + self.below(1 << bits)
    }
}
