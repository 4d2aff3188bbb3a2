//! Fuzz target: `policy lint` over arbitrary text, and policies generated from arbitrary `--allow`
//! rules. Findings are sorted, placed inside the text and consistent with `has_errors`; a policy
//! generated from rules that parse lints without errors, except that so many rules that the file
//! reaches Adobe's 10,000-byte limit must be that one error (`amf-bench policy` then refuses it).
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
        let errors: Vec<&Finding> = findings
            .iter()
            .filter(|finding| finding.severity == Severity::Error)
            .collect();
        if policy.len() >= lint::MAX_POLICY_BYTES {
            assert!(
                errors.len() == 1
                    && errors[0]
                        .message
                        .contains(&format!("{} bytes or more", lint::MAX_POLICY_BYTES)),
                "a generated policy of {} bytes: {errors:?}",
                policy.len()
            );
        } else {
            assert!(
                errors.is_empty(),
                "a generated policy has errors: {errors:?}\n{policy}"
            );
        }
    }
});
