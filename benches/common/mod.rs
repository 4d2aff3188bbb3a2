//! What the network benches share: a server on a single-threaded runtime of its own thread
//! (one core), stopped through a cancellation token; a server process found by its listening
//! line; a counter's rate over a measured span; and (in `load`) a minimal load generator. Each
//! bench uses part of it.
#![allow(dead_code)]

pub mod load;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Errors of a bench: anything, printed by `main`.
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A server running on its own single-threaded runtime.
pub struct OneCore {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `/proc/PID/task/TID/stat` of its thread, where its CPU time can be read.
    pub stat: std::path::PathBuf,
    shutdown: CancellationToken,
    thread: std::thread::JoinHandle<()>,
}

impl OneCore {
    /// Stops it and waits for its thread.
    pub fn stop(self) {
        self.shutdown.cancel();
        let _ = self.thread.join();
    }
}

/// Runs `serve` on a listener bound to 127.0.0.1 port 0, on a thread of its own.
pub fn on_one_core<F, Fut>(serve: F) -> BenchResult<OneCore>
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let (bound, addr) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::bind("127.0.0.1:0").await else {
                    return;
                };
                // "/proc/thread-self" links to "PID/task/TID", this thread's entry.
                let stat = std::fs::read_link("/proc/thread-self")
                    .map(|task| std::path::Path::new("/proc").join(task).join("stat"));
                let _ = bound.send(listener.local_addr().and_then(|addr| Ok((addr, stat?))));
                serve(listener, token).await;
            });
        })?;
    let (addr, stat) = addr.recv_timeout(Duration::from_secs(10))??;
    Ok(OneCore {
        addr,
        stat,
        shutdown,
        thread,
    })
}

/// How fast `counter` grows, per second, over `measure` after `warm_up`.
pub async fn rate_over(counter: &AtomicU64, warm_up: Duration, measure: Duration) -> f64 {
    tokio::time::sleep(warm_up).await;
    let before = counter.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(measure).await;
    let counted = counter.load(Ordering::Relaxed) - before;
    counted as f64 / started.elapsed().as_secs_f64()
}

/// A child process that prints `listening on ADDR` first, as amf-bench's servers do; killed when
/// dropped. Its standard output stays readable after that line.
pub struct Listening {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Listening {
    /// Starts `command` (standard output piped, errors discarded) and reads its address.
    pub fn start(command: &mut Command) -> BenchResult<Listening> {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut process = Listening {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let mut line = String::new();
        if let Some(stdout) = process.child.stdout.as_mut() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        process.addr = line.trim().trim_start_matches("listening on ").parse()?;
        Ok(process)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
