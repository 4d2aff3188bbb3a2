//! The command line: clap definitions (their doc comments are the `--help` text) and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Flash-era AMF socket tooling: decode AMF0/AMF3 values and AMF Socket frames.
#[derive(Debug, Parser)]
#[command(name = "amf-bench", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode AMF3 (or AMF0) values, or a stream of AMF Socket frames, and print them readably
    /// or as canonical JSON.
    Decode(DecodeArgs),
}

/// Options of `amf-bench decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The input file; `-` or nothing reads standard input.
    pub file: Option<PathBuf>,
    /// The input is hex text (whitespace ignored) rather than binary.
    #[arg(long)]
    pub hex: bool,
    /// The input is a stream of AMF Socket frames (4-byte big-endian length, then one AMF3 value);
    /// a frame that does not decode is reported and decoding goes on with the next one.
    #[arg(long)]
    pub framed: bool,
    /// Decode AMF0 instead of AMF3 (not with --framed: frames always hold AMF3).
    #[arg(long, conflicts_with = "framed")]
    pub amf0: bool,
    /// Print the canonical JSON form, one line per value or frame, instead of a readable tree.
    #[arg(long)]
    pub json: bool,
    /// Largest frame payload accepted with --framed, in bytes.
    #[arg(long, default_value_t = crate::frame::DEFAULT_MAX_FRAME_LEN, value_name = "BYTES")]
    pub max_frame: usize,
    /// Deepest nesting of containers accepted.
    #[arg(long, default_value_t = crate::codec::Limits::DEFAULT_MAX_DEPTH, value_name = "LEVELS")]
    pub max_depth: usize,
}

/// Runs the parsed command line; the exit code on success, or the error `main` prints.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Decode(args) => crate::decode::run(&args),
    }
}
