//! Fuzz target: the proxy's log tap over arbitrary chunking. For amf-socket and xmlsocket
//! framing, what the tap reports when a stream arrives in pieces must equal what it reports when
//! the stream arrives whole (a lost framing's kept bytes aside, which are the rest of the chunk it
//! was lost in); no whole frame is empty or above `max_decode` (but a zero-length frame's
//! header, reported as it is); kept prefixes stay within `PREFIX_LEN`; after a lost framing
//! nothing more comes out.
//!
//! Input: one byte whose low bit picks the framing (amf-socket, xmlsocket), next three bits
//! `max_decode` (`max_frame` is 4096 or `max_decode` if larger) and high nibble the number `k`
//! of chunk-size bytes that follow; then those `k` sizes (used in turn, 0 meaning "feed an empty
//! chunk"); then the stream.
#![no_main]

use amf_bench::proxy::tap::{Framing, PREFIX_LEN, Tap, TapLimits, Tapped};
use libfuzzer_sys::fuzz_target;

/// Decode caps small enough that oversize frames come up often, and larger ones.
const MAX_DECODE: [usize; 8] = [1, 4, 5, 8, 33, 100, 4096, 1 << 20];

/// A report with a lost framing's kept bytes reduced to whether there were any.
#[derive(Debug, PartialEq)]
enum Report {
    Tapped(Tapped),
    Lost { error: String, any_bytes: bool },
}

fn check(tapped: &Tapped, limits: TapLimits) {
    match tapped {
        // A zero-length AMF Socket frame comes out whole (its header) to be logged as an
        // error, whatever the cap.
        Tapped::Frame(frame) if frame[..] == [0, 0, 0, 0] => {}
        Tapped::Frame(frame) => {
            assert!(!frame.is_empty(), "an empty frame came out");
            assert!(
                frame.len() <= limits.max_decode,
                "a frame of {} above max_decode {}",
                frame.len(),
                limits.max_decode
            );
        }
        Tapped::Oversize { len, prefix } => {
            assert!(*len > limits.max_decode, "{len} is not oversize");
            assert!(prefix.len() <= PREFIX_LEN && prefix.len() <= *len);
        }
        Tapped::Truncated { have, want, prefix } => {
            assert!(*have > 0 && prefix.len() <= PREFIX_LEN && prefix.len() <= *have);
            if let Some(want) = want {
                assert!(have < want, "truncated at {have} of {want}");
            }
        }
        Tapped::Lost { .. } => {}
    }
}

/// Feeds `stream` in pieces of the given sizes (all of it at once when there are none), then
/// ends it.
fn tap(framing: Framing, limits: TapLimits, stream: &[u8], sizes: &[u8]) -> Vec<Report> {
    let mut tap = Tap::new(framing, limits);
    let mut reports = Vec::new();
    let mut lost = false;
    let mut out = |tapped: Tapped| {
        assert!(!lost, "{tapped:?} came out after the framing was lost");
        check(&tapped, limits);
        reports.push(match tapped {
            Tapped::Lost { error, bytes } => {
                lost = true;
                Report::Lost {
                    error,
                    any_bytes: !bytes.is_empty(),
                }
            }
            other => Report::Tapped(other),
        });
    };
    if sizes.is_empty() {
        tap.feed(stream, &mut out);
    } else {
        let mut rest = stream;
        for size in sizes.iter().cycle() {
            let (piece, after) = rest.split_at(usize::from(*size).min(rest.len()));
            tap.feed(piece, &mut out);
            rest = after;
            if rest.is_empty() || sizes.iter().all(|size| *size == 0) {
                tap.feed(rest, &mut out);
                break;
            }
        }
    }
    tap.finish(&mut out);
    reports
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let framing = if control & 1 == 0 {
        Framing::AmfSocket
    } else {
        Framing::Xmlsocket
    };
    let max_decode = MAX_DECODE[usize::from((control >> 1) & 0x07)];
    // A small cap on declared lengths, so that random headers lose the framing often.
    let limits = TapLimits {
        max_decode,
        max_frame: max_decode.max(4096),
    };
    let count = usize::from(control >> 4).min(rest.len());
    let (sizes, stream) = rest.split_at(count);
    let whole = tap(framing, limits, stream, &[]);
    let chunked = tap(framing, limits, stream, sizes);
    assert_eq!(chunked, whole, "chunking changed what the tap reported");
});
