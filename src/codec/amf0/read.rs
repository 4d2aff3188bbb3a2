//! AMF0 decoding: one value, with the AMF0 object table scoped to it and a fresh set of AMF3
//! tables for each value after an AVM+ switch (0x11).

use bytes::Bytes;

use crate::codec::DecodeOptions;
use crate::codec::amf3::build::Owned;
use crate::codec::amf3::read::Reader as Amf3Reader;
use crate::codec::error::{DecodeError, DecodeErrorKind, Table};
use crate::codec::input::{Input, PREALLOCATE_AT_MOST};
use crate::codec::marker::amf0 as marker;
use crate::codec::value::{Array, Member, Object, Str, Value};

/// Decodes exactly one AMF0 value from `bytes`; anything left over is an error.
pub fn decode(bytes: Bytes, options: &DecodeOptions) -> Result<Value, DecodeError> {
    let mut input = Input::new(&bytes);
    let value = Reader::new(options, &bytes).read_value(&mut input)?;
    input.finish()?;
    Ok(value)
}

/// The AMF0 object table of one value being read, and the nesting depth.
struct Reader<'o, 'a> {
    options: &'o DecodeOptions,
    /// The buffer the input borrows from, which AMF3 byte arrays share.
    source: &'a Bytes,
    /// Entries in the AMF0 object table so far (objects, typed objects, strict and ECMA arrays);
    /// a reference is kept as its index, never copied.
    objects: usize,
    depth: usize,
}

impl<'o, 'a> Reader<'o, 'a> {
    /// A reader with an empty object table, at the top level.
    fn new(options: &'o DecodeOptions, source: &'a Bytes) -> Reader<'o, 'a> {
        Reader {
            options,
            source,
            objects: 0,
            depth: 0,
        }
    }

    /// Reads one value.
    fn read_value(&mut self, input: &mut Input<'a>) -> Result<Value, DecodeError> {
        let offset = input.position();
        let type_marker = input.u8("an AMF0 type marker")?;
        match type_marker {
            marker::NUMBER => Ok(Value::Double(input.f64("an AMF0 number")?)),
            marker::BOOLEAN => Ok(Value::Bool(input.u8("an AMF0 boolean")? != 0)),
            marker::STRING => Ok(Value::String(short_text(input, "a string")?)),
            marker::LONG_STRING => Ok(Value::String(long_text(input, "a long string")?)),
            marker::NULL | marker::UNSUPPORTED => Ok(Value::Null),
            marker::UNDEFINED => Ok(Value::Undefined),
            marker::OBJECT => {
                self.nested(offset, |reader| reader.read_object(input, Str::default()))
            }
            marker::TYPED_OBJECT => self.nested(offset, |reader| {
                let class_name = short_text(input, "a class name")?;
                reader.read_object(input, class_name)
            }),
            marker::ECMA_ARRAY => self.nested(offset, |reader| reader.read_ecma_array(input)),
            marker::STRICT_ARRAY => self.nested(offset, |reader| reader.read_strict_array(input)),
            marker::DATE => read_date(input),
            marker::XML_DOCUMENT => Ok(Value::XmlDocument(long_text(input, "an XML document")?)),
            marker::REFERENCE => self.read_reference(input),
            marker::AVMPLUS => self.read_avmplus(input),
            marker::MOVIECLIP => Err(unsupported(offset, type_marker, "movieclip")),
            marker::RECORDSET => Err(unsupported(offset, type_marker, "recordset")),
            marker::OBJECT_END => Err(unsupported(offset, type_marker, "object-end")),
            other => Err(Input::error_at(
                offset,
                DecodeErrorKind::InvalidMarker {
                    format: "AMF0",
                    marker: other,
                },
            )),
        }
    }

    /// The AMF3 value after an AVM+ switch, with tables of its own. Never inlined: the AMF3 tables
    /// take a kilobyte or two of stack, which must not be part of every level of AMF0 nesting.
    #[inline(never)]
    fn read_avmplus(&mut self, input: &mut Input<'a>) -> Result<Value, DecodeError> {
        let inner = Amf3Reader::new(
            self.options,
            self.depth,
            Owned {
                source: self.source,
            },
        )
        .read_value(input)?;
        Ok(Value::Avmplus(Box::new(inner)))
    }

    /// Runs `read` one container deeper, failing at the depth limit before recursing; the
    /// container takes the next object-table index, before its contents.
    fn nested(
        &mut self,
        offset: usize,
        read: impl FnOnce(&mut Self) -> Result<Value, DecodeError>,
    ) -> Result<Value, DecodeError> {
        let limit = self.options.limits.max_depth;
        if self.depth >= limit {
            return Err(Input::error_at(offset, DecodeErrorKind::TooDeep { limit }));
        }
        self.objects += 1;
        self.depth += 1;
        let value = read(self);
        self.depth -= 1;
        value
    }

    /// An anonymous (empty `class_name`) or typed object; its members follow.
    fn read_object(
        &mut self,
        input: &mut Input<'a>,
        class_name: Str,
    ) -> Result<Value, DecodeError> {
        let members = self.read_members(input, 0)?;
        let anonymous = class_name.is_empty();
        Ok(Value::Object(Box::new(Object {
            class_name,
            // AMF0 has no sealed/dynamic split: a typed object's members count as sealed.
            sealed_count: if anonymous { 0 } else { members.len() },
            dynamic: anonymous,
            members,
        })))
    }

    fn read_ecma_array(&mut self, input: &mut Input<'a>) -> Result<Value, DecodeError> {
        // The count is only a hint: the members end with 00 00 09 whatever it says.
        let hint = input.u32("an ECMA array count")?;
        let members = self.read_members(input, hint as usize)?;
        Ok(Value::EcmaArray(Box::new(members)))
    }

    fn read_strict_array(&mut self, input: &mut Input<'a>) -> Result<Value, DecodeError> {
        let offset = input.position();
        let count = input.u32("a strict array count")?;
        input.check_count("strict array count", u64::from(count), 1, offset)?;
        let mut dense = Vec::with_capacity((count as usize).min(PREALLOCATE_AT_MOST));
        for _ in 0..count {
            dense.push(self.read_value(input)?);
        }
        Ok(Value::Array(Box::new(Array {
            assoc: Vec::new(),
            dense,
        })))
    }

    /// Reads (name, value) pairs up to an empty name and the object-end marker.
    fn read_members(
        &mut self,
        input: &mut Input<'a>,
        hint: usize,
    ) -> Result<Vec<Member>, DecodeError> {
        let mut members = Vec::with_capacity(hint.min(PREALLOCATE_AT_MOST));
        loop {
            let name = short_text(input, "a member name")?;
            if name.is_empty() {
                let offset = input.position();
                let end = input.u8("an object end marker")?;
                if end != marker::OBJECT_END {
                    return Err(Input::error_at(
                        offset,
                        DecodeErrorKind::MissingObjectEnd { found: end },
                    ));
                }
                return Ok(members);
            }
            members.push((name, self.read_value(input)?));
        }
    }

    fn read_reference(&mut self, input: &mut Input<'a>) -> Result<Value, DecodeError> {
        let offset = input.position();
        let index = input.u16("an AMF0 reference")?;
        if usize::from(index) >= self.objects {
            return Err(Input::error_at(
                offset,
                DecodeErrorKind::ReferenceOutOfRange {
                    table: Table::Objects,
                    index: u32::from(index),
                    len: self.objects,
                },
            ));
        }
        Ok(Value::Reference(u32::from(index)))
    }
}

/// A date: milliseconds, then a time zone that the specification reserves and that is ignored.
fn read_date(input: &mut Input) -> Result<Value, DecodeError> {
    let ms = input.f64("an AMF0 date")?;
    input.u16("an AMF0 date time zone")?;
    Ok(Value::Date(ms))
}

/// UTF-8 text after a 16-bit length.
fn short_text(input: &mut Input, what: &'static str) -> Result<Str, DecodeError> {
    let offset = input.position();
    let len = input.u16(what)?;
    input.owned_text(what, usize::from(len), offset)
}

/// UTF-8 text after a 32-bit length.
fn long_text(input: &mut Input, what: &'static str) -> Result<Str, DecodeError> {
    let offset = input.position();
    let len = input.u32(what)?;
    input.owned_text(what, len as usize, offset)
}

/// The error for a marker AMF0 reserves but that no peer may send.
fn unsupported(offset: usize, type_marker: u8, name: &'static str) -> DecodeError {
    Input::error_at(
        offset,
        DecodeErrorKind::UnsupportedMarker {
            marker: type_marker,
            name,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::limits::Limits;

    fn decode_hex(hex_text: &str) -> Result<Value, DecodeError> {
        let bytes = hex::decode(hex_text).expect("test hex is valid");
        decode(Bytes::from(bytes), DecodeOptions::shared_default())
    }

    #[test]
    fn ecma_count_is_ignored() {
        // Declares 1,000,000 members, holds one.
        let value = decode_hex("08000f424000016b02000176000009").expect("decodes");
        let Value::EcmaArray(members) = value else {
            panic!("expected an ECMA array, got {value:?}");
        };
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].0, "k");
        assert_eq!(members[0].1, Value::string("v"));
    }

    #[test]
    fn reference_numbering_skips_dates() {
        // [date, {a: true}, ref 1]: the strict array is 0, the date takes no slot, the object is 1.
        let value = decode_hex("0a000000030b408f4000000000000000030001610101000009070001")
            .expect("decodes");
        let Value::Array(array) = value else {
            panic!("expected a strict array, got {value:?}");
        };
        assert_eq!(array.dense[0], Value::Date(1000.0));
        assert_eq!(array.dense[2], Value::Reference(1));
        // Reference 2 would be past the table.
        let error =
            decode_hex("0a000000030b408f4000000000000000030001610101000009070002").unwrap_err();
        assert_eq!(
            error.kind,
            DecodeErrorKind::ReferenceOutOfRange {
                table: Table::Objects,
                index: 2,
                len: 2,
            }
        );
        assert_eq!(error.offset, 26);
    }

    #[test]
    fn avmplus_tables_are_separate() {
        // [{}, 0x11 [AMF3 ref 0]]: in the AMF3 scope, reference 0 is the AMF3 array itself.
        let value = decode_hex("0a0000000203000009110903010a00").expect("decodes");
        let Value::Array(array) = value else {
            panic!("expected a strict array, got {value:?}");
        };
        let inner = Value::Array(Box::new(Array {
            assoc: Vec::new(),
            dense: vec![Value::Reference(0)],
        }));
        assert_eq!(array.dense[1], Value::Avmplus(Box::new(inner)));
        // AMF3 reference 1 fails: the AMF3 table holds one entry, whatever the AMF0 one holds.
        let error = decode_hex("0a0000000203000009110903010a02").unwrap_err();
        assert_eq!(error.offset, 14);
        assert_eq!(
            error.kind,
            DecodeErrorKind::ReferenceOutOfRange {
                table: Table::Objects,
                index: 1,
                len: 1,
            }
        );
    }

    #[test]
    fn depth_limit_names_the_offending_container() {
        let options = DecodeOptions {
            limits: Limits {
                max_depth: 3,
                ..Limits::default()
            },
            ..DecodeOptions::default()
        };
        let nested = |levels: usize| {
            let mut hex_text = "0a00000001".repeat(levels);
            hex_text.push_str("05");
            Bytes::from(hex::decode(hex_text).expect("test hex is valid"))
        };
        assert!(decode(nested(3), &options).is_ok());
        let error = decode(nested(4), &options).unwrap_err();
        assert_eq!(error.kind, DecodeErrorKind::TooDeep { limit: 3 });
        assert_eq!(error.offset, 15);
    }

    #[test]
    fn depth_continues_into_avmplus() {
        let options = DecodeOptions {
            limits: Limits {
                max_depth: 2,
                ..Limits::default()
            },
            ..DecodeOptions::default()
        };
        // AMF0 strict array, then 0x11 and two nested AMF3 arrays: three levels.
        let bytes = hex::decode("0a000000011109030109030101").expect("test hex is valid");
        let error = decode(Bytes::from(bytes), &options).unwrap_err();
        assert_eq!(error.kind, DecodeErrorKind::TooDeep { limit: 2 });
        assert_eq!(error.offset, 9);
    }

    #[test]
    fn deep_nesting_fails_cleanly() {
        let error = decode_hex(&"0a00000001".repeat(5000)).unwrap_err();
        let limit = Limits::DEFAULT_MAX_DEPTH;
        assert_eq!(error.kind, DecodeErrorKind::TooDeep { limit });
        assert_eq!(error.offset, 5 * limit);
    }

    #[test]
    fn truncated_number_reports_its_offset() {
        let error = decode_hex("003ff0").unwrap_err();
        assert_eq!(error.offset, 1);
        assert!(matches!(
            error.kind,
            DecodeErrorKind::UnexpectedEnd {
                needed: 8,
                available: 2,
                ..
            }
        ));
    }

    #[test]
    fn missing_object_end_and_reserved_markers() {
        let error = decode_hex("0300000a").unwrap_err();
        assert_eq!(
            error.kind,
            DecodeErrorKind::MissingObjectEnd { found: 0x0a }
        );
        assert_eq!(error.offset, 3);
        let error = decode_hex("0a0000000109").unwrap_err();
        assert_eq!(
            error.kind,
            DecodeErrorKind::UnsupportedMarker {
                marker: 0x09,
                name: "object-end",
            }
        );
        assert_eq!(error.offset, 5);
        let error = decode_hex("12").unwrap_err();
        assert_eq!(
            error.kind,
            DecodeErrorKind::InvalidMarker {
                format: "AMF0",
                marker: 0x12,
            }
        );
    }

    #[test]
    fn typed_object_members_are_sealed() {
        let value = decode_hex("100003466f6f0001610101000009").expect("decodes");
        let object = value.as_object().expect("an object");
        assert_eq!(object.class_name, "Foo");
        assert_eq!(object.sealed_count, 1);
        assert!(!object.dynamic);
        assert_eq!(object.get("a"), Some(&Value::Bool(true)));
        assert_eq!(decode_hex("0101").expect("decodes"), Value::Bool(true));
        assert!(decode_hex("010100").is_err(), "trailing bytes are an error");
    }
}
