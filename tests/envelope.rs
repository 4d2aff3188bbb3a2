//! The RPC envelope against the frame vectors: built envelopes match the Ruby server's bytes,
//! every valid envelope parses whatever its member order, and malformed ones say what is wrong.

use amf_bench::codec::{self, Format, Str, Value, ViewDecoder};
use amf_bench::frame::{self, DEFAULT_MAX_FRAME_LEN};
use amf_bench::rpc::{
    Envelope, EnvelopeError, EnvelopeHeader, Message, Request, Response, new_message_id,
};
use bytes::{Bytes, BytesMut};

/// The frame vector with this name, as bytes.
fn frame_vector(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/frames.jsonl");
    let text = std::fs::read_to_string(path).expect("vectors readable");
    let line = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON"))
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"));
    hex::decode(line["hex"].as_str().expect("hex")).expect("hex decodes")
}

fn framed(envelope: Envelope) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame::encode_frame(&envelope.into_value(), DEFAULT_MAX_FRAME_LEN, &mut out).expect("frames");
    out.to_vec()
}

fn parse_frame(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    let mut buffer = BytesMut::from(bytes);
    let body = frame::split_frame(&mut buffer, DEFAULT_MAX_FRAME_LEN)
        .expect("valid frame")
        .expect("whole frame");
    let value = codec::decode(body, Format::Amf3).expect("decodes");
    assert_header_agrees(&value);
    let parsed = Envelope::from_value(&value);
    assert_eq!(
        Envelope::from_owned(value),
        parsed,
        "moving the payload out changes nothing"
    );
    parsed
}

/// The header read from the value's bytes decoded into a view, when they hold no object
/// reference, is the parsed envelope's header; with references, the view reports them.
fn assert_header_agrees(value: &Value) {
    let bytes = codec::encode(value, Format::Amf3).expect("encodes");
    let mut decoder = ViewDecoder::default();
    let view = decoder.decode(&bytes).expect("decodes");
    assert_eq!(view.contains_reference(), value.contains_reference());
    if !view.contains_reference() {
        let parsed = Envelope::from_value(value).ok();
        assert_eq!(
            EnvelopeHeader::of_view(view),
            parsed.as_ref().map(Envelope::header),
            "{value:?}"
        );
    }
}

fn object(members: Vec<(&'static str, Value)>) -> Value {
    Value::object(
        members
            .into_iter()
            .map(|(k, v)| (Str::new_static(k), v))
            .collect(),
    )
}

fn echo_request() -> Envelope {
    Envelope::Request(Request {
        message_id: Str::from("1427767342123:123456789:987654321"),
        command: Str::from("echo"),
        params: object(vec![("text", Value::string("echo"))]),
    })
}

#[test]
fn built_envelopes_match_the_ruby_servers_bytes() {
    assert_eq!(framed(echo_request()), frame_vector("rpc_request_echo"));
    let reply = Envelope::Response(Response {
        message_id: Str::from("1427767342123:123456789:987654321"),
        result: Value::string("echo"),
    });
    assert_eq!(framed(reply), frame_vector("rpc_response_echo"));
    let chat = Envelope::Message(Message {
        message_id: Str::from("9f86d081884c7d659a2feaa0c55ad015"),
        command: Str::from("chat"),
        params: object(vec![
            ("n", Value::Integer(5)),
            (
                "tags",
                Value::array(vec![Value::string("a"), Value::string("b")]),
            ),
        ]),
    });
    assert_eq!(framed(chat), frame_vector("rpc_message_chat"));
    let null_result = Envelope::Response(Response {
        message_id: Str::from("0123456789abcdef0123456789abcdef"),
        result: Value::Null,
    });
    assert_eq!(
        framed(null_result),
        frame_vector("rpc_response_null_result")
    );
    let ping = Request::ping(
        Str::from("0123456789abcdef0123456789abcdef"),
        1_427_767_342.0,
        0.0,
    );
    assert_eq!(
        framed(Envelope::Request(ping)),
        frame_vector("rpc_request_amf_socket_ping")
    );
}

#[test]
fn valid_frames_parse_to_typed_envelopes() {
    assert_eq!(
        parse_frame(&frame_vector("rpc_request_echo")),
        Ok(echo_request())
    );
    let Ok(Envelope::Request(ping)) = parse_frame(&frame_vector("rpc_request_amf_socket_ping"))
    else {
        panic!("the ping is a request");
    };
    assert!(ping.is_ping());
    assert_eq!(
        ping.params
            .as_object()
            .and_then(|p| p.get("time"))
            .and_then(Value::as_f64),
        Some(1_427_767_342.0)
    );
    let Ok(Envelope::Response(pong)) = parse_frame(&frame_vector("rpc_response_pong")) else {
        panic!("the pong is a response");
    };
    assert_eq!(pong.result.as_str(), Some("pong"));
    let Ok(Envelope::Request(typed)) = parse_frame(&frame_vector("rpc_request_typed_params"))
    else {
        panic!("typed params parse");
    };
    assert_eq!(
        typed.params.as_object().map(|p| &*p.class_name),
        Some("com.example.Move")
    );
    let inline = parse_frame(&frame_vector("rpc_request_no_refs_inline_traits")).expect("parses");
    assert_eq!(
        (inline.command(), inline.message_id()),
        (Some("echo"), "m-1")
    );
    let message = parse_frame(&frame_vector("rpc_message_chat")).expect("parses");
    assert_eq!(
        (message.type_name(), message.command()),
        ("rpcMessage", Some("chat"))
    );
}

#[test]
fn ruffle_capture_lacks_a_message_id() {
    assert_eq!(
        parse_frame(&frame_vector("ruffle_rpc_request_hello")),
        Err(EnvelopeError::MissingField {
            kind: "rpcRequest",
            field: "request.messageId",
        })
    );
}

#[test]
fn member_order_and_unknown_keys_do_not_matter() {
    let value = object(vec![
        ("extra", Value::Integer(1)),
        ("type", Value::string("rpcResponse")),
        (
            "response",
            object(vec![
                ("result", Value::Bool(true)),
                ("unknown", Value::Null),
                ("messageId", Value::string("x")),
            ]),
        ),
    ]);
    assert_header_agrees(&value);
    let envelope = Envelope::from_value(&value).expect("parses");
    assert_eq!(
        envelope,
        Envelope::Response(Response {
            message_id: Str::from("x"),
            result: Value::Bool(true),
        })
    );
}

#[test]
fn malformed_envelopes_say_what_is_wrong() {
    let cases = [
        (
            Value::Integer(3),
            EnvelopeError::NotAnObject {
                found: "an integer",
            },
        ),
        (
            object(vec![("request", object(vec![]))]),
            EnvelopeError::MissingType,
        ),
        (
            object(vec![("type", Value::string("rpcCall"))]),
            EnvelopeError::UnknownType("rpcCall".into()),
        ),
        (
            object(vec![
                ("type", Value::string("rpcRequest")),
                ("request", Value::string("no")),
            ]),
            EnvelopeError::WrongType {
                kind: "rpcRequest",
                field: "request",
                expected: "an object",
                found: "a string",
            },
        ),
        (
            object(vec![
                ("type", Value::string("rpcMessage")),
                (
                    "message",
                    object(vec![
                        ("messageId", Value::string("1")),
                        ("command", Value::string("c")),
                        ("params", Value::Null),
                    ]),
                ),
            ]),
            EnvelopeError::WrongType {
                kind: "rpcMessage",
                field: "message.params",
                expected: "an object",
                found: "null",
            },
        ),
        (
            object(vec![
                ("type", Value::string("rpcResponse")),
                ("response", object(vec![("messageId", Value::string("1"))])),
            ]),
            EnvelopeError::MissingField {
                kind: "rpcResponse",
                field: "response.result",
            },
        ),
    ];
    for (value, expected) in cases {
        assert_header_agrees(&value);
        assert_eq!(Envelope::from_value(&value), Err(expected.clone()));
        assert_eq!(Envelope::from_owned(value), Err(expected));
    }
}

/// Decodes, parses, rebuilds, encodes and decodes again.
fn round_trip(value: &Value) -> (Envelope, Envelope) {
    let bytes = codec::encode(value, Format::Amf3).expect("encodes");
    let first =
        Envelope::from_value(&codec::decode(Bytes::from(bytes), Format::Amf3).expect("decodes"))
            .expect("parses");
    let rebuilt = codec::encode(&first.clone().into_value(), Format::Amf3).expect("encodes");
    let second =
        Envelope::from_value(&codec::decode(Bytes::from(rebuilt), Format::Amf3).expect("decodes"))
            .expect("parses");
    (first, second)
}

#[test]
fn params_referencing_the_rest_of_the_frame_stand_alone() {
    // Table: 0 outer, 1 "shared" (a date), 2 request, 3 params; params.when refers to entry 1 and
    // params.me to params itself.
    let value = object(vec![
        ("shared", Value::Date(1000.0)),
        ("type", Value::string("rpcRequest")),
        (
            "request",
            object(vec![
                ("messageId", Value::string("m")),
                ("command", Value::string("c")),
                (
                    "params",
                    object(vec![
                        ("when", Value::Reference(1)),
                        ("me", Value::Reference(3)),
                    ]),
                ),
            ]),
        ),
    ]);
    let (first, second) = round_trip(&value);
    assert_eq!(first, second, "rebuilding keeps the params");
    let Envelope::Request(request) = first else {
        panic!("a request")
    };
    // Standalone: params is entry 0, the copied date entry 1.
    let expected = object(vec![
        ("when", Value::Date(1000.0)),
        ("me", Value::Reference(0)),
    ]);
    assert_eq!(request.params, expected);
}

#[test]
fn message_ids_follow_the_actionscript_style() {
    let id = new_message_id();
    let parts: Vec<&str> = id.split(':').collect();
    assert_eq!(parts.len(), 3, "{id}");
    assert!(parts[0].parse::<u64>().expect("milliseconds") > 1_600_000_000_000);
    for random in &parts[1..] {
        assert_eq!(random.len(), 9, "{id}");
        assert!(random.bytes().all(|b| b.is_ascii_digit()), "{id}");
    }
    assert_ne!(new_message_id(), id, "ids are unique");
}
