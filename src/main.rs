//! The `amf-bench` binary: parses the command line, runs it, prints any error once, and maps it to
//! an exit code (0 ok, 1 checks failed, 2 usage, input or runtime error).

use std::io::ErrorKind;
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
    match cli::run(cli) {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("amf-bench: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// A reader of our output that went away (`amf-bench decode ... | head`) is not an error.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
    })
}
