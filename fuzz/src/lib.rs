//! What the fuzz targets share: the invariants every decoded value must keep (bounded size,
//! rendering within limits, a strict prefix never decodes, re-encoding is stable, the borrowed
//! AMF3 view agrees with the owned value) and a generator
//! of arbitrary AMF values driven by the fuzzer's bytes.

use amf_bench::codec::externals::{ARRAY_COLLECTION, OBJECT_PROXY};
use amf_bench::codec::graph::tree_cost;
use amf_bench::codec::json::to_canonical_json;
use amf_bench::codec::{
    self, Array, DecodeOptions, Dictionary, Externalizable, Format, Member, Object, ObjectVector,
    RenderError, Str, Value, Vector, ViewDecoder, display,
};
use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use serde_json::Value as Json;

/// A decoded value may cost at most this many nodes and text bytes per input byte: a member name
/// or string reference of one or two bytes may stand for an inline string of up to 23 bytes.
pub const COST_PER_INPUT_BYTE: usize = 32;
/// ...plus this much for the smallest inputs.
pub const COST_SLACK: usize = 64;
/// The width asked of `display::compact`.
const COMPACT_CHARS: usize = 120;
/// What `compact` may add past the width: the ellipsis or the reason rendering stopped.
const COMPACT_SLACK: usize = 200;

/// Decodes `data` as one value of `format` with the default options and checks what must hold of
/// the result. Returns the value, if it decoded.
pub fn decode_and_check(data: &[u8], format: Format) -> Option<Value> {
    let options = DecodeOptions::shared_default();
    let decoded = codec::decode_with(Bytes::copy_from_slice(data), format, options);
    if format == Format::Amf3 {
        let mut decoder = ViewDecoder::new(options.clone());
        let viewed = decoder.decode(data).map(|view| view.to_value());
        // Through `Debug`, which shows every field: a NaN is not equal to itself.
        assert_eq!(
            format!("{viewed:?}"),
            format!("{decoded:?}"),
            "the view and the owned value disagree"
        );
    }
    let value = match decoded {
        Ok(value) => value,
        Err(error) => {
            assert!(
                error.offset <= data.len(),
                "error offset {} past the input's {} bytes: {error}",
                error.offset,
                data.len()
            );
            // The message is what users see: it must render.
            let _ = error.to_string();
            return None;
        }
    };
    let cost = tree_cost(&value, 0);
    assert!(
        cost <= COST_PER_INPUT_BYTE * data.len() + COST_SLACK,
        "{} input bytes decoded to a value of cost {cost}",
        data.len()
    );
    let json = to_canonical_json(&value, format, &options.limits);
    let tree = display::tree(&value, format, &options.limits);
    // The tree also counts its indentation against the expansion budget, so the two may
    // disagree on that budget alone; on anything else they must agree.
    let over_budget = |error: &RenderError| matches!(error, RenderError::ExpansionBudget { .. });
    match (json.as_ref().err(), tree.as_ref().err()) {
        (Some(json), Some(tree)) if !over_budget(json) && !over_budget(tree) => {
            assert_eq!(
                json, tree,
                "canonical JSON and the readable tree fail differently"
            )
        }
        (Some(error), None) | (None, Some(error)) => assert!(
            over_budget(error),
            "canonical JSON and the readable tree disagree on whether the value renders: {error}"
        ),
        _ => {}
    }
    let line = display::compact(&value, format, &options.limits, COMPACT_CHARS);
    assert!(
        line.chars().count() <= COMPACT_CHARS + COMPACT_SLACK,
        "compact rendering of {} chars",
        line.chars().count()
    );
    if let Some((_, prefix)) = data.split_last() {
        assert!(
            codec::decode_with(Bytes::copy_from_slice(prefix), format, options).is_err(),
            "a strict prefix of a valid input decodes too"
        );
    }
    Some(value)
}

/// The canonical JSON of `value`, or the reason it does not render, as text to compare.
pub fn canonical(value: &Value, format: Format) -> std::result::Result<Json, String> {
    to_canonical_json(value, format, &DecodeOptions::shared_default().limits)
        .map_err(|error| error.to_string())
}

/// Checks that `value`, decoded from `format` input, re-encodes, that the encoding decodes to the
/// same canonical JSON, and that encoding that again gives the same bytes.
pub fn check_reencode(value: &Value, format: Format) {
    let first = codec::encode(value, format)
        .unwrap_or_else(|error| panic!("a decoded value does not encode: {error}"));
    check_encoding_round_trips(value, format, first);
}

/// Checks that `encoded`, the encoding of `value` in `format`, decodes to a value with the same
/// canonical JSON, whose own encoding is `encoded` again.
pub fn check_encoding_round_trips(value: &Value, format: Format, encoded: Vec<u8>) {
    let again = codec::decode(Bytes::from(encoded.clone()), format).unwrap_or_else(|error| {
        panic!(
            "our own encoding does not decode: {error}\n{}",
            hex(&encoded)
        )
    });
    assert_eq!(
        canonical(value, format),
        canonical(&again, format),
        "the canonical JSON changed through encode and decode"
    );
    let second = codec::encode(&again, format)
        .unwrap_or_else(|error| panic!("a decoded value does not encode: {error}"));
    assert!(
        encoded == second,
        "re-encoding a decoded value changed its bytes:\n{}\n{}",
        hex(&encoded),
        hex(&second)
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Deepest nesting the generator builds: far below the codec's limit, enough for every shape.
const MAX_GENERATED_DEPTH: usize = 6;
/// Most items or members the generator puts in one container.
const MAX_GENERATED_ITEMS: usize = 6;

/// An arbitrary value to be encoded in `format`: for AMF3, every AMF3 type; for AMF0, the AMF0
/// types plus AMF3-only ones (written after an AVM+ switch). References are arbitrary small
/// indices, so some dangle and are refused by the encoder.
pub fn arbitrary_value(u: &mut Unstructured<'_>, format: Format) -> Result<Value> {
    generate(u, format, 0)
}

fn generate(u: &mut Unstructured<'_>, format: Format, depth: usize) -> Result<Value> {
    let leaf = depth >= MAX_GENERATED_DEPTH || u.is_empty();
    let choice = if leaf {
        u.int_in_range(0..=12)?
    } else {
        u.int_in_range(0..=20)?
    };
    Ok(match choice {
        0 => Value::Undefined,
        1 => Value::Null,
        2 => Value::Bool(u.arbitrary()?),
        3 => Value::Integer(integer(u)?),
        4 => Value::Double(double(u)?),
        5 | 6 => Value::String(text(u)?),
        7 => Value::Xml(text(u)?),
        8 => Value::XmlDocument(text(u)?),
        9 => Value::Date(double(u)?),
        10 => {
            let len = u.int_in_range(0..=16)?;
            Value::ByteArray(Bytes::copy_from_slice(u.bytes(len)?))
        }
        11 => match u.int_in_range(0..=2)? {
            0 => Value::VectorInt(Box::new(Vector {
                fixed: u.arbitrary()?,
                items: items(u, |u| u.arbitrary())?,
            })),
            1 => Value::VectorUint(Box::new(Vector {
                fixed: u.arbitrary()?,
                items: items(u, |u| u.arbitrary())?,
            })),
            _ => Value::VectorDouble(Box::new(Vector {
                fixed: u.arbitrary()?,
                items: items(u, double)?,
            })),
        },
        12 => Value::Reference(u.int_in_range(0..=4)?),
        13 | 14 => Value::object(members(u, format, depth)?),
        15 => {
            let members = members(u, format, depth)?;
            let sealed_count = u.int_in_range(0..=members.len())?;
            Value::Object(Box::new(Object {
                class_name: class_name(u)?,
                sealed_count,
                dynamic: sealed_count < members.len() || u.arbitrary()?,
                members,
            }))
        }
        16 => {
            // An associative array is AMF3-only: in AMF0 it is written after an AVM+ switch, so
            // what it holds is in an AMF3 scope (where an ECMA array has no marker of its own).
            let associative: bool = u.arbitrary()?;
            let scope = if associative { Format::Amf3 } else { format };
            let assoc = if associative {
                members(u, scope, depth)?
            } else {
                Vec::new()
            };
            Value::Array(Box::new(Array {
                assoc,
                dense: items(u, |u| generate(u, scope, depth + 1))?,
            }))
        }
        17 if format == Format::Amf0 => Value::EcmaArray(Box::new(members(u, format, depth)?)),
        17 => Value::VectorObject(Box::new(ObjectVector {
            fixed: u.arbitrary()?,
            type_name: class_name(u)?,
            items: items(u, |u| generate(u, Format::Amf3, depth + 1))?,
        })),
        18 => Value::Dictionary(Box::new(Dictionary {
            weak_keys: u.arbitrary()?,
            entries: items(u, |u| {
                Ok((
                    generate(u, Format::Amf3, depth + 1)?,
                    generate(u, Format::Amf3, depth + 1)?,
                ))
            })?,
        })),
        19 if format == Format::Amf0 => {
            Value::Avmplus(Box::new(generate(u, Format::Amf3, depth + 1)?))
        }
        _ => Value::Externalizable(Box::new(Externalizable {
            class_name: Str::new_static(if u.arbitrary()? {
                ARRAY_COLLECTION
            } else {
                OBJECT_PROXY
            }),
            body: generate(u, Format::Amf3, depth + 1)?,
        })),
    })
}

fn items<T>(
    u: &mut Unstructured<'_>,
    mut item: impl FnMut(&mut Unstructured<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let count = u.int_in_range(0..=MAX_GENERATED_ITEMS)?;
    (0..count).map(|_| item(u)).collect()
}

fn members(u: &mut Unstructured<'_>, format: Format, depth: usize) -> Result<Vec<Member>> {
    items(u, |u| Ok((text(u)?, generate(u, format, depth + 1)?)))
}

/// Integers near the edges of AMF3's 29-bit range (written as doubles beyond it) and anywhere.
fn integer(u: &mut Unstructured<'_>) -> Result<i32> {
    Ok(match u.int_in_range(0..=3)? {
        0 => u.int_in_range(-300..=300)?,
        1 => (1 << 28) + u.int_in_range(-3..=3)?,
        2 => -(1 << 28) + u.int_in_range(-3..=3)?,
        _ => u.arbitrary()?,
    })
}

/// Any bit pattern, signalling NaNs included, or a special value.
fn double(u: &mut Unstructured<'_>) -> Result<f64> {
    const SPECIAL: [f64; 8] = [
        0.0,
        -0.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        9_007_199_254_740_992.0,
        268_435_456.0,
        -268_435_457.0,
    ];
    Ok(if u.arbitrary()? {
        f64::from_bits(u.arbitrary()?)
    } else {
        *u.choose(&SPECIAL)?
    })
}

/// Text from a tiny alphabet (so that equal strings and references come up often), a string past
/// the 23 bytes kept inline, or arbitrary UTF-8.
fn text(u: &mut Unstructured<'_>) -> Result<Str> {
    Ok(match u.int_in_range(0..=3)? {
        0 => Str::new_static(u.choose(&["", "a", "b", "ab"])?),
        1 => Str::new_static("a string longer than twenty-three bytes"),
        _ => Str::from(u.arbitrary::<&str>()?),
    })
}

fn class_name(u: &mut Unstructured<'_>) -> Result<Str> {
    Ok(match u.int_in_range(0..=2)? {
        0 => Str::default(),
        1 => Str::new_static("com.example.A"),
        _ => text(u)?,
    })
}
