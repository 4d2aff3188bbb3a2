//! The `amf-bench` binary: parses the command line, runs it, prints any error once, and maps it to
//! an exit code (0 ok, 1 checks failed, 2 usage, input or runtime error).

use std::io::{ErrorKind, Write};
use std::process::ExitCode;

use clap::Parser;

use amf_bench::cli::{self, Cli};

/// mimalloc rather than the system allocator: frames are decoded on one thread and their
/// values, events and buffers freed on another (the proxy's log writer, the runtime's other
/// workers), a pattern glibc's per-thread caches serve badly (the proxy spent 14% of its time in
/// glibc's malloc and free). Built with `no_thp`: mimalloc otherwise asks for transparent huge
/// pages, and the first touch of each one clears 2 MiB at once, which stalled a thread for
/// milliseconds on a VM (see results/BENCHMARKS.md, "Where the lag tail comes from").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(hangup) = cli.command.stops_on_signals() {
        // Before the role's set-up: a signal from now on stops it instead of killing the
        // process. Should the watch not start, the role watches on its own runtime, later.
        let _ = amf_bench::shutdown::watch(hangup);
    }
    match cli::run(cli) {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // A closed standard error must not turn exit status 2 into a panic's 101.
            let message = shortened(&chain_text(&error));
            let _ = writeln!(std::io::stderr(), "amf-bench: error: {message}");
            ExitCode::from(2)
        }
    }
}

/// Bytes of an error kept from each end when it is longer than twice that: a TOML error quotes
/// the whole offending line, and a line of megabytes would bury what is wrong.
const ERROR_END: usize = 2048;

/// `message`, its middle left out when it is too long (where and what come first and last).
fn shortened(message: &str) -> String {
    if message.len() <= 2 * ERROR_END {
        return message.to_string();
    }
    let mut head = ERROR_END;
    while !message.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = message.len() - ERROR_END;
    while !message.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{} [... {} bytes left out ...] {}",
        &message[..head],
        tail - head,
        &message[tail..]
    )
}

/// The error and its causes, joined by ": " as anyhow's `{:#}` does, leaving out a cause whose text
/// is already said: many errors put their cause in their own text and also give it as their
/// source, and "nesting too deep: nesting too deep" tells the reader nothing twice.
fn chain_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let said = cause.to_string();
        if text.is_empty() {
            text = said;
        } else if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
    }
    text
}

/// A reader of our output that went away (`amf-bench decode ... | head`) is not an error.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("bad payload: {0}")]
    struct Wrapper(#[source] std::io::Error);

    #[test]
    fn a_cause_already_in_the_text_is_said_once() {
        let cause = || std::io::Error::other("nesting deeper than the limit of 4");
        let error = anyhow::Error::from(Wrapper(cause())).context("reading frame 3");
        assert_eq!(
            chain_text(&error),
            "reading frame 3: bad payload: nesting deeper than the limit of 4"
        );
        let plain = anyhow::Error::from(cause()).context("reading frame 3");
        assert_eq!(
            chain_text(&plain),
            "reading frame 3: nesting deeper than the limit of 4"
        );
    }
}
