//! Fuzz target: `policy lint` over arbitrary text, and policies generated from arbitrary `--allow`
//! rules. Findings are sorted, placed inside the text and consistent with `has_errors`; every
//! policy generated from rules that parse lints without errors.
//!
//! Input: the text (lossily UTF-8); each of its lines is also tried as a `DOMAIN:PORTS` rule.
#![no_main]

use amf_bench::policy::lint::{self, Finding, Severity};
use amf_bench::policy::{Allow, MetaPolicy, generate};
use libfuzzer_sys::fuzz_target;

fn check_findings(text: &str, findings: &[Finding]) {
    let lines = text.split('\n').count() as u32;
    for finding in findings {
        assert!(finding.line >= 1 && finding.column >= 1, "{finding}");
        assert!(finding.line <= lines, "{finding} is past the {lines} lines");
        let _ = finding.to_string();
    }
    assert!(
        findings
            .windows(2)
            .all(|pair| (pair[0].line, pair[0].column) <= (pair[1].line, pair[1].column)),
        "findings out of order"
    );
    assert_eq!(
        lint::has_errors(findings),
        findings
            .iter()
            .any(|finding| finding.severity == Severity::Error)
    );
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let port = data
        .first()
        .map_or(843, |byte| if byte % 2 == 0 { 843 } else { 9000 });
    for for_port in [None, Some(port)] {
        check_findings(&text, &lint::lint(&text, for_port));
    }
    let allows: Vec<Allow> = text.lines().filter_map(|line| line.parse().ok()).collect();
    if allows.is_empty() {
        return;
    }
    let meta = [MetaPolicy::MasterOnly, MetaPolicy::All, MetaPolicy::None][data.len() % 3];
    let policy = generate(&allows, meta);
    for for_port in [None, Some(843)] {
        let findings = lint::lint(&policy, for_port);
        check_findings(&policy, &findings);
        assert!(
            !lint::has_errors(&findings),
            "a generated policy has errors: {findings:?}\n{policy}"
        );
    }
});
