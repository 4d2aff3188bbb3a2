//! Log lines to standard error, filtered by `RUST_LOG` (default: info), set up once per process.

use std::io::IsTerminal;

/// Installs the subscriber; later calls do nothing.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // By default a failed write is reported with `eprintln!`, which panics on a closed
        // standard error: in a signal handler's task, that loses the shutdown.
        .log_internal_errors(false)
        .try_init();
}
