//! Inputs the fuzz targets (fuzz/, run by scripts/fuzz.sh) once failed on, each checked against the
//! invariant it broke. Crashing inputs are kept byte for byte in tests/data/fuzz/, named after
//! their target, with the fuzz target's own leading control bytes; an input that was slow rather
//! than wrong is built in its test at a size that makes the slowness unmistakable.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use amf_bench::codec::json::to_canonical_json;
use amf_bench::codec::{self, Format, Limits};
use amf_bench::policy::{Sniff, classify};
use bytes::Bytes;

/// A hang detector, not a performance assertion: what it guards takes well under a second.
const HANG: Duration = Duration::from_secs(10);

/// Runs `run` on a 2 MiB stack and waits at most `HANG` for it.
fn bounded<T: Send + 'static>(what: &str, run: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            // The receiver is gone only if the test already failed.
            let _ = done.send(run());
        })
        .expect("spawns a thread");
    match result.recv_timeout(HANG) {
        Ok(value) => value,
        Err(RecvTimeoutError::Timeout) => panic!("{what} did not finish within {HANG:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

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
