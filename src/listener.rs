//! What the servers share: their listeners and the accept loop (at most a fixed number of connections at once,
//! further clients waiting in the listen backlog, each handled on its own task, until shutdown),
//! their runtime, and the `listening on ADDR` line scripts read.

use std::future::Future;
use std::io;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts connections on `listeners` until `shutdown`, running `handle` for each on a task
/// tracked by `handlers` while holding one of `slots`; `handle` also gets the index of the
/// listener the connection came from. Returns when shutdown begins; the caller waits for
/// `handlers`. One loop, so that a slot is taken only once a connection is there to use it,
/// whichever listener it arrives on (a loop per listener would hold a slot idle in each).
pub async fn accept_loop_any<H, F>(
    listeners: Vec<TcpListener>,
    slots: Arc<Semaphore>,
    handlers: TaskTracker,
    shutdown: CancellationToken,
    handle: H,
) where
    H: Fn(TcpStream, SocketAddr, usize) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut turn = 0;
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (index, accepted) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = accept_any(&listeners, turn) => accepted,
        };
        turn = turn.wrapping_add(1);
        match accepted {
            Ok((stream, peer)) => {
                let handling = handle(stream, peer, index);
                handlers.spawn(async move {
                    handling.await;
                    drop(permit);
                });
            }
            // Out of descriptors, or a client gone before accept: keep serving the rest.
            Err(error) => {
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Which of a server's listeners accepted a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The main port (`--listen`): raw TCP, and WebSocket upgrades with `--ws-on-tcp`.
    Main,
    /// The WebSocket port (`--ws-listen`).
    WebSocket,
}

/// A server's listening sockets: the main one, and a WebSocket one when asked for.
pub struct Listeners {
    main: TcpListener,
    ws: Option<TcpListener>,
}

impl Listeners {
    /// Binds `main`, and `ws` when given.
    pub async fn bind(main: SocketAddr, ws: Option<SocketAddr>) -> anyhow::Result<Listeners> {
        let main = bind(main).await?;
        let ws = match ws {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Listeners { main, ws })
    }

    /// The main listener's address (its port, when port 0 was asked for).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.main.local_addr()?)
    }

    /// The WebSocket listener's address, when there is one.
    pub fn ws_local_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        match &self.ws {
            Some(listener) => Ok(Some(listener.local_addr()?)),
            None => Ok(None),
        }
    }

    /// Accepts on both under one cap (`accept_loop_any`), telling `handle` which one accepted.
    pub async fn accept_loop<H, F>(
        self,
        slots: Arc<Semaphore>,
        handlers: TaskTracker,
        shutdown: CancellationToken,
        handle: H,
    ) where
        H: Fn(TcpStream, SocketAddr, Which) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let mut listeners = vec![self.main];
        listeners.extend(self.ws);
        let which = |index| {
            if index == 0 {
                Which::Main
            } else {
                Which::WebSocket
            }
        };
        let handle = |stream, remote, index| handle(stream, remote, which(index));
        accept_loop_any(listeners, slots, handlers, shutdown, handle).await;
    }
}

/// A listening socket on `addr`.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// A multi-threaded runtime with `threads` workers (default: one per core).
pub fn runtime(threads: Option<u16>) -> anyhow::Result<tokio::runtime::Runtime> {
    let workers = match threads {
        Some(threads) => usize::from(threads),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    check_threads_can_start(workers)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// Starts `count` threads that live at once, then ends them: a limit on threads (`ulimit -u`,
/// a container's pids limit, address space for their stacks) is then an error naming it. The
/// runtime cannot report it: it panics when a worker cannot start, and then waits for ever on
/// the workers that did.
fn check_threads_can_start(count: usize) -> anyhow::Result<()> {
    let gate = std::sync::Arc::new(std::sync::RwLock::new(()));
    let held = gate
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut started = Vec::with_capacity(count);
    let mut failure = None;
    for _ in 0..count {
        let gate = std::sync::Arc::clone(&gate);
        let spawned = std::thread::Builder::new().spawn(move || drop(gate.read()));
        match spawned {
            Ok(thread) => started.push(thread),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    drop(held);
    let running = started.len();
    for thread in started {
        let _ = thread.join();
    }
    match failure {
        None => Ok(()),
        Some(error) => anyhow::bail!(
            "cannot start {count} worker threads (only {running} could run at once: {error}); \
             ask for fewer with --threads, or raise the limit on threads (ulimit -u, or the \
             container's pids limit)"
        ),
    }
}

/// Prints `listening on ADDR` on standard output at once, so a script that asked for port 0
/// can read the port.
pub fn announce(addr: SocketAddr) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()
}

/// Prints `WebSocket listening on ADDR` on standard output at once, after `announce`.
pub fn announce_websocket(addr: SocketAddr) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "WebSocket listening on {addr}")?;
    out.flush()
}

/// The next connection on any of `listeners`, with the listener's index; the one asked first
/// rotates with `turn`, so a busy listener cannot starve the others.
async fn accept_any(
    listeners: &[TcpListener],
    turn: usize,
) -> (usize, io::Result<(TcpStream, SocketAddr)>) {
    std::future::poll_fn(|cx| {
        for offset in 0..listeners.len() {
            let index = (turn + offset) % listeners.len();
            if let Poll::Ready(accepted) = listeners[index].poll_accept(cx) {
                return Poll::Ready((index, accepted));
            }
        }
        Poll::Pending
    })
    .await
}
