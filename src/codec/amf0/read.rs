//! AMF0 decoding.
use bytes::Bytes;

use crate::codec::DecodeOptions;
use crate::codec::error::DecodeError;
use crate::codec::value::Value;

/// Decodes exactly one AMF0 value from `bytes`; anything left over is an error.
pub fn decode(_bytes: Bytes, _options: &DecodeOptions) -> Result<Value, DecodeError> {
    todo!()
}
