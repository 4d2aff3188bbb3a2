//! Inputs the fuzz targets (fuzz/, run by scripts/fuzz.sh) once failed on, each checked against the
//! invariant it broke. Crashing inputs are kept byte for byte in tests/data/fuzz/, named after
//! their target, with the fuzz target's own leading control bytes; an input that was slow rather
//! than wrong is built in its test at a size that makes the slowness unmistakable.

use std::path::Path;

use amf_bench::codec::json::to_canonical_json;
use amf_bench::codec::{self, Format, Limits};
use amf_bench::policy::lint::{self, Severity};
use amf_bench::policy::{Allow, MetaPolicy, Sniff, classify, generate};
use amf_bench::run::scenario::Scenario;
use bytes::Bytes;

mod common;

use common::bounded::bounded;

fn input(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The verdicts of `classify` on every prefix of `received`, once it has decided.
fn verdicts_after_deciding(received: &[u8], skip_whitespace: bool) -> Vec<Sniff> {
    (0..=received.len())
        .map(|end| classify(&received[..end], skip_whitespace))
        .skip_while(|verdict| *verdict == Sniff::NeedMore)
        .collect()
}

/// More than 64 blanks then the tag, in one read, was a policy request; the same bytes one at a
/// time were not (the blanks decided first). The verdict must not depend on how reads split.
#[test]
fn policy_sniff_too_many_blanks_then_the_tag_is_not_a_request_in_any_split() {
    let data = input("policy_sniff-blanks-then-tag");
    let (flags, received) = data.split_first().expect("not empty");
    assert_eq!(flags & 1, 1, "the input tolerates leading blanks");
    let verdicts = verdicts_after_deciding(received, true);
    assert!(
        verdicts.iter().all(|verdict| *verdict == Sniff::Other),
        "{verdicts:?}"
    );
}

/// Canonical JSON used to copy every rendered container once per enclosing level (`json!` with a
/// rendered value goes through `serde_json::to_value`), so rendering cost O(size x depth): found
/// profiling the roundtrip target, whose nested Dictionaries were slow. A megabyte of nulls under
/// 120 associative arrays took 7.6 s in a release build (against 0.1 s unnested).
#[test]
fn canonical_json_of_deep_containers_costs_linear_time() {
    const DEPTH: usize = 120;
    const NULLS: u32 = 1_000_000;
    let mut bytes = Vec::new();
    for _ in 0..DEPTH {
        // An array with no dense items and one associative member "a", holding the next level.
        bytes.extend_from_slice(&[0x09, 0x01, 0x03, b'a']);
    }
    // The innermost: a dense array of NULLS nulls (its inline count as a three-byte U29).
    let count = (NULLS << 1) | 1;
    bytes.extend_from_slice(&[
        0x09,
        (count >> 14) as u8 | 0x80,
        ((count >> 7) & 0x7f) as u8 | 0x80,
        (count & 0x7f) as u8,
        0x01,
    ]);
    bytes.resize(bytes.len() + NULLS as usize, 0x01);
    // Each level's associative part ends with the empty string; its dense part is empty.
    bytes.resize(bytes.len() + DEPTH, 0x01);
    let value = codec::decode(Bytes::from(bytes), Format::Amf3).expect("decodes");
    let json = bounded("canonical JSON of deep containers", move || {
        to_canonical_json(&value, Format::Amf3, &Limits::default())
    })
    .expect("renders");
    let mut level = &json;
    for _ in 0..DEPTH {
        level = &level["$assoc"]["a"];
    }
    assert_eq!(level.as_array().map(Vec::len), Some(NULLS as usize));
}

/// A scenario with one line changed from a valid one.
fn scenario_with(from: &str, to: &str) -> String {
    const VALID: &str = r#"
        name = "x"
        connections = 2
        connect_rate = 1
        duration = "1s"
        timeout = "1s"
        [load]
        model = "open"
        stages = [{ rate = 0, for = "1s" }, { rate = 10, for = "1s" }]
        [[session]]
        name = "s"
        steps = [{ request = "echo" }, { think = "1s" }]
    "#;
    assert!(VALID.contains(from), "{from}");
    VALID.replacen(from, to, 1)
}

/// Durations and connection times a run cannot add to the current time: `amf-bench run` panicked
/// on them ("overflow when adding duration to instant", "cannot convert float seconds to
/// Duration") instead of naming the key. Found writing the scenario target's invariant that
/// whatever validates has representable run times.
#[test]
fn scenario_durations_a_run_cannot_reach_are_refused_with_their_key() {
    let huge = "9999999999999999999s";
    let cases = [
        (
            "duration = \"1s\"",
            format!("duration = \"{huge}\""),
            "duration:",
        ),
        (
            "timeout = \"1s\"",
            format!("timeout = \"{huge}\""),
            "timeout:",
        ),
        (
            "for = \"1s\" }, {",
            format!("for = \"{huge}\" }}, {{"),
            "load.stages[0].for:",
        ),
        (
            "{ think = \"1s\" }",
            "{ think = \"exp(999999999999999999s)\" }".to_owned(),
            "session[0].steps[1].think:",
        ),
        (
            "{ think = \"1s\" }",
            format!("{{ think = \"uniform(1s,{huge})\" }}"),
            "session[0].steps[1].think:",
        ),
        (
            "{ request = \"echo\" }",
            format!("{{ request = \"echo\", timeout = \"{huge}\" }}"),
            "session[0].steps[0].timeout:",
        ),
        (
            "connect_rate = 1",
            "connect_rate = 1e-300".to_owned(),
            "connect_rate: 1e-300 is too low",
        ),
    ];
    for (from, to, expected) in cases {
        let error = Scenario::parse(&scenario_with(from, &to)).expect_err(&to);
        let message = format!("{error:#}");
        assert!(message.contains(expected), "{to}: {message}");
    }
    let longest = scenario_with("duration = \"1s\"", "duration = \"8760h\"");
    assert!(Scenario::parse(&longest).is_ok(), "a year is still allowed");
}

/// Enough `--allow` rules make a generated policy reach Adobe's 10,000-byte limit. Not a bug (the
/// policy server lints what it generates and refuses it, naming the size), but the policy_lint
/// target assumed generated policies were always clean; this pins down what happens instead.
#[test]
fn policy_lint_a_generated_policy_of_too_many_rules_has_only_the_size_error() {
    let data = input("policy_lint-many-rules");
    let text = String::from_utf8_lossy(&data);
    let allows: Vec<Allow> = text.lines().filter_map(|line| line.parse().ok()).collect();
    let policy = generate(&allows, MetaPolicy::MasterOnly);
    assert!(
        policy.len() >= lint::MAX_POLICY_BYTES,
        "{} bytes",
        policy.len()
    );
    let errors: Vec<String> = lint::lint(&policy, None)
        .into_iter()
        .filter(|finding| finding.severity == Severity::Error)
        .map(|finding| finding.message)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("10000 bytes or more"), "{errors:?}");
}
