//! Fuzz target: telling a policy request from other traffic. The verdict on the bytes received so
//! far must never change as more bytes arrive (so it cannot depend on how reads split them), must
//! come within the tag plus the tolerated leading blanks, and a request must be the tag itself.
//!
//! Input: one byte whose lowest bit says whether leading blanks are tolerated, then the bytes.
#![no_main]

use amf_bench::policy::{REQUEST_TAG, Sniff, classify};
use libfuzzer_sys::fuzz_target;

/// Blanks a tolerant classifier may skip before the tag (the policy server's documented 64).
const LEADING_BLANKS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, received)) = data.split_first() else {
        return;
    };
    let skip_whitespace = flags & 1 == 1;
    let decide_by = REQUEST_TAG.len() + if skip_whitespace { LEADING_BLANKS } else { 0 };
    let mut decided: Option<(usize, Sniff)> = None;
    // Every prefix up to the point where a verdict is due, then the whole input.
    let ends = (0..=received.len().min(decide_by + 1)).chain([received.len()]);
    for end in ends {
        let verdict = classify(&received[..end], skip_whitespace);
        match decided {
            Some((at, first)) => assert_eq!(
                verdict, first,
                "{first:?} after {at} bytes became {verdict:?} after {end}"
            ),
            None if verdict == Sniff::NeedMore => {
                assert!(end < decide_by, "still undecided after {end} bytes");
            }
            None => decided = Some((end, verdict)),
        }
    }
    if let Some((_, Sniff::PolicyRequest)) = decided {
        let start = if skip_whitespace {
            received
                .iter()
                .position(|byte| !byte.is_ascii_whitespace())
                .unwrap_or(received.len())
        } else {
            0
        };
        assert!(start <= LEADING_BLANKS, "a request after {start} blanks");
        assert!(received[start..].starts_with(REQUEST_TAG));
    }
});
