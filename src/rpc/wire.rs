//! Envelopes to and from frame payloads, in either payload encoding: AMF3 (AMF Socket) or JSON
//! (the same envelope and framing with a JSON payload).

use bytes::{BufMut, Bytes, BytesMut};

use super::envelope::{Envelope, EnvelopeError};
use super::json::{JsonError, json_depth, json_to_value, value_to_json};
use crate::codec::{self, DecodeError, DecodeOptions, Limits};
use crate::frame::{self, FrameError, HEADER_LEN};

/// How a frame's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Encoding {
    /// One AMF3 value per frame (AMF Socket).
    #[default]
    Amf3,
    /// One JSON document per frame.
    Json,
}

/// Why a frame's payload is not an envelope.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The AMF3 payload does not decode.
    #[error("undecodable AMF3 payload: {0}")]
    Amf3(#[from] DecodeError),
    /// The JSON payload does not parse.
    #[error("undecodable JSON payload: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON payload nests deeper than the decoding limit.
    #[error("JSON payload nested {depth} levels deep, over the limit of {limit}")]
    JsonTooDeep {
        /// How deep the payload nests.
        depth: usize,
        /// The configured depth limit.
        limit: usize,
    },
    /// The payload decodes but is not one of the three envelopes.
    #[error("not an RPC envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// A value that JSON cannot express (when encoding).
    #[error("cannot write the value as JSON: {0}")]
    JsonValue(#[from] JsonError),
    /// A frame that cannot be written (when encoding).
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl WireError {
    /// Whether the payload decoded but was not an envelope (as opposed to not decoding at all).
    pub fn is_bad_envelope(&self) -> bool {
        matches!(self, WireError::Envelope(_))
    }
}

/// Reads the envelope in one frame's payload.
pub fn decode_envelope(
    payload: Bytes,
    encoding: Encoding,
    options: &DecodeOptions,
) -> Result<Envelope, WireError> {
    let value = match encoding {
        Encoding::Amf3 => codec::amf3::decode(payload, options)?,
        Encoding::Json => {
            let json = serde_json::from_slice(&payload)?;
            let (depth, limit) = (json_depth(&json), options.limits.max_depth);
            if depth > limit {
                return Err(WireError::JsonTooDeep { depth, limit });
            }
            json_to_value(&json)
        }
    };
    Ok(Envelope::from_owned_within(value, &options.limits)?)
}

/// Writes `envelope` as one whole frame (header included).
pub fn encode_envelope(
    envelope: Envelope,
    encoding: Encoding,
    max_frame_len: usize,
) -> Result<Bytes, WireError> {
    encode_envelope_within(envelope, encoding, max_frame_len, &Limits::default())
}

/// `encode_envelope` within `limits`: a peer encodes as deep as it decodes, so that a server
/// can send back what it accepted.
pub fn encode_envelope_within(
    envelope: Envelope,
    encoding: Encoding,
    max_frame_len: usize,
    limits: &Limits,
) -> Result<Bytes, WireError> {
    let mut out = BytesMut::with_capacity(256);
    match encoding {
        Encoding::Amf3 => {
            frame::encode_frame_within(&envelope.into_value(), max_frame_len, limits, &mut out)?
        }
        Encoding::Json => {
            let json = value_to_json(&envelope.into_value(), limits)?;
            out.put_u32(0);
            let mut writer = out.writer();
            serde_json::to_writer(&mut writer, &json)?;
            out = writer.into_inner();
            let len = out.len() - HEADER_LEN;
            if len > max_frame_len {
                return Err(FrameError::EncodedTooLarge {
                    len,
                    max: max_frame_len,
                }
                .into());
            }
            out[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        }
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Str, Value};
    use crate::rpc::Request;

    fn request() -> Envelope {
        Envelope::Request(Request {
            message_id: Str::from("1:2:3"),
            command: Str::from("echo"),
            params: Value::object(vec![(Str::from("text"), Value::string("hi"))]),
        })
    }

    #[test]
    fn both_encodings_round_trip_an_envelope() {
        for encoding in [Encoding::Amf3, Encoding::Json] {
            let frame = encode_envelope(request(), encoding, 1024).expect("encodes");
            let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
            assert_eq!(len + HEADER_LEN, frame.len(), "{encoding:?}");
            let decoded = decode_envelope(
                frame.slice(HEADER_LEN..),
                encoding,
                DecodeOptions::shared_default(),
            )
            .expect("decodes");
            assert_eq!(decoded, request(), "{encoding:?}");
        }
    }

    #[test]
    fn json_payload_is_the_plain_envelope() {
        let frame = encode_envelope(request(), Encoding::Json, 1024).expect("encodes");
        let text = std::str::from_utf8(&frame[HEADER_LEN..]).expect("utf-8");
        assert_eq!(
            text,
            r#"{"request":{"command":"echo","messageId":"1:2:3","params":{"text":"hi"}},"type":"rpcRequest"}"#
        );
    }

    /// JSON payloads keep to `--max-depth` as AMF3 ones do, counting the envelope's own levels.
    #[test]
    fn json_deeper_than_the_limit_is_refused_as_amf3_is() {
        let options = DecodeOptions {
            limits: Limits {
                max_depth: 4,
                ..Limits::default()
            },
            ..DecodeOptions::default()
        };
        let with_params = |params: Value| {
            Envelope::Request(Request {
                message_id: Str::from("1"),
                command: Str::from("echo"),
                params,
            })
        };
        let nest = |inner: Value| Value::object(vec![(Str::from("a"), inner)]);
        let two_deep = nest(Value::object(vec![]));
        let three_deep = nest(two_deep.clone());
        for encoding in [Encoding::Amf3, Encoding::Json] {
            let decode = |params: &Value| {
                let frame =
                    encode_envelope(with_params(params.clone()), encoding, 1024).expect("encodes");
                decode_envelope(frame.slice(HEADER_LEN..), encoding, &options)
            };
            assert!(decode(&two_deep).is_ok(), "{encoding:?}");
            assert!(decode(&three_deep).is_err(), "{encoding:?}");
        }
        let frame =
            encode_envelope(with_params(three_deep), Encoding::Json, 1024).expect("encodes");
        let error = decode_envelope(frame.slice(HEADER_LEN..), Encoding::Json, &options)
            .expect_err("too deep");
        assert_eq!(
            error.to_string(),
            "JSON payload nested 5 levels deep, over the limit of 4"
        );
    }

    #[test]
    fn a_frame_above_the_cap_is_refused() {
        assert!(matches!(
            encode_envelope(request(), Encoding::Json, 10),
            Err(WireError::Frame(FrameError::EncodedTooLarge {
                len: _,
                max: 10
            }))
        ));
    }
}
