//! Ctrl-C, SIGTERM and (unless a role reloads on it) SIGHUP become one cancellation token that
//! every role watches to stop accepting work and drain what is in flight; and the wait for a
//! drain's (or flush's) deadline, once set. The signals are watched from the start of `main`, on
//! a thread of their own, so that one sent during a role's set-up stops the role rather than
//! killing the process.

use std::future::Future;
use std::sync::OnceLock;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

/// What SIGHUP means to a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hangup {
    /// SIGHUP stops the role as SIGTERM does: a closed terminal or SSH session must not kill a
    /// run, server or proxy before it has written its results, log and summary.
    Stops,
    /// The role watches SIGHUP itself (the policy server reloads its file on it).
    Reloads,
}

/// The process's watch, once started: cancelled on the first signal.
static WATCH: OnceLock<CancellationToken> = OnceLock::new();

/// Starts watching SIGINT, SIGTERM and, with [`Hangup::Stops`], SIGHUP for the rest of the
/// process, on a thread with a small runtime of its own: `main` calls it first thing, outside any
/// runtime, with the `hangup` of the role it runs, so that a signal during the role's set-up (a
/// file read, a name resolved, its runtime started) is kept and stops the role once it watches,
/// rather than killing the process before it does. The signals are caught from the moment this
/// returns. Later calls change nothing.
pub fn watch(hangup: Hangup) -> anyhow::Result<()> {
    if WATCH.get().is_some() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("cannot start the signal watch's runtime")?;
    // Registered here, before the thread starts: the caller is covered once this returns.
    let signalled = {
        let _entered = runtime.enter();
        watch_signals(hangup)
    };
    let token = CancellationToken::new();
    let cancel = token.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || runtime.block_on(cancel_on(signalled, cancel)))
        .context("cannot start the signal watch's thread")?;
    // Only `main` calls this, once: there is no other watch to lose.
    let _ = WATCH.set(token);
    Ok(())
}

/// A token cancelled on the first Ctrl-C (SIGINT) or SIGTERM, and SIGHUP when `hangup` is
/// [`Hangup::Stops`]: the process's [`watch`] when `main` started one (a signal that came before
/// this call included), else a watch on the current runtime, registered now. Either way the
/// signals are watched from the moment this returns at the latest, so a caller that announces
/// itself afterwards cannot be killed by a signal sent right after the announcement.
pub fn on_signal(hangup: Hangup) -> CancellationToken {
    match WATCH.get() {
        Some(token) => token.child_token(),
        None => on_signal_here(hangup),
    }
}

/// [`on_signal`] on the current runtime: where the watch's own thread cannot start.
fn on_signal_here(hangup: Hangup) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(cancel_on(watch_signals(hangup), cancel));
    token
}

/// Cancels `token` once `signalled` resolves, then says which signal it was.
async fn cancel_on(signalled: impl Future<Output = &'static str>, token: CancellationToken) {
    let name = signalled.await;
    // Cancel first: nothing (a log line on a closed standard error) may come between the
    // signal and the shutdown.
    token.cancel();
    tracing::info!("{name}: shutdown requested");
}

/// Registers for SIGINT, SIGTERM and, with [`Hangup::Stops`], SIGHUP now; the future resolves
/// on the first of them, with its name.
#[cfg(unix)]
fn watch_signals(hangup: Hangup) -> impl Future<Output = &'static str> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    let hangups = match hangup {
        Hangup::Stops => Some(signal(SignalKind::hangup())),
        Hangup::Reloads => None,
    };
    async move {
        let (mut interrupt, mut terminate) = match (interrupt, terminate) {
            (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
            (_, Err(error)) | (Err(error), _) => {
                tracing::warn!("cannot watch SIGTERM or SIGINT ({error}); falling back to Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
                return "SIGINT";
            }
        };
        let mut hangups = match hangups {
            Some(Ok(hangups)) => Some(hangups),
            Some(Err(error)) => {
                tracing::warn!("cannot watch SIGHUP ({error}); it will end the process at once");
                None
            }
            None => None,
        };
        let hangup_received = async {
            match hangups.as_mut() {
                Some(hangups) => hangups.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
            _ = hangup_received => "SIGHUP",
        }
    }
}

#[cfg(not(unix))]
fn watch_signals(_: Hangup) -> impl Future<Output = &'static str> + Send {
    async {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Sleeps until `deadline` (a drain's, a flush's), or for ever while none is set.
pub async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
