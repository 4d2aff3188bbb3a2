//! `amf-bench policy` on the console: serve (with reload on SIGHUP and systemd socket
//! activation), `lint FILE` and `check HOST:PORT`.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use super::lint::{Finding, MASTER_POLICY_PORT, has_errors, lint};
use super::server::{PolicyServer, PolicyServerConfig, PolicyStore, bind};
use super::{PolicySource, check, generate};
use crate::cli::{PolicyAction, PolicyArgs, PolicyCheckArgs, PolicyLintArgs, PolicyServeArgs};
use crate::open_files;

/// Runs `amf-bench policy` and its subcommands.
pub fn run(args: &PolicyArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        Some(PolicyAction::Lint(lint_args)) => run_lint(lint_args),
        Some(PolicyAction::Check(check_args)) => runtime()?.block_on(run_check(check_args)),
        None => run_server(&args.serve),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// Prints findings one per line, prefixed with where they come from.
pub fn print_findings(
    source: &str,
    findings: &[Finding],
    out: &mut impl Write,
) -> std::io::Result<()> {
    for finding in findings {
        writeln!(out, "{source}:{finding}")?;
    }
    Ok(())
}

fn run_lint(args: &PolicyLintArgs) -> anyhow::Result<ExitCode> {
    let text = read_policy(&args.file)?;
    let findings = lint(&text, args.port);
    let mut out = std::io::stdout().lock();
    print_findings(&args.file.display().to_string(), &findings, &mut out)?;
    let errors = has_errors(&findings);
    if findings.is_empty() {
        writeln!(out, "{}: no findings", args.file.display())?;
    }
    Ok(if errors {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The most of a policy file read: well past the 10,000 bytes lint refuses, so that it can say
/// so, and short of what would make linting slow.
const MAX_POLICY_FILE: u64 = 64 << 10;

/// Reads a policy file.
pub fn read_policy(path: &Path) -> anyhow::Result<String> {
    crate::text_file::read_at_most(path, MAX_POLICY_FILE)
        .with_context(|| format!("cannot read policy file {}", path.display()))
}

/// Reads a policy file to serve on a shared `port` (0: not known yet), printing its lint findings
/// to standard error and refusing it if they include errors.
pub fn read_checked_policy(path: &Path, port: u16) -> anyhow::Result<String> {
    let text = read_policy(path)?;
    let findings = lint(&text, (port != 0).then_some(port));
    let source = path.display().to_string();
    print_findings(&source, &findings, &mut std::io::stderr().lock())?;
    if has_errors(&findings) {
        bail!("policy file {source} has errors (listed above); not serving it");
    }
    Ok(text)
}

/// The findings `lint` gives for a policy served on `port` and not without a port: what serving
/// it there brings (nothing on the master port, whose policy may grant any port).
fn findings_brought_by_port(text: &str, port: u16) -> Vec<Finding> {
    let without_port: Vec<String> = lint(text, None)
        .into_iter()
        .map(|finding| finding.message)
        .collect();
    lint(text, Some(port))
        .into_iter()
        .filter(|finding| !without_port.contains(&finding.message))
        .collect()
}

/// What linting a policy file for no port could not check: the findings that serving it on
/// `port` brings, printed, and the file refused if any is an error.
pub(super) fn check_policy_for_port(path: &Path, text: &str, port: u16) -> anyhow::Result<()> {
    let brought = findings_brought_by_port(text, port);
    let source = path.display().to_string();
    print_findings(&source, &brought, &mut std::io::stderr().lock())?;
    if has_errors(&brought) {
        bail!("policy file {source} has errors for port {port} (listed above); not serving it");
    }
    Ok(())
}

/// A policy's lint findings as served on each of `ports`: those it has without a port, then those
/// each port brings.
fn lint_for_ports(text: &str, ports: &BTreeSet<u16>) -> Vec<Finding> {
    let mut findings = lint(text, None);
    for port in ports {
        findings.extend(findings_brought_by_port(text, *port));
    }
    findings
}

/// The policy to serve: the file's text, or one generated from `--allow`; refused if lint finds
/// errors in it (for any port: those the ports listened on bring are checked once bound, by
/// [`check_for_ports`]).
fn load_policy(args: &PolicyServeArgs) -> anyhow::Result<String> {
    let (source, text) = match &args.policy {
        Some(path) => (path.display().to_string(), read_policy(path)?),
        None if args.allow.is_empty() => {
            bail!(
                "give the policy to serve: --policy FILE, or --allow DOMAIN:PORTS (e.g. --allow '*:9000')"
            )
        }
        None => (
            "generated policy".to_string(),
            generate(&args.allow, args.meta),
        ),
    };
    let findings = lint(&text, None);
    print_findings(&source, &findings, &mut std::io::stderr().lock())?;
    if has_errors(&findings) {
        bail!("{source} has errors (listed above); not serving it");
    }
    Ok(text)
}

/// Checks the policy for each port listened on, as `serve` does for its port: a file with errors
/// for one is refused, a policy generated from `--allow` gets a warning for each grant that port
/// would ignore.
fn check_for_ports(
    args: &PolicyServeArgs,
    text: &str,
    ports: &BTreeSet<u16>,
) -> anyhow::Result<()> {
    let source = match &args.policy {
        Some(path) => PolicySource::File {
            path: path.clone(),
            text: text.into(),
        },
        None => PolicySource::Allow(args.allow.clone()),
    };
    for port in ports {
        source.check_for_served_port(*port)?;
    }
    Ok(())
}

/// The listeners: sockets inherited from systemd when there are any, else `--listen`.
fn listeners(args: &PolicyServeArgs) -> anyhow::Result<Vec<TcpListener>> {
    let mut inherited = listenfd::ListenFd::from_env();
    let mut listeners = Vec::new();
    for index in 0..inherited.len() {
        if let Some(listener) = inherited
            .take_tcp_listener(index)
            .with_context(|| format!("inherited socket {index} is not a TCP listener"))?
        {
            listener.set_nonblocking(true)?;
            listeners.push(TcpListener::from_std(listener)?);
        }
    }
    if !listeners.is_empty() {
        return Ok(listeners);
    }
    let defaults = args.listen.is_empty();
    let addrs: Vec<SocketAddr> = if defaults {
        vec![
            SocketAddr::from(([0u16; 8], MASTER_POLICY_PORT)),
            SocketAddr::from(([0, 0, 0, 0], MASTER_POLICY_PORT)),
        ]
    } else {
        args.listen.clone()
    };
    let mut failures = Vec::new();
    for addr in addrs {
        match bind(addr) {
            Ok(listener) => listeners.push(listener),
            // Of the two defaults, one is enough (a host may have no IPv6).
            Err(error) if defaults => failures.push(error),
            Err(error) => return Err(error),
        }
    }
    match failures.into_iter().next() {
        Some(error) if listeners.is_empty() => Err(error),
        Some(error) => {
            tracing::warn!("{error:#}");
            Ok(listeners)
        }
        None => Ok(listeners),
    }
}

fn run_server(args: &PolicyServeArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init();
    let policy = load_policy(args)?;
    runtime()?.block_on(async {
        let store = Arc::new(PolicyStore::new(&policy));
        let config = PolicyServerConfig {
            max_connections: open_files::max_connections(args.max_connections, 1),
            deadline: args.timeout,
        };
        let server = PolicyServer::new(listeners(args)?, Arc::clone(&store), config);
        let ports: BTreeSet<u16> = server.local_addrs().iter().map(SocketAddr::port).collect();
        check_for_ports(args, &policy, &ports)?;
        let shutdown = crate::shutdown::on_signal(crate::shutdown::Hangup::Reloads);
        // Watched before `listening on` is printed: a SIGHUP sent right after it (a reload by
        // a service manager) must reload, not kill, the server.
        let reloading = reload_on_hangup(args.policy.clone(), ports, store, shutdown.clone());
        let mut out = std::io::stdout().lock();
        for addr in server.local_addrs() {
            writeln!(out, "listening on {addr}")?;
        }
        out.flush()?;
        drop(out);
        open_files::explain_bound(args.max_connections, 1);
        tokio::spawn(reloading);
        let stats = server.run(shutdown).await;
        write!(std::io::stdout().lock(), "{}", stats.to_text())?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Re-reads the policy file on each SIGHUP; a file that cannot be read or has errors (for any
/// of `ports`, those listened on) leaves the current policy in place. Without a file (the policy
/// comes from `--allow`) there is nothing to reload, and SIGHUP is only logged: a service manager's
/// reload must not end the server. SIGHUP is watched from the moment this returns.
#[cfg(unix)]
fn reload_on_hangup(
    path: Option<std::path::PathBuf>,
    ports: BTreeSet<u16>,
    store: Arc<PolicyStore>,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let hangups = signal(SignalKind::hangup());
    async move {
        let Ok(hangups) = hangups else {
            tracing::warn!("cannot watch SIGHUP; the policy will not reload");
            return;
        };
        reload_each(hangups, path.as_deref(), &ports, &store, &shutdown).await;
    }
}

#[cfg(unix)]
async fn reload_each(
    mut hangups: tokio::signal::unix::Signal,
    path: Option<&std::path::Path>,
    ports: &BTreeSet<u16>,
    store: &PolicyStore,
    shutdown: &tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            received = hangups.recv() => if received.is_none() { return },
        }
        match path {
            Some(path) => reload(path, ports, store),
            None => tracing::info!(
                "SIGHUP: nothing to reload, the policy comes from the command line (--allow); \
                 still serving it"
            ),
        }
    }
}

/// Replaces the policy with the file's, unless it cannot be read or has errors for `ports`.
#[cfg(unix)]
fn reload(path: &std::path::Path, ports: &BTreeSet<u16>, store: &PolicyStore) {
    let reloaded = read_policy(path).and_then(|text| {
        let findings = lint_for_ports(&text, ports);
        for finding in &findings {
            tracing::warn!("{}:{finding}", path.display());
        }
        if has_errors(&findings) {
            bail!("{} has errors; keeping the current policy", path.display());
        }
        Ok(text)
    });
    match reloaded {
        Ok(text) => {
            store.replace(&text);
            tracing::info!("reloaded the policy from {}", path.display());
        }
        Err(error) => tracing::error!("reload failed: {error:#}"),
    }
}

#[cfg(not(unix))]
fn reload_on_hangup(
    _: Option<std::path::PathBuf>,
    _: BTreeSet<u16>,
    _: Arc<PolicyStore>,
    _: tokio_util::sync::CancellationToken,
) -> impl Future<Output = ()> + Send {
    async {}
}

/// A server's answer as it may go to a terminal: line breaks and tabs as they are, every other
/// control character escaped (`\u{1b}`), so that a server cannot send escape sequences to it.
fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The line saying that the server held the connection open: after its NUL, or, without one,
/// until `--timeout`.
fn not_closed_note(answer: &check::Answer, timeout: std::time::Duration) -> String {
    if answer.nul_terminated {
        format!(
            "# the server did not close the connection within {:?} of the NUL (a policy server \
             closes after its answer)",
            check::CLOSE_GRACE
        )
    } else {
        format!(
            "# the server sent no NUL and did not close the connection within {timeout:?} (a \
             policy server ends its answer with one NUL and closes)"
        )
    }
}

async fn run_check(args: &PolicyCheckArgs) -> anyhow::Result<ExitCode> {
    let answer = check::fetch(&args.target, args.timeout).await?;
    let text = String::from_utf8_lossy(&answer.policy).into_owned();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", terminal_safe(&text))?;
    writeln!(
        out,
        "# {} bytes in {:.1} ms from {}; NUL-terminated: {}{}",
        answer.policy.len(),
        answer.elapsed.as_secs_f64() * 1000.0,
        args.target,
        if answer.nul_terminated { "yes" } else { "no" },
        match answer.trailing {
            0 => String::new(),
            n => format!("; {n} bytes after the NUL"),
        }
    )?;
    if !answer.closed {
        writeln!(out, "{}", not_closed_note(&answer, args.timeout))?;
    }
    // Lint for the port the policy came from: the master policy on 843 may grant any port.
    let served_on = args
        .target
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .filter(|port| *port != MASTER_POLICY_PORT);
    let findings = lint(&text, served_on);
    print_findings(&args.target, &findings, &mut out)?;
    let mut ok =
        answer.nul_terminated && answer.trailing == 0 && answer.closed && !has_errors(&findings);
    if let Some(port) = args.port {
        let granted = check::grants(&text, port);
        writeln!(
            out,
            "# grants port {port}: {}",
            if granted { "yes" } else { "no" }
        )?;
        ok &= granted;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod terminal_tests {
    use super::terminal_safe;

    #[test]
    fn a_server_s_escape_sequences_are_shown_escaped() {
        assert_eq!(
            terminal_safe("\u{1b}]0;pwned\u{7}\u{1b}[2J<a/>\r\n\t<b/>"),
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J<a/>\\r\n\t<b/>"
        );
    }
}

#[cfg(test)]
mod port_tests {
    use super::*;

    const GRANTS_PORT_80: &str = "<cross-domain-policy><allow-access-from domain=\"*\" \
                                  to-ports=\"80\"/></cross-domain-policy>";

    #[test]
    fn a_high_port_brings_an_error_for_a_low_grant_and_the_master_port_none() {
        let brought = findings_brought_by_port(GRANTS_PORT_80, 8430);
        assert!(has_errors(&brought), "{brought:?}");
        assert!(brought[0].message.contains("port 8430"), "{brought:?}");
        assert_eq!(
            findings_brought_by_port(GRANTS_PORT_80, MASTER_POLICY_PORT),
            vec![]
        );
        let ports = BTreeSet::from([MASTER_POLICY_PORT, 8430]);
        assert!(has_errors(&lint_for_ports(GRANTS_PORT_80, &ports)));
        let master = BTreeSet::from([MASTER_POLICY_PORT]);
        assert!(!has_errors(&lint_for_ports(GRANTS_PORT_80, &master)));
    }
}
