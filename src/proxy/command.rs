//! `amf-bench proxy` on the console: options to configuration, the runtime, the listening line on
//! standard output, and the summary (latency per command, connection ends) on exit.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;

use super::log::{Filter, Outputs};
use super::tap::TapLimits;
use super::{Proxy, ProxyConfig};
use crate::cli::ProxyArgs;
use crate::codec::{DecodeOptions, Limits};
use crate::open_files;
use crate::policy::{self, PolicySource};

/// The `--policy` value that sends policy requests upstream.
pub const FORWARD: &str = "forward";

/// Open files per proxied connection: a client's socket and its upstream's.
const FILES_PER_CONNECTION: u64 = 2;

/// Builds the proxy's configuration from the command line, reading the files it names.
pub fn config(args: &ProxyArgs) -> anyhow::Result<ProxyConfig> {
    check_upstream(&args.upstream)?;
    if args.log.is_some() && args.log == args.record {
        bail!("--log and --record name the same file; give each its own");
    }
    if args.max_decode > args.max_frame {
        bail!(
            "--max-decode ({}) must not be above --max-frame ({})",
            args.max_decode,
            args.max_frame
        );
    }
    Ok(ProxyConfig {
        listen: args.listen,
        upstream: args.upstream.clone(),
        connect_timeout: args.connect_timeout,
        framing: args.framing,
        limits: TapLimits {
            max_decode: args.max_decode,
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
            Ok(PolicySource::Text(text.into()))
        }
        None if args.allow.is_empty() => Ok(PolicySource::Off),
        None => Ok(PolicySource::Allow(args.allow.clone())),
    }
}

/// Runs the proxy until Ctrl-C or SIGTERM, then prints its summary.
pub fn run(args: &ProxyArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init();
    let config = config(args)?;
    crate::listener::runtime(args.threads)?.block_on(async {
        let proxy = Proxy::bind(config).await?;
        let shutdown = crate::shutdown::on_signal();
        crate::listener::announce(proxy.local_addr()?)?;
        if let Some(addr) = proxy.ws_local_addr()? {
            crate::listener::announce_websocket(addr)?;
        }
        open_files::explain_bound(args.max_connections, FILES_PER_CONNECTION);
        let summary = proxy.run(shutdown).await;
        write!(std::io::stdout().lock(), "{}", summary.to_text())?;
        Ok(ExitCode::SUCCESS)
    })
}
