//! Writing a socket policy file from `--allow DOMAIN:PORTS` rules.

use std::fmt;
use std::str::FromStr;

use super::lint::MASTER_POLICY_PORT;

/// Why an `--allow` rule or a meta-policy value is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The rule has no `:` between domain and ports.
    #[error("'{0}' is not DOMAIN:PORTS (e.g. '*:9000' or '*.example.com:8000-8100,9000')")]
    NotDomainPorts(String),
    /// The domain part is not a host, an IP, `*` or `*.suffix`.
    #[error("'{0}' is not a domain: expected a host name, an IP address, '*' or '*.example.com'")]
    BadDomain(String),
    /// The ports part is not a port, a range, a list of those, or `*`.
    #[error("'{0}' is not a port list: expected '*', '9000', '8000-8100' or '843,9000-9010'")]
    BadPorts(String),
}

/// One `<allow-access-from domain="…" to-ports="…"/>` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// A host, an IP address, `*`, or `*.example.com`.
    pub domain: String,
    /// `*`, a port, a range, or a comma-separated list of those.
    pub ports: String,
}

impl Allow {
    /// Any domain, to these ports.
    pub fn any_domain_to(ports: impl fmt::Display) -> Allow {
        Allow {
            domain: "*".into(),
            ports: ports.to_string(),
        }
    }
}

impl FromStr for Allow {
    type Err = PolicyError;

    fn from_str(rule: &str) -> Result<Allow, PolicyError> {
        // The last colon splits: an IPv6 domain has colons of its own.
        let (domain, ports) = rule
            .rsplit_once(':')
            .ok_or_else(|| PolicyError::NotDomainPorts(rule.into()))?;
        if !is_domain(domain) {
            return Err(PolicyError::BadDomain(domain.into()));
        }
        if !is_port_list(ports) {
            return Err(PolicyError::BadPorts(ports.into()));
        }
        Ok(Allow {
            domain: domain.into(),
            ports: ports.into(),
        })
    }
}

/// Whether `domain` is `*`, `*.suffix`, a host name or an IP address (as written in a policy).
pub fn is_domain(domain: &str) -> bool {
    let host = domain.strip_prefix("*.").unwrap_or(domain);
    if domain == "*" {
        return true;
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host.len() == domain.len();
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether `ports` is `*`, or a comma-separated list of ports (1-65535) and ascending ranges.
pub fn is_port_list(ports: &str) -> bool {
    ports == "*" || ports.split(',').all(|item| parse_port_item(item).is_some())
}

/// A port or range from a `to-ports` list, as (first, last).
pub fn parse_port_item(item: &str) -> Option<(u16, u16)> {
    let port = |text: &str| {
        text.parse::<u16>()
            .ok()
            .filter(|port| *port > 0 && text.bytes().all(|b| b.is_ascii_digit()))
    };
    match item.split_once('-') {
        None => port(item).map(|p| (p, p)),
        Some((first, last)) => {
            let (first, last) = (port(first)?, port(last)?);
            (first <= last).then_some((first, last))
        }
    }
}

/// The `<site-control permitted-cross-domain-policies>` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MetaPolicy {
    /// Only the master policy (port 843) counts.
    #[default]
    MasterOnly,
    /// Policies on other ports count too (the socket default when unstated).
    All,
    /// No policy is allowed.
    None,
}

impl MetaPolicy {
    /// As written in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            MetaPolicy::MasterOnly => "master-only",
            MetaPolicy::All => "all",
            MetaPolicy::None => "none",
        }
    }
}

/// A policy file granting `allows`, with the meta-policy stated explicitly.
pub fn generate(allows: &[Allow], meta: MetaPolicy) -> String {
    write_policy(allows, Some(meta))
}

/// The policy `serve` and `proxy` answer inline on `port`: as `generate` writes it, with the
/// meta-policy only on the master policy's port, as Flash Player reads `<site-control>` nowhere
/// else (and `policy lint` warns about one served on another port).
pub fn generate_for_port(allows: &[Allow], port: u16) -> String {
    let meta = (port == MASTER_POLICY_PORT).then_some(MetaPolicy::MasterOnly);
    write_policy(allows, meta)
}

fn write_policy(allows: &[Allow], meta: Option<MetaPolicy>) -> String {
    let mut policy = String::from(
        "<?xml version=\"1.0\"?>\n\
         <!DOCTYPE cross-domain-policy SYSTEM \"/xml/dtds/cross-domain-policy.dtd\">\n\
         <cross-domain-policy>\n",
    );
    if let Some(meta) = meta {
        policy.push_str(&format!(
            "  <site-control permitted-cross-domain-policies=\"{}\"/>\n",
            meta.as_str()
        ));
    }
    for allow in allows {
        // Both parts were validated to hold no XML metacharacters.
        policy.push_str(&format!(
            "  <allow-access-from domain=\"{}\" to-ports=\"{}\"/>\n",
            allow.domain, allow.ports
        ));
    }
    policy.push_str("</cross-domain-policy>\n");
    policy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_rules_parse_and_name_what_is_wrong() {
        let rule: Allow = "*.example.com:8000-8100,9000".parse().expect("valid");
        assert_eq!(rule.domain, "*.example.com");
        assert_eq!(rule.ports, "8000-8100,9000");
        assert!("::1:9000".parse::<Allow>().is_ok());
        assert!("10.0.0.1:*".parse::<Allow>().is_ok());
        assert_eq!(
            "example.com".parse::<Allow>(),
            Err(PolicyError::NotDomainPorts("example.com".into()))
        );
        assert_eq!(
            "exa mple.com:80".parse::<Allow>(),
            Err(PolicyError::BadDomain("exa mple.com".into()))
        );
        for ports in ["", "0", "70000", "9-1", "80,", "8a", "+80"] {
            assert_eq!(
                format!("*:{ports}").parse::<Allow>(),
                Err(PolicyError::BadPorts(ports.into())),
                "{ports:?}"
            );
        }
    }

    #[test]
    fn a_generated_policy_states_its_meta_policy() {
        let policy = generate(&[Allow::any_domain_to(9000)], MetaPolicy::MasterOnly);
        assert!(policy.contains("<site-control permitted-cross-domain-policies=\"master-only\"/>"));
        assert!(policy.contains("<allow-access-from domain=\"*\" to-ports=\"9000\"/>"));
        assert!(policy.ends_with("</cross-domain-policy>\n"));
    }
}
