//! What the proxy's log queue counts for an event against the heap the event really holds: the
//! queue's byte budget (`--log-queue`) must bound its memory, for the smallest events too.

use std::time::Duration;

use amf_bench::codec::{DecodeOptions, Str, Value, ViewDecoder};
use amf_bench::proxy::decode::decode;
use amf_bench::proxy::log::{Direction, Event, FrameEntry, Stamp, What};
use amf_bench::proxy::tap::{Framing, Tap, TapLimits};
use amf_bench::rpc::wire::encode_envelope;
use amf_bench::rpc::{Encoding, Envelope, Request};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

const LIMITS: TapLimits = TapLimits {
    max_decode: 1 << 20,
    max_frame: 16 << 20,
};

/// The bytes of `count` zero-length frames (each a logged error) or of `count` small requests.
fn stream(count: usize, small_requests: bool) -> Vec<u8> {
    if !small_requests {
        return vec![0; 4 * count];
    }
    let mut bytes = Vec::new();
    for index in 0..count {
        let request = Envelope::Request(Request {
            message_id: Str::from(format!("1763800000000:{index}:987654321")),
            command: Str::from("echo"),
            params: Value::string(&"x".repeat(40)),
        });
        bytes.extend(encode_envelope(request, Encoding::Amf3, 1 << 20).expect("encodes"));
    }
    bytes
}

/// Taps `chunk` as the relay does (recording on, so raw bytes are kept) into one batch of events.
fn events_of(chunk: &[u8]) -> Vec<Event> {
    let mut tap = Tap::new(Framing::AmfSocket, LIMITS);
    let mut decoder = ViewDecoder::new(DecodeOptions::default());
    let mut tapped = Vec::new();
    tap.feed(chunk, &mut |item| tapped.push(item));
    let at = Stamp::now();
    let mut events = Vec::new();
    for (seq, item) in tapped.into_iter().enumerate() {
        let decoded = decode(&item, Framing::AmfSocket, &LIMITS, &mut decoder);
        let raw = match item {
            amf_bench::proxy::tap::Tapped::Frame(bytes) => Some(bytes),
            _ => None,
        };
        let entry = FrameEntry {
            dir: Direction::ClientToServer,
            seq: seq as u64 + 1,
            decoded,
            latency: Some(Duration::ZERO),
            raw,
        };
        events.push(Event {
            at,
            conn: 1,
            what: What::Frame(Box::new(entry)),
            logged: true,
        });
    }
    events
}

#[test]
fn the_queue_counts_at_least_what_its_events_hold() {
    let _profiler = dhat::Profiler::builder().testing().build();
    for small_requests in [false, true] {
        let chunk = stream(10_000, small_requests);
        let before = dhat::HeapStats::get().curr_bytes;
        let events = events_of(&chunk);
        let held = dhat::HeapStats::get().curr_bytes - before;
        let counted: usize = events.iter().map(Event::queue_cost).sum();
        assert_eq!(events.len(), 10_000);
        // The allocator rounds small blocks up to its size classes: leave it an eighth.
        assert!(
            held + held / 8 <= counted,
            "requests {small_requests}: {held} bytes held, {counted} counted"
        );
    }
}
