//! The checks a run makes before it connects anything: the scenario's thresholds and target (its
//! address resolved), the open files and local ports its clients need, and its source addresses.

use std::net::SocketAddr;

use anyhow::{Context, bail};

use super::report::{self, Threshold};
use super::scenario::Scenario;
use crate::cli::RunArgs;
use crate::open_files;

/// A scenario checked for a run: its thresholds parsed, and its target resolved to the address
/// the clients connect to. Resolved once: a host name costs a lookup, and the run connects to the
/// address the checks found.
pub struct Checked {
    pub(super) scenario: Scenario,
    pub(super) thresholds: Vec<Threshold>,
    /// Where the clients connect; none for the embedded server.
    pub(super) target: Option<SocketAddr>,
}

impl Checked {
    /// Checks `scenario`, resolving its target (named `target` in errors) without blocking the
    /// runtime.
    pub async fn new(scenario: Scenario) -> anyhow::Result<Checked> {
        let thresholds = report::parse_thresholds(&scenario)?;
        let target = match &scenario.target {
            Some(target) => {
                let addrs = tokio::net::lookup_host(target).await;
                Some(first_address("target", target, addrs)?)
            }
            None => None,
        };
        check_clients(&scenario, target)?;
        Ok(Checked {
            scenario,
            thresholds,
            target,
        })
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }
}

/// Checks, before anything is made, what the run reads from the scenario beyond its own
/// validation, its thresholds and its target, so that their errors too say which file they are
/// about, as the scenario's other errors do; a target given with `--target` is named so instead.
/// Before the runtime exists: the target is resolved here, blocking, and only here.
pub(super) fn check_scenario(scenario: Scenario, args: &RunArgs) -> anyhow::Result<Checked> {
    let in_file = || format!("in scenario {}", args.scenario.display());
    let thresholds = report::parse_thresholds(&scenario).with_context(in_file)?;
    let target = match (&args.target, &scenario.target) {
        (Some(target), _) => Some(resolve_now("--target", target)?),
        (None, Some(target)) => Some(resolve_now("target", target).with_context(in_file)?),
        (None, None) => None,
    };
    check_clients(&scenario, target).with_context(in_file)?;
    Ok(Checked {
        scenario,
        thresholds,
        target,
    })
}

/// The address `target` (the value of `key`) resolves to, or why there is none.
fn resolve_now(key: &str, target: &str) -> anyhow::Result<SocketAddr> {
    let addrs = std::net::ToSocketAddrs::to_socket_addrs(target);
    first_address(key, target, addrs)
}

/// Whether the clients can all be made as the scenario asks: open files, local ports, and
/// source addresses of the family of the `target` (the embedded server's when none).
fn check_clients(scenario: &Scenario, target: Option<SocketAddr>) -> anyhow::Result<()> {
    check_open_files(scenario, open_files::current_limit())?;
    check_local_ports(scenario, local_port_count())?;
    let (target, name) = match target {
        Some(target) => (target, format!("the target {target}")),
        None => (super::EMBEDDED_LISTEN, "the embedded server".to_string()),
    };
    check_source_addresses(&scenario.source_addresses, target, &name)
}

/// Fails, before any connection opens, when the clients (and the embedded server's end of each)
/// cannot all be open at once under the open-file `limit`: past it, connections fail by the
/// hundred with the accepts the server refuses, and the run measures nothing it was meant to.
fn check_open_files(scenario: &Scenario, limit: Option<u64>) -> anyhow::Result<()> {
    let Some(limit) = limit else {
        return Ok(());
    };
    let (per_client, why, remedy) = match scenario.target {
        Some(_) => (1, "its socket", ""),
        None => (
            2,
            "its socket and the embedded server's end of it",
            ", or run the server in a process of its own and give its address as `target`",
        ),
    };
    let needed = open_files::needed(scenario.connections as u64, per_client);
    if needed > limit {
        bail!(
            "connections = {}: the clients need {needed} open files at once ({per_client} per \
             client, {why}, and {} more), but this process may open {limit}; raise the hard \
             limit (`ulimit -Hn`: amf-bench raises its own soft limit up to it), lower \
             connections{remedy}",
            scenario.connections,
            open_files::RESERVED,
        );
    }
    Ok(())
}

/// How many local ports the kernel hands out to outgoing connections (Linux's
/// `ip_local_port_range`), where that can be read.
fn local_port_count() -> Option<u64> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = range
        .split_whitespace()
        .map(|bound| bound.parse::<u64>().ok());
    let (Some(Some(low)), Some(Some(high))) = (bounds.next(), bounds.next()) else {
        return None;
    };
    Some(high.saturating_sub(low) + 1)
}

/// Fails, before any connection opens, when the clients need more local ports than one source
/// address has for the target (`ports` each): past it, every further connect fails here.
fn check_local_ports(scenario: &Scenario, ports: Option<u64>) -> anyhow::Result<()> {
    let Some(ports) = ports else {
        return Ok(());
    };
    let sources = scenario.source_addresses.len().max(1) as u64;
    if scenario.connections as u64 > ports * sources {
        bail!(
            "connections = {}: one source address has {ports} local ports for the target \
             (ip_local_port_range), so {} clients need at least {} addresses; list them in \
             source_addresses (e.g. \"127.0.0.2\", \"127.0.0.3\" for a target on 127.0.0.1)",
            scenario.connections,
            scenario.connections,
            (scenario.connections as u64).div_ceil(ports)
        );
    }
    Ok(())
}

/// Fails unless every source address can be bound here and is of the target's family, so that a
/// typo or a foreign address is one clear error rather than every connection failing.
fn check_source_addresses(
    addresses: &[std::net::IpAddr],
    target: SocketAddr,
    target_name: &str,
) -> anyhow::Result<()> {
    for (index, address) in addresses.iter().enumerate() {
        if address.is_ipv4() != target.is_ipv4() {
            let family = |ipv4: bool| if ipv4 { "IPv4" } else { "IPv6" };
            bail!(
                "source_addresses[{index}]: {address} is {} but {target_name} is {}; \
                 connections leave from an address of the target's family",
                family(address.is_ipv4()),
                family(target.is_ipv4())
            );
        }
        std::net::TcpListener::bind((*address, 0)).with_context(|| {
            format!("source_addresses[{index}]: {address} cannot be bound on this machine")
        })?;
    }
    Ok(())
}

/// The first of the addresses `target` (the value of `key`) resolved to, or why there is none.
fn first_address(
    key: &str,
    target: &str,
    resolved: std::io::Result<impl Iterator<Item = SocketAddr>>,
) -> anyhow::Result<SocketAddr> {
    let mut addrs =
        resolved.with_context(|| format!("{key}: '{target}' is not HOST:PORT that resolves"))?;
    match addrs.next() {
        Some(addr) => Ok(addr),
        None => bail!("{key}: '{target}' resolves to no address"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A closed-model scenario of `connections` idle clients, with the keys of `extra`.
    pub(crate) fn scenario(extra: &str, connections: usize) -> Scenario {
        Scenario::parse(&format!(
            "name = \"files\"\n{extra}connections = {connections}\nduration = \"1s\"\n\
             [load]\nmodel = \"closed\"\n[[session]]\nname = \"idle\"\nsteps = [{{ think = \"1s\" }}]\n"
        ))
        .expect("parses")
    }

    #[test]
    fn clients_need_one_file_each_against_a_target_and_two_on_the_embedded_server() {
        let target = "target = \"127.0.0.1:9\"\n";
        assert!(check_open_files(&scenario(target, 936), Some(1000)).is_ok());
        let error = check_open_files(&scenario(target, 937), Some(1000)).expect_err("over");
        assert!(
            error.to_string().starts_with(
                "connections = 937: the clients need 1001 open files at once (1 per client, \
                 its socket, and 64 more), but this process may open 1000"
            ),
            "{error}"
        );
        assert!(check_open_files(&scenario("", 468), Some(1000)).is_ok());
        let error = check_open_files(&scenario("", 469), Some(1000)).expect_err("over");
        assert!(
            error.to_string().contains("give its address as `target`"),
            "{error}"
        );
        assert!(check_open_files(&scenario("", 1_000_000), None).is_ok());
    }

    #[test]
    fn clients_past_one_address_s_ports_need_more_source_addresses() {
        assert!(check_local_ports(&scenario("", 28_232), Some(28_232)).is_ok());
        let error = check_local_ports(&scenario("", 28_233), Some(28_232)).expect_err("over");
        assert!(
            error.to_string().starts_with(
                "connections = 28233: one source address has 28232 local ports for the target \
                 (ip_local_port_range), so 28233 clients need at least 2 addresses"
            ),
            "{error}"
        );
        let two_sources = "source_addresses = [\"127.0.0.1\", \"127.0.0.2\"]\n";
        assert!(check_local_ports(&scenario(two_sources, 56_464), Some(28_232)).is_ok());
        assert!(check_local_ports(&scenario(two_sources, 56_465), Some(28_232)).is_err());
        assert!(check_local_ports(&scenario("", 1_000_000), None).is_ok());
    }

    #[test]
    fn source_addresses_must_be_of_the_target_s_family() {
        let v4_target = SocketAddr::from(([127, 0, 0, 1], 9));
        let v6_source = ["::1".parse().expect("an address")];
        let error = check_source_addresses(&v6_source, v4_target, "the target 127.0.0.1:9")
            .expect_err("mixed");
        assert!(
            error
                .to_string()
                .starts_with("source_addresses[0]: ::1 is IPv6 but the target 127.0.0.1:9 is IPv4"),
            "{error}"
        );
        let v4_source = ["127.0.0.1".parse().expect("an address")];
        assert!(check_source_addresses(&v4_source, v4_target, "the target").is_ok());
    }

    #[test]
    fn this_machine_s_local_port_range_is_read() {
        if std::path::Path::new("/proc/sys/net/ipv4/ip_local_port_range").exists() {
            assert!(local_port_count().is_some_and(|ports| ports > 0));
        }
    }
}
