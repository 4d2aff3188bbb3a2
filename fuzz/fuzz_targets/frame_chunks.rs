//! Fuzz target: AMF Socket framing over arbitrary chunking. The frames (and the final error or
//! leftover bytes) found when a stream arrives in pieces must equal those found when it arrives
//! whole; no frame is empty or above the cap; `decode_eof` fails exactly when bytes are left.
//!
//! Input: one byte whose low nibble picks the frame cap and whose high nibble is the number `k`
//! of chunk-size bytes that follow; then those `k` sizes (used in turn, 0 meaning "decode again
//! with nothing new"); then the stream.
#![no_main]

use amf_bench::frame::{self, AmfSocketCodec, DEFAULT_MAX_FRAME_LEN};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// Caps small enough that oversized headers come up often, and the default.
const CAPS: [usize; 16] = [
    DEFAULT_MAX_FRAME_LEN,
    1,
    2,
    3,
    4,
    5,
    8,
    16,
    31,
    64,
    100,
    255,
    256,
    1024,
    65_536,
    (1 << 24) + 1,
];

/// Where reading a stream ended.
#[derive(Debug, PartialEq)]
enum End {
    /// Waiting for more bytes; these are buffered.
    NeedMore(Vec<u8>),
    /// A framing error, as displayed.
    Error(String),
}

fn check_frame(payload: &Bytes, cap: usize) {
    assert!(!payload.is_empty(), "an empty frame came out");
    assert!(
        payload.len() <= cap,
        "a frame of {} above the cap {cap}",
        payload.len()
    );
}

/// The stream in one piece, through the pure function.
fn whole(stream: &[u8], cap: usize) -> (Vec<Bytes>, End) {
    let mut buffer = BytesMut::from(stream);
    let mut frames = Vec::new();
    loop {
        match frame::split_frame(&mut buffer, cap) {
            Ok(Some(payload)) => {
                check_frame(&payload, cap);
                frames.push(payload);
            }
            Ok(None) => return (frames, End::NeedMore(buffer.to_vec())),
            Err(error) => return (frames, End::Error(error.to_string())),
        }
    }
}

/// The stream in pieces of the given sizes, through the tokio-util codec.
fn chunked(stream: &[u8], sizes: &[u8], cap: usize) -> (Vec<Bytes>, End) {
    let mut codec = AmfSocketCodec::new(cap);
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut turn = 0;
    loop {
        let size = match sizes.get(turn % sizes.len().max(1)) {
            // No sizes, or only zeros: one byte at a time.
            _ if sizes.iter().all(|size| *size == 0) => 1,
            Some(size) => usize::from(*size),
            None => 1,
        };
        turn += 1;
        let (piece, after) = rest.split_at(size.min(rest.len()));
        buffer.extend_from_slice(piece);
        rest = after;
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(payload)) => {
                    check_frame(&payload, cap);
                    frames.push(payload);
                }
                Ok(None) => break,
                Err(error) => return (frames, End::Error(error.to_string())),
            }
        }
        if rest.is_empty() {
            let leftover = buffer.to_vec();
            let at_eof = codec.decode_eof(&mut buffer);
            assert_eq!(
                at_eof.is_err(),
                !leftover.is_empty(),
                "decode_eof with {} bytes left: {at_eof:?}",
                leftover.len()
            );
            return (frames, End::NeedMore(leftover));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let cap = CAPS[usize::from(control & 0x0f)];
    let count = usize::from(control >> 4).min(rest.len());
    let (sizes, stream) = rest.split_at(count);
    let expected = whole(stream, cap);
    let found = chunked(stream, sizes, cap);
    assert_eq!(found, expected, "chunking changed the frames");
});
