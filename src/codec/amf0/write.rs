//! AMF0 encoding: the AMF0 object table of one value, and the AVM+ switch (0x11) for every value
//! AMF0 has no marker for, written in AMF3 with tables of its own.
//!
//! Object references are written only where the value holds a `Value::Reference`, numbered as the
//! decoder numbers them: objects, typed objects, strict and ECMA arrays, a container before its
//! contents.

use bytes::BufMut;

use crate::codec::amf3::write::Writer as Amf3Writer;
use crate::codec::error::EncodeError;
use crate::codec::limits::Limits;
use crate::codec::marker::amf0 as marker;
use crate::codec::value::{Member, Object, Value};

/// Encodes one AMF0 value.
pub fn encode(value: &Value, limits: &Limits) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_into(value, limits, &mut out)?;
    Ok(out)
}

/// Appends one AMF0 value to `out`.
pub fn encode_into(
    value: &Value,
    limits: &Limits,
    out: &mut impl BufMut,
) -> Result<(), EncodeError> {
    Writer::new(limits.max_depth).write_value(value, out)
}

/// The AMF0 object table of one value being written, and the nesting depth.
struct Writer {
    max_depth: usize,
    depth: usize,
    /// Entries in the AMF0 object table written so far.
    objects: usize,
}

impl Writer {
    fn new(max_depth: usize) -> Writer {
        Writer {
            max_depth,
            depth: 0,
            objects: 0,
        }
    }

    /// Writes one value.
    fn write_value(&mut self, value: &Value, out: &mut impl BufMut) -> Result<(), EncodeError> {
        if value.is_amf3_only() {
            return self.write_avmplus(value, out);
        }
        match value {
            Value::Undefined => out.put_u8(marker::UNDEFINED),
            Value::Null => out.put_u8(marker::NULL),
            Value::Bool(flag) => {
                out.put_u8(marker::BOOLEAN);
                out.put_u8(u8::from(*flag));
            }
            Value::Integer(n) => write_number(out, f64::from(*n)),
            Value::Double(n) => write_number(out, *n),
            Value::String(text) => write_string(text, out)?,
            Value::XmlDocument(text) => {
                out.put_u8(marker::XML_DOCUMENT);
                write_long_text("XML document", text, out)?;
            }
            Value::Date(ms) => {
                out.put_u8(marker::DATE);
                out.put_f64(*ms);
                out.put_i16(0);
            }
            Value::Object(object) => self.nested(|writer| writer.write_object(object, out))?,
            Value::EcmaArray(members) => {
                self.nested(|writer| writer.write_ecma_array(members, out))?
            }
            Value::Array(array) => {
                self.nested(|writer| writer.write_strict_array(&array.dense, out))?
            }
            Value::Avmplus(inner) => self.write_avmplus(inner, out)?,
            Value::Reference(index) => self.write_reference(*index, out)?,
            // What remains is AMF3-only (see `Value::is_amf3_only`), already written above.
            amf3_only => self.write_avmplus(amf3_only, out)?,
        }
        Ok(())
    }

    /// Runs `write` one container deeper, failing at the depth limit before recursing.
    fn nested(
        &mut self,
        write: impl FnOnce(&mut Self) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        if self.depth >= self.max_depth {
            return Err(EncodeError::TooDeep {
                limit: self.max_depth,
            });
        }
        self.depth += 1;
        let result = write(self);
        self.depth -= 1;
        result
    }

    /// Writes the marker of a value that takes an AMF0 object-table entry, and numbers it.
    fn begin_entry(&mut self, type_marker: u8, out: &mut impl BufMut) {
        out.put_u8(type_marker);
        self.objects += 1;
    }

    /// Writes 0x11 and then `value` in AMF3, in a scope of its own, as deep as this writer is.
    /// Never inlined, so that the AMF3 tables' stack is not part of every level of AMF0 nesting.
    #[inline(never)]
    fn write_avmplus(&mut self, value: &Value, out: &mut impl BufMut) -> Result<(), EncodeError> {
        out.put_u8(marker::AVMPLUS);
        Amf3Writer::new(self.max_depth, self.depth)
            .write_value(value, out)
            .map_err(|error| *error)
    }

    fn write_reference(&mut self, index: u32, out: &mut impl BufMut) -> Result<(), EncodeError> {
        if index as usize >= self.objects {
            return Err(EncodeError::DanglingReference {
                index,
                written: self.objects,
            });
        }
        let Ok(index) = u16::try_from(index) else {
            return Err(EncodeError::TooLong {
                what: "AMF0 reference index",
                len: index as usize,
            });
        };
        out.put_u8(marker::REFERENCE);
        out.put_u16(index);
        Ok(())
    }

    /// An anonymous object (0x03) or, with a class name, a typed object (0x10).
    fn write_object(&mut self, object: &Object, out: &mut impl BufMut) -> Result<(), EncodeError> {
        if object.class_name.is_empty() {
            self.begin_entry(marker::OBJECT, out);
        } else {
            self.begin_entry(marker::TYPED_OBJECT, out);
            write_short_text("class name", &object.class_name, out)?;
        }
        self.write_members(&object.members, out)
    }

    /// An ECMA array. Its count is only a hint to the reader; it is written as ActionScript's
    /// `Array.length`: one more than the highest array-index key, else 0, which is what py3amf
    /// writes for keys that are not indices (and what its byte-exact vectors hold).
    fn write_ecma_array(
        &mut self,
        members: &[Member],
        out: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        self.begin_entry(marker::ECMA_ARRAY, out);
        out.put_u32(array_length(members));
        self.write_members(members, out)
    }

    fn write_strict_array(
        &mut self,
        items: &[Value],
        out: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        self.begin_entry(marker::STRICT_ARRAY, out);
        out.put_u32(count("strict array", items.len())?);
        items
            .iter()
            .try_for_each(|item| self.write_value(item, out))
    }

    /// Writes (name, value) pairs, then an empty name and the object-end marker.
    fn write_members(
        &mut self,
        members: &[Member],
        out: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        for (name, value) in members {
            if name.is_empty() {
                return Err(EncodeError::EmptyKey);
            }
            write_short_text("member name", name, out)?;
            self.write_value(value, out)?;
        }
        out.put_u16(0);
        out.put_u8(marker::OBJECT_END);
        Ok(())
    }
}

/// ActionScript's `Array.length` for these keys: one more than the highest array index among
/// them (a canonical decimal below 2^32 - 1), else 0.
fn array_length(members: &[Member]) -> u32 {
    members
        .iter()
        .filter_map(|(key, _)| array_index(key))
        .max()
        .map_or(0, |index| index + 1)
}

/// The array index `key` names: digits without a leading zero (except "0" itself), below 2^32 - 1.
fn array_index(key: &str) -> Option<u32> {
    let canonical =
        key.bytes().all(|byte| byte.is_ascii_digit()) && (key == "0" || !key.starts_with('0'));
    key.parse::<u32>()
        .ok()
        .filter(|&index| canonical && index < u32::MAX)
}

fn write_number(out: &mut impl BufMut, n: f64) {
    out.put_u8(marker::NUMBER);
    out.put_f64(n);
}

/// A string: 0x02 with a 16-bit length when it fits, else 0x0C with a 32-bit length.
fn write_string(text: &str, out: &mut impl BufMut) -> Result<(), EncodeError> {
    if text.len() <= usize::from(u16::MAX) {
        out.put_u8(marker::STRING);
        write_short_text("string", text, out)
    } else {
        out.put_u8(marker::LONG_STRING);
        write_long_text("string", text, out)
    }
}

/// UTF-8 text after a 16-bit length.
fn write_short_text(
    what: &'static str,
    text: &str,
    out: &mut impl BufMut,
) -> Result<(), EncodeError> {
    let len = u16::try_from(text.len()).map_err(|_| EncodeError::TooLong {
        what,
        len: text.len(),
    })?;
    out.put_u16(len);
    out.put_slice(text.as_bytes());
    Ok(())
}

/// UTF-8 text after a 32-bit length.
fn write_long_text(
    what: &'static str,
    text: &str,
    out: &mut impl BufMut,
) -> Result<(), EncodeError> {
    out.put_u32(count(what, text.len())?);
    out.put_slice(text.as_bytes());
    Ok(())
}

/// A length or count as the 32-bit field AMF0 writes it in.
fn count(what: &'static str, len: usize) -> Result<u32, EncodeError> {
    u32::try_from(len).map_err(|_| EncodeError::TooLong { what, len })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::value::{Array, Str};

    fn encode_hex(value: &Value) -> Result<String, EncodeError> {
        encode(value, &Limits::default()).map(hex::encode)
    }

    #[test]
    fn long_string_switch_at_65536_bytes() {
        let short =
            encode(&Value::string(&"x".repeat(65535)), &Limits::default()).expect("encodes");
        assert_eq!(short[..3], [0x02, 0xff, 0xff]);
        assert_eq!(short.len(), 3 + 65535);
        let long = encode(&Value::string(&"x".repeat(65536)), &Limits::default()).expect("encodes");
        assert_eq!(long[..5], [0x0c, 0x00, 0x01, 0x00, 0x00]);
        assert_eq!(long.len(), 5 + 65536);
        let again = crate::codec::amf0::decode(
            Bytes::from(long),
            crate::codec::DecodeOptions::shared_default(),
        );
        assert_eq!(again.expect("decodes").as_str().map(str::len), Some(65536));
    }

    #[test]
    fn amf3_only_values_go_through_avmplus() {
        let bytes = Value::ByteArray(Bytes::from_static(b"\x01\x02"));
        assert_eq!(encode_hex(&bytes).expect("encodes"), "110c050102");
        let mixed = Value::Array(Box::new(Array {
            assoc: vec![(Str::from("k"), Value::Integer(1))],
            dense: Vec::new(),
        }));
        assert_eq!(encode_hex(&mixed).expect("encodes"), "110901036b040101");
        let avmplus = Value::Avmplus(Box::new(Value::Integer(5)));
        assert_eq!(encode_hex(&avmplus).expect("encodes"), "110405");
    }

    #[test]
    fn amf3_scopes_take_no_amf0_slot() {
        // [ByteArray, {}, ref 1]: the strict array is 0, the object 1; the ByteArray opens its own scope.
        let value = Value::array(vec![
            Value::ByteArray(Bytes::new()),
            Value::object(Vec::new()),
            Value::Reference(1),
        ]);
        assert_eq!(
            encode_hex(&value).expect("encodes"),
            "0a00000003110c0103000009070001"
        );
    }

    #[test]
    fn dangling_reference_is_an_error() {
        // A date takes no slot, so reference 1 after [date] dangles.
        let value = Value::array(vec![Value::Date(0.0), Value::Reference(1)]);
        assert_eq!(
            encode_hex(&value),
            Err(EncodeError::DanglingReference {
                index: 1,
                written: 1
            })
        );
        let value = Value::array(vec![Value::Date(0.0), Value::Reference(0)]);
        assert_eq!(
            encode_hex(&value).expect("encodes"),
            "0a000000020b00000000000000000000070000"
        );
    }

    #[test]
    fn ecma_count_is_the_array_length() {
        let ecma = |keys: &[&str]| {
            let members = keys
                .iter()
                .map(|key| (Str::from(*key), Value::Null))
                .collect();
            encode_hex(&Value::EcmaArray(Box::new(members))).expect("encodes")
        };
        assert_eq!(ecma(&["x", "y"])[..10], *"0800000000");
        assert_eq!(ecma(&["0", "1", "x"])[..10], *"0800000002");
        assert_eq!(ecma(&["7", "07", "+9", "4294967295"])[..10], *"0800000008");
    }

    #[test]
    fn member_names_are_checked() {
        let empty = Value::object(vec![(Str::default(), Value::Null)]);
        assert_eq!(encode_hex(&empty), Err(EncodeError::EmptyKey));
        let long_name =
            Value::typed_object("Foo", vec![(Str::from("n".repeat(65536)), Value::Null)]);
        assert_eq!(
            encode_hex(&long_name),
            Err(EncodeError::TooLong {
                what: "member name",
                len: 65536,
            })
        );
    }

    #[test]
    fn depth_limit_is_enforced() {
        let limits = Limits {
            max_depth: 2,
            ..Limits::default()
        };
        let two = Value::array(vec![Value::array(Vec::new())]);
        assert_eq!(
            encode(&two, &limits).map(hex::encode).expect("encodes"),
            "0a000000010a00000000"
        );
        let three = Value::array(vec![two.clone()]);
        assert_eq!(
            encode(&three, &limits),
            Err(EncodeError::TooDeep { limit: 2 })
        );
        // The depth carries on into AMF3 after the switch.
        let switched = Value::array(vec![Value::Avmplus(Box::new(two))]);
        assert_eq!(
            encode(&switched, &limits),
            Err(EncodeError::TooDeep { limit: 2 })
        );
    }
}
