//! The accept loop the servers share: at most a fixed number of connections at once (further
//! clients wait in the listen backlog), each handled on its own task, until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts connections on `listener` until `shutdown`, running `handle` for each on a task
/// tracked by `handlers` while holding one of `slots`. Returns when shutdown begins; the caller
/// waits for `handlers`.
pub async fn accept_loop<H, F>(
    listener: TcpListener,
    slots: Arc<Semaphore>,
    handlers: TaskTracker,
    shutdown: CancellationToken,
    handle: H,
) where
    H: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let handling = handle(stream, peer);
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
