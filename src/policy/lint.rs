//! Checking a socket policy file before it is served: well-formedness, the elements and attributes
//! Flash Player reads for sockets, port grants it would ignore, and the size and NUL limits of the
//! wire. Each finding carries the line and column of what it is about.

use std::fmt;

use clap::ValueEnum;
use roxmltree::{Document, Node, ParsingOptions};

use super::file::{MetaPolicy, is_domain, parse_port_item};

/// Policies of this many bytes or more are refused by Adobe's own policy servers.
pub const MAX_POLICY_BYTES: usize = 10_000;

/// The port of the master policy, the only one whose meta-policy counts.
pub const MASTER_POLICY_PORT: u16 = 843;

/// Ports below this are privileged: a policy served on a higher port may not grant them.
const FIRST_UNPRIVILEGED_PORT: u16 = 1024;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Flash Player rejects or ignores what the finding is about.
    Error,
    /// Probably not what was meant, but the policy still works.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem in a policy file, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, naming the value and the expected form.
    pub message: String,
}

impl fmt::Display for Finding {
    /// `LINE:COLUMN: error: MESSAGE` or `LINE:COLUMN: warning: MESSAGE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.line, self.column, self.severity, self.message
        )
    }
}

/// Checks a socket policy file's text; `for_port` is the port the policy will be served for
/// (None when unknown, e.g. the master policy on 843, which may grant any port). Only the text
/// before a NUL is checked as XML, since that is all Flash Player receives. Findings are sorted by
/// line and column.
pub fn lint(text: &str, for_port: Option<u16>) -> Vec<Finding> {
    let mut linter = Linter {
        text,
        for_port,
        findings: Vec::new(),
    };
    let policy = linter.check_wire_limits();
    linter.check_document(policy);
    let mut findings = linter.findings;
    findings.sort_by_key(|finding| (finding.line, finding.column));
    findings
}

/// Parses a policy as Flash Player reads it: a DOCTYPE line (as in most real policies) allowed.
pub fn parse_policy(text: &str) -> Result<Document<'_>, roxmltree::Error> {
    let options = ParsingOptions {
        allow_dtd: true,
        ..ParsingOptions::default()
    };
    Document::parse_with_options(text, options)
}

/// Whether any finding is an error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings
        .iter()
        .any(|finding| finding.severity == Severity::Error)
}

/// The text being checked and what has been found so far.
struct Linter<'t> {
    text: &'t str,
    for_port: Option<u16>,
    findings: Vec<Finding>,
}

impl<'t> Linter<'t> {
    fn report(&mut self, byte: usize, severity: Severity, message: String) {
        let (line, column) = line_column(self.text, byte);
        self.findings.push(Finding {
            line,
            column,
            severity,
            message,
        });
    }

    fn error(&mut self, byte: usize, message: String) {
        self.report(byte, Severity::Error, message);
    }

    fn warning(&mut self, byte: usize, message: String) {
        self.report(byte, Severity::Warning, message);
    }

    /// Size and NUL checks; returns the part of the text Flash Player would see.
    fn check_wire_limits(&mut self) -> &'t str {
        let text = self.text;
        if text.len() >= MAX_POLICY_BYTES {
            self.error(
                0,
                format!(
                    "the policy is {} bytes; Adobe's policy servers refuse files of {MAX_POLICY_BYTES} bytes or more",
                    text.len()
                ),
            );
        }
        match text.find('\0') {
            Some(nul) => {
                self.error(
                    nul,
                    "NUL byte: a NUL ends the policy on the wire, so Flash Player never sees what \
                     follows; the server appends the terminating NUL itself"
                        .into(),
                );
                &text[..nul]
            }
            None => text,
        }
    }

    fn check_document(&mut self, policy: &str) {
        match parse_policy(policy) {
            Ok(document) => self.check_root(document.root_element()),
            Err(error) => self.parse_error(&error, policy.len()),
        }
    }

    /// Errors that the parser places at 1:1 for want of a position are placed at `end` when the
    /// parser ran out of text.
    fn parse_error(&mut self, error: &roxmltree::Error, end: usize) {
        let pos = error.pos();
        let detail = error.to_string().replace(&format!(" at {pos}"), "");
        let message = format!("not well-formed XML: {detail}");
        use roxmltree::Error::{UnclosedRootNode, UnexpectedEndOfStream};
        if matches!(error, UnclosedRootNode | UnexpectedEndOfStream) {
            return self.error(end, message);
        }
        self.findings.push(Finding {
            line: pos.row,
            column: pos.col,
            severity: Severity::Error,
            message,
        });
    }

    fn check_root(&mut self, root: Node<'_, '_>) {
        let name = root.tag_name().name();
        if name != "cross-domain-policy" {
            self.error(
                root.range().start,
                format!("the root element is <{name}>; expected <cross-domain-policy>"),
            );
            return;
        }
        let mut site_controls = 0;
        let mut grants = 0;
        for child in root.children().filter(Node::is_element) {
            match child.tag_name().name() {
                "site-control" => {
                    site_controls += 1;
                    self.check_site_control(child, site_controls);
                }
                "allow-access-from" => {
                    grants += 1;
                    self.check_allow(child);
                }
                other => self.check_other_child(child, other),
            }
        }
        if grants == 0 {
            self.warning(
                root.range().start,
                "no <allow-access-from>: the policy grants nothing".into(),
            );
        }
    }

    fn check_other_child(&mut self, child: Node<'_, '_>, name: &str) {
        let message = match name {
            "allow-http-request-headers-from" => {
                format!("<{name}> is for HTTP policies; socket connections do not use it")
            }
            "allow-access-from-identity" => format!(
                "<{name}> is not used by socket connections; grant sockets with <allow-access-from>"
            ),
            _ => format!(
                "unknown element <{name}> in <cross-domain-policy>; expected <site-control> or \
                 <allow-access-from>"
            ),
        };
        self.warning(child.range().start, message);
    }

    fn check_site_control(&mut self, node: Node<'_, '_>, nth: usize) {
        let at = node.range().start;
        if nth > 1 {
            self.error(
                at,
                "more than one <site-control>; a policy may state only one".into(),
            );
        }
        if let Some(port) = self.for_port.filter(|port| *port != MASTER_POLICY_PORT) {
            self.warning(
                at,
                format!(
                    "<site-control> in a policy served for port {port} has no effect; meta-policies \
                     only count in the master policy on port {MASTER_POLICY_PORT}"
                ),
            );
        }
        self.check_unknown_attributes(node, &["permitted-cross-domain-policies"]);
        match node.attribute_node("permitted-cross-domain-policies") {
            Some(attribute) => self.check_meta_policy(attribute.value(), attribute.range().start),
            None => self.error(
                at,
                "<site-control> has no permitted-cross-domain-policies; expected all, \
                 master-only or none"
                    .into(),
            ),
        }
    }

    fn check_meta_policy(&mut self, value: &str, at: usize) {
        if MetaPolicy::value_variants()
            .iter()
            .any(|meta| meta.as_str() == value)
        {
            return;
        }
        let message = match value {
            "by-content-type" | "by-ftp-filename" => format!(
                "permitted-cross-domain-policies '{value}' is for HTTP policies only; socket \
                 policies accept all, master-only or none"
            ),
            _ => format!(
                "permitted-cross-domain-policies '{value}' is not valid; expected all, \
                 master-only or none"
            ),
        };
        self.error(at, message);
    }

    fn check_allow(&mut self, node: Node<'_, '_>) {
        let at = node.range().start;
        self.check_unknown_attributes(node, &["domain", "to-ports", "secure"]);
        match node.attribute_node("domain") {
            Some(domain) if !is_domain(domain.value()) => self.error(
                domain.range().start,
                format!(
                    "domain '{}' is not valid; expected '*', '*.example.com', a host name or an \
                     IP address",
                    domain.value()
                ),
            ),
            Some(_) => {}
            None => self.error(at, "<allow-access-from> has no domain attribute".into()),
        }
        match node.attribute_node("to-ports") {
            Some(ports) => self.check_ports(ports.value(), ports.range().start),
            None => self.error(
                at,
                "<allow-access-from> has no to-ports; socket policies must name the ports, e.g. \
                 to-ports=\"9000\" or to-ports=\"*\""
                    .into(),
            ),
        }
        if let Some(secure) = node.attribute_node("secure")
            && !matches!(secure.value(), "true" | "false")
        {
            self.error(
                secure.range().start,
                format!(
                    "secure '{}' is not valid; expected true or false",
                    secure.value()
                ),
            );
        }
    }

    /// The to-ports syntax, then grants Flash Player would ignore from a high port.
    fn check_ports(&mut self, ports: &str, at: usize) {
        let high_port = self
            .for_port
            .filter(|port| *port >= FIRST_UNPRIVILEGED_PORT);
        if ports == "*" {
            if let Some(port) = high_port {
                self.warning(
                    at,
                    format!(
                        "to-ports '*' includes ports below {FIRST_UNPRIVILEGED_PORT}, which Flash \
                         Player does not grant from a policy served on port {port}"
                    ),
                );
            }
            return;
        }
        for item in ports.split(',') {
            match parse_port_item(item) {
                None => {
                    self.error(
                        at,
                        format!(
                            "to-ports '{ports}' is not valid at '{item}'; expected '*', a port \
                             1-65535, a range 'a-b' with a <= b, or a comma-separated list of those"
                        ),
                    );
                    return;
                }
                Some((first, _)) if first < FIRST_UNPRIVILEGED_PORT => {
                    if let Some(port) = high_port {
                        self.error(at, low_port_message(item, port));
                    }
                }
                Some(_) => {}
            }
        }
    }

    fn check_unknown_attributes(&mut self, node: Node<'_, '_>, known: &[&str]) {
        let element = node.tag_name().name();
        for attribute in node.attributes() {
            let name = attribute.name();
            if attribute.namespace().is_some() || !known.contains(&name) {
                self.warning(
                    attribute.range().start,
                    format!(
                        "unknown attribute '{name}' on <{element}>; expected {}",
                        known.join(", ")
                    ),
                );
            }
        }
    }
}

fn low_port_message(item: &str, port: u16) -> String {
    format!(
        "to-ports '{item}' grants ports below {FIRST_UNPRIVILEGED_PORT}, which Flash Player ignores \
         in a policy served on port {port}; grant only ports {FIRST_UNPRIVILEGED_PORT}-65535 or \
         serve the grant from the master policy on {MASTER_POLICY_PORT}"
    )
}

/// The 1-based line and column (in characters) of byte `byte` of `text`.
fn line_column(text: &str, byte: usize) -> (u32, u32) {
    let before = text.get(..byte).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (saturate(line), saturate(column))
}

fn saturate(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Allow, generate};

    #[test]
    fn line_column_counts_characters_from_one() {
        let text = "ab\nçd\ne";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 2), (1, 3));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 5), (2, 2));
        assert_eq!(line_column(text, text.len()), (3, 2));
    }

    #[test]
    fn the_policy_served_inline_is_clean_for_its_port() {
        for rules in [vec![], vec![Allow::any_domain_to("9000-9010")]] {
            let source = crate::policy::PolicySource::Allow(rules);
            for port in [9000, MASTER_POLICY_PORT] {
                let policy = source.render(port).expect("a policy");
                let text = std::str::from_utf8(&policy).expect("UTF-8");
                assert_eq!(lint(text, Some(port)), vec![], "{text}");
                let site_control = text.contains("<site-control");
                assert_eq!(site_control, port == MASTER_POLICY_PORT, "{text}");
            }
        }
    }

    #[test]
    fn a_generated_policy_is_clean() {
        let policy = generate(&[Allow::any_domain_to("9000-9010")], MetaPolicy::MasterOnly);
        assert_eq!(lint(&policy, None), vec![]);
        assert_eq!(lint(&policy, Some(MASTER_POLICY_PORT)), vec![]);
    }

    #[test]
    fn display_is_line_column_severity_message() {
        let finding = Finding {
            line: 3,
            column: 7,
            severity: Severity::Warning,
            message: "grants nothing".into(),
        };
        assert_eq!(finding.to_string(), "3:7: warning: grants nothing");
    }
}
