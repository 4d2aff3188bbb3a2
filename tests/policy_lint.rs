//! The socket policy linter against sample policies: clean files stay clean, and each kind of
//! finding comes with its severity, its place and a message naming the value.

use amf_bench::policy::lint::{Finding, Severity, has_errors, lint};
use proptest::prelude::*;

const MASTER: &str = include_str!("data/policies/master.xml");
const SERVICE: &str = include_str!("data/policies/service.xml");
const BROKEN: &str = include_str!("data/policies/broken.xml");

/// A policy with these lines between the root tags, so the first of them is line 2.
fn policy(body: &str) -> String {
    format!("<cross-domain-policy>\n{body}\n</cross-domain-policy>\n")
}

/// The one finding whose message contains `fragment`.
fn only(findings: &[Finding], fragment: &str) -> Finding {
    let matching: Vec<&Finding> = findings
        .iter()
        .filter(|finding| finding.message.contains(fragment))
        .collect();
    assert_eq!(matching.len(), 1, "{fragment:?} in {findings:#?}");
    matching[0].clone()
}

fn assert_finding(
    findings: &[Finding],
    fragment: &str,
    severity: Severity,
    line: u32,
    column: u32,
) {
    let finding = only(findings, fragment);
    assert_eq!(
        (finding.severity, finding.line, finding.column),
        (severity, line, column),
        "{finding}"
    );
}

#[test]
fn valid_policies_give_no_findings() {
    assert_eq!(lint(MASTER, None), vec![]);
    assert_eq!(lint(MASTER, Some(843)), vec![]);
    assert_eq!(lint(SERVICE, Some(9000)), vec![]);
    assert_eq!(lint(SERVICE, None), vec![]);
}

#[test]
fn malformed_xml_is_an_error_at_the_parser_position() {
    let findings = lint(
        "<cross-domain-policy>\n  <allow-access-from domain=\"*\"\n",
        None,
    );
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].severity, Severity::Error);
    assert_eq!(findings[0].line, 3);
    assert!(findings[0].message.starts_with("not well-formed XML"));
    assert_finding(
        &lint("<a></b>", None),
        "not well-formed XML",
        Severity::Error,
        1,
        4,
    );
    assert_finding(
        &lint("", None),
        "not well-formed XML",
        Severity::Error,
        1,
        1,
    );
}

#[test]
fn the_root_must_be_cross_domain_policy() {
    let findings = lint("<?xml version=\"1.0\"?>\n<policy/>", None);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_finding(&findings, "<policy>", Severity::Error, 2, 1);
    assert!(
        findings[0]
            .message
            .contains("expected <cross-domain-policy>")
    );
}

#[test]
fn unknown_and_http_only_children_are_warnings() {
    let text = policy(
        "  <allow-access-from domain=\"*\" to-ports=\"9000\"/>\n\
         \x20 <deny-access-from domain=\"*\"/>\n\
         \x20 <allow-http-request-headers-from domain=\"*\" headers=\"*\"/>\n\
         \x20 <allow-access-from-identity/>",
    );
    let findings = lint(&text, None);
    assert_eq!(findings.len(), 3, "{findings:#?}");
    assert_finding(
        &findings,
        "unknown element <deny-access-from>",
        Severity::Warning,
        3,
        3,
    );
    assert_finding(&findings, "for HTTP policies", Severity::Warning, 4, 3);
    assert_finding(
        &findings,
        "<allow-access-from-identity>",
        Severity::Warning,
        5,
        3,
    );
    assert!(!has_errors(&findings));
}

#[test]
fn a_domain_is_required_and_must_be_valid() {
    let missing = lint(&policy("  <allow-access-from to-ports=\"9000\"/>"), None);
    assert_finding(&missing, "no domain", Severity::Error, 2, 3);
    let bad = lint(
        &policy("  <allow-access-from domain=\"exa mple.com\" to-ports=\"9000\"/>"),
        None,
    );
    assert_finding(
        &bad,
        "domain 'exa mple.com' is not valid",
        Severity::Error,
        2,
        22,
    );
    for domain in ["*", "*.example.com", "example.com", "10.0.0.1", "::1"] {
        let text = policy(&format!(
            "  <allow-access-from domain=\"{domain}\" to-ports=\"9000\"/>"
        ));
        assert_eq!(lint(&text, None), vec![], "{domain}");
    }
}

#[test]
fn to_ports_is_required_for_sockets() {
    let findings = lint(&policy("  <allow-access-from domain=\"*\"/>"), None);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_finding(&findings, "no to-ports", Severity::Error, 2, 3);
}

#[test]
fn to_ports_syntax_errors_name_the_bad_item() {
    for (ports, item) in [
        ("", ""),
        ("0", "0"),
        ("70000", "70000"),
        ("9010-9000", "9010-9000"),
        ("9000,", ""),
        ("9000, 9001", " 9001"),
        ("80-*", "80-*"),
    ] {
        let text = policy(&format!(
            "  <allow-access-from domain=\"*\" to-ports=\"{ports}\"/>"
        ));
        let findings = lint(&text, None);
        assert_eq!(findings.len(), 1, "{ports:?}: {findings:#?}");
        assert_finding(
            &findings,
            &format!("to-ports '{ports}' is not valid at '{item}'"),
            Severity::Error,
            2,
            33,
        );
    }
}

#[test]
fn secure_must_be_true_or_false() {
    let text = policy("  <allow-access-from domain=\"*\" to-ports=\"9000\" secure=\"yes\"/>");
    assert_finding(&lint(&text, None), "secure 'yes'", Severity::Error, 2, 49);
    for secure in ["true", "false"] {
        let text = policy(&format!(
            "  <allow-access-from domain=\"*\" to-ports=\"9000\" secure=\"{secure}\"/>"
        ));
        assert_eq!(lint(&text, None), vec![], "{secure}");
    }
}

#[test]
fn unknown_attributes_are_warnings() {
    let text = policy("  <allow-access-from domain=\"*\" to-ports=\"9000\" port=\"9000\"/>");
    let findings = lint(&text, None);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_finding(
        &findings,
        "unknown attribute 'port'",
        Severity::Warning,
        2,
        49,
    );
}

#[test]
fn low_ports_from_a_high_port_policy_are_ignored_by_flash() {
    let text = policy(
        "  <allow-access-from domain=\"*\" to-ports=\"80,9000\"/>\n\
         \x20 <allow-access-from domain=\"*\" to-ports=\"1000-2000\"/>\n\
         \x20 <allow-access-from domain=\"*\" to-ports=\"*\"/>",
    );
    let findings = lint(&text, Some(9000));
    assert_eq!(findings.len(), 3, "{findings:#?}");
    assert_finding(
        &findings,
        "to-ports '80' grants ports below 1024",
        Severity::Error,
        2,
        33,
    );
    assert_finding(&findings, "to-ports '1000-2000'", Severity::Error, 3, 33);
    assert_finding(
        &findings,
        "to-ports '*' includes ports below 1024",
        Severity::Warning,
        4,
        33,
    );
    assert!(findings[0].message.contains("port 9000"));
    // The master policy, an unknown port and a low port may grant low ports.
    for port in [None, Some(843), Some(1023)] {
        assert_eq!(lint(&text, port), vec![], "{port:?}");
    }
}

#[test]
fn site_control_values_must_suit_sockets() {
    for value in ["by-content-type", "by-ftp-filename"] {
        let text = policy(&format!(
            "  <site-control permitted-cross-domain-policies=\"{value}\"/>\n\
             \x20 <allow-access-from domain=\"*\" to-ports=\"*\"/>"
        ));
        let findings = lint(&text, None);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_finding(
            &findings,
            &format!("'{value}' is for HTTP policies only"),
            Severity::Error,
            2,
            17,
        );
    }
    let text = policy(
        "  <site-control permitted-cross-domain-policies=\"some\"/>\n\
         \x20 <allow-access-from domain=\"*\" to-ports=\"*\"/>",
    );
    assert_finding(
        &lint(&text, None),
        "'some' is not valid",
        Severity::Error,
        2,
        17,
    );
    let text = policy("  <site-control/>\n  <allow-access-from domain=\"*\" to-ports=\"*\"/>");
    assert_finding(
        &lint(&text, None),
        "no permitted-cross-domain-policies",
        Severity::Error,
        2,
        3,
    );
}

#[test]
fn only_one_site_control_is_allowed() {
    let text = policy(
        "  <site-control permitted-cross-domain-policies=\"all\"/>\n\
         \x20 <site-control permitted-cross-domain-policies=\"none\"/>\n\
         \x20 <allow-access-from domain=\"*\" to-ports=\"*\"/>",
    );
    let findings = lint(&text, Some(843));
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_finding(
        &findings,
        "more than one <site-control>",
        Severity::Error,
        3,
        3,
    );
}

#[test]
fn site_control_only_counts_in_the_master_policy() {
    let text = policy(
        "  <site-control permitted-cross-domain-policies=\"all\"/>\n\
         \x20 <allow-access-from domain=\"*\" to-ports=\"9000\"/>",
    );
    let findings = lint(&text, Some(9000));
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_finding(&findings, "served for port 9000", Severity::Warning, 2, 3);
    assert!(findings[0].message.contains("master policy on port 843"));
    assert_eq!(lint(&text, Some(843)), vec![]);
    assert_eq!(lint(&text, None), vec![]);
}

#[test]
fn a_policy_granting_nothing_is_a_warning() {
    let findings = lint("<cross-domain-policy/>", None);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_finding(&findings, "grants nothing", Severity::Warning, 1, 1);
    assert!(!has_errors(&findings));
}

#[test]
fn files_of_ten_thousand_bytes_are_refused() {
    let rule = "  <allow-access-from domain=\"*\" to-ports=\"9000\"/>\n";
    let mut body = rule.repeat(190);
    let mut text = policy(&body);
    while text.len() < 10_000 {
        body.push(' ');
        text = policy(&body);
    }
    assert_eq!(text.len(), 10_000);
    let findings = lint(&text, None);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_finding(&findings, "10000 bytes", Severity::Error, 1, 1);
    body.pop();
    assert_eq!(lint(&policy(&body), None), vec![]);
}

#[test]
fn a_nul_ends_the_policy_and_is_an_error() {
    let findings = lint(&format!("{}\0", SERVICE), Some(9000));
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_finding(&findings, "NUL byte", Severity::Error, 5, 1);
    // What follows the NUL is never seen, so a policy cut short by it is not well-formed.
    let cut = SERVICE.replacen("<allow", "\0<allow", 1);
    let findings = lint(&cut, Some(9000));
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert_finding(&findings, "NUL byte", Severity::Error, 3, 3);
    assert_finding(&findings, "not well-formed XML", Severity::Error, 3, 3);
}

#[test]
fn findings_are_sorted_by_line_and_column() {
    let findings = lint(BROKEN, Some(9000));
    let places: Vec<(u32, u32, Severity)> = findings
        .iter()
        .map(|finding| (finding.line, finding.column, finding.severity))
        .collect();
    use Severity::{Error, Warning};
    assert_eq!(
        places,
        vec![
            (3, 3, Warning),
            (3, 17, Error),
            (4, 3, Error),
            (4, 3, Warning),
            (5, 22, Error),
            (5, 44, Error),
            (5, 63, Error),
            (5, 76, Warning),
            (6, 3, Error),
            (7, 3, Warning),
            (8, 3, Warning),
            (9, 3, Warning),
        ],
        "{findings:#?}"
    );
}

#[test]
fn has_errors_tells_errors_from_warnings() {
    assert!(!has_errors(&[]));
    assert!(!has_errors(&lint("<cross-domain-policy/>", None)));
    assert!(has_errors(&lint(BROKEN, None)));
}

#[test]
fn findings_display_as_line_column_severity_message() {
    let findings = lint(&policy("  <allow-access-from domain=\"*\"/>"), None);
    assert_eq!(
        findings[0].to_string(),
        "2:3: error: <allow-access-from> has no to-ports; socket policies must name the ports, \
         e.g. to-ports=\"9000\" or to-ports=\"*\""
    );
    let findings = lint("<cross-domain-policy/>", None);
    assert_eq!(
        findings[0].to_string(),
        "1:1: warning: no <allow-access-from>: the policy grants nothing"
    );
}

proptest! {
    #[test]
    fn random_text_never_panics(text in ".{0,200}", port in proptest::option::of(any::<u16>())) {
        let findings = lint(&text, port);
        prop_assert!(findings.windows(2).all(|pair| (pair[0].line, pair[0].column) <= (pair[1].line, pair[1].column)));
    }

    #[test]
    fn policy_shaped_text_never_panics(
        domain in "[*a-z0-9.: -]{0,12}",
        ports in "[*0-9,-]{0,12}",
        extra in "[<>/=\"a-z \n\0-]{0,40}",
        port in proptest::option::of(any::<u16>()),
    ) {
        let text = format!(
            "<cross-domain-policy><allow-access-from domain=\"{domain}\" to-ports=\"{ports}\"/>{extra}</cross-domain-policy>"
        );
        let _ = lint(&text, port);
    }
}
