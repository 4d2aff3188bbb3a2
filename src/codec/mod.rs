//! The AMF0 and AMF3 codec: pure functions from bytes to `Value` and back, safe on hostile input.
//!
//! Decoding costs O(input) time and memory whatever the input: lengths and counts are checked
//! against the bytes left before anything is allocated, nesting is bounded, and references are kept
//! as table indices rather than copies. Rendering a value (canonical JSON, readable text) resolves
//! references within a work budget proportional to the value's size.

pub mod amf0;
pub mod amf3;
pub mod display;
pub mod error;
pub mod externals;
pub mod graph;
mod input;
pub mod json;
mod json_sink;
pub mod limits;
mod marker;
pub mod value;
pub mod view;

use std::sync::LazyLock;

use bytes::Bytes;

pub use error::{DecodeError, DecodeErrorKind, EncodeError, RenderError};
pub use externals::ExternalRegistry;
pub use limits::Limits;
pub use value::{
    Array, Dictionary, Externalizable, Member, Object, ObjectVector, Str, Value, Vector,
};
pub use view::{View, ViewDecoder};

/// The two AMF versions; each has its own reference rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// AMF0 (Flash Remoting, RTMP commands, shared objects).
    Amf0,
    /// AMF3 (AMF Socket frames, `ByteArray.writeObject`).
    Amf3,
}

/// How to decode: limits and the externalizable classes understood.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Depth and expansion limits.
    pub limits: Limits,
    /// Externalizable classes whose external form is known.
    pub externals: ExternalRegistry,
}

impl DecodeOptions {
    /// The default options, built once.
    pub fn shared_default() -> &'static DecodeOptions {
        static DEFAULT: LazyLock<DecodeOptions> = LazyLock::new(DecodeOptions::default);
        &DEFAULT
    }
}

/// Decodes exactly one value of `format` from `bytes` with the default options.
pub fn decode(bytes: Bytes, format: Format) -> Result<Value, DecodeError> {
    decode_with(bytes, format, DecodeOptions::shared_default())
}

/// Decodes exactly one value of `format` from `bytes`.
pub fn decode_with(
    bytes: Bytes,
    format: Format,
    options: &DecodeOptions,
) -> Result<Value, DecodeError> {
    match format {
        Format::Amf0 => amf0::decode(bytes, options),
        Format::Amf3 => amf3::decode(bytes, options),
    }
}

/// Encodes one value in `format` with the default limits.
pub fn encode(value: &Value, format: Format) -> Result<Vec<u8>, EncodeError> {
    let limits = Limits::default();
    match format {
        Format::Amf0 => amf0::encode(value, &limits),
        Format::Amf3 => amf3::encode(value, &limits),
    }
}
