//! Inputs the fuzz targets (fuzz/, run by scripts/fuzz.sh) once failed on, each checked against the
//! invariant it broke. The inputs are kept byte for byte in tests/data/fuzz/, named after their
//! target, with the fuzz target's own leading control bytes.

use std::path::Path;

use amf_bench::policy::{Sniff, classify};

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
