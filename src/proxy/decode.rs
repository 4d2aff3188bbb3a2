//! What a tapped frame says, for the log: the AMF3 value and its RPC envelope (amf-socket), the
//! text (xmlsocket), the bytes (raw), or why it could not be read, with its first bytes.
//!
//! The relay's thread only checks an AMF3 payload and reads its envelope header, decoding into
//! a reused arena (`View`); the log's writer thread decodes it into a `Value` to render it
//! (`Content::decode_payload`), and only when the frame is logged.

use bytes::Bytes;

use super::tap::{Framing, PREFIX_LEN, TapLimits, Tapped};
use crate::codec::{DecodeOptions, Format, Limits, Str, Value, View, ViewDecoder, decode_with};
use crate::frame::HEADER_LEN;
use crate::rpc::{Envelope, EnvelopeHeader};

/// The RPC envelope of a frame, as the log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rpc {
    /// `rpcRequest`, `rpcResponse` or `rpcMessage`.
    pub type_name: &'static str,
    /// The command (for a reply: its request's, when the proxy saw that request).
    pub command: Option<Str>,
    /// The message id.
    pub message_id: Str,
}

/// The readable content of one logged frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// An AMF Socket frame whose payload decodes, not decoded into a `Value` yet.
    Checked {
        /// The payload, after the length header.
        payload: Bytes,
        /// Its envelope, when it is one.
        rpc: Option<Rpc>,
    },
    /// An AMF Socket frame whose payload decoded.
    Amf {
        /// The payload.
        value: Value,
        /// Its envelope, when it is one.
        rpc: Option<Rpc>,
        /// The payload's bytes, whose first ones stand in when the value cannot be rendered.
        payload: Bytes,
        /// The limits it was decoded within, which rendering it keeps to as well.
        limits: Limits,
    },
    /// An XMLSocket message, without its NUL.
    Text(String),
    /// A raw chunk.
    Bytes(Bytes),
    /// Not readable: what was wrong, and the first bytes.
    Error {
        /// What was wrong.
        error: String,
        /// The first bytes (at most `PREFIX_LEN`).
        prefix: Bytes,
    },
}

/// What kind of log entry a tapped item makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A frame (whole, skipped or undecodable).
    Frame,
    /// The framing was lost in this direction.
    FramingLost,
    /// The stream ended inside a frame.
    Truncated,
}

impl EntryKind {
    /// The `event` field of the JSON log.
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::Frame => "frame",
            EntryKind::FramingLost => "framing_lost",
            EntryKind::Truncated => "truncated",
        }
    }
}

/// One tapped item made readable.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// What kind of entry.
    pub kind: EntryKind,
    /// The frame's length on the wire (header or NUL included); bytes seen for the others.
    pub len: usize,
    /// What it says.
    pub content: Content,
}

impl Decoded {
    /// Bytes this entry keeps until the log writes it: about the frame's length when its content
    /// is kept (a value decoded from it is about as large), only the message and the first bytes
    /// when the frame was skipped, cut off or not readable.
    pub fn held(&self) -> usize {
        match &self.content {
            Content::Error { error, prefix } => error.len() + prefix.len(),
            _ => self.len,
        }
    }
}

/// Reads a tapped item according to the framing; `decoder` checks AMF3 payloads.
pub fn decode(
    tapped: &Tapped,
    framing: Framing,
    limits: &TapLimits,
    decoder: &mut ViewDecoder,
) -> Decoded {
    let (kind, len, content) = match tapped {
        Tapped::Frame(frame) => (EntryKind::Frame, frame.len(), read(frame, framing, decoder)),
        Tapped::Oversize { len, prefix } => (
            EntryKind::Frame,
            *len,
            error(
                format!(
                    "a frame of {len} bytes, above the decode cap of {} bytes: relayed, not decoded",
                    limits.max_decode
                ),
                prefix,
            ),
        ),
        Tapped::Lost { error: why, bytes } => (
            EntryKind::FramingLost,
            bytes.len(),
            error(
                format!("framing lost: {why}; the rest of this direction is relayed undecoded"),
                bytes,
            ),
        ),
        Tapped::Truncated { have, want, prefix } => {
            let expected = want.map_or(String::new(), |want| format!(" of {want}"));
            let text = format!("the stream ended inside a frame ({have}{expected} bytes arrived)");
            (EntryKind::Truncated, *have, error(text, prefix))
        }
    };
    Decoded { kind, len, content }
}

fn error(error: String, prefix: &Bytes) -> Content {
    Content::Error {
        error,
        prefix: prefix.slice(..prefix.len().min(PREFIX_LEN)),
    }
}

fn read(frame: &Bytes, framing: Framing, decoder: &mut ViewDecoder) -> Content {
    match framing {
        Framing::AmfSocket => check_amf(frame, decoder),
        Framing::Xmlsocket => {
            let text = frame.strip_suffix(b"\0").unwrap_or(frame);
            match std::str::from_utf8(text) {
                Ok(text) => Content::Text(text.to_owned()),
                Err(why) => error(format!("the message is not UTF-8 text: {why}"), frame),
            }
        }
        Framing::Raw => Content::Bytes(frame.clone()),
    }
}

fn check_amf(frame: &Bytes, decoder: &mut ViewDecoder) -> Content {
    let payload = frame.slice(HEADER_LEN.min(frame.len())..);
    if payload.is_empty() {
        return error("a zero-length frame (a protocol error)".into(), frame);
    }
    let limits = decoder.limits();
    match decoder.decode(&payload) {
        Ok(view) => {
            let rpc = rpc_of_view(view, &limits);
            Content::Checked { payload, rpc }
        }
        Err(why) => error(format!("undecodable AMF3 payload: {why}"), frame),
    }
}

/// The envelope summary of a payload decoded into a view, if it is an envelope. References are
/// rare in envelopes and need resolving: such a payload goes through `Value`.
fn rpc_of_view(view: View<'_>, limits: &Limits) -> Option<Rpc> {
    if view.contains_reference() {
        return rpc_of(&view.to_value(), limits);
    }
    EnvelopeHeader::of_view(view).map(Rpc::from)
}

/// The envelope summary of a payload decoded within `limits`, if it is an envelope.
fn rpc_of(value: &Value, limits: &Limits) -> Option<Rpc> {
    Envelope::without_payload(value, limits)
        .ok()
        .map(|envelope| Rpc::from(envelope.header()))
}

impl From<EnvelopeHeader<'_>> for Rpc {
    fn from(header: EnvelopeHeader<'_>) -> Rpc {
        Rpc {
            type_name: header.type_name,
            command: header.command.map(Str::from),
            message_id: Str::from(header.message_id),
        }
    }
}

impl Content {
    /// Decodes a checked payload into a `Value`, for rendering; any other content is left as
    /// it is. The payload decoded once with the same options, so this cannot fail unless the
    /// options differ; if it does, the content becomes the error.
    pub fn decode_payload(&mut self, options: &DecodeOptions) {
        let Content::Checked { payload, rpc } = self else {
            return;
        };
        *self = match decode_with(payload.clone(), Format::Amf3, options) {
            Ok(value) => Content::Amf {
                value,
                rpc: rpc.take(),
                payload: payload.clone(),
                limits: options.limits,
            },
            Err(why) => error(format!("undecodable AMF3 payload: {why}"), payload),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TapLimits = TapLimits {
        max_decode: 1024,
        max_frame: 4096,
    };

    fn frame_from_hex(hex_text: &str) -> Bytes {
        Bytes::from(hex::decode(hex_text.replace(' ', "")).expect("hex"))
    }

    #[test]
    fn an_rpc_request_gives_its_type_command_and_id() {
        // PROTOCOL.md section 2's worked example.
        let frame = frame_from_hex(
            "0000006C0A0B010F726571756573740A010F636F6D6D616E640609656368\
             6F136D6573736167654964064331343237373637333432313233 3A3132333435363738393A39383736\
             3534333231 0D706172616D730A010974657874060401 0109747970650615727063526571756573 7401",
        );
        let decoded = decode(
            &Tapped::Frame(frame),
            Framing::AmfSocket,
            &LIMITS,
            &mut ViewDecoder::default(),
        );
        assert_eq!(decoded.len, 112);
        let mut content = decoded.content;
        let Content::Checked { rpc: Some(rpc), .. } = &content else {
            panic!("an envelope: {content:?}")
        };
        assert_eq!(rpc.type_name, "rpcRequest");
        assert_eq!(rpc.command.as_deref(), Some("echo"));
        assert_eq!(&*rpc.message_id, "1427767342123:123456789:987654321");
        let expected = Rpc::clone(rpc);
        content.decode_payload(DecodeOptions::shared_default());
        let Content::Amf { value, rpc, .. } = content else {
            panic!("decoded: {content:?}")
        };
        assert_eq!(rpc, Some(expected));
        let params = value.as_object().and_then(|outer| outer.get("request"));
        let text = params
            .and_then(Value::as_object)
            .and_then(|request| request.get("params"))
            .and_then(Value::as_object)
            .and_then(|params| params.get("text"));
        assert_eq!(text.and_then(Value::as_str), Some("echo"));
    }

    #[test]
    fn an_envelope_with_object_references_is_read_through_a_value() {
        let named = |members: Vec<(&'static str, Value)>| {
            Value::object(
                members
                    .into_iter()
                    .map(|(k, v)| (Str::new_static(k), v))
                    .collect(),
            )
        };
        // The params refer back to the request object (object-table entry 1): a cycle.
        let value = named(vec![
            (
                "request",
                named(vec![
                    ("command", Value::string("look")),
                    ("messageId", Value::string("m-7")),
                    ("params", named(vec![("parent", Value::Reference(1))])),
                ]),
            ),
            ("type", Value::string("rpcRequest")),
        ]);
        let payload = crate::codec::encode(&value, Format::Amf3).expect("encodes");
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        let decoded = decode(
            &Tapped::Frame(Bytes::from(frame)),
            Framing::AmfSocket,
            &LIMITS,
            &mut ViewDecoder::default(),
        );
        let Content::Checked { rpc: Some(rpc), .. } = decoded.content else {
            panic!("an envelope: {decoded:?}")
        };
        assert_eq!(
            (rpc.command.as_deref(), &*rpc.message_id),
            (Some("look"), "m-7")
        );
    }

    #[test]
    fn an_undecodable_payload_is_an_error_with_its_bytes() {
        let frame = Bytes::from_static(&[0, 0, 0, 2, 0x14, 0x00]);
        let decoded = decode(
            &Tapped::Frame(frame.clone()),
            Framing::AmfSocket,
            &LIMITS,
            &mut ViewDecoder::default(),
        );
        let Content::Error { error, prefix } = decoded.content else {
            panic!("an error")
        };
        assert!(error.contains("undecodable AMF3 payload"), "{error}");
        assert_eq!(prefix, frame);
    }

    #[test]
    fn xmlsocket_text_loses_its_nul() {
        let decoded = decode(
            &Tapped::Frame(Bytes::from_static(b"<hello/>\0")),
            Framing::Xmlsocket,
            &LIMITS,
            &mut ViewDecoder::default(),
        );
        assert_eq!(decoded.content, Content::Text("<hello/>".into()));
        assert_eq!(decoded.len, 9);
    }
}
