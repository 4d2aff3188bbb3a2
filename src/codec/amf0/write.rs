//! AMF0 encoding.
use bytes::BufMut;

use crate::codec::error::EncodeError;
use crate::codec::limits::Limits;
use crate::codec::value::Value;

/// Encodes one AMF0 value.
pub fn encode(value: &Value, limits: &Limits) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_into(value, limits, &mut out)?;
    Ok(out)
}

/// Appends one AMF0 value to `out`.
pub fn encode_into(_value: &Value, _limits: &Limits, _out: &mut impl BufMut) -> Result<(), EncodeError> {
    todo!()
}
