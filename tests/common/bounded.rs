//! Running a piece of work on a thread of its own with a given stack, waiting a bounded time for
//! it: a runaway decode or render fails the test instead of hanging it.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

/// A hang detector, not a performance assertion: what it guards takes well under a second.
pub const HANG: Duration = Duration::from_secs(10);

/// Runs `run` on a thread with `stack` bytes of stack and waits at most `HANG` for it. (A stack
/// overflow still aborts.)
pub fn bounded_on<T: Send + 'static>(
    stack: usize,
    what: &str,
    run: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, result) = mpsc::channel();
    thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            // The receiver is gone only if the test already failed.
            let _ = done.send(run());
        })
        .expect("spawns a thread");
    match result.recv_timeout(HANG) {
        Ok(value) => value,
        Err(RecvTimeoutError::Timeout) => panic!("{what} did not finish within {HANG:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// `bounded_on` a 2 MiB stack, as a server's worker thread might have.
pub fn bounded<T: Send + 'static>(what: &str, run: impl FnOnce() -> T + Send + 'static) -> T {
    bounded_on(2 << 20, what, run)
}
