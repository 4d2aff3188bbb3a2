//! Hostile inputs cost bounded time, memory and stack, and fail with precise errors: deep nesting
//! stops at the depth limit on a 2 MiB thread, exponential reference chains decode in linear time
//! and stop at the rendering budget, huge declared lengths fail before anything is allocated,
//! frame headers are judged alone, references past their table are refused, cycles survive a
//! round trip, and unknown externalizable classes are named in the error.

mod common;

use amf_bench::codec::error::Table;
use amf_bench::codec::externals::ARRAY_COLLECTION;
use amf_bench::codec::json::to_canonical_json;
use amf_bench::codec::{
    self, Array, DecodeError, DecodeErrorKind, DecodeOptions, EncodeError, ExternalRegistry,
    Format, Limits, RenderError, Value, View, ViewDecoder,
};
use amf_bench::frame::{self, AmfSocketCodec, FrameError};
use bytes::{Bytes, BytesMut};
use serde_json::{Value as Json, json};
use tokio_util::codec::Decoder;

use common::bounded::{bounded, bounded_on};

/// Inputs of this size are "a megabyte" below.
const MEGABYTE: usize = 1 << 20;
/// Largest length or count an inline AMF3 U29 can declare.
const U29_INLINE_MAX: u32 = (1 << 28) - 1;

/// Decodes `bytes` within `HANG`, on a 2 MiB stack.
fn decode_bounded(what: &str, bytes: &[u8], format: Format) -> Result<Value, DecodeError> {
    let bytes = Bytes::copy_from_slice(bytes);
    bounded(what, move || codec::decode(bytes, format))
}

/// Renders `value` within `HANG`, on a 2 MiB stack.
fn render_bounded(what: &str, value: &Value, format: Format) -> Result<Json, RenderError> {
    let value = value.clone();
    bounded(what, move || render(&value, format))
}

fn options(max_depth: usize) -> DecodeOptions {
    DecodeOptions {
        limits: Limits {
            max_depth,
            ..Limits::default()
        },
        ..DecodeOptions::default()
    }
}

fn decode(bytes: &[u8], format: Format) -> Result<Value, DecodeError> {
    codec::decode(Bytes::copy_from_slice(bytes), format)
}

fn render(value: &Value, format: Format) -> Result<Json, RenderError> {
    to_canonical_json(value, format, &Limits::default())
}

/// The AMF3 U29 encoding of `n`.
fn u29(n: u32) -> Vec<u8> {
    assert!(n < 1 << 29, "U29 out of range: {n}");
    match n {
        0..=0x7f => vec![n as u8],
        0x80..=0x3fff => vec![(n >> 7) as u8 | 0x80, (n & 0x7f) as u8],
        0x4000..=0x1f_ffff => vec![
            (n >> 14) as u8 | 0x80,
            ((n >> 7) & 0x7f) as u8 | 0x80,
            (n & 0x7f) as u8,
        ],
        _ => vec![
            (n >> 22) as u8 | 0x80,
            ((n >> 15) & 0x7f) as u8 | 0x80,
            ((n >> 8) & 0x7f) as u8 | 0x80,
            n as u8,
        ],
    }
}

/// The U29 of an inline length or count.
fn inline(len: u32) -> Vec<u8> {
    u29((len << 1) | 1)
}

/// `prefix`, then `unit` repeated until the whole is at least `total` bytes.
fn repeated(prefix: &[u8], unit: &[u8], total: usize) -> Vec<u8> {
    let mut bytes = prefix.to_vec();
    while bytes.len() < total {
        bytes.extend_from_slice(unit);
    }
    bytes
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The stack of a thread decoding with `max_depth: 1000` here. Debug builds spend 4 to 5.5 KiB of
/// stack per nesting level (measured: nested AMF0 objects are the costliest), so 1000 levels need
/// more than the 2 MiB the default limit is sized for; see `limit_of_1000_fits_a_2_mib_stack`.
const STACK_FOR_1000: usize = 8 << 20;

/// Decodes `bytes` with `max_depth` on a thread with `stack` bytes of stack, and expects `TooDeep`
/// at `offset`.
fn assert_too_deep_on(
    stack: usize,
    what: &str,
    bytes: &[u8],
    format: Format,
    max_depth: usize,
    offset: usize,
) {
    let owned_bytes = Bytes::copy_from_slice(bytes);
    let error = bounded_on(stack, what, move || {
        codec::decode_with(owned_bytes, format, &options(max_depth))
    })
    .expect_err("nesting past the limit is an error");
    assert_eq!(error.kind, DecodeErrorKind::TooDeep { limit: max_depth });
    assert_eq!(
        error.offset, offset,
        "offset of the first container past the limit"
    );
    if format == Format::Amf3 {
        let bytes = bytes.to_vec();
        let view_error = bounded_on(stack, what, move || {
            ViewDecoder::new(options(max_depth))
                .decode(&bytes)
                .map(|_| ())
        })
        .expect_err("nesting past the limit is an error in a view too");
        assert_eq!(view_error, error, "{what} as a view");
    }
}

/// Expects `TooDeep` at `offset(limit)`, with the default limit on a 2 MiB thread and with a limit
/// of 1000 on a thread with `STACK_FOR_1000`.
fn assert_too_deep(what: &str, bytes: &[u8], format: Format, offset: impl Fn(usize) -> usize) {
    let limit = Limits::DEFAULT_MAX_DEPTH;
    assert_too_deep_on(2 << 20, what, bytes, format, limit, offset(limit));
    assert_too_deep_on(STACK_FOR_1000, what, bytes, format, 1000, offset(1000));
}

/// What a megabyte of one kind of nesting is called, its bytes, its format, and the offset of
/// the container that passes a given limit.
type Nesting = (&'static str, Vec<u8>, Format, fn(usize) -> usize);

fn megabyte_nestings() -> Vec<Nesting> {
    vec![
        // Each `09 03 01` is an array of one item (and an empty associative part) holding the next.
        (
            "nested AMF3 arrays",
            repeated(&[], &[0x09, 0x03, 0x01], MEGABYTE),
            Format::Amf3,
            |limit| 3 * limit,
        ),
        // `0a 0b 01 03 61`: an anonymous dynamic object (inline traits), member "a" whose value is
        // `0a 01 00`: an object by trait reference 0, member "a" by string reference 0, and so on.
        (
            "nested AMF3 objects",
            repeated(
                &[0x0a, 0x0b, 0x01, 0x03, 0x61],
                &[0x0a, 0x01, 0x00],
                MEGABYTE,
            ),
            Format::Amf3,
            |limit| 5 + 3 * (limit - 1),
        ),
        // A Dictionary of one entry whose key is the next one.
        (
            "nested Dictionaries",
            repeated(&[], &[0x11, 0x03, 0x00], MEGABYTE),
            Format::Amf3,
            |limit| 3 * limit,
        ),
        // A Vector.<Object> of type "" holding the next one.
        (
            "nested Vector.<Object>",
            repeated(&[], &[0x10, 0x03, 0x00, 0x01], MEGABYTE),
            Format::Amf3,
            |limit| 4 * limit,
        ),
        // `0a 00 00 00 01`: a strict array of one item.
        (
            "nested strict arrays",
            repeated(&[], &[0x0a, 0x00, 0x00, 0x00, 0x01], MEGABYTE),
            Format::Amf0,
            |limit| 5 * limit,
        ),
        // `03 00 01 61`: an anonymous object whose member "a" is the next one.
        (
            "nested AMF0 objects",
            repeated(&[], &[0x03, 0x00, 0x01, 0x61], MEGABYTE),
            Format::Amf0,
            |limit| 4 * limit,
        ),
        // A typed object of class "T" and an ECMA array, each with member "a".
        (
            "nested typed objects",
            repeated(&[], &[0x10, 0x00, 0x01, 0x54, 0x00, 0x01, 0x61], MEGABYTE),
            Format::Amf0,
            |limit| 7 * limit,
        ),
        (
            "nested ECMA arrays",
            repeated(
                &[],
                &[0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x61],
                MEGABYTE,
            ),
            Format::Amf0,
            |limit| 8 * limit,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Deep nesting
// ---------------------------------------------------------------------------------------------

#[test]
fn megabyte_of_nesting_is_too_deep() {
    for (what, bytes, format, offset) in megabyte_nestings() {
        assert_too_deep(what, &bytes, format, offset);
    }
}

/// `Limits::max_depth` says each level costs well under 1 KiB of stack. Debug builds spend 4 to
/// 5.5 KiB (nested AMF0 objects overflow 2 MiB from about 380 levels), and a stack overflow aborts
/// the whole process rather than failing the decode, so this runs in optimized builds only.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "debug builds spend 4-5.5 KiB of stack per level: 1000 levels overflow 2 MiB and abort"
)]
fn limit_of_1000_fits_a_2_mib_stack() {
    for (what, bytes, format, offset) in megabyte_nestings() {
        assert_too_deep_on(2 << 20, what, &bytes, format, 1000, offset(1000));
    }
}

/// Values exactly `depth` containers deep, complete (so they decode), of the kinds that cost the
/// most stack per level.
fn complete_nestings(depth: usize) -> Vec<(&'static str, Vec<u8>, Format)> {
    let inner = depth - 1;
    vec![
        (
            "AMF3 arrays",
            concat(&[&[0x09, 0x03, 0x01].repeat(inner), &[0x09, 0x01, 0x01]]),
            Format::Amf3,
        ),
        // Anonymous dynamic objects, member "a" holding the next; the innermost holds null, then
        // every object's member list ends.
        (
            "AMF3 anonymous objects",
            concat(&[
                &[0x0a, 0x0b, 0x01, 0x03, 0x61],
                &[0x0a, 0x01, 0x00].repeat(inner),
                &[0x01],
                &[0x01].repeat(depth),
            ]),
            Format::Amf3,
        ),
        // Typed objects of class "C" with one sealed member "a", by trait reference after the first.
        (
            "AMF3 typed objects",
            concat(&[
                &[0x0a, 0x13, 0x03, 0x43, 0x03, 0x61],
                &[0x0a, 0x01].repeat(inner),
                &[0x01],
            ]),
            Format::Amf3,
        ),
        (
            "AMF0 objects",
            concat(&[
                &[0x03, 0x00, 0x01, 0x61].repeat(depth),
                &[0x05],
                &[0x00, 0x00, 0x09].repeat(depth),
            ]),
            Format::Amf0,
        ),
    ]
}

/// The deepest `--max-depth` the command line accepts is safe for a server: a value that deep
/// decodes (owned and as a view), encodes back to the same bytes, renders as JSON and as text,
/// and drops, on a 2 MiB thread. Optimized builds accept 512 levels (1,200 still pass, 1,500
/// overflow); debug builds spend several times the stack per level (256 pass, 320 overflow) and
/// accept the default, 128.
#[test]
fn the_deepest_limit_the_command_line_accepts_fits_a_worker_stack() {
    let depth = Limits::MAX_SAFE_DEPTH;
    let stack = 2 << 20;
    let limits = Limits {
        max_depth: depth,
        ..Limits::default()
    };
    for (what, bytes, format) in complete_nestings(depth) {
        let view_bytes = bytes.clone();
        bounded_on(stack, what, move || {
            let value = codec::decode_with(Bytes::from(bytes.clone()), format, &options(depth))
                .unwrap_or_else(|error| panic!("{what}: {error}"));
            let encoded = match format {
                Format::Amf0 => codec::amf0::encode(&value, &limits),
                Format::Amf3 => codec::amf3::encode(&value, &limits),
            };
            assert_eq!(encoded.as_deref(), Ok(&bytes[..]), "{what} re-encoded");
            let json = codec::json::canonical_json_text(&value, format, &limits)
                .unwrap_or_else(|error| panic!("{what}: {error}"));
            assert!(json.len() > depth, "{what}: {json}");
            codec::display::tree(&value, format, &limits)
                .unwrap_or_else(|error| panic!("{what}: {error}"));
            assert!(!codec::display::compact(&value, format, &limits, 200).is_empty());
        });
        if format == Format::Amf3 {
            bounded_on(stack, what, move || {
                let mut decoder = ViewDecoder::new(options(depth));
                let outer = decoder
                    .decode(&view_bytes)
                    .map(|view| matches!(view, View::Array(_) | View::Object(_)));
                assert_eq!(outer, Ok(true), "{what} as a view");
            });
        }
        // One level deeper is refused, not attempted.
        let (_, deeper, _) = complete_nestings(depth + 1)
            .into_iter()
            .find(|(name, _, _)| *name == what)
            .expect("the same kind");
        let error = bounded_on(stack, what, move || {
            codec::decode_with(Bytes::from(deeper), format, &options(depth))
        })
        .expect_err("one level too deep");
        assert_eq!(
            error.kind,
            DecodeErrorKind::TooDeep { limit: depth },
            "{what}"
        );
    }
}

#[test]
fn switching_to_amf3_does_not_reset_the_depth() {
    // 100 strict arrays, the AVM+ switch, then AMF3 arrays: the limit counts both.
    let bytes = repeated(
        &concat(&[&[0x0a, 0x00, 0x00, 0x00, 0x01].repeat(100), &[0x11]]),
        &[0x09, 0x03, 0x01],
        MEGABYTE,
    );
    assert_too_deep(
        "strict arrays then AMF3 arrays",
        &bytes,
        Format::Amf0,
        |limit| 501 + 3 * (limit - 100),
    );
}

#[test]
fn values_at_the_depth_limit_decode_encode_and_render() {
    let limit = Limits::DEFAULT_MAX_DEPTH;
    // `limit` nested AMF3 arrays: the innermost is empty.
    let at_limit = concat(&[&[0x09, 0x03, 0x01].repeat(limit - 1), &[0x09, 0x01, 0x01]]);
    let value = decode(&at_limit, Format::Amf3).expect("decodes at the limit");
    assert_eq!(
        codec::encode(&value, Format::Amf3).expect("encodes at the limit"),
        at_limit
    );
    let json = render(&value, Format::Amf3).expect("renders at the limit");
    assert_eq!(
        serde_json::to_string(&json).expect("serializes"),
        format!("{}{}", "[".repeat(limit), "]".repeat(limit))
    );
    // One more is refused by the decoder, and by the encoder.
    let past = concat(&[&[0x09, 0x03, 0x01], &at_limit]);
    let error = decode(&past, Format::Amf3).expect_err("one level too deep");
    assert_eq!(
        (error.kind, error.offset),
        (DecodeErrorKind::TooDeep { limit }, 3 * limit)
    );
    let deeper = Value::array(vec![value]);
    assert_eq!(
        codec::encode(&deeper, Format::Amf3),
        Err(EncodeError::TooDeep { limit })
    );

    // AMF0 likewise.
    let at_limit = concat(&[
        &[0x0a, 0x00, 0x00, 0x00, 0x01].repeat(limit - 1),
        &[0x0a, 0x00, 0x00, 0x00, 0x00],
    ]);
    let value = decode(&at_limit, Format::Amf0).expect("decodes at the limit");
    assert_eq!(
        codec::encode(&value, Format::Amf0).expect("encodes at the limit"),
        at_limit
    );
    render(&value, Format::Amf0).expect("renders at the limit");
    let deeper = Value::array(vec![value]);
    assert_eq!(
        codec::encode(&deeper, Format::Amf0),
        Err(EncodeError::TooDeep { limit })
    );

    // Through an AVM+ switch the AMF3 part continues the count, in the encoder as in the decoder:
    // 127 strict arrays around an AMF3-only array around an empty array is 129 containers.
    let mut deeper = Value::Array(Box::new(Array {
        assoc: vec![("k".into(), Value::Null)],
        dense: vec![Value::array(Vec::new())],
    }));
    for _ in 1..limit {
        deeper = Value::array(vec![deeper]);
    }
    assert_eq!(
        codec::encode(&deeper, Format::Amf0),
        Err(EncodeError::TooDeep { limit })
    );
    let bytes = concat(&[
        &[0x0a, 0x00, 0x00, 0x00, 0x01].repeat(limit - 1),
        &[0x11, 0x09, 0x03, 0x03, 0x6b, 0x01, 0x01, 0x09, 0x01, 0x01],
    ]);
    let error = decode(&bytes, Format::Amf0).expect_err("129 containers");
    assert_eq!(
        (error.kind, error.offset),
        (DecodeErrorKind::TooDeep { limit }, 5 * (limit - 1) + 7)
    );
}

#[test]
fn amf0_value_at_the_depth_limit_through_avmplus_renders() {
    // 127 strict arrays, the AVM+ switch and an empty AMF3 array: 128 containers. The decoder and
    // the encoder accept it, since the switch is not a container; so must the renderer (it once
    // counted the switch as a level and returned `RenderError::TooDeep { limit: 128 }`).
    let limit = Limits::DEFAULT_MAX_DEPTH;
    let bytes = concat(&[
        &[0x0a, 0x00, 0x00, 0x00, 0x01].repeat(limit - 1),
        &[0x11, 0x09, 0x01, 0x01],
    ]);
    let value = decode(&bytes, Format::Amf0).expect("decodes at the limit");
    assert_eq!(
        codec::encode(&value, Format::Amf0).expect("encodes at the limit"),
        bytes
    );
    render(&value, Format::Amf0).expect("renders what the decoder accepted");
}

#[test]
fn references_cannot_render_deeper_than_the_limit() {
    // [a, b]: a is 100 nested arrays around null; b is 100 nested arrays around a reference to a.
    // Each decodes 101 deep, but b's reference would render 201 deep.
    let nest = [0x09, 0x03, 0x01].repeat(100);
    let bytes = concat(&[&[0x09, 0x05, 0x01], &nest, &[0x01], &nest, &[0x09, 0x02]]);
    let value = decode(&bytes, Format::Amf3).expect("decodes: each part is within the limit");
    let error =
        bounded("rendering", move || render(&value, Format::Amf3)).expect_err("renders too deep");
    assert_eq!(error, RenderError::TooDeep { limit: 128 });

    let value = decode(&bytes, Format::Amf3).expect("decodes");
    let roomy = Limits {
        max_depth: 300,
        ..Limits::default()
    };
    let json = bounded("rendering", move || {
        to_canonical_json(&value, Format::Amf3, &roomy)
    });
    let json =
        serde_json::to_string(&json.expect("renders with a higher limit")).expect("serializes");
    assert_eq!(json.matches('[').count(), 1 + 100 + 100 + 100);
}

// ---------------------------------------------------------------------------------------------
// Reference expansion
// ---------------------------------------------------------------------------------------------

/// An array of `levels` arrays: the first is empty and each next one holds two references to the
/// one before, so that fully expanded the last holds 2^(levels - 1) empty arrays.
fn billion_laughs(levels: u32) -> Vec<u8> {
    let mut bytes = concat(&[&[0x09], &inline(levels), &[0x01]]);
    bytes.extend([0x09, 0x01, 0x01]);
    for level in 1..levels {
        // The outer array is entry 0, so the array of level k - 1 is entry k.
        let reference = u29(level << 1);
        bytes.extend(concat(&[
            &[0x09, 0x05, 0x01, 0x09],
            &reference,
            &[0x09],
            &reference,
        ]));
    }
    bytes
}

#[test]
fn billion_laughs_decodes_in_linear_time_and_stops_at_the_budget() {
    let bytes = billion_laughs(60);
    let value = decode_bounded(
        "decoding 60 levels of doubled references",
        &bytes,
        Format::Amf3,
    )
    .expect("decodes: references stay indices");
    let Value::Array(array) = &value else {
        panic!("expected an array, got {value:?}");
    };
    assert_eq!(array.dense.len(), 60);
    assert_eq!(
        array.dense[59],
        Value::array(vec![Value::Reference(59), Value::Reference(59)])
    );

    let error =
        render_bounded("rendering", &value, Format::Amf3).expect_err("the expansion is 2^59");
    let RenderError::ExpansionBudget { budget, size } = error else {
        panic!("expected the expansion budget, got {error:?}");
    };
    assert!(
        size > 0 && size < bytes.len() * 2,
        "size {size} is the value as decoded"
    );
    assert_eq!(budget, Limits::default().expansion_budget(size));

    // Re-encoding writes the references back: the same bytes, not an expansion.
    let encoded =
        bounded("encoding", move || codec::encode(&value, Format::Amf3)).expect("encodes");
    assert_eq!(encoded, bytes);

    // The borrowed view keeps references as indices too.
    let view_levels = bounded("decoding 60 levels into a view", move || {
        let mut decoder = ViewDecoder::default();
        match decoder.decode(&bytes) {
            Ok(View::Array(array)) => Some(array.dense.len()),
            _ => None,
        }
    });
    assert_eq!(view_levels, Some(60));

    // A few levels fit the budget and expand fully.
    let small = decode(&billion_laughs(6), Format::Amf3).expect("decodes");
    let json = render(&small, Format::Amf3).expect("32 leaves fit the budget");
    assert_eq!(
        serde_json::to_string(&json[5])
            .expect("serializes")
            .matches("[]")
            .count(),
        32
    );
}

#[test]
fn string_references_share_one_buffer() {
    // An array of a 256-byte string and 100,000 references to it (`06 00`).
    const REFS: u32 = 100_000;
    let long = "\u{e9}".repeat(128);
    let bytes = concat(&[
        &[0x09],
        &inline(REFS + 1),
        &[0x01, 0x06],
        &inline(long.len() as u32),
        long.as_bytes(),
        &[0x06, 0x00].repeat(REFS as usize),
    ]);
    let value = decode_bounded("decoding 100,000 string references", &bytes, Format::Amf3)
        .expect("decodes");
    let Value::Array(array) = &value else {
        panic!("expected an array, got {value:?}");
    };
    assert_eq!(array.dense.len(), REFS as usize + 1);
    let first = array.dense[0].as_str().expect("a string");
    assert_eq!(first, long);
    for item in &array.dense {
        let text = item.as_str().expect("a string");
        assert_eq!(
            text.as_ptr(),
            first.as_ptr(),
            "every reference shares the first string's bytes"
        );
    }

    // Rendering copies each string once: either within the budget or stopped by it.
    match render_bounded("rendering", &value, Format::Amf3) {
        Ok(Json::Array(items)) => {
            assert_eq!(items.len(), REFS as usize + 1);
            assert!(
                items
                    .iter()
                    .all(|item| item.as_str() == Some(long.as_str()))
            );
        }
        Ok(other) => panic!(
            "expected a JSON array, got {}",
            other.to_string().chars().take(80).collect::<String>()
        ),
        Err(error) => assert!(
            matches!(error, RenderError::ExpansionBudget { .. }),
            "only the budget may stop it: {error:?}"
        ),
    }
}

#[test]
fn object_references_to_a_long_string_stop_at_the_budget() {
    // [[s], ref, ref, ...]: 100,000 object references to an array holding a 1,000-byte string.
    // Each costs 2 bytes but renders the string again, which the budget counts.
    const REFS: u32 = 100_000;
    let long = "x".repeat(1000);
    let bytes = concat(&[
        &[0x09],
        &inline(REFS + 1),
        &[0x01, 0x09, 0x03, 0x01, 0x06],
        &inline(long.len() as u32),
        long.as_bytes(),
        &[0x09, 0x02].repeat(REFS as usize),
    ]);
    let value = decode_bounded("decoding", &bytes, Format::Amf3).expect("decodes");
    let error = render_bounded("rendering", &value, Format::Amf3).expect_err("100 MB of expansion");
    assert!(
        matches!(error, RenderError::ExpansionBudget { .. }),
        "{error:?}"
    );
    assert_eq!(codec::encode(&value, Format::Amf3).expect("encodes"), bytes);
}

// ---------------------------------------------------------------------------------------------
// Huge declared lengths and counts
// ---------------------------------------------------------------------------------------------

/// Expects `LengthPastEnd` declaring `declared` with `available` bytes left, at `offset`.
fn assert_length_past_end(
    name: &str,
    bytes: &[u8],
    format: Format,
    offset: usize,
    declared: u64,
    available: usize,
) {
    let error = decode_bounded(name, bytes, format).expect_err(name);
    match error.kind {
        DecodeErrorKind::LengthPastEnd {
            declared: got_declared,
            available: got_available,
            ..
        } => {
            assert_eq!(
                (got_declared, got_available),
                (declared, available),
                "{name}: {error}"
            );
        }
        other => panic!("{name}: expected LengthPastEnd, got {other:?}"),
    }
    assert_eq!(
        error.offset, offset,
        "{name}: offset of the declared length"
    );
}

#[test]
fn huge_amf3_lengths_fail_before_allocating() {
    let max = inline(U29_INLINE_MAX);
    assert_eq!(max, [0xff, 0xff, 0xff, 0xff]);
    let declared = u64::from(U29_INLINE_MAX);
    let cases: [(&str, Vec<u8>, usize, usize); 14] = [
        ("string", concat(&[&[0x06], &max, b"a"]), 1, 1),
        ("XMLDocument", concat(&[&[0x07], &max, b"<a/>"]), 1, 4),
        ("XML", concat(&[&[0x0b], &max, b"<a/>"]), 1, 4),
        ("ByteArray", concat(&[&[0x0c], &max, &[1, 2, 3]]), 1, 3),
        ("array count", concat(&[&[0x09], &max, &[0x01]]), 1, 1),
        (
            "Vector.<int> count",
            concat(&[&[0x0d], &max, &[0x00, 0, 0, 0, 1]]),
            1,
            4,
        ),
        (
            "Vector.<uint> count",
            concat(&[&[0x0e], &max, &[0x00, 0, 0, 0, 1]]),
            1,
            4,
        ),
        (
            "Vector.<Number> count",
            concat(&[&[0x0f], &max, &[0x00, 0, 0, 0, 0, 0, 0, 0, 0]]),
            1,
            8,
        ),
        (
            "Vector.<Object> count",
            concat(&[&[0x10], &max, &[0x00, 0x03, 0x2a]]),
            1,
            2,
        ),
        (
            "Dictionary count",
            concat(&[&[0x11], &max, &[0x00, 0x01, 0x01]]),
            1,
            2,
        ),
        ("array key", concat(&[&[0x09, 0x01], &max]), 2, 0),
        ("class name", concat(&[&[0x0a, 0x0b], &max, b"C"]), 2, 1),
        (
            "dynamic member name",
            concat(&[&[0x0a, 0x0b, 0x01], &max]),
            3,
            0,
        ),
        (
            "string inside an array",
            concat(&[&[0x09, 0x03, 0x01, 0x06], &max, b"ab"]),
            4,
            2,
        ),
    ];
    for (name, bytes, offset, available) in cases {
        assert_length_past_end(name, &bytes, Format::Amf3, offset, declared, available);
    }
}

/// An object header declaring 2^25 - 1 sealed members (inline, inline traits, not dynamic), then
/// the class name "" and two bytes: `0a ff ff ff f3 01 03 61`.
fn huge_sealed_count() -> (u32, Vec<u8>) {
    let sealed = (1u32 << 25) - 1;
    let header = u29((sealed << 4) | 0b0011);
    assert_eq!(header, [0xff, 0xff, 0xff, 0xf3]);
    (sealed, concat(&[&[0x0a], &header, &[0x01, 0x03, 0x61]]))
}

#[test]
fn huge_amf3_sealed_member_count_fails_before_allocating() {
    let (sealed, bytes) = huge_sealed_count();
    let error = decode_bounded("sealed count", &bytes, Format::Amf3).expect_err("refused");
    // Each sealed member needs at least a name and a value: 2 bytes each, 3 left after the header.
    assert!(
        matches!(error.kind, DecodeErrorKind::LengthPastEnd { declared, available: 3, .. } if declared == u64::from(sealed)),
        "{error:?}"
    );
}

/// Errors about an object's traits point at the object header, where the sealed count and the
/// trait reference are, as errors about an array's count, a string reference or an object
/// reference point at their U29. (They once pointed past the header: offset 5 for the sealed count
/// below, and offset 2, past the end of the input, for `0a 05`.)
#[test]
fn object_header_errors_point_at_the_header() {
    let (_, bytes) = huge_sealed_count();
    let error = decode(&bytes, Format::Amf3).expect_err("refused");
    assert_eq!(error.offset, 1, "sealed count: {error}");

    for (hex_bytes, offset) in [("0a05", 1), ("0903010a05", 4)] {
        let error =
            decode(&hex::decode(hex_bytes).expect("test hex"), Format::Amf3).expect_err("refused");
        assert!(
            matches!(
                error.kind,
                DecodeErrorKind::ReferenceOutOfRange {
                    index: 1,
                    len: 0,
                    ..
                }
            ),
            "{hex_bytes}: {error:?}"
        );
        assert_eq!(
            error.offset, offset,
            "trait reference in {hex_bytes}: {error}"
        );
    }
}

#[test]
fn huge_amf0_lengths_fail_before_allocating() {
    let cases: [(&str, Vec<u8>, usize, u64, usize); 7] = [
        ("string", vec![0x02, 0xff, 0xff, b'a'], 1, 0xffff, 1),
        (
            "long string",
            vec![0x0c, 0xff, 0xff, 0xff, 0xff, b'a'],
            1,
            0xffff_ffff,
            1,
        ),
        (
            "strict array",
            vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x05],
            1,
            0xffff_ffff,
            1,
        ),
        (
            "XML document",
            vec![0x0f, 0xff, 0xff, 0xff, 0xff],
            1,
            0xffff_ffff,
            0,
        ),
        (
            "typed object class name",
            vec![0x10, 0xff, 0xff, b'C'],
            1,
            0xffff,
            1,
        ),
        ("member name", vec![0x03, 0xff, 0xff], 1, 0xffff, 0),
        (
            "string after AVM+",
            concat(&[&[0x11, 0x06], &[0xff; 4], b"a"]),
            2,
            u64::from(U29_INLINE_MAX),
            1,
        ),
    ];
    for (name, bytes, offset, declared, available) in cases {
        assert_length_past_end(name, &bytes, Format::Amf0, offset, declared, available);
    }
}

#[test]
fn huge_amf0_ecma_count_is_only_a_hint() {
    let bytes = [0x08, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x09];
    let value = decode_bounded("ECMA array", &bytes, Format::Amf0).expect("the count is ignored");
    assert_eq!(value, Value::EcmaArray(Box::default()));
}

/// A truncated input: what it is, its bytes, its format, and the offset, bytes needed and bytes
/// available that its `UnexpectedEnd` error must report.
type Truncated = (&'static str, &'static [u8], Format, usize, usize, usize);

#[test]
fn truncated_fixed_size_items_are_unexpected_end() {
    let cases: [Truncated; 5] = [
        ("AMF3 double", &[0x05, 0x3f, 0xf0], Format::Amf3, 1, 8, 2),
        ("AMF3 date", &[0x08, 0x01, 0x00], Format::Amf3, 2, 8, 1),
        ("AMF3 U29", &[0x04, 0x80, 0x80], Format::Amf3, 3, 1, 0),
        ("AMF0 number", &[0x00, 0x3f], Format::Amf0, 1, 8, 1),
        (
            "AMF0 strict array count",
            &[0x0a, 0x00, 0x00],
            Format::Amf0,
            1,
            4,
            2,
        ),
    ];
    for (name, bytes, format, offset, needed, available) in cases {
        let error = decode(bytes, format).expect_err(name);
        assert!(
            matches!(error.kind, DecodeErrorKind::UnexpectedEnd { needed: n, available: a, .. } if (n, a) == (needed, available)),
            "{name}: {error:?}"
        );
        assert_eq!(error.offset, offset, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// `split_frame` and the tokio codec both refuse `bytes` at once, leaving no "need more" wait.
fn assert_frame_refused(bytes: &[u8]) -> FrameError {
    let mut codec = AmfSocketCodec::default();
    let mut buffer = BytesMut::from(bytes);
    assert!(
        codec.decode(&mut buffer).is_err(),
        "the codec refuses {bytes:02x?}"
    );
    let mut buffer = BytesMut::from(bytes);
    let error = frame::split_frame(&mut buffer, frame::DEFAULT_MAX_FRAME_LEN).expect_err("refused");
    assert!(
        buffer.capacity() < MEGABYTE,
        "no room reserved for the declared payload"
    );
    error
}

#[test]
fn frame_header_of_four_gibibytes_is_refused_at_once() {
    for bytes in [
        &[0xff, 0xff, 0xff, 0xff][..],
        &[0xff, 0xff, 0xff, 0xff, 0x0a, 0x0b][..],
    ] {
        match assert_frame_refused(bytes) {
            FrameError::TooLarge { len, max, header } => {
                assert_eq!(len, 0xffff_ffff);
                assert_eq!(max, frame::DEFAULT_MAX_FRAME_LEN);
                assert_eq!(header, "ffffffff");
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
    // Just past the cap is refused as well; at the cap, the header is fine and more is needed.
    let past = (frame::DEFAULT_MAX_FRAME_LEN as u32 + 1).to_be_bytes();
    assert!(matches!(
        assert_frame_refused(&past),
        FrameError::TooLarge { .. }
    ));
    let mut at_cap = BytesMut::from(&(frame::DEFAULT_MAX_FRAME_LEN as u32).to_be_bytes()[..]);
    assert!(matches!(
        frame::split_frame(&mut at_cap, frame::DEFAULT_MAX_FRAME_LEN),
        Ok(None)
    ));
}

#[test]
fn zero_length_frame_is_refused() {
    for bytes in [&[0u8, 0, 0, 0][..], &[0, 0, 0, 0, 0x01][..]] {
        assert!(matches!(assert_frame_refused(bytes), FrameError::Empty));
    }
    // Three bytes are not a header yet.
    let mut buffer = BytesMut::from(&[0u8, 0, 0][..]);
    assert!(matches!(
        frame::split_frame(&mut buffer, frame::DEFAULT_MAX_FRAME_LEN),
        Ok(None)
    ));
}

#[test]
fn policy_file_request_read_as_a_header_is_refused() {
    let request = b"<policy-file-request/>\0";
    for bytes in [&request[..], &request[..4]] {
        match assert_frame_refused(bytes) {
            FrameError::TooLarge { len, header, .. } => {
                assert_eq!(len, 1_014_001_516);
                assert_eq!(header, "3c706f6c");
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cycles
// ---------------------------------------------------------------------------------------------

fn assert_cycle(name: &str, hex_bytes: &str, format: Format, expected: Json) {
    let bytes = hex::decode(hex_bytes).expect("test hex");
    let value = decode(&bytes, format).unwrap_or_else(|e| panic!("{name} decodes: {e}"));
    assert!(value.contains_reference(), "{name}: kept as a reference");
    assert_eq!(render(&value, format).expect("renders"), expected, "{name}");
    let encoded = codec::encode(&value, format).unwrap_or_else(|e| panic!("{name} encodes: {e}"));
    assert_eq!(
        hex::encode(encoded),
        hex_bytes,
        "{name} re-encodes to the same bytes"
    );
}

#[test]
fn cycles_render_as_markers_and_re_encode_identically() {
    assert_cycle(
        "object holding itself",
        "0a0b010973656c660a0001",
        Format::Amf3,
        json!({"$class": "", "self": {"$cycle": 0}}),
    );
    // A: {child: B}, B: {parent: A}; B's traits are a trait reference to A's.
    assert_cycle(
        "two-level cycle",
        "0a0b010b6368696c640a010d706172656e740a000101",
        Format::Amf3,
        json!({"$class": "", "child": {"$class": "", "parent": {"$cycle": 0}}}),
    );
    assert_cycle(
        "array holding itself",
        "0903010900",
        Format::Amf3,
        json!([{"$cycle": 0}]),
    );
    // Four nested arrays; the innermost points back to entry 1 (the second array), not the root.
    assert_cycle(
        "cycle below the root",
        "0903010903010903010903010902",
        Format::Amf3,
        json!([[[[{"$cycle": 1}]]]]),
    );
    assert_cycle(
        "dictionary keyed by itself",
        "110300110001",
        Format::Amf3,
        json!({"$dict": [[{"$cycle": 0}, null]]}),
    );
    let collection = format!(
        "0a0743{}0903010a00",
        hex::encode(ARRAY_COLLECTION.as_bytes())
    );
    assert_cycle(
        "ArrayCollection holding itself",
        &collection,
        Format::Amf3,
        json!({"$class": ARRAY_COLLECTION, "$ext": [{"$cycle": 0}]}),
    );
    assert_cycle(
        "AMF0 object holding itself",
        "03000473656c66070000000009",
        Format::Amf0,
        json!({"$class": "", "self": {"$cycle": 0}}),
    );
    assert_cycle(
        "AMF0 strict array holding an object holding the array",
        "0a0000000103000170070000000009",
        Format::Amf0,
        json!([{"$class": "", "p": {"$cycle": 0}}]),
    );
    // A shared reference that closes no cycle is written out in full.
    assert_cycle(
        "shared, not cyclic",
        "0905010901010902",
        Format::Amf3,
        json!([[], []]),
    );
}

// ---------------------------------------------------------------------------------------------
// Externalizable objects
// ---------------------------------------------------------------------------------------------

fn unknown_externalizable(error: &DecodeError) -> (&str, usize, &str) {
    match &error.kind {
        DecodeErrorKind::UnknownExternalizable {
            class_name,
            remaining,
            remainder_hex,
        } => (class_name, *remaining, remainder_hex),
        other => panic!("expected UnknownExternalizable, got {other:?}"),
    }
}

#[test]
fn unknown_externalizable_class_is_named_with_the_remainder() {
    // Object header 07: inline, inline traits, externalizable; class "Foo"; then its unknown body.
    let bytes = hex::decode("0a0707466f6fdeadbeef").expect("test hex");
    let error = decode(&bytes, Format::Amf3).expect_err("the body cannot be parsed");
    assert_eq!(unknown_externalizable(&error), ("Foo", 4, "deadbeef"));
    assert_eq!(error.offset, 6, "where the unknown body starts");
    let message = error.to_string();
    assert!(
        message.contains("\"Foo\"") && message.contains("deadbeef"),
        "{message}"
    );

    // Inside an array, with a long remainder: the hex stops after 64 bytes.
    let body: Vec<u8> = (0..100).collect();
    let bytes = concat(&[&hex::decode("0903010a0707466f6f").expect("test hex"), &body]);
    let error = decode(&bytes, Format::Amf3).expect_err("the body cannot be parsed");
    let (class_name, remaining, remainder_hex) = unknown_externalizable(&error);
    assert_eq!((class_name, remaining), ("Foo", 100));
    assert_eq!(remainder_hex, hex::encode(&body[..64]));
    assert_eq!(error.offset, 9);

    // Through AMF0's AVM+ switch as well.
    let bytes = hex::decode("110a0707466f6f01").expect("test hex");
    let error = decode(&bytes, Format::Amf0).expect_err("the body cannot be parsed");
    assert_eq!(unknown_externalizable(&error), ("Foo", 1, "01"));
    assert_eq!(error.offset, 7);
}

#[test]
fn array_collection_is_unknown_without_its_registration() {
    let bytes = hex::decode(format!(
        "0a0743{}090101",
        hex::encode(ARRAY_COLLECTION.as_bytes())
    ))
    .expect("test hex");
    let value = decode(&bytes, Format::Amf3).expect("known by default");
    assert_eq!(
        render(&value, Format::Amf3).expect("renders"),
        json!({"$class": ARRAY_COLLECTION, "$ext": []})
    );

    let options = DecodeOptions {
        externals: ExternalRegistry::empty(),
        ..DecodeOptions::default()
    };
    let error = codec::decode_with(Bytes::from(bytes.clone()), Format::Amf3, &options)
        .expect_err("unknown");
    assert_eq!(
        unknown_externalizable(&error),
        (ARRAY_COLLECTION, 3, "090101")
    );
    assert_eq!(error.offset, bytes.len() - 3);
}

// ---------------------------------------------------------------------------------------------
// Dangling references
// ---------------------------------------------------------------------------------------------

/// An input whose reference points one past its table, and the error it must give.
struct Dangling {
    name: &'static str,
    hex: &'static str,
    format: Format,
    table: Table,
    index: u32,
    len: usize,
    offset: usize,
}

#[test]
fn references_one_past_the_table_are_refused() {
    let cases = [
        // [ref 1]: only the array itself (entry 0) exists.
        Dangling {
            name: "AMF3 object",
            hex: "0903010902",
            format: Format::Amf3,
            table: Table::Objects,
            index: 1,
            len: 1,
            offset: 4,
        },
        // ["", ref 0]: the empty string never enters the string table.
        Dangling {
            name: "AMF3 string",
            hex: "09050106010600",
            format: Format::Amf3,
            table: Table::Strings,
            index: 0,
            len: 0,
            offset: 6,
        },
        Dangling {
            name: "AMF3 string after one",
            hex: "0905010603610602",
            format: Format::Amf3,
            table: Table::Strings,
            index: 1,
            len: 1,
            offset: 7,
        },
        // [ref 1] in AMF0: only the strict array (entry 0) exists.
        Dangling {
            name: "AMF0 object",
            hex: "0a00000001070001",
            format: Format::Amf0,
            table: Table::Objects,
            index: 1,
            len: 1,
            offset: 6,
        },
        Dangling {
            name: "AMF0 reference first",
            hex: "070000",
            format: Format::Amf0,
            table: Table::Objects,
            index: 0,
            len: 0,
            offset: 1,
        },
    ];
    for case in cases {
        let bytes = hex::decode(case.hex).expect("test hex");
        let error = decode(&bytes, case.format).expect_err(case.name);
        assert_eq!(
            error.kind,
            DecodeErrorKind::ReferenceOutOfRange {
                table: case.table,
                index: case.index,
                len: case.len,
            },
            "{}",
            case.name
        );
        assert_eq!(error.offset, case.offset, "{}", case.name);
    }
    // The last valid index of each is accepted.
    for (hex_bytes, format) in [
        ("0903010900", Format::Amf3),
        ("0905010603610600", Format::Amf3),
        ("0a00000001070000", Format::Amf0),
    ] {
        decode(&hex::decode(hex_bytes).expect("test hex"), format).expect(hex_bytes);
    }
}
