//! Fuzz target: one AMF3 value from arbitrary bytes. Besides never panicking, hanging or
//! overflowing the stack, a decoded value must cost O(input), render (canonical JSON, tree,
//! compact line) within its limits, and no strict prefix of a valid input may decode.
#![no_main]

use amf_bench::codec::Format;
use amf_bench_fuzz::decode_and_check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    decode_and_check(data, Format::Amf3);
});
