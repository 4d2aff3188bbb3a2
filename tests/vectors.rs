//! The shared AMF test vectors (tests/vectors/, see its README for provenance): every vector decodes
//! to its canonical JSON or is rejected, every decodable one survives a re-encode, the vectors
//! written by reference-writing encoders re-encode to identical bytes, and the borrowed `View`
//! decoder agrees with the owned one on every AMF3 vector.

use amf_bench::codec::json::{canonical_json_text, to_canonical_json};
use amf_bench::codec::{self, DecodeOptions, Format, Limits, ViewDecoder};
use amf_bench::frame;
use bytes::{Bytes, BytesMut};
use serde_json::Value as Json;

struct Vector {
    name: String,
    bytes: Vec<u8>,
    expect: Json,
    note: String,
}

fn load(file: &str) -> Vec<Vector> {
    let path = format!("{}/tests/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("vector file is readable");
    text.lines()
        .map(|line| {
            let v: Json = serde_json::from_str(line).expect("vector line is JSON");
            Vector {
                name: v["name"].as_str().expect("name").to_owned(),
                bytes: hex::decode(v["hex"].as_str().expect("hex")).expect("hex decodes"),
                expect: v["expect"].clone(),
                note: v["note"].as_str().unwrap_or_default().to_owned(),
            }
        })
        .collect()
}

/// Whether the vector's bytes came from an encoder that writes references, so that re-encoding
/// must reproduce them exactly.
fn byte_exact(vector: &Vector) -> bool {
    vector.note.contains("bytes: py3amf 0.9.1 encoder")
        || [
            "rpc_request_echo",
            "rpc_response_echo",
            "rpc_message_chat",
            "rpc_response_null_result",
        ]
        .contains(&vector.name.as_str())
}

mod canonical_oracle;

/// The canonical JSON as a tree, after checking that the streamed text is byte for byte what the
/// original renderer gives, and that the tree is the same too.
fn canonical(value: &codec::Value, format: Format) -> Json {
    let limits = Limits::default();
    let tree = to_canonical_json(value, format, &limits).expect("renders");
    let oracle = canonical_oracle::render(value, format, &limits).expect("the oracle renders");
    let text = canonical_json_text(value, format, &limits).expect("streams");
    assert_eq!(text, oracle.to_string(), "streamed text of {value:?}");
    assert_eq!(tree, oracle, "tree of {value:?}");
    tree
}

fn check_file(file: &str, format: Format) -> (usize, usize, usize) {
    let (mut accepted, mut rejected, mut exact) = (0, 0, 0);
    for vector in load(file) {
        let decoded = codec::decode(Bytes::from(vector.bytes.clone()), format);
        if vector.expect.is_null() {
            assert!(
                decoded.is_err(),
                "{} must be rejected, got {decoded:?}",
                vector.name
            );
            rejected += 1;
            continue;
        }
        let value = decoded.unwrap_or_else(|e| panic!("{} must decode: {e}", vector.name));
        assert_eq!(canonical(&value, format), vector.expect, "{}", vector.name);
        let encoded = codec::encode(&value, format)
            .unwrap_or_else(|e| panic!("{} re-encodes: {e}", vector.name));
        let again = codec::decode(Bytes::from(encoded.clone()), format)
            .unwrap_or_else(|e| panic!("{} re-encoded bytes decode: {e}", vector.name));
        assert_eq!(
            canonical(&again, format),
            vector.expect,
            "round trip of {}",
            vector.name
        );
        if byte_exact(&vector) {
            assert_eq!(
                hex::encode(&encoded),
                hex::encode(&vector.bytes),
                "byte-exact re-encoding of {}",
                vector.name
            );
            exact += 1;
        }
        accepted += 1;
    }
    (accepted, rejected, exact)
}

#[test]
fn amf3_vectors() {
    let (accepted, rejected, exact) = check_file("amf3.jsonl", Format::Amf3);
    assert_eq!((accepted, rejected), (67, 33));
    assert_eq!(exact, 30, "byte-exact vectors");
}

#[test]
fn amf3_vectors_decode_the_same_into_a_view() {
    let mut decoder = ViewDecoder::new(DecodeOptions::default());
    let (mut same_value, mut same_error) = (0, 0);
    for vector in load("amf3.jsonl") {
        let owned = codec::decode(Bytes::from(vector.bytes.clone()), Format::Amf3);
        match (decoder.decode(&vector.bytes), owned) {
            (Ok(view), Ok(value)) => {
                // Through `Debug`: a NaN is not equal to itself.
                let (viewed, owned) = (format!("{:?}", view.to_value()), format!("{value:?}"));
                assert_eq!(viewed, owned, "{}", vector.name);
                same_value += 1;
            }
            (Err(view_error), Err(error)) => {
                assert_eq!(view_error, error, "{}", vector.name);
                same_error += 1;
            }
            (view, owned) => panic!("{}: view {view:?}, owned {owned:?}", vector.name),
        }
    }
    assert_eq!((same_value, same_error), (67, 33));
}

#[test]
fn amf0_vectors() {
    let (accepted, rejected, exact) = check_file("amf0.jsonl", Format::Amf0);
    assert_eq!((accepted, rejected), (35, 17));
    assert_eq!(exact, 12, "byte-exact vectors");
}

#[test]
fn frame_vectors() {
    let (mut accepted, mut rejected, mut exact) = (0, 0, 0);
    for vector in load("frames.jsonl") {
        let mut buffer = BytesMut::from(&vector.bytes[..]);
        let split = frame::split_frame(&mut buffer, frame::DEFAULT_MAX_FRAME_LEN);
        if vector.expect.is_null() {
            assert!(
                split.is_err(),
                "{} must be rejected, got {split:?}",
                vector.name
            );
            rejected += 1;
            continue;
        }
        let body = split
            .unwrap_or_else(|e| panic!("{}: {e}", vector.name))
            .unwrap_or_else(|| panic!("{}: a whole frame, not 'need more'", vector.name));
        assert!(
            buffer.is_empty(),
            "{}: nothing left after the frame",
            vector.name
        );
        let value =
            codec::decode(body, Format::Amf3).unwrap_or_else(|e| panic!("{}: {e}", vector.name));
        assert_eq!(
            canonical(&value, Format::Amf3),
            vector.expect,
            "{}",
            vector.name
        );
        let mut framed = BytesMut::new();
        frame::encode_frame(&value, frame::DEFAULT_MAX_FRAME_LEN, &mut framed).expect("frames");
        if byte_exact(&vector) {
            assert_eq!(
                hex::encode(&framed),
                hex::encode(&vector.bytes),
                "byte-exact {}",
                vector.name
            );
            exact += 1;
        }
        accepted += 1;
    }
    assert_eq!((accepted, rejected, exact), (10, 2, 8));
}
