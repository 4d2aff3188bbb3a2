//! Fuzz target: encode and decode agree. The first byte picks the mode: decoded AMF3 or AMF0
//! bytes are re-encoded (which must succeed), or an arbitrary value built from the bytes is
//! encoded (which may be refused, e.g. for a dangling reference). Either way the encoding must
//! decode to the same canonical JSON and re-encode to the same bytes.
#![no_main]

use amf_bench::codec::{self, Format};
use amf_bench_fuzz::{arbitrary_value, check_encoding_round_trips, check_reencode};
use arbitrary::Unstructured;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 | 1 => {
            let format = if mode % 4 == 0 {
                Format::Amf3
            } else {
                Format::Amf0
            };
            if let Ok(value) = codec::decode(Bytes::copy_from_slice(rest), format) {
                check_reencode(&value, format);
            }
        }
        _ => {
            let format = if mode % 4 == 2 {
                Format::Amf3
            } else {
                Format::Amf0
            };
            let mut u = Unstructured::new(rest);
            let Ok(value) = arbitrary_value(&mut u, format) else {
                return;
            };
            if let Ok(encoded) = codec::encode(&value, format) {
                check_encoding_round_trips(&value, format, encoded);
            }
        }
    }
});
