//! Fuzz target: one AMF0 value (AVM+ switches to AMF3 included) from arbitrary bytes, with the
//! same invariants as amf3_decode: O(input) cost, bounded rendering, no decodable strict prefix.
#![no_main]

use amf_bench::codec::Format;
use amf_bench_fuzz::decode_and_check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    decode_and_check(data, Format::Amf0);
});
