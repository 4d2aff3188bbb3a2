//! `amf-bench proxy` on the console: options to configuration, the runtime, the listening line on
//! standard output, and the summary (latency per command, connection ends) on exit.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;

use super::log::{Filter, Outputs};
use super::tap::TapLimits;
use super::{Proxy, ProxyConfig};
use crate::cli::ProxyArgs;
use crate::codec::{DecodeOptions, Limits};
use crate::frame::HEADER_LEN;
use crate::open_files;
use crate::policy::{self, PolicySource};

/// The `--policy` value that sends policy requests upstream.
pub const FORWARD: &str = "forward";

/// Open files per proxied connection: a client's socket and its upstream's.
const FILES_PER_CONNECTION: u64 = 2;

/// `--max-decode` when not given (or `--max-frame` plus the header, if that is lower).
const DEFAULT_MAX_DECODE: usize = 1024 * 1024;

/// Whether two paths name one file: the same device and inode once both exist (hard and
/// symbolic links included), else the same place once their directories are resolved
/// (`log.jsonl`, `./log.jsonl`, `../here/log.jsonl`, or a link to a file not made yet).
fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(a), Ok(b)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        return a.dev() == b.dev() && a.ino() == b.ino();
    }
    match (resolved(a), resolved(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

/// Where a path leads: its canonical form when it exists; else its directory's canonical form
/// joined with its name, through a symbolic link that points to a file not made yet.
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(path) = std::fs::canonicalize(path) {
        return Some(path);
    }
    let path = match std::fs::read_link(path) {
        Ok(target) => path.parent()?.join(target),
        Err(_) => path.to_path_buf(),
    };
    let name = path.file_name()?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(dir).ok()?.join(name))
}

/// Refuses a command line that names one file twice among `--log`, `--record` and `--policy`:
/// the outputs would write over each other, or over the policy being served.
fn check_files_apart(args: &ProxyArgs) -> anyhow::Result<()> {
    let policy = args
        .policy
        .as_deref()
        .filter(|path| path.as_os_str() != FORWARD);
    let named = [
        ("--log", args.log.as_deref()),
        ("--record", args.record.as_deref()),
        ("--policy", policy),
    ];
    for (index, (flag, path)) in named.iter().enumerate() {
        for (other_flag, other_path) in &named[index + 1..] {
            if let (Some(path), Some(other_path)) = (path, other_path)
                && same_file(path, other_path)
            {
                bail!("{flag} and {other_flag} name the same file; give each its own");
            }
        }
    }
    Ok(())
}

/// Builds the proxy's configuration from the command line, reading the files it names.
pub fn config(args: &ProxyArgs) -> anyhow::Result<ProxyConfig> {
    check_upstream(&args.upstream)?;
    check_files_apart(args)?;
    // `--max-frame` caps the payload, `--max-decode` the whole frame.
    let largest_frame = args.max_frame.saturating_add(HEADER_LEN);
    let max_decode = args
        .max_decode
        .unwrap_or(DEFAULT_MAX_DECODE.min(largest_frame));
    if max_decode > largest_frame {
        bail!(
            "--max-decode ({max_decode}) must not be above --max-frame ({}) plus the {HEADER_LEN}-byte header",
            args.max_frame
        );
    }
    Ok(ProxyConfig {
        listen: args.listen,
        upstream: args.upstream.clone(),
        connect_timeout: args.connect_timeout,
        framing: args.framing,
        limits: TapLimits {
            max_decode,
            max_frame: args.max_frame,
        },
        decode: DecodeOptions {
            limits: Limits {
                max_depth: args.max_depth,
                ..Limits::default()
            },
            ..DecodeOptions::default()
        },
        policy: policy_source(args)?,
        filter: Filter {
            commands: args.command.clone(),
            dir: args.dir,
            conns: args.conn.clone(),
        },
        outputs: Outputs {
            terminal: !args.quiet,
            json: args.log.clone(),
            record: args.record.clone(),
            stats_every: args.stats_every,
            queue_bytes: args.log_queue,
        },
        buffer_size: args.buffer,
        max_connections: open_files::max_connections(args.max_connections, FILES_PER_CONNECTION),
        ws_listen: args.websocket.ws_listen,
        ws_on_tcp: args.websocket.ws_on_tcp,
        websocket: args.websocket.config(args.max_frame)?,
    })
}

/// HOST:PORT with a port: caught here rather than at the first client.
fn check_upstream(upstream: &str) -> anyhow::Result<()> {
    let port = upstream
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()));
    match port {
        Some((host, Ok(port))) if !host.is_empty() && port != 0 => Ok(()),
        _ => bail!(
            "--upstream '{upstream}' is not HOST:PORT (e.g. 127.0.0.1:9000 or example.com:9000)"
        ),
    }
}

/// `--policy forward` (and no option: the default) relays policy requests; `--policy FILE` or
/// `--allow` answers them here.
fn policy_source(args: &ProxyArgs) -> anyhow::Result<PolicySource> {
    match &args.policy {
        Some(path) if path.as_os_str() == FORWARD => Ok(PolicySource::Off),
        Some(path) => {
            let text = policy::command::read_checked_policy(path, args.listen.port())?;
            Ok(PolicySource::File {
                path: path.clone(),
                text: text.into(),
            })
        }
        None if args.allow.is_empty() => Ok(PolicySource::Off),
        None => Ok(PolicySource::Allow(args.allow.clone())),
    }
}

/// How long the summary waits for a standard output nobody reads before the proxy exits.
const SUMMARY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the proxy until Ctrl-C or SIGTERM, then prints its summary.
pub fn run(args: &ProxyArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init();
    let config = config(args)?;
    crate::listener::runtime(args.threads)?.block_on(async {
        let proxy = Proxy::bind(config).await?;
        let shutdown = crate::shutdown::on_signal(crate::shutdown::Hangup::Stops);
        crate::listener::announce(proxy.local_addr()?)?;
        if let Some(addr) = proxy.ws_local_addr()? {
            crate::listener::announce_websocket(addr)?;
        }
        open_files::explain_bound(args.max_connections, FILES_PER_CONNECTION);
        let summary = proxy.run(shutdown).await;
        super::terminal::print_within(summary.to_text(), SUMMARY_WAIT)?;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Line {
        #[command(flatten)]
        args: ProxyArgs,
    }

    fn config_of(flags: &[&str]) -> anyhow::Result<ProxyConfig> {
        let line = [
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:1",
        ]
        .iter()
        .chain(flags);
        config(&Line::try_parse_from(line).expect("parses").args)
    }

    #[test]
    fn the_decode_cap_follows_a_lower_frame_cap_unless_given() {
        // The frame cap counts the payload, the decode cap the header too.
        let config = config_of(&["--max-frame", "100"]).expect("valid");
        assert_eq!(config.limits.max_decode, 104);
        let config = config_of(&[]).expect("valid");
        assert_eq!(config.limits.max_decode, DEFAULT_MAX_DECODE);
        assert!(config_of(&["--max-frame", "100", "--max-decode", "104"]).is_ok());
        let error = config_of(&["--max-frame", "100", "--max-decode", "105"])
            .expect_err("given above the frame cap");
        assert!(error.to_string().contains("--max-decode (105)"), "{error}");
    }

    #[test]
    fn log_and_record_must_be_two_files_however_they_are_written() {
        let scratch = tempfile::tempdir().expect("temp dir");
        let dir = scratch.path();
        let log = dir.join("log.jsonl");
        let logged_and_recorded_to = |record: &std::path::Path| {
            config_of(&[
                "--log",
                log.to_str().expect("utf-8"),
                "--record",
                record.to_str().expect("utf-8"),
            ])
        };
        let dotted = dir.join(".").join("log.jsonl");
        let error = logged_and_recorded_to(&dotted).expect_err("one file, before it exists");
        assert!(error.to_string().contains("the same file"), "{error}");
        std::fs::write(&log, "").expect("writes");
        let link = dir.join("link.jsonl");
        std::os::unix::fs::symlink(&log, &link).expect("links");
        let error = logged_and_recorded_to(&link).expect_err("one file, through a link");
        assert!(error.to_string().contains("the same file"), "{error}");
        assert!(logged_and_recorded_to(&dir.join("other.jsonl")).is_ok());
        let hard = dir.join("hard.jsonl");
        std::fs::hard_link(&log, &hard).expect("links");
        let error = logged_and_recorded_to(&hard).expect_err("one file, through a hard link");
        assert!(error.to_string().contains("the same file"), "{error}");
        std::fs::remove_file(&log).expect("removes");
        let dir_name = dir.file_name().expect("a name");
        let roundabout = dir.join("..").join(dir_name).join("log.jsonl");
        let error = logged_and_recorded_to(&roundabout).expect_err("one file, not made yet");
        assert!(error.to_string().contains("the same file"), "{error}");
        let error = logged_and_recorded_to(&link).expect_err("a link to a file not made yet");
        assert!(error.to_string().contains("the same file"), "{error}");
    }

    #[test]
    fn an_output_naming_the_policy_file_is_refused_before_it_is_written() {
        let scratch = tempfile::tempdir().expect("temp dir");
        let dir = scratch.path();
        let policy = dir.join("policy.xml");
        let text = r#"<cross-domain-policy><allow-access-from domain="*" to-ports="*"/></cross-domain-policy>"#;
        std::fs::write(&policy, text).expect("writes");
        let policy_arg = policy.to_str().expect("utf-8");
        let dotted = dir.join(".").join("policy.xml");
        for output in ["--log", "--record"] {
            let error = config_of(&[
                "--policy",
                policy_arg,
                output,
                dotted.to_str().expect("utf-8"),
            ])
            .expect_err("an output over the policy");
            assert!(
                error
                    .to_string()
                    .contains(&format!("{output} and --policy name the same file")),
                "{error}"
            );
        }
        assert_eq!(std::fs::read_to_string(&policy).expect("reads"), text);
    }
}
