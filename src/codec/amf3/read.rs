//! AMF3 decoding: one value, with string, trait and object tables scoped to it.

use bytes::Bytes;
use smallvec::SmallVec;

use super::u29;
use crate::codec::DecodeOptions;
use crate::codec::error::{DecodeError, DecodeErrorKind, Table};
use crate::codec::input::{Input, PREALLOCATE_AT_MOST};
use crate::codec::marker::amf3 as marker;
use crate::codec::value::{
    Array, Dictionary, Externalizable, Member, Object, ObjectVector, Str, Value, Vector,
};

/// Decodes exactly one AMF3 value from `bytes`; anything left over is an error.
pub fn decode(bytes: Bytes, options: &DecodeOptions) -> Result<Value, DecodeError> {
    let mut input = Input::new(bytes);
    let value = Reader::new(options, 0).read_value(&mut input)?;
    input.finish()?;
    Ok(value)
}

/// Room reserved for the dynamic members of an object before they are read: RPC objects
/// typically have a handful.
const DYNAMIC_MEMBERS_EXPECTED: usize = 4;

/// Class traits as sent once and then referenced by index.
struct Traits {
    class_name: Str,
    dynamic: bool,
    externalizable: bool,
    sealed_names: SmallVec<[Str; 8]>,
}

/// The reference tables of one AMF3 value being read.
pub(crate) struct Reader<'o> {
    options: &'o DecodeOptions,
    strings: SmallVec<[Str; 32]>,
    traits: SmallVec<[Traits; 4]>,
    /// Entries in the object table so far; a reference is kept as its index, never copied.
    objects: u32,
    depth: usize,
}

/// A U29 header that either references an object-table entry or introduces an inline value.
enum Header {
    Reference(Value),
    Inline(u32),
}

impl<'o> Reader<'o> {
    /// A reader with empty tables, already `depth` containers deep (non-zero inside AMF0).
    pub(crate) fn new(options: &'o DecodeOptions, depth: usize) -> Reader<'o> {
        Reader {
            options,
            // On the stack while a typical RPC envelope's tables fit, on the heap beyond.
            strings: SmallVec::new(),
            traits: SmallVec::new(),
            objects: 0,
            depth,
        }
    }

    /// Reads one value.
    pub(crate) fn read_value(&mut self, input: &mut Input) -> Result<Value, DecodeError> {
        let offset = input.position();
        let type_marker = input.u8("an AMF3 type marker")?;
        match type_marker {
            marker::UNDEFINED => Ok(Value::Undefined),
            marker::NULL => Ok(Value::Null),
            marker::FALSE => Ok(Value::Bool(false)),
            marker::TRUE => Ok(Value::Bool(true)),
            marker::INTEGER => Ok(Value::Integer(u29::read_signed(input)?)),
            marker::DOUBLE => Ok(Value::Double(input.f64("an AMF3 double")?)),
            marker::STRING => Ok(Value::String(self.read_string(input, "a string")?)),
            marker::XML_DOCUMENT => self.read_text(input, "an XMLDocument", Value::XmlDocument),
            marker::XML => self.read_text(input, "an XML value", Value::Xml),
            marker::DATE => self.read_date(input),
            marker::BYTE_ARRAY => self.read_byte_array(input),
            marker::ARRAY => self.nested(offset, |reader| reader.read_array(input)),
            marker::OBJECT => self.nested(offset, |reader| reader.read_object(input)),
            marker::VECTOR_INT => {
                self.read_vector(input, "a Vector.<int>", 4, Value::VectorInt, |input| {
                    Ok(input.u32("a Vector.<int> item")? as i32)
                })
            }
            marker::VECTOR_UINT => {
                self.read_vector(input, "a Vector.<uint>", 4, Value::VectorUint, |input| {
                    input.u32("a Vector.<uint> item")
                })
            }
            marker::VECTOR_DOUBLE => self.read_vector(
                input,
                "a Vector.<Number>",
                8,
                Value::VectorDouble,
                |input| input.f64("a Vector.<Number> item"),
            ),
            marker::VECTOR_OBJECT => self.nested(offset, |reader| reader.read_object_vector(input)),
            marker::DICTIONARY => self.nested(offset, |reader| reader.read_dictionary(input)),
            other => Err(Input::error_at(
                offset,
                DecodeErrorKind::InvalidMarker {
                    format: "AMF3",
                    marker: other,
                },
            )),
        }
    }

    /// Runs `read` one container deeper, failing at the depth limit before recursing.
    fn nested(
        &mut self,
        offset: usize,
        read: impl FnOnce(&mut Self) -> Result<Value, DecodeError>,
    ) -> Result<Value, DecodeError> {
        let limit = self.options.limits.max_depth;
        if self.depth >= limit {
            return Err(Input::error_at(offset, DecodeErrorKind::TooDeep { limit }));
        }
        self.depth += 1;
        let value = read(self);
        self.depth -= 1;
        value
    }

    /// Reads the U29 of an object-table value: a reference (checked) or an inline length/count.
    /// An inline value takes the next object-table index.
    fn header(&mut self, input: &mut Input) -> Result<Header, DecodeError> {
        let offset = input.position();
        let raw = u29::read(input)?;
        if raw & 1 == 0 {
            let index = raw >> 1;
            if index >= self.objects {
                return Err(Input::error_at(
                    offset,
                    DecodeErrorKind::ReferenceOutOfRange {
                        table: Table::Objects,
                        index,
                        len: self.objects as usize,
                    },
                ));
            }
            return Ok(Header::Reference(Value::Reference(index)));
        }
        self.objects += 1;
        Ok(Header::Inline(raw >> 1))
    }

    /// Reads a string value, class name or member name through the string table.
    fn read_string(&mut self, input: &mut Input, what: &'static str) -> Result<Str, DecodeError> {
        let offset = input.position();
        let raw = u29::read(input)?;
        if raw & 1 == 0 {
            let index = raw >> 1;
            return self.strings.get(index as usize).cloned().ok_or_else(|| {
                Input::error_at(
                    offset,
                    DecodeErrorKind::ReferenceOutOfRange {
                        table: Table::Strings,
                        index,
                        len: self.strings.len(),
                    },
                )
            });
        }
        let len = (raw >> 1) as usize;
        if len == 0 {
            // The empty string is never sent by reference and never enters the table.
            return Ok(Str::default());
        }
        let text = input.text(what, len, offset)?;
        self.strings.push(text.clone());
        Ok(text)
    }

    /// XML and XMLDocument: text that lives in the object table, not the string table.
    fn read_text(
        &mut self,
        input: &mut Input,
        what: &'static str,
        wrap: fn(Str) -> Value,
    ) -> Result<Value, DecodeError> {
        let offset = input.position();
        match self.header(input)? {
            Header::Reference(reference) => Ok(reference),
            Header::Inline(len) => Ok(wrap(input.text(what, len as usize, offset)?)),
        }
    }

    fn read_date(&mut self, input: &mut Input) -> Result<Value, DecodeError> {
        match self.header(input)? {
            Header::Reference(reference) => Ok(reference),
            Header::Inline(_) => Ok(Value::Date(input.f64("a Date")?)),
        }
    }

    fn read_byte_array(&mut self, input: &mut Input) -> Result<Value, DecodeError> {
        let offset = input.position();
        match self.header(input)? {
            Header::Reference(reference) => Ok(reference),
            Header::Inline(len) => Ok(Value::ByteArray(input.take(
                "ByteArray length",
                len as usize,
                offset,
            )?)),
        }
    }

    fn read_array(&mut self, input: &mut Input) -> Result<Value, DecodeError> {
        let offset = input.position();
        let dense_count = match self.header(input)? {
            Header::Reference(reference) => return Ok(reference),
            Header::Inline(count) => count,
        };
        input.check_count("array count", u64::from(dense_count), 1, offset)?;
        let mut assoc = Vec::new();
        loop {
            let key = self.read_string(input, "an array key")?;
            if key.is_empty() {
                break;
            }
            assoc.push((key, self.read_value(input)?));
        }
        let mut dense = Vec::with_capacity((dense_count as usize).min(PREALLOCATE_AT_MOST));
        for _ in 0..dense_count {
            dense.push(self.read_value(input)?);
        }
        Ok(Value::Array(Box::new(Array { assoc, dense })))
    }

    fn read_object(&mut self, input: &mut Input) -> Result<Value, DecodeError> {
        let header_offset = input.position();
        let flags = match self.header(input)? {
            Header::Reference(reference) => return Ok(reference),
            Header::Inline(flags) => flags,
        };
        let index = self.read_traits(input, flags, header_offset)?;
        let traits = &self.traits[index];
        let (class_name, dynamic) = (traits.class_name.clone(), traits.dynamic);
        if traits.externalizable {
            return self.read_externalizable(input, class_name);
        }
        let sealed_count = traits.sealed_names.len();
        input.check_count(
            "sealed member count",
            sealed_count as u64,
            1,
            input.position(),
        )?;
        // Names first (the traits stay borrowed only here), then the values in wire order.
        let mut members: Vec<Member> = Vec::with_capacity(
            sealed_count.min(PREALLOCATE_AT_MOST)
                + if dynamic { DYNAMIC_MEMBERS_EXPECTED } else { 0 },
        );
        members.extend(
            traits
                .sealed_names
                .iter()
                .map(|name| (name.clone(), Value::Undefined)),
        );
        for (_, value) in &mut members {
            *value = self.read_value(input)?;
        }
        if dynamic {
            loop {
                let name = self.read_string(input, "a member name")?;
                if name.is_empty() {
                    break;
                }
                members.push((name, self.read_value(input)?));
            }
        }
        Ok(Value::Object(Box::new(Object {
            class_name,
            sealed_count,
            dynamic,
            members,
        })))
    }

    /// Reads inline traits or resolves a trait reference, returning the traits' index in the table;
    /// `flags` is the object header without its inline bit, read at `offset`.
    fn read_traits(
        &mut self,
        input: &mut Input,
        flags: u32,
        offset: usize,
    ) -> Result<usize, DecodeError> {
        if flags & 1 == 0 {
            let index = flags >> 1;
            if (index as usize) < self.traits.len() {
                return Ok(index as usize);
            }
            return Err(Input::error_at(
                offset,
                DecodeErrorKind::ReferenceOutOfRange {
                    table: Table::Traits,
                    index,
                    len: self.traits.len(),
                },
            ));
        }
        let externalizable = flags & 2 != 0;
        let dynamic = !externalizable && flags & 4 != 0;
        let sealed_count = if externalizable { 0 } else { flags >> 3 };
        // Each sealed member needs at least a name byte and a value byte.
        input.check_count("sealed member count", u64::from(sealed_count), 2, offset)?;
        let class_name = self.read_string(input, "a class name")?;
        let mut sealed_names =
            SmallVec::with_capacity((sealed_count as usize).min(PREALLOCATE_AT_MOST));
        for _ in 0..sealed_count {
            sealed_names.push(self.read_string(input, "a sealed member name")?);
        }
        self.traits.push(Traits {
            class_name,
            dynamic,
            externalizable,
            sealed_names,
        });
        Ok(self.traits.len() - 1)
    }

    fn read_externalizable(
        &mut self,
        input: &mut Input,
        class_name: Str,
    ) -> Result<Value, DecodeError> {
        if !self.options.externals.knows(&class_name) {
            return Err(input.error(DecodeErrorKind::UnknownExternalizable {
                class_name: class_name.to_string(),
                remaining: input.remaining(),
                remainder_hex: input.hex_prefix(64),
            }));
        }
        let body = self.read_value(input)?;
        Ok(Value::Externalizable(Box::new(Externalizable {
            class_name,
            body,
        })))
    }

    /// Reads a Vector of fixed-size items.
    fn read_vector<T>(
        &mut self,
        input: &mut Input,
        what: &'static str,
        item_size: u64,
        wrap: fn(Box<Vector<T>>) -> Value,
        read_item: impl Fn(&mut Input) -> Result<T, DecodeError>,
    ) -> Result<Value, DecodeError> {
        let offset = input.position();
        let count = match self.header(input)? {
            Header::Reference(reference) => return Ok(reference),
            Header::Inline(count) => count,
        };
        let fixed = input.u8(what)? != 0;
        input.check_count(what, u64::from(count), item_size, offset)?;
        let items = (0..count)
            .map(|_| read_item(input))
            .collect::<Result<Vec<T>, DecodeError>>()?;
        Ok(wrap(Box::new(Vector { fixed, items })))
    }

    fn read_object_vector(&mut self, input: &mut Input) -> Result<Value, DecodeError> {
        let offset = input.position();
        let count = match self.header(input)? {
            Header::Reference(reference) => return Ok(reference),
            Header::Inline(count) => count,
        };
        let fixed = input.u8("a Vector.<Object>")? != 0;
        input.check_count("Vector.<Object> count", u64::from(count), 1, offset)?;
        let type_name = self.read_string(input, "a Vector type name")?;
        let mut items = Vec::with_capacity((count as usize).min(PREALLOCATE_AT_MOST));
        for _ in 0..count {
            items.push(self.read_value(input)?);
        }
        Ok(Value::VectorObject(Box::new(ObjectVector {
            fixed,
            type_name,
            items,
        })))
    }

    fn read_dictionary(&mut self, input: &mut Input) -> Result<Value, DecodeError> {
        let offset = input.position();
        let count = match self.header(input)? {
            Header::Reference(reference) => return Ok(reference),
            Header::Inline(count) => count,
        };
        let weak_keys = input.u8("a Dictionary")? != 0;
        input.check_count("Dictionary count", u64::from(count), 2, offset)?;
        let mut entries = Vec::with_capacity((count as usize).min(PREALLOCATE_AT_MOST));
        for _ in 0..count {
            let key = self.read_value(input)?;
            entries.push((key, self.read_value(input)?));
        }
        Ok(Value::Dictionary(Box::new(Dictionary {
            weak_keys,
            entries,
        })))
    }
}
