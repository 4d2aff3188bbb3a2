//! Ctrl-C and SIGTERM become one cancellation token that every role watches to stop accepting
//! work and drain what is in flight; and the wait for a drain's (or flush's) deadline, once set.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first Ctrl-C (SIGINT) or SIGTERM. The signals are watched from
/// the moment this returns, so a caller that announces itself afterwards cannot be killed by a
/// SIGTERM sent right after the announcement.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    let signalled = watch_signals();
    tokio::spawn(async move {
        signalled.await;
        // Cancel first: nothing (a log line on a closed standard error) may come between the
        // signal and the shutdown.
        cancel.cancel();
        tracing::info!("shutdown requested");
    });
    token
}

/// Registers for SIGINT and SIGTERM now; the future resolves on the first of them.
#[cfg(unix)]
fn watch_signals() -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            (_, Err(error)) | (Err(error), _) => {
                tracing::warn!("cannot watch SIGTERM or SIGINT ({error}); falling back to Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(not(unix))]
fn watch_signals() -> impl std::future::Future<Output = ()> + Send {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Sleeps until `deadline` (a drain's, a flush's), or for ever while none is set.
pub async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
