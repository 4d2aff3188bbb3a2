//! Properties of the AMF0/AMF3 codec over generated values and bytes: encoding then decoding keeps
//! the canonical JSON, re-encoding a decoded value reproduces the same bytes (string, trait and
//! object references included), arbitrary, framed and mutated bytes never make the decoder or the
//! renderer panic, the borrowed `View` decoder agrees with the owned one on all of those bytes, and
//! the independent `amf` 1.0.0 crate agrees with our encoder and our decoder in
//! both directions on every value it can represent.

use std::collections::HashSet;
use std::time::Duration;

use amf::Pair;
use amf_bench::codec::externals::ARRAY_COLLECTION;
use amf_bench::codec::json::{canonical_json_text, to_canonical_json};
use amf_bench::codec::{
    self, Array, Dictionary, Externalizable, Format, Limits, Member, Object, ObjectVector, Value,
    Vector, View, ViewDecoder,
};
use amf_bench::frame;
use amf_bench::rpc::{Envelope, EnvelopeHeader};
use bytes::{BufMut, Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::Union;
use serde_json::Value as Json;

/// Smallest integer AMF3 writes as an integer (and the `amf` crate accepts).
const INT_MIN: i32 = -(1 << 28);
/// Largest integer AMF3 writes as an integer (and the `amf` crate accepts).
const INT_MAX: i32 = (1 << 28) - 1;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // Nothing is written next to the test sources; a failure prints its minimal input.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// What to generate.
#[derive(Debug, Clone, Copy)]
struct Domain {
    /// Only what the `amf` crate can represent and encode: no externalizable objects (it rejects
    /// them), integers within 29 bits (its encoder panics outside), and dates that are
    /// non-negative whole milliseconds (it keeps a `Duration` and rejects negative, NaN and
    /// infinite dates).
    oracle: bool,
    /// Object references, cycles included. The `amf` crate's encoder cannot write them; its
    /// decoder reads them by copying their target and rejects cycles.
    references: bool,
}

const FULL: Domain = Domain {
    oracle: false,
    references: true,
};
const ORACLE: Domain = Domain {
    oracle: true,
    references: false,
};
const ORACLE_REFS: Domain = Domain {
    oracle: true,
    references: true,
};

fn weighted<T: std::fmt::Debug + 'static>(
    options: Vec<(u32, BoxedStrategy<T>)>,
) -> BoxedStrategy<T> {
    Union::new_weighted(options).boxed()
}

/// Text: short strings from a tiny alphabet (so that string references and the empty string come up
/// often) and arbitrary Unicode.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[ab]{0,2}",
        2 => any::<String>(),
        1 => "[a-zé€\u{1F600}\u{10FFFF}]{0,40}",
    ]
    .boxed()
}

/// A member name or associative key: never empty (that would end the member list on the wire).
fn name() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-c]{1,2}",
        1 => "[a-zA-Z_][a-zA-Z0-9_]{0,7}",
        1 => "\\PC{1,4}",
    ]
    .boxed()
}

fn class_name() -> BoxedStrategy<String> {
    prop_oneof![
        2 => "com\\.example\\.[A-C]",
        1 => "[A-Z][a-z]{0,5}",
        1 => "\\PC{1,6}",
    ]
    .boxed()
}

fn vector_type_name() -> BoxedStrategy<String> {
    prop_oneof![
        Just("*".to_owned()),
        Just(String::new()),
        Just("__AS3__.vec::Vector.<int>".to_owned()),
        class_name(),
    ]
    .boxed()
}

fn double() -> BoxedStrategy<f64> {
    let special = vec![
        0.0,
        -0.0,
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.5,
        9_007_199_254_740_992.0,
        -9_007_199_254_740_992.0,
        9_007_199_254_740_994.0,
        268_435_456.0,
        -268_435_457.0,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::MAX,
        f64::MIN,
    ];
    prop_oneof![
        4 => any::<f64>(),
        // Every bit pattern, signalling NaNs included: the bits must survive.
        2 => any::<u64>().prop_map(f64::from_bits),
        2 => prop::sample::select(special),
        2 => any::<i32>().prop_map(f64::from),
    ]
    .boxed()
}

fn integer(domain: Domain) -> BoxedStrategy<i32> {
    if domain.oracle {
        prop_oneof![
            3 => INT_MIN..=INT_MAX,
            2 => -200..200i32,
            1 => prop::sample::select(vec![INT_MIN, INT_MIN + 1, -1, 0, 127, 128, 16_383, 16_384, INT_MAX]),
        ]
        .boxed()
    } else {
        prop_oneof![
            3 => any::<i32>(),
            2 => -200..200i32,
            2 => (INT_MIN - 2)..=(INT_MIN + 2),
            2 => (INT_MAX - 2)..=(INT_MAX + 2),
            1 => prop::sample::select(vec![i32::MIN, i32::MAX]),
        ]
        .boxed()
    }
}

fn date(domain: Domain) -> BoxedStrategy<f64> {
    if domain.oracle {
        prop_oneof![
            3 => (0u64..4_102_444_800_000).prop_map(|ms| ms as f64),
            1 => (0u64..=(1 << 53)).prop_map(|ms| ms as f64),
            1 => Just(0.0),
        ]
        .boxed()
    } else {
        prop_oneof![
            3 => (-8_640_000_000_000_000i64..=8_640_000_000_000_000).prop_map(|ms| ms as f64),
            1 => double(),
        ]
        .boxed()
    }
}

/// Keeps the first member of each name: names are unique within an object.
fn unique(pairs: Vec<(String, Value)>) -> Vec<Member> {
    let mut seen = HashSet::new();
    pairs
        .into_iter()
        .filter(|(name, _)| seen.insert(name.clone()))
        .map(|(name, value)| (name.into(), value))
        .collect()
}

fn members(element: BoxedStrategy<Value>, max: usize) -> BoxedStrategy<Vec<Member>> {
    vec((name(), element), 0..=max).prop_map(unique).boxed()
}

/// A stand-in for an object reference, turned into a valid one (or null) by `fix_references`.
fn placeholder() -> BoxedStrategy<Value> {
    any::<u32>().prop_map(Value::Reference).boxed()
}

fn amf3_leaf(domain: Domain) -> BoxedStrategy<Value> {
    let mut options = vec![
        (1, Just(Value::Undefined).boxed()),
        (1, Just(Value::Null).boxed()),
        (1, any::<bool>().prop_map(Value::Bool).boxed()),
        (3, integer(domain).prop_map(Value::Integer).boxed()),
        (3, double().prop_map(Value::Double).boxed()),
        (4, text().prop_map(|t| Value::String(t.into())).boxed()),
        (1, text().prop_map(|t| Value::Xml(t.into())).boxed()),
        (1, text().prop_map(|t| Value::XmlDocument(t.into())).boxed()),
        (1, date(domain).prop_map(Value::Date).boxed()),
        (
            1,
            vec(any::<u8>(), 0..24)
                .prop_map(|bytes| Value::ByteArray(bytes.into()))
                .boxed(),
        ),
        (
            1,
            (any::<bool>(), vec(any::<i32>(), 0..6))
                .prop_map(|(fixed, items)| Value::VectorInt(Box::new(Vector { fixed, items })))
                .boxed(),
        ),
        (
            1,
            (any::<bool>(), vec(any::<u32>(), 0..6))
                .prop_map(|(fixed, items)| Value::VectorUint(Box::new(Vector { fixed, items })))
                .boxed(),
        ),
        (
            1,
            (any::<bool>(), vec(double(), 0..6))
                .prop_map(|(fixed, items)| Value::VectorDouble(Box::new(Vector { fixed, items })))
                .boxed(),
        ),
    ];
    if domain.references {
        options.push((2, placeholder()));
    }
    weighted(options)
}

fn amf3_container(
    domain: Domain,
    leaf: BoxedStrategy<Value>,
    element: BoxedStrategy<Value>,
) -> BoxedStrategy<Value> {
    let mut options = vec![
        (
            3,
            (members(element.clone(), 3), vec(element.clone(), 0..5))
                .prop_map(|(assoc, dense)| Value::Array(Box::new(Array { assoc, dense })))
                .boxed(),
        ),
        // Anonymous dynamic object.
        (
            3,
            members(element.clone(), 4).prop_map(Value::object).boxed(),
        ),
        // Typed object, all members sealed.
        (
            2,
            (class_name(), members(element.clone(), 4))
                .prop_map(|(class, members)| Value::typed_object(&class, members))
                .boxed(),
        ),
        // Sealed members then dynamic ones, typed or anonymous; with no dynamic members the
        // dynamic flag is free, so that traits differing only in that flag meet.
        (
            3,
            (
                prop_oneof![
                    Just(String::new()),
                    Just("com.example.A".to_owned()),
                    class_name()
                ],
                members(element.clone(), 3),
                any::<Index>(),
                any::<bool>(),
            )
                .prop_map(|(class, members, cut, dynamic)| {
                    let sealed_count = cut.index(members.len() + 1);
                    Value::Object(Box::new(Object {
                        class_name: class.into(),
                        dynamic: dynamic || sealed_count < members.len(),
                        sealed_count,
                        members,
                    }))
                })
                .boxed(),
        ),
        (
            1,
            (
                any::<bool>(),
                vector_type_name(),
                vec(element.clone(), 0..4),
            )
                .prop_map(|(fixed, type_name, items)| {
                    Value::VectorObject(Box::new(ObjectVector {
                        fixed,
                        type_name: type_name.into(),
                        items,
                    }))
                })
                .boxed(),
        ),
        (
            1,
            (any::<bool>(), vec((element.clone(), element), 0..4))
                .prop_map(|(weak_keys, entries)| {
                    Value::Dictionary(Box::new(Dictionary { weak_keys, entries }))
                })
                .boxed(),
        ),
    ];
    if !domain.oracle {
        // The body's items are leaves, so an ArrayCollection adds one level beyond the recursion.
        options.push((
            1,
            vec(leaf, 0..4)
                .prop_map(|dense| {
                    Value::Externalizable(Box::new(Externalizable {
                        class_name: ARRAY_COLLECTION.into(),
                        body: Value::array(dense),
                    }))
                })
                .boxed(),
        ));
    }
    weighted(options)
}

/// AMF3 trees with `depth` levels of recursion, references still placeholders.
fn amf3_tree(domain: Domain, depth: u32) -> BoxedStrategy<Value> {
    let leaf = amf3_leaf(domain);
    let body_leaf = leaf.clone();
    leaf.prop_recursive(depth, 64, 3, move |element| {
        amf3_container(domain, body_leaf.clone(), element)
    })
    .boxed()
}

/// An AMF3 value: at most 6 containers deep, references valid.
fn amf3_value(domain: Domain) -> BoxedStrategy<Value> {
    amf3_tree(domain, 5)
        .prop_map(|mut value| {
            fix_references(&mut value, Format::Amf3);
            value
        })
        .boxed()
}

fn amf0_leaf(domain: Domain) -> BoxedStrategy<Value> {
    let mut options = vec![
        (10, Just(Value::Undefined).boxed()),
        (10, Just(Value::Null).boxed()),
        (10, any::<bool>().prop_map(Value::Bool).boxed()),
        // AMF0 has only doubles: any i32 is written as a number.
        (20, any::<i32>().prop_map(Value::Integer).boxed()),
        (30, double().prop_map(Value::Double).boxed()),
        (40, text().prop_map(|t| Value::String(t.into())).boxed()),
        // Past 65,535 bytes a string needs the long-string marker.
        (
            1,
            (65_530usize..65_545)
                .prop_map(|len| Value::String("s".repeat(len).into()))
                .boxed(),
        ),
        (
            10,
            text().prop_map(|t| Value::XmlDocument(t.into())).boxed(),
        ),
        (10, date(domain).prop_map(Value::Date).boxed()),
        // AMF3 values: bare AMF3-only ones, which the encoder writes after an AVM+ switch, and
        // explicit switches to any AMF3 value.
        (
            20,
            amf3_tree(domain, 1)
                .prop_map(|value| {
                    if value.is_amf3_only() {
                        value
                    } else {
                        Value::Avmplus(Box::new(value))
                    }
                })
                .boxed(),
        ),
    ];
    if domain.references {
        options.push((10, placeholder()));
    }
    weighted(options)
}

fn amf0_container(element: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop_oneof![
        3 => vec(element.clone(), 0..5).prop_map(Value::array),
        3 => members(element.clone(), 4).prop_map(Value::object),
        2 => (class_name(), members(element.clone(), 4))
            .prop_map(|(class, members)| Value::typed_object(&class, members)),
        2 => members(element, 4).prop_map(|members| Value::EcmaArray(Box::new(members))),
    ]
    .boxed()
}

/// An AMF0 value, references valid.
fn amf0_value(domain: Domain) -> BoxedStrategy<Value> {
    amf0_leaf(domain)
        .prop_recursive(5, 48, 3, amf0_container)
        .prop_map(|mut value| {
            fix_references(&mut value, Format::Amf0);
            value
        })
        .boxed()
}

/// Whether `value` takes an entry in the object table of a `format` scope, as the vectors'
/// README numbers them; written here independently of `codec::graph`.
fn spec_entry(value: &Value, format: Format) -> bool {
    match format {
        Format::Amf3 => matches!(
            value,
            Value::Object(_)
                | Value::Externalizable(_)
                | Value::Array(_)
                | Value::Date(_)
                | Value::Xml(_)
                | Value::XmlDocument(_)
                | Value::ByteArray(_)
                | Value::VectorInt(_)
                | Value::VectorUint(_)
                | Value::VectorDouble(_)
                | Value::VectorObject(_)
                | Value::Dictionary(_)
        ),
        Format::Amf0 => {
            matches!(value, Value::Object(_) | Value::EcmaArray(_))
                || matches!(value, Value::Array(array) if array.assoc.is_empty())
        }
    }
}

/// In an AMF0 scope, the root of the AMF3 scope `value` opens: what follows an AVM+ switch, or an
/// AMF3-only value (which the encoder writes after one).
fn spec_scope(value: &Value) -> Option<&Value> {
    match value {
        Value::Avmplus(inner) => Some(inner),
        Value::Xml(_)
        | Value::ByteArray(_)
        | Value::Externalizable(_)
        | Value::VectorInt(_)
        | Value::VectorUint(_)
        | Value::VectorDouble(_)
        | Value::VectorObject(_)
        | Value::Dictionary(_) => Some(value),
        Value::Array(array) if !array.assoc.is_empty() => Some(value),
        _ => None,
    }
}

/// Turns each placeholder `Reference(raw)` into a reference to an object-table entry already
/// written at that point, or into null when there is none. Five in six point to a completed entry
/// (a shared value), the others to any entry, ancestors included (a cycle). Entries are numbered
/// in pre-order, one table per scope (`spec_entry`, `spec_scope`).
fn fix_references(value: &mut Value, format: Format) {
    number(value, format, &mut 0, &mut Vec::new());
}

/// `entries`: entries numbered so far in this scope; `open`: those that are ancestors.
fn number(value: &mut Value, format: Format, entries: &mut u32, open: &mut Vec<u32>) {
    if let Value::Reference(raw) = *value {
        let completed: Vec<u32> = (0..*entries)
            .filter(|index| !open.contains(index))
            .collect();
        *value = match (*entries, completed.len()) {
            (0, _) => Value::Null,
            (all, 0) => Value::Reference(raw % all),
            (all, _) if raw % 6 == 0 => Value::Reference(raw / 6 % all),
            (_, done) => Value::Reference(completed[(raw / 6) as usize % done]),
        };
        return;
    }
    if format == Format::Amf0 && spec_scope(value).is_some() {
        match value {
            Value::Avmplus(inner) => fix_references(inner, Format::Amf3),
            amf3_only => fix_references(amf3_only, Format::Amf3),
        }
        return;
    }
    let entry = spec_entry(value, format).then(|| {
        *entries += 1;
        open.push(*entries - 1);
    });
    value.for_each_child_mut(&mut |child| number(child, format, entries, open));
    if entry.is_some() {
        open.pop();
    }
}

/// The object table of the scope whose root is `root`, in spec order.
fn spec_table(root: &Value, format: Format) -> Vec<&Value> {
    fn walk<'v>(value: &'v Value, format: Format, table: &mut Vec<&'v Value>) {
        if format == Format::Amf0 && spec_scope(value).is_some() {
            return;
        }
        if spec_entry(value, format) {
            table.push(value);
        }
        value
            .children()
            .for_each(|child| walk(child, format, table));
    }
    let mut table = Vec::new();
    walk(root, format, &mut table);
    table
}

/// `value`, a top-level value of `format`, with every reference replaced by a copy of its target:
/// what the canonical JSON must show. `None` when a reference closes a cycle (or the copy would
/// pass 100,000 nodes).
fn expand(value: &Value, format: Format) -> Option<Value> {
    let mut expander = Expander {
        tables: vec![spec_table(value, format)],
        path: Vec::new(),
        budget: 100_000,
    };
    expander.copy(value, format)
}

struct Expander<'v> {
    /// The table of each scope entered; the last is the current one.
    tables: Vec<Vec<&'v Value>>,
    /// The values being copied, outermost first.
    path: Vec<*const Value>,
    budget: usize,
}

impl<'v> Expander<'v> {
    fn copy(&mut self, node: &'v Value, format: Format) -> Option<Value> {
        self.budget = self.budget.checked_sub(1)?;
        let target = match node {
            Value::Reference(index) => *self.tables.last()?.get(*index as usize)?,
            other => other,
        };
        if self.path.contains(&(target as *const Value)) {
            return None;
        }
        if format == Format::Amf0
            && let Some(root) = spec_scope(target)
        {
            self.tables.push(spec_table(root, Format::Amf3));
            let copy = match target {
                Value::Avmplus(_) => self
                    .copy(root, Format::Amf3)
                    .map(|inner| Value::Avmplus(Box::new(inner))),
                amf3_only => self.copy_children(amf3_only, Format::Amf3),
            };
            self.tables.pop();
            return copy;
        }
        self.copy_children(target, format)
    }

    fn copy_children(&mut self, target: &'v Value, format: Format) -> Option<Value> {
        self.path.push(target);
        let copy = target.try_map_children(&mut |child| self.copy(child, format).ok_or(()));
        self.path.pop();
        copy.ok()
    }
}

/// Containers on the deepest path (an AVM+ switch is not one).
fn depth(value: &Value) -> usize {
    let below = value.children().map(depth).max().unwrap_or(0);
    below + usize::from(is_container(value))
}

fn is_container(value: &Value) -> bool {
    matches!(
        value,
        Value::Array(_)
            | Value::Object(_)
            | Value::Externalizable(_)
            | Value::EcmaArray(_)
            | Value::VectorObject(_)
            | Value::Dictionary(_)
    )
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

fn render(value: &Value, format: Format) -> Json {
    to_canonical_json(value, format, &Limits::default())
        .unwrap_or_else(|error| panic!("{value:?} renders: {error}"))
}

/// Encode, decode, compare canonical JSON; re-encode the decoded value and compare bytes.
fn check_round_trip(value: &Value, format: Format) -> Result<(), TestCaseError> {
    let encoded =
        codec::encode(value, format).map_err(|e| TestCaseError::fail(format!("encodes: {e}")))?;
    let decoded = codec::decode(Bytes::from(encoded.clone()), format)
        .map_err(|e| TestCaseError::fail(format!("decodes {}: {e}", hex::encode(&encoded))))?;
    if format == Format::Amf3 {
        assert_view_agrees(&encoded, &Ok(decoded.clone()));
    }
    prop_assert_eq!(
        render(&decoded, format),
        render(value, format),
        "canonical JSON after a round trip through {}",
        hex::encode(&encoded)
    );
    let again = codec::encode(&decoded, format)
        .map_err(|e| TestCaseError::fail(format!("re-encodes: {e}")))?;
    prop_assert_eq!(
        hex::encode(again),
        hex::encode(&encoded),
        "re-encoding is byte-stable"
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn amf3_round_trip(value in amf3_value(FULL)) {
        prop_assert!(depth(&value) <= 6, "generated depth {}", depth(&value));
        check_round_trip(&value, Format::Amf3)?;
    }

    #[test]
    fn amf0_round_trip(value in amf0_value(FULL)) {
        check_round_trip(&value, Format::Amf0)?;
    }

    /// Rendering resolves each reference to the entry the specification's numbering names:
    /// the canonical JSON equals that of an independent expansion (cycles aside).
    #[test]
    fn amf3_references_resolve_as_specified(value in amf3_value(FULL)) {
        if let Some(expanded) = expand(&value, Format::Amf3) {
            prop_assert!(!expanded.contains_reference());
            prop_assert_eq!(render(&value, Format::Amf3), render(&expanded, Format::Amf3));
        }
    }

    #[test]
    fn amf0_references_resolve_as_specified(value in amf0_value(FULL)) {
        if let Some(expanded) = expand(&value, Format::Amf0) {
            prop_assert!(!expanded.contains_reference());
            prop_assert_eq!(render(&value, Format::Amf0), render(&expanded, Format::Amf0));
        }
    }

    /// An AMF3 value is also a frame body: framing it and splitting the frame gives the body back.
    #[test]
    fn amf3_frame_round_trip(value in amf3_value(FULL)) {
        let mut buffer = BytesMut::new();
        frame::encode_frame(&value, frame::DEFAULT_MAX_FRAME_LEN, &mut buffer).expect("frames");
        let body = frame::split_frame(&mut buffer, frame::DEFAULT_MAX_FRAME_LEN)
            .expect("a valid frame")
            .expect("a whole frame");
        prop_assert!(buffer.is_empty());
        prop_assert_eq!(&body[..], &codec::encode(&value, Format::Amf3).expect("encodes")[..]);
    }
}

// ---------------------------------------------------------------------------------------------
// One canonical form: the streaming writer against the original renderer
// ---------------------------------------------------------------------------------------------

mod canonical_oracle;

/// Adds, at the end of every member list, a repeat of its first name and, for objects, a member
/// named `$class`, each holding a leaf (so that no object-table index moves).
fn with_repeated_names(value: &mut Value) {
    let repeat = |members: &mut Vec<Member>, class: bool| {
        if let Some((name, _)) = members.first() {
            let name = name.clone();
            members.push((name, Value::Integer(7)));
        }
        if class {
            members.push(("$class".into(), Value::string("shadow")));
        }
    };
    match value {
        Value::Object(object) => repeat(&mut object.members, true),
        Value::Array(array) => repeat(&mut array.assoc, false),
        Value::EcmaArray(members) => repeat(members, false),
        _ => {}
    }
    value.for_each_child_mut(&mut with_repeated_names);
}

/// The tree, the text and any error are exactly the original renderer's.
fn check_same_as_oracle(value: &Value, format: Format) -> Result<(), TestCaseError> {
    let tight = Limits {
        expansion_floor: 64,
        ..Limits::default()
    };
    for limits in [Limits::default(), tight] {
        let oracle = canonical_oracle::render(value, format, &limits);
        prop_assert_eq!(&to_canonical_json(value, format, &limits), &oracle);
        let text = canonical_json_text(value, format, &limits);
        prop_assert_eq!(text, oracle.map(|json| json.to_string()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn amf3_streamed_json_is_the_original_form(mut value in amf3_value(FULL), repeat: bool) {
        if repeat {
            with_repeated_names(&mut value);
        }
        check_same_as_oracle(&value, Format::Amf3)?;
    }

    #[test]
    fn amf0_streamed_json_is_the_original_form(mut value in amf0_value(FULL), repeat: bool) {
        if repeat {
            with_repeated_names(&mut value);
        }
        check_same_as_oracle(&value, Format::Amf0)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Arbitrary and damaged input
// ---------------------------------------------------------------------------------------------

/// Decodes `bytes`; when that succeeds, renders the value (which may fail, but not panic), and
/// checks that the value re-encodes to bytes that decode to the same canonical JSON.
fn exercise(bytes: &[u8], format: Format) {
    let decoded = codec::decode(Bytes::copy_from_slice(bytes), format);
    if format == Format::Amf3 {
        assert_view_agrees(bytes, &decoded);
    }
    let Ok(value) = decoded else {
        return;
    };
    let rendered = to_canonical_json(&value, format, &Limits::default());
    let encoded = codec::encode(&value, format).unwrap_or_else(|e| {
        panic!(
            "{value:?}, decoded from {}, re-encodes: {e}",
            hex::encode(bytes)
        )
    });
    let again = codec::decode(Bytes::from(encoded.clone()), format).unwrap_or_else(|e| {
        panic!(
            "re-encoding {} of {} decodes: {e}",
            hex::encode(&encoded),
            hex::encode(bytes)
        )
    });
    if let Ok(json) = rendered {
        let json_again = to_canonical_json(&again, format, &Limits::default());
        assert_eq!(
            json_again.as_ref(),
            Ok(&json),
            "re-encoding of {}",
            hex::encode(bytes)
        );
    }
}

/// The borrowed view decodes `bytes` to the same value, or fails with the same error, as the owned
/// decoder did; twice, so that the second decode reuses the first one's arena. (Compared through
/// `Debug`, which shows every field, because a NaN is not equal to itself.)
fn assert_view_agrees(bytes: &[u8], owned: &Result<Value, codec::DecodeError>) {
    let mut decoder = ViewDecoder::new(codec::DecodeOptions::default());
    for _ in 0..2 {
        let viewed = decoder.decode(bytes);
        assert_eq!(
            format!("{:?}", viewed.as_ref().map(View::to_value)),
            format!("{owned:?}"),
            "view of {}",
            hex::encode(bytes)
        );
        let (Ok(view), Ok(value)) = (viewed, owned) else {
            continue;
        };
        assert_eq!(view.contains_reference(), value.contains_reference());
        if !view.contains_reference() {
            let header = Envelope::from_value(value).ok();
            assert_eq!(
                EnvelopeHeader::of_view(view),
                header.as_ref().map(Envelope::header),
                "envelope header of {}",
                hex::encode(bytes)
            );
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        2 => any::<Index>().prop_map(Mutation::Delete),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let len = bytes.len();
    match mutation {
        Mutation::Insert(at, byte) => bytes.insert(at.index(len + 1), *byte),
        _ if len == 0 => {}
        Mutation::Flip(at, bit) => bytes[at.index(len)] ^= 1 << bit,
        Mutation::Set(at, byte) => bytes[at.index(len)] = *byte,
        Mutation::Delete(at) => {
            bytes.remove(at.index(len));
        }
        Mutation::Truncate(at) => bytes.truncate(at.index(len)),
    }
}

/// A first byte that is a marker of either format (or just past the last), then anything.
fn marker_led_bytes() -> impl Strategy<Value = Vec<u8>> {
    (0u8..=0x12, vec(any::<u8>(), 0..512)).prop_map(|(marker, mut rest)| {
        rest.insert(0, marker);
        rest
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn amf3_random_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        exercise(&bytes, Format::Amf3);
    }

    #[test]
    fn amf3_marker_led_bytes_never_panic(bytes in marker_led_bytes()) {
        exercise(&bytes, Format::Amf3);
    }

    #[test]
    fn amf0_random_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        exercise(&bytes, Format::Amf0);
    }

    #[test]
    fn amf0_marker_led_bytes_never_panic(bytes in marker_led_bytes()) {
        exercise(&bytes, Format::Amf0);
    }

    /// Random bytes as a stream of frames: each complete frame's body is decoded; incomplete input
    /// is "need more" and leaves the buffer as it was.
    #[test]
    fn random_frames_never_panic(bytes in vec(any::<u8>(), 0..512), max_len in 1usize..1024) {
        let mut buffer = BytesMut::from(&bytes[..]);
        loop {
            let before = buffer.len();
            match frame::split_frame(&mut buffer, max_len) {
                Ok(Some(body)) => {
                    prop_assert!(!body.is_empty() && body.len() <= max_len);
                    prop_assert_eq!(buffer.len(), before - 4 - body.len());
                    exercise(&body, Format::Amf3);
                }
                Ok(None) => {
                    prop_assert_eq!(buffer.len(), before, "need-more leaves the buffer alone");
                    break;
                }
                Err(_) => break,
            }
        }
    }

    /// Well-framed random bodies come out one by one, exactly, whatever they hold.
    #[test]
    fn framed_random_bodies_split_exactly(bodies in vec(vec(any::<u8>(), 1..64), 0..8), tail in vec(any::<u8>(), 0..4)) {
        let mut buffer = BytesMut::new();
        for body in &bodies {
            buffer.put_u32(body.len() as u32);
            buffer.put_slice(body);
        }
        // Fewer than 4 bytes of the next header: need more.
        buffer.put_slice(&tail);
        for body in &bodies {
            let split = frame::split_frame(&mut buffer, 64).expect("valid header").expect("whole frame");
            prop_assert_eq!(&split[..], &body[..]);
            exercise(&split, Format::Amf3);
        }
        prop_assert!(matches!(frame::split_frame(&mut buffer, 64), Ok(None)));
        prop_assert_eq!(&buffer[..], &tail[..]);
    }

    #[test]
    fn amf3_mutated_encodings_never_panic(value in amf3_value(FULL), mutations in vec(mutation(), 1..4)) {
        let mut bytes = codec::encode(&value, Format::Amf3).expect("encodes");
        for mutation in &mutations {
            mutate(&mut bytes, mutation);
        }
        exercise(&bytes, Format::Amf3);
    }

    #[test]
    fn amf0_mutated_encodings_never_panic(value in amf0_value(FULL), mutations in vec(mutation(), 1..4)) {
        let mut bytes = codec::encode(&value, Format::Amf0).expect("encodes");
        for mutation in &mutations {
            mutate(&mut bytes, mutation);
        }
        exercise(&bytes, Format::Amf0);
    }
}

// ---------------------------------------------------------------------------------------------
// The `amf` 1.0.0 crate as an oracle
// ---------------------------------------------------------------------------------------------

type Amf3 = amf::amf3::Value;
type Amf0 = amf::amf0::Value;

/// The common form both crates' values are compared in. Numbers and dates are kept by their bits
/// (so that NaN equals itself and -0.0 differs from 0.0); what one crate cannot tell apart (an
/// object's dynamic flag) is left out.
#[derive(Debug, PartialEq)]
enum Plain {
    Undefined,
    Null,
    Bool(bool),
    Int(i32),
    Double(u64),
    String(String),
    XmlDoc(String),
    Xml(String),
    Date(u64),
    Bytes(Vec<u8>),
    Array(Vec<(String, Plain)>, Vec<Plain>),
    Object {
        class: String,
        sealed: usize,
        members: Vec<(String, Plain)>,
    },
    Ecma(Vec<(String, Plain)>),
    VInt(bool, Vec<i32>),
    VUint(bool, Vec<u32>),
    VDouble(bool, Vec<u64>),
    VObj {
        fixed: bool,
        type_name: String,
        items: Vec<Plain>,
    },
    Dict {
        weak: bool,
        entries: Vec<(Plain, Plain)>,
    },
    /// AMF0's switch to AMF3.
    Avm(Box<Plain>),
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|n| n.to_bits()).collect()
}

fn ours_members(members: &[Member], plain: fn(&Value) -> Plain) -> Vec<(String, Plain)> {
    members
        .iter()
        .map(|(name, value)| (name.to_string(), plain(value)))
        .collect()
}

/// Our AMF3 value (without references) in the common form.
fn plain3(value: &Value) -> Plain {
    match value {
        Value::Undefined => Plain::Undefined,
        Value::Null => Plain::Null,
        Value::Bool(b) => Plain::Bool(*b),
        Value::Integer(n) => Plain::Int(*n),
        Value::Double(n) => Plain::Double(n.to_bits()),
        Value::String(text) => Plain::String(text.to_string()),
        Value::XmlDocument(text) => Plain::XmlDoc(text.to_string()),
        Value::Xml(text) => Plain::Xml(text.to_string()),
        Value::Date(ms) => Plain::Date(ms.to_bits()),
        Value::ByteArray(bytes) => Plain::Bytes(bytes.to_vec()),
        Value::Array(array) => Plain::Array(
            ours_members(&array.assoc, plain3),
            array.dense.iter().map(plain3).collect(),
        ),
        Value::Object(object) => Plain::Object {
            class: object.class_name.to_string(),
            sealed: object.sealed_count,
            members: ours_members(&object.members, plain3),
        },
        Value::VectorInt(vector) => Plain::VInt(vector.fixed, vector.items.clone()),
        Value::VectorUint(vector) => Plain::VUint(vector.fixed, vector.items.clone()),
        Value::VectorDouble(vector) => Plain::VDouble(vector.fixed, bits(&vector.items)),
        Value::VectorObject(vector) => Plain::VObj {
            fixed: vector.fixed,
            type_name: vector.type_name.to_string(),
            items: vector.items.iter().map(plain3).collect(),
        },
        Value::Dictionary(dict) => Plain::Dict {
            weak: dict.weak_keys,
            entries: dict
                .entries
                .iter()
                .map(|(k, v)| (plain3(k), plain3(v)))
                .collect(),
        },
        other => panic!("outside the oracle's AMF3 domain: {other:?}"),
    }
}

/// Our AMF0 value (without references) in the common form: integers are AMF0 numbers, objects
/// have no sealed part, and AMF3-only values sit behind an AVM+ switch.
fn plain0(value: &Value) -> Plain {
    match value {
        Value::Undefined => Plain::Undefined,
        Value::Null => Plain::Null,
        Value::Bool(b) => Plain::Bool(*b),
        Value::Integer(n) => Plain::Double(f64::from(*n).to_bits()),
        Value::Double(n) => Plain::Double(n.to_bits()),
        Value::String(text) => Plain::String(text.to_string()),
        Value::XmlDocument(text) => Plain::XmlDoc(text.to_string()),
        Value::Date(ms) => Plain::Date(ms.to_bits()),
        Value::Avmplus(inner) => Plain::Avm(Box::new(plain3(inner))),
        other if other.is_amf3_only() => Plain::Avm(Box::new(plain3(other))),
        Value::Array(array) => Plain::Array(Vec::new(), array.dense.iter().map(plain0).collect()),
        Value::Object(object) => Plain::Object {
            class: object.class_name.to_string(),
            sealed: 0,
            members: ours_members(&object.members, plain0),
        },
        Value::EcmaArray(members) => Plain::Ecma(ours_members(members, plain0)),
        other => panic!("outside the oracle's AMF0 domain: {other:?}"),
    }
}

fn oracle_date(unix_time: &Duration) -> Plain {
    Plain::Date((unix_time.as_millis() as f64).to_bits())
}

fn oracle_pairs<V>(pairs: &[Pair<String, V>], plain: fn(&V) -> Plain) -> Vec<(String, Plain)> {
    pairs
        .iter()
        .map(|pair| (pair.key.clone(), plain(&pair.value)))
        .collect()
}

/// The `amf` crate's AMF3 value in the common form.
fn oracle_plain3(value: &Amf3) -> Plain {
    match value {
        Amf3::Undefined => Plain::Undefined,
        Amf3::Null => Plain::Null,
        Amf3::Boolean(b) => Plain::Bool(*b),
        Amf3::Integer(n) => Plain::Int(*n),
        Amf3::Double(n) => Plain::Double(n.to_bits()),
        Amf3::String(text) => Plain::String(text.clone()),
        Amf3::XmlDocument(text) => Plain::XmlDoc(text.clone()),
        Amf3::Xml(text) => Plain::Xml(text.clone()),
        Amf3::Date { unix_time } => oracle_date(unix_time),
        Amf3::ByteArray(bytes) => Plain::Bytes(bytes.clone()),
        Amf3::Array {
            assoc_entries,
            dense_entries,
        } => Plain::Array(
            oracle_pairs(assoc_entries, oracle_plain3),
            dense_entries.iter().map(oracle_plain3).collect(),
        ),
        Amf3::Object {
            class_name,
            sealed_count,
            entries,
        } => Plain::Object {
            class: class_name.clone().unwrap_or_default(),
            sealed: *sealed_count,
            members: oracle_pairs(entries, oracle_plain3),
        },
        Amf3::IntVector { is_fixed, entries } => Plain::VInt(*is_fixed, entries.clone()),
        Amf3::UintVector { is_fixed, entries } => Plain::VUint(*is_fixed, entries.clone()),
        Amf3::DoubleVector { is_fixed, entries } => Plain::VDouble(*is_fixed, bits(entries)),
        Amf3::ObjectVector {
            class_name,
            is_fixed,
            entries,
        } => Plain::VObj {
            fixed: *is_fixed,
            // The crate reads the any-type name `*` as `None`.
            type_name: class_name.clone().unwrap_or_else(|| "*".to_owned()),
            items: entries.iter().map(oracle_plain3).collect(),
        },
        Amf3::Dictionary { is_weak, entries } => Plain::Dict {
            weak: *is_weak,
            entries: entries
                .iter()
                .map(|pair| (oracle_plain3(&pair.key), oracle_plain3(&pair.value)))
                .collect(),
        },
    }
}

/// The `amf` crate's AMF0 value in the common form.
fn oracle_plain0(value: &Amf0) -> Plain {
    match value {
        Amf0::Number(n) => Plain::Double(n.to_bits()),
        Amf0::Boolean(b) => Plain::Bool(*b),
        Amf0::String(text) => Plain::String(text.clone()),
        Amf0::Object {
            class_name,
            entries,
        } => Plain::Object {
            class: class_name.clone().unwrap_or_default(),
            sealed: 0,
            members: oracle_pairs(entries, oracle_plain0),
        },
        Amf0::Null => Plain::Null,
        Amf0::Undefined => Plain::Undefined,
        Amf0::EcmaArray { entries } => Plain::Ecma(oracle_pairs(entries, oracle_plain0)),
        Amf0::Array { entries } => {
            Plain::Array(Vec::new(), entries.iter().map(oracle_plain0).collect())
        }
        Amf0::Date { unix_time, .. } => oracle_date(unix_time),
        Amf0::XmlDocument(text) => Plain::XmlDoc(text.clone()),
        Amf0::AvmPlus(inner) => Plain::Avm(Box::new(oracle_plain3(inner))),
    }
}

fn oracle_members<V>(members: &[Member], convert: fn(&Value) -> V) -> Vec<Pair<String, V>> {
    members
        .iter()
        .map(|(name, value)| Pair {
            key: name.to_string(),
            value: convert(value),
        })
        .collect()
}

fn class_option(name: &str) -> Option<String> {
    (!name.is_empty()).then(|| name.to_owned())
}

fn oracle_time(ms: f64) -> Duration {
    Duration::from_millis(ms as u64)
}

/// Our AMF3 value (in the oracle's domain) as the `amf` crate's value.
fn to_oracle3(value: &Value) -> Amf3 {
    match value {
        Value::Undefined => Amf3::Undefined,
        Value::Null => Amf3::Null,
        Value::Bool(b) => Amf3::Boolean(*b),
        Value::Integer(n) => Amf3::Integer(*n),
        Value::Double(n) => Amf3::Double(*n),
        Value::String(text) => Amf3::String(text.to_string()),
        Value::XmlDocument(text) => Amf3::XmlDocument(text.to_string()),
        Value::Xml(text) => Amf3::Xml(text.to_string()),
        Value::Date(ms) => Amf3::Date {
            unix_time: oracle_time(*ms),
        },
        Value::ByteArray(bytes) => Amf3::ByteArray(bytes.to_vec()),
        Value::Array(array) => Amf3::Array {
            assoc_entries: oracle_members(&array.assoc, to_oracle3),
            dense_entries: array.dense.iter().map(to_oracle3).collect(),
        },
        Value::Object(object) => Amf3::Object {
            class_name: class_option(&object.class_name),
            sealed_count: object.sealed_count,
            entries: oracle_members(&object.members, to_oracle3),
        },
        Value::VectorInt(vector) => Amf3::IntVector {
            is_fixed: vector.fixed,
            entries: vector.items.clone(),
        },
        Value::VectorUint(vector) => Amf3::UintVector {
            is_fixed: vector.fixed,
            entries: vector.items.clone(),
        },
        Value::VectorDouble(vector) => Amf3::DoubleVector {
            is_fixed: vector.fixed,
            entries: vector.items.clone(),
        },
        Value::VectorObject(vector) => Amf3::ObjectVector {
            class_name: (&*vector.type_name != "*").then(|| vector.type_name.to_string()),
            is_fixed: vector.fixed,
            entries: vector.items.iter().map(to_oracle3).collect(),
        },
        Value::Dictionary(dict) => Amf3::Dictionary {
            is_weak: dict.weak_keys,
            entries: dict
                .entries
                .iter()
                .map(|(key, value)| Pair {
                    key: to_oracle3(key),
                    value: to_oracle3(value),
                })
                .collect(),
        },
        other => panic!("outside the oracle's AMF3 domain: {other:?}"),
    }
}

/// Our AMF0 value (in the oracle's domain) as the `amf` crate's value.
fn to_oracle0(value: &Value) -> Amf0 {
    match value {
        Value::Undefined => Amf0::Undefined,
        Value::Null => Amf0::Null,
        Value::Bool(b) => Amf0::Boolean(*b),
        Value::Integer(n) => Amf0::Number(f64::from(*n)),
        Value::Double(n) => Amf0::Number(*n),
        Value::String(text) => Amf0::String(text.to_string()),
        Value::XmlDocument(text) => Amf0::XmlDocument(text.to_string()),
        Value::Date(ms) => Amf0::Date {
            unix_time: oracle_time(*ms),
            time_zone: 0,
        },
        Value::Avmplus(inner) => Amf0::AvmPlus(to_oracle3(inner)),
        other if other.is_amf3_only() => Amf0::AvmPlus(to_oracle3(other)),
        Value::Array(array) => Amf0::Array {
            entries: array.dense.iter().map(to_oracle0).collect(),
        },
        Value::Object(object) => Amf0::Object {
            class_name: class_option(&object.class_name),
            entries: oracle_members(&object.members, to_oracle0),
        },
        Value::EcmaArray(members) => Amf0::EcmaArray {
            entries: oracle_members(members, to_oracle0),
        },
        other => panic!("outside the oracle's AMF0 domain: {other:?}"),
    }
}

proptest! {
    #![proptest_config(config())]

    /// Our AMF3 encoding, read by the `amf` crate, is the value we wrote; the crate's encoding of
    /// the same value, read by our decoder, is that value too.
    #[test]
    fn amf3_agrees_with_the_amf_crate(value in amf3_value(ORACLE)) {
        let expected = plain3(&value);

        let ours = codec::encode(&value, Format::Amf3).expect("encodes");
        let read = Amf3::read_from(&ours[..])
            .map_err(|e| TestCaseError::fail(format!("the amf crate reads {}: {e}", hex::encode(&ours))))?;
        prop_assert_eq!(oracle_plain3(&read), plain3(&value), "amf crate's view of {}", hex::encode(&ours));

        let oracle_value = to_oracle3(&value);
        prop_assert_eq!(oracle_plain3(&oracle_value), plain3(&value), "test conversion");
        let mut theirs = Vec::new();
        oracle_value.write_to(&mut theirs).expect("the amf crate encodes");
        let decoded = codec::decode(Bytes::from(theirs.clone()), Format::Amf3)
            .map_err(|e| TestCaseError::fail(format!("we decode {}: {e}", hex::encode(&theirs))))?;
        prop_assert_eq!(plain3(&decoded), expected, "our view of {}", hex::encode(&theirs));
        prop_assert_eq!(render(&decoded, Format::Amf3), render(&value, Format::Amf3));
    }

    #[test]
    fn amf0_agrees_with_the_amf_crate(value in amf0_value(ORACLE)) {
        let expected = plain0(&value);

        let ours = codec::encode(&value, Format::Amf0).expect("encodes");
        let read = Amf0::read_from(&ours[..])
            .map_err(|e| TestCaseError::fail(format!("the amf crate reads {}: {e}", hex::encode(&ours))))?;
        prop_assert_eq!(oracle_plain0(&read), plain0(&value), "amf crate's view of {}", hex::encode(&ours));

        let oracle_value = to_oracle0(&value);
        prop_assert_eq!(oracle_plain0(&oracle_value), plain0(&value), "test conversion");
        let mut theirs = Vec::new();
        oracle_value.write_to(&mut theirs).expect("the amf crate encodes");
        let decoded = codec::decode(Bytes::from(theirs.clone()), Format::Amf0)
            .map_err(|e| TestCaseError::fail(format!("we decode {}: {e}", hex::encode(&theirs))))?;
        prop_assert_eq!(plain0(&decoded), expected, "our view of {}", hex::encode(&theirs));
        prop_assert_eq!(render(&decoded, Format::Amf0), render(&value, Format::Amf0));
    }

    /// Object references in our encoding mean to the `amf` crate, which reads them by copying
    /// their target, what the specification's numbering says; a reference that closes a cycle is
    /// one the crate refuses as circular.
    #[test]
    fn amf3_references_agree_with_the_amf_crate(value in amf3_value(ORACLE_REFS)) {
        let ours = codec::encode(&value, Format::Amf3).expect("encodes");
        let read = Amf3::read_from(&ours[..]);
        match expand(&value, Format::Amf3) {
            Some(expanded) => {
                let read = read.map_err(|e| TestCaseError::fail(format!("the amf crate reads {}: {e}", hex::encode(&ours))))?;
                prop_assert_eq!(oracle_plain3(&read), plain3(&expanded), "amf crate's view of {}", hex::encode(&ours));
            }
            None => prop_assert!(
                matches!(read, Err(amf::error::DecodeError::CircularReference { .. })),
                "a cycle in {}: {:?}", hex::encode(&ours), read
            ),
        }
    }

    #[test]
    fn amf0_references_agree_with_the_amf_crate(value in amf0_value(ORACLE_REFS)) {
        let ours = codec::encode(&value, Format::Amf0).expect("encodes");
        let read = Amf0::read_from(&ours[..]);
        match expand(&value, Format::Amf0) {
            Some(expanded) => {
                let read = read.map_err(|e| TestCaseError::fail(format!("the amf crate reads {}: {e}", hex::encode(&ours))))?;
                prop_assert_eq!(oracle_plain0(&read), plain0(&expanded), "amf crate's view of {}", hex::encode(&ours));
            }
            None => prop_assert!(
                matches!(read, Err(amf::error::DecodeError::CircularReference { .. })),
                "a cycle in {}: {:?}", hex::encode(&ours), read
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The generators themselves
// ---------------------------------------------------------------------------------------------

fn variant(value: &Value) -> &'static str {
    match value {
        Value::Undefined => "Undefined",
        Value::Null => "Null",
        Value::Bool(_) => "Bool",
        Value::Integer(n) if !(INT_MIN..=INT_MAX).contains(n) => "Integer beyond 29 bits",
        Value::Integer(_) => "Integer",
        Value::Double(n) if n.is_nan() => "Double NaN",
        Value::Double(_) => "Double",
        Value::String(text) if text.len() > 0xffff => "String beyond 64 KiB",
        Value::String(_) => "String",
        Value::XmlDocument(_) => "XmlDocument",
        Value::Xml(_) => "Xml",
        Value::Date(_) => "Date",
        Value::ByteArray(_) => "ByteArray",
        Value::Array(array) if !array.assoc.is_empty() => "Array with assoc",
        Value::Array(_) => "Array",
        Value::Object(object) if object.class_name.is_empty() && !object.dynamic => {
            "Object anonymous sealed"
        }
        Value::Object(object) if object.class_name.is_empty() => "Object anonymous",
        Value::Object(object) if object.sealed_count < object.members.len() => {
            "Object sealed + dynamic"
        }
        Value::Object(_) => "Object typed",
        Value::Externalizable(_) => "Externalizable",
        Value::VectorInt(_) => "VectorInt",
        Value::VectorUint(_) => "VectorUint",
        Value::VectorDouble(_) => "VectorDouble",
        Value::VectorObject(_) => "VectorObject",
        Value::Dictionary(_) => "Dictionary",
        Value::EcmaArray(_) => "EcmaArray",
        Value::Avmplus(_) => "Avmplus",
        Value::Reference(_) => "Reference",
    }
}

/// Variants met in `samples` values, the deepest value, and how many hold a cycle.
fn survey(
    strategy: &BoxedStrategy<Value>,
    format: Format,
    samples: usize,
) -> (HashSet<&'static str>, usize, usize) {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    fn walk(value: &Value, seen: &mut HashSet<&'static str>) {
        seen.insert(variant(value));
        value.children().for_each(|child| walk(child, seen));
    }
    let mut runner = TestRunner::deterministic();
    let (mut seen, mut deepest, mut cycles) = (HashSet::new(), 0, 0);
    for _ in 0..samples {
        let value = strategy.new_tree(&mut runner).expect("generates").current();
        walk(&value, &mut seen);
        deepest = deepest.max(depth(&value));
        cycles += usize::from(render(&value, format).to_string().contains("$cycle"));
    }
    (seen, deepest, cycles)
}

/// The generators reach what the properties rely on: every variant, depth up to the bound,
/// references and cycles, and none of what the oracle cannot take.
#[test]
fn generators_cover_every_variant() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let (seen, deepest, cycles) = survey(&amf3_value(FULL), Format::Amf3, 256);
    let amf3_variants = [
        "Undefined",
        "Null",
        "Bool",
        "Integer",
        "Integer beyond 29 bits",
        "Double",
        "Double NaN",
        "String",
        "XmlDocument",
        "Xml",
        "Date",
        "ByteArray",
        "Array",
        "Array with assoc",
        "Object anonymous",
        "Object anonymous sealed",
        "Object typed",
        "Object sealed + dynamic",
        "Externalizable",
        "VectorInt",
        "VectorUint",
        "VectorDouble",
        "VectorObject",
        "Dictionary",
        "Reference",
    ];
    for name in amf3_variants {
        assert!(seen.contains(name), "AMF3 generator never made {name}");
    }
    assert!((5..=6).contains(&deepest), "AMF3 depth reaches {deepest}");
    assert!(cycles > 0, "no AMF3 cycle");

    let (seen, _, cycles) = survey(&amf0_value(FULL), Format::Amf0, 256);
    for name in [
        "Integer beyond 29 bits",
        "String beyond 64 KiB",
        "XmlDocument",
        "Date",
        "Array",
        "Object anonymous",
        "Object typed",
        "EcmaArray",
        "Avmplus",
        "Xml",
        "Dictionary",
        "Reference",
    ] {
        assert!(seen.contains(name), "AMF0 generator never made {name}");
    }
    assert!(cycles > 0, "no AMF0 cycle");

    // The AMF0 oracle may hold any i32 as an AMF0 number, but not inside an AVM+ switch.
    for (strategy, format, banned) in [
        (
            amf3_value(ORACLE),
            Format::Amf3,
            &["Reference", "Externalizable", "Integer beyond 29 bits"][..],
        ),
        (
            amf0_value(ORACLE),
            Format::Amf0,
            &["Reference", "Externalizable"][..],
        ),
    ] {
        let (seen, _, _) = survey(&strategy, format, 128);
        for name in banned {
            assert!(
                !seen.contains(name),
                "the {format:?} oracle generator made {name}"
            );
        }
        assert!(
            seen.contains("VectorObject") && seen.contains("Dictionary"),
            "{format:?} oracle"
        );
    }

    // The reference oracles see both references to expand and cycles to refuse.
    for (strategy, format) in [
        (amf3_value(ORACLE_REFS), Format::Amf3),
        (amf0_value(ORACLE_REFS), Format::Amf0),
    ] {
        let mut runner = TestRunner::deterministic();
        let (mut expanded, mut cyclic) = (0, 0);
        for _ in 0..128 {
            let value = strategy.new_tree(&mut runner).expect("generates").current();
            match expand(&value, format) {
                Some(_) if value.contains_reference() => expanded += 1,
                Some(_) => {}
                None => cyclic += 1,
            }
        }
        assert!(
            expanded > 10 && cyclic > 10,
            "{format:?}: {expanded} expanded, {cyclic} cyclic"
        );
    }
}
