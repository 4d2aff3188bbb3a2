//! The command line: clap definitions (their doc comments are the `--help` text) and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::shutdown::Hangup;

/// Flash-era AMF socket tooling: a load generator with scenarios and thresholds, a reference AMF
/// Socket RPC server, a logging proxy, a Flash policy server and linter, and a decoder for
/// AMF0/AMF3 values and AMF Socket frames.
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
    /// Run the reference AMF Socket RPC server.
    ///
    /// Built-in commands (a request's `command`):
    ///   echo               replies with the request's params unchanged
    ///   sleep {ms}         replies with the params after `ms` milliseconds (at most 600000)
    ///   fail {code?, message?}  replies with an error result
    ///   push {count, interval_ms, command}  sends `count` messages {index, count} with that
    ///                      command (default "push"), `interval_ms` apart, then replies {pushed}
    ///   stats              replies with the server's counters
    ///   close              closes the connection without replying
    ///
    /// Failures are results of the form {error: {code, message}}: code "fail", "bad_params",
    /// "unknown_command" for any other command, or "reply_not_sent" for a result that cannot be
    /// sent. `amf_socket_ping` is answered with null (or a canned amf_socket_ping's result).
    /// Canned results from --responses take precedence over the built-ins.
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// Serve Flash socket policy files (port 843 by default), or lint or check a policy.
    Policy(PolicyArgs),
    /// Relay clients to an upstream server byte for byte, answer or forward Flash policy
    /// requests, log every frame decoded, and measure each command's latency passively.
    Proxy(ProxyArgs),
    /// Run a load scenario: simulated RPC clients against a target (or the embedded server),
    /// latency measured from intended send times; exit status 1 when a threshold fails.
    Run(RunArgs),
}

impl Command {
    /// What SIGINT, SIGTERM and SIGHUP mean to the command, if it watches them: the servers, the
    /// proxy and `run` stop on them, writing what they owe; `decode` and the policy's `lint` and
    /// `check` keep the default (Ctrl-C ends them at once).
    pub fn stops_on_signals(&self) -> Option<Hangup> {
        match self {
            Command::Serve(_) | Command::Proxy(_) | Command::Run(_) => Some(Hangup::Stops),
            Command::Policy(args) if args.action.is_none() => Some(Hangup::Reloads),
            Command::Decode(_) | Command::Policy(_) => None,
        }
    }
}

/// Options of `amf-bench run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scenario file (TOML; see the README and scenarios/).
    pub scenario: PathBuf,
    /// Where to write the results (default: results/<name>-<UTC time>/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Override the scenario's target, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub target: Option<String>,
    /// No progress line (it is shown only when stderr is a terminal anyway).
    #[arg(long, short)]
    pub quiet: bool,
    /// Worker threads of the simulated clients (default: one per core). The arrival schedule of
    /// an open model has a thread of its own besides these.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

/// Options of `amf-bench policy`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PolicyArgs {
    /// Lint a policy file or check a server instead of serving.
    #[command(subcommand)]
    pub action: Option<PolicyAction>,
    /// Serving options.
    #[command(flatten)]
    pub serve: PolicyServeArgs,
}

/// `amf-bench policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Check a policy file; exit status 1 when it has errors.
    Lint(PolicyLintArgs),
    /// Ask a server for its policy as Flash Player does, and report what came back.
    Check(PolicyCheckArgs),
}

/// Options of the policy server.
#[derive(Debug, Args)]
pub struct PolicyServeArgs {
    /// Address to listen on (repeatable). Default: [::]:843 and 0.0.0.0:843. Sockets passed by
    /// systemd socket activation (LISTEN_FDS) are used instead when present.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<std::net::SocketAddr>,
    /// The policy file to serve; SIGHUP reloads it.
    #[arg(long, value_name = "FILE", conflicts_with = "allow")]
    pub policy: Option<PathBuf>,
    /// Serve a generated policy granting DOMAIN:PORTS (repeatable, e.g. '*:9000' or
    /// '*.example.com:8000-8100,9000').
    #[arg(long, value_name = "DOMAIN:PORTS")]
    pub allow: Vec<crate::policy::Allow>,
    /// The generated policy's meta-policy (site-control permitted-cross-domain-policies).
    #[arg(long, value_enum, default_value_t = crate::policy::MetaPolicy::MasterOnly)]
    pub meta: crate::policy::MetaPolicy,
    /// Seconds one exchange may take, from accept to close; a silent client is closed then.
    #[arg(long, default_value = "5", value_name = "SECONDS", value_parser = parse_seconds)]
    pub timeout: std::time::Duration,
    /// Connections handled at once; further clients wait in the listen backlog [default: 10000,
    /// or as many as the open-file limit allows].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
}

/// Options of `amf-bench policy lint`.
#[derive(Debug, Args)]
pub struct PolicyLintArgs {
    /// The policy file.
    pub file: PathBuf,
    /// The port the policy will be served on (a policy on a port of 1024 or above may not grant
    /// ports below 1024); leave out for the master policy on 843.
    #[arg(long)]
    pub port: Option<u16>,
}

/// Options of `amf-bench policy check`.
#[derive(Debug, Args)]
pub struct PolicyCheckArgs {
    /// The server, HOST:PORT (e.g. example.com:843).
    pub target: String,
    /// Also say whether the policy grants this port; exit status 1 if it does not.
    #[arg(long)]
    pub port: Option<u16>,
    /// Seconds to wait for the whole answer.
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = parse_seconds)]
    pub timeout: std::time::Duration,
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
    #[arg(long, default_value_t = crate::frame::DEFAULT_MAX_FRAME_LEN, value_name = "BYTES", value_parser = parse_frame_cap)]
    pub max_frame: usize,
    /// Deepest nesting of containers accepted.
    #[arg(long, default_value_t = crate::codec::Limits::DEFAULT_MAX_DEPTH, value_name = "LEVELS", value_parser = parse_max_depth)]
    pub max_depth: usize,
}

/// Options of `amf-bench serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Payload encoding: AMF3 (AMF Socket), or JSON in the same envelope and framing.
    #[arg(long, value_enum, default_value_t = crate::rpc::Encoding::Amf3)]
    pub encoding: crate::rpc::Encoding,
    /// Canned results per command, from a TOML file (see the README).
    #[arg(long, value_name = "FILE.toml")]
    pub responses: Option<PathBuf>,
    /// Answer policy requests on the served port with this policy file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["allow", "no_policy"])]
    pub policy: Option<PathBuf>,
    /// Answer policy requests with a generated policy granting DOMAIN:PORTS (repeatable, e.g.
    /// '*:9000' or '*.example.com:8000-8100,9000'); the default grants any domain the served port.
    #[arg(long, value_name = "DOMAIN:PORTS", conflicts_with = "no_policy")]
    pub allow: Vec<crate::policy::Allow>,
    /// Do not recognise policy requests: every byte is AMF Socket framing.
    #[arg(long)]
    pub no_policy: bool,
    /// Seconds between the server's pings to each client (at least 0.01).
    #[arg(long, default_value = "5", value_name = "SECONDS", value_parser = parse_ping_seconds)]
    pub ping_interval: std::time::Duration,
    /// Seconds a client has to answer a ping before its connection is closed (at least 0.01).
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = parse_ping_seconds)]
    pub ping_timeout: std::time::Duration,
    /// Do not ping clients (and so never close a silent one).
    #[arg(long)]
    pub no_ping: bool,
    /// Connections served at once; further clients wait in the listen backlog [default: 10000, or
    /// as many as the open-file limit allows].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Requests of one connection handled at once; beyond this the connection is not read until
    /// one finishes.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// Largest frame payload accepted or sent, in bytes.
    #[arg(long, default_value_t = crate::frame::DEFAULT_MAX_FRAME_LEN, value_name = "BYTES", value_parser = parse_frame_cap)]
    pub max_frame: usize,
    /// Deepest nesting of containers accepted in a frame.
    #[arg(long, default_value_t = crate::codec::Limits::DEFAULT_MAX_DEPTH, value_name = "LEVELS", value_parser = parse_max_depth)]
    pub max_depth: usize,
    /// On Ctrl-C, SIGTERM or SIGHUP, seconds to let in-flight requests finish before closing.
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = parse_seconds)]
    pub drain_timeout: std::time::Duration,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// WebSocket clients.
    #[command(flatten)]
    pub websocket: WsArgs,
}

/// The WebSocket options of `serve` and `proxy`.
#[derive(Debug, Args)]
pub struct WsArgs {
    /// Also accept WebSocket connections on this address, as Ruffle's `socketProxy` makes them:
    /// binary messages carry the AMF Socket byte stream (message boundaries mean nothing), a
    /// text message closes the connection (code 1003), and a WebSocket Close is the end of the
    /// stream both ways. Same handling, limits and counters as the --listen port.
    #[arg(long, value_name = "ADDR")]
    pub ws_listen: Option<std::net::SocketAddr>,
    /// An origin allowed to open a WebSocket (repeatable), e.g. 'http://127.0.0.1:8000', or '*'
    /// for any. A handshake whose Origin header is not listed is refused with HTTP 403; one with
    /// no Origin header (not from a browser) is accepted.
    #[arg(long, value_name = "ORIGIN")]
    pub ws_origin: Vec<String>,
    /// The --listen port also accepts WebSocket upgrades (told apart by their leading 'GET '), so
    /// one port serves Flash Player, Ruffle and policy requests.
    #[arg(long)]
    pub ws_on_tcp: bool,
}

impl WsArgs {
    /// How WebSocket clients are accepted, for frames of up to `max_frame` bytes.
    pub fn config(&self, max_frame: usize) -> Result<crate::ws::WsConfig, crate::ws::BadOrigin> {
        crate::ws::check_origins(&self.ws_origin)?;
        Ok(crate::ws::WsConfig {
            origins: self.ws_origin.clone(),
            ..crate::ws::WsConfig::for_frames(max_frame)
        })
    }
}

/// Options of `amf-bench proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on for clients.
    #[arg(long, value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// The server to relay to, HOST:PORT; dialled once per client.
    #[arg(long, value_name = "HOST:PORT")]
    pub upstream: String,
    /// Also write one JSON object per line for each event to FILE (schema in the README).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Record the session (frames with timing and raw bytes, per connection) to FILE.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// How frames are cut for the log: amf-socket (4-byte length + AMF3), xmlsocket
    /// (NUL-ended text) or raw (chunks as hex). Relaying is byte for byte whatever this says.
    #[arg(long, value_enum, default_value_t = crate::proxy::tap::Framing::AmfSocket)]
    pub framing: crate::proxy::tap::Framing,
    /// Answer policy requests with this policy file, or `forward` (the default) to relay them
    /// upstream like any other bytes.
    #[arg(long, value_name = "FILE|forward", conflicts_with = "allow")]
    pub policy: Option<PathBuf>,
    /// Answer policy requests with a generated policy granting DOMAIN:PORTS (repeatable, e.g.
    /// '*:9000').
    #[arg(long, value_name = "DOMAIN:PORTS")]
    pub allow: Vec<crate::policy::Allow>,
    /// Log only frames of this command (repeatable; a reply counts as its request's command).
    #[arg(long, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Log only frames going this way.
    #[arg(long, value_enum, value_name = "c2s|s2c")]
    pub dir: Option<crate::proxy::log::Direction>,
    /// Log only this connection (repeatable; connections are numbered from 1 in accept order).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub conn: Vec<u64>,
    /// No line per event on standard output (the JSON log, recording and tables are kept).
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the latency table every SECONDS, besides on exit.
    #[arg(long, value_name = "SECONDS", value_parser = parse_stats_interval)]
    pub stats_every: Option<std::time::Duration>,
    /// Largest frame decoded for the log, in bytes (header included); larger frames are logged
    /// with their first bytes and relayed without being held [default: 1048576, or
    /// --max-frame + 4 when that is lower; at least 5, a header and one byte]
    #[arg(long, value_name = "BYTES", value_parser = parse_max_decode)]
    pub max_decode: Option<usize>,
    /// A frame header declaring more than this loses the framing (the rest of that direction is
    /// relayed undecoded).
    #[arg(long, default_value_t = crate::frame::DEFAULT_MAX_FRAME_LEN, value_name = "BYTES", value_parser = parse_frame_cap)]
    pub max_frame: usize,
    /// Deepest nesting of containers decoded.
    #[arg(long, default_value_t = crate::codec::Limits::DEFAULT_MAX_DEPTH, value_name = "LEVELS", value_parser = parse_max_depth)]
    pub max_depth: usize,
    /// Relay buffer per direction per connection, in bytes: a slow reader holds at most this.
    #[arg(long, default_value_t = 16 * 1024, value_name = "BYTES", value_parser = parse_buffer_size)]
    pub buffer: usize,
    /// Bytes of events the log may fall behind by before it drops (and counts) events; at least
    /// 64 KiB.
    #[arg(long, default_value_t = 64 * 1024 * 1024, value_name = "BYTES", value_parser = parse_log_queue)]
    pub log_queue: usize,
    /// Seconds to wait for the upstream to accept a connection.
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = parse_seconds_above_zero)]
    pub connect_timeout: std::time::Duration,
    /// Connections relayed at once (over --listen and --ws-listen together); further clients wait
    /// in the listen backlog [default: 10000, or as many as the open-file limit allows at two
    /// files each].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// WebSocket clients.
    #[command(flatten)]
    pub websocket: WsArgs,
}

/// `text` as a number within `range`, or an error saying it is not `expected`.
fn parse_within(
    text: &str,
    range: std::ops::RangeInclusive<usize>,
    expected: &str,
) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|number| range.contains(number))
        .ok_or_else(|| format!("'{text}' is not {expected}"))
}

/// A depth limit: 1 to `Limits::MAX_SAFE_DEPTH`, since deeper values from a peer could overflow a
/// worker thread's stack, which aborts the whole process.
fn parse_max_depth(text: &str) -> Result<usize, String> {
    let most = crate::codec::Limits::MAX_SAFE_DEPTH;
    parse_within(
        text,
        1..=most,
        &format!("a depth from 1 to {most} (deeper values could overflow a thread's stack)"),
    )
}

/// A cap on frame payloads: at least one byte (an empty frame is always an error), at most what
/// the 4-byte length header can declare.
fn parse_frame_cap(text: &str) -> Result<usize, String> {
    let most = u32::MAX as usize;
    parse_within(text, 1..=most, &format!("a byte count from 1 to {most}"))
}

/// The log's queue: at least 64 KiB, since a queue that cannot hold a few events logs nothing
/// at all.
fn parse_log_queue(text: &str) -> Result<usize, String> {
    parse_within(
        text,
        64 * 1024..=usize::MAX,
        "a byte count of at least 65536",
    )
}

/// A relay buffer size: 1 KiB to 16 MiB.
fn parse_buffer_size(text: &str) -> Result<usize, String> {
    parse_within(
        text,
        1024..=16 * 1024 * 1024,
        "a byte count from 1024 to 16777216",
    )
}

/// A number of seconds above zero.
fn parse_seconds_above_zero(text: &str) -> Result<std::time::Duration, String> {
    let seconds = parse_seconds(text)?;
    if seconds.is_zero() {
        return Err(format!("'{text}' must be above zero seconds"));
    }
    Ok(seconds)
}

/// `--stats-every`: at least a tenth of a second (the table is printed whole each time).
fn parse_stats_interval(text: &str) -> Result<std::time::Duration, String> {
    let seconds = parse_seconds(text)?;
    if seconds < std::time::Duration::from_millis(100) {
        return Err(format!("'{text}' must be at least 0.1 seconds"));
    }
    Ok(seconds)
}

/// `--ping-interval` and `--ping-timeout`: shorter would have the server do little but ping (a
/// task and a frame per ping).
fn parse_ping_seconds(text: &str) -> Result<std::time::Duration, String> {
    parse_seconds(text)
        .ok()
        .filter(|seconds| *seconds >= std::time::Duration::from_millis(10))
        .ok_or_else(|| {
            format!(
                "'{text}' is not a number of seconds from 0.01 to {MAX_SECONDS} (--no-ping turns pings off)"
            )
        })
}

/// `--max-decode`: a frame's 4-byte header and at least one byte of payload; below that every
/// frame would be logged as too large to decode.
fn parse_max_decode(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(bytes) if bytes >= 5 => Ok(bytes),
        Ok(_) => Err(format!(
            "'{text}' is below 5 bytes, a frame's 4-byte header and one byte: every frame would \
             be too large to decode (use --framing raw to decode nothing)"
        )),
        Err(_) => Err(format!("'{text}' is not a number of bytes")),
    }
}

/// The longest time an option takes: a year (times are added to the clock, which has bounds).
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// A non-negative number of seconds, fractions allowed, up to a year.
fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|seconds| *seconds <= MAX_SECONDS)
        .and_then(|seconds| std::time::Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| {
            format!("'{text}' is not a number of seconds from 0 to {MAX_SECONDS} (e.g. 5 or 0.5)")
        })
}

/// Runs the parsed command line; the exit code on success, or the error `main` prints.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Where this fails the old limit stays: `run` then names it if its clients do not fit, and
    // the servers report the accepts it refuses.
    let _ = crate::open_files::raise_to_hard_limit();
    match cli.command {
        Command::Decode(args) => crate::decode::run(&args),
        Command::Serve(args) => crate::serve::command::run(&args),
        Command::Policy(args) => crate::policy::command::run(&args),
        Command::Proxy(args) => crate::proxy::command::run(&args),
        Command::Run(args) => crate::run::run(&args),
    }
}
