//! AMF3 decoding: one value, with string, trait and object tables scoped to it, into whatever a
//! builder makes (an owned `Value`, a borrowed `View`).

use bytes::Bytes;
use smallvec::SmallVec;

use super::build::{Build, Leaf, Owned, PlainVector};
use super::u29;
use crate::codec::DecodeOptions;
use crate::codec::error::{DecodeError, DecodeErrorKind, Table};
use crate::codec::input::{Input, PREALLOCATE_AT_MOST};
use crate::codec::marker::amf3 as marker;
use crate::codec::value::Value;

/// Decodes exactly one AMF3 value from `bytes`; anything left over is an error.
pub fn decode(bytes: Bytes, options: &DecodeOptions) -> Result<Value, DecodeError> {
    let mut input = Input::new(&bytes);
    let value = Reader::new(options, 0, Owned { source: &bytes }).read_value(&mut input)?;
    input.finish()?;
    Ok(value)
}

/// Room reserved for the dynamic members of an object before they are read: RPC objects
/// typically have a handful.
const DYNAMIC_MEMBERS_EXPECTED: usize = 4;

/// Class traits as sent once and then referenced by index.
struct Traits<S> {
    class_name: S,
    dynamic: bool,
    externalizable: bool,
    sealed_names: SmallVec<[S; 8]>,
}

/// The reference tables of one AMF3 value being read, and the builder that assembles it.
pub(crate) struct Reader<'o, 'a, B: Build<'a>> {
    options: &'o DecodeOptions,
    builder: B,
    strings: SmallVec<[B::Str; 32]>,
    traits: SmallVec<[Traits<B::Str>; 4]>,
    /// Entries in the object table so far; a reference is kept as its index, never copied.
    objects: u32,
    depth: usize,
}

/// A U29 header that either references an object-table entry or introduces an inline value.
enum Header {
    Reference(u32),
    Inline(u32),
}

impl<'o, 'a, B: Build<'a>> Reader<'o, 'a, B> {
    /// A reader with empty tables, already `depth` containers deep (non-zero inside AMF0).
    pub(crate) fn new(options: &'o DecodeOptions, depth: usize, builder: B) -> Self {
        Reader {
            options,
            builder,
            // On the stack while a typical RPC envelope's tables fit, on the heap beyond.
            strings: SmallVec::new(),
            traits: SmallVec::new(),
            objects: 0,
            depth,
        }
    }

    /// Reads one value.
    #[inline(always)]
    pub(crate) fn read_value(&mut self, input: &mut Input<'a>) -> Result<B::Value, DecodeError> {
        self.read_value_then(input, |value| value)
    }

    /// Reads one value and hands it to `then`. The common leaves are read inline, in the caller,
    /// and each is handed over where it is made, so it goes from registers to where it is kept;
    /// joined first, they went through memory, and reading them back there stalled the decoder
    /// on every member (`perf annotate`).
    #[inline(always)]
    fn read_value_then<R>(
        &mut self,
        input: &mut Input<'a>,
        then: impl FnOnce(B::Value) -> R,
    ) -> Result<R, DecodeError> {
        let offset = input.position();
        let type_marker = input.u8("an AMF3 type marker")?;
        match type_marker {
            marker::NULL => Ok(then(self.builder.leaf(Leaf::Null))),
            marker::FALSE => Ok(then(self.builder.leaf(Leaf::Bool(false)))),
            marker::TRUE => Ok(then(self.builder.leaf(Leaf::Bool(true)))),
            marker::INTEGER => {
                let value = u29::read_signed(input)?;
                Ok(then(self.builder.leaf(Leaf::Integer(value))))
            }
            marker::DOUBLE => {
                let value = input.f64("an AMF3 double")?;
                Ok(then(self.builder.leaf(Leaf::Double(value))))
            }
            marker::STRING => {
                let text = self.read_string(input, "a string")?;
                Ok(then(self.builder.string(text)))
            }
            other => self.read_other(input, offset, other).map(then),
        }
    }

    /// Reads a value of any type but those `read_value` reads itself; its marker, at `offset`,
    /// was read.
    #[inline(never)]
    fn read_other(
        &mut self,
        input: &mut Input<'a>,
        offset: usize,
        type_marker: u8,
    ) -> Result<B::Value, DecodeError> {
        match type_marker {
            marker::UNDEFINED => Ok(self.builder.leaf(Leaf::Undefined)),
            marker::XML_DOCUMENT => self.read_text(input, "an XMLDocument", Leaf::XmlDocument),
            marker::XML => self.read_text(input, "an XML value", Leaf::Xml),
            marker::DATE => self.read_date(input),
            marker::BYTE_ARRAY => self.read_byte_array(input),
            marker::ARRAY => self.nested(offset, |reader| reader.read_array(input)),
            marker::OBJECT => self.nested(offset, |reader| reader.read_object(input)),
            marker::VECTOR_INT => {
                self.read_plain_vector(input, "a Vector.<int>", 4, PlainVector::Int)
            }
            marker::VECTOR_UINT => {
                self.read_plain_vector(input, "a Vector.<uint>", 4, PlainVector::Uint)
            }
            marker::VECTOR_DOUBLE => {
                self.read_plain_vector(input, "a Vector.<Number>", 8, PlainVector::Double)
            }
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
        read: impl FnOnce(&mut Self) -> Result<B::Value, DecodeError>,
    ) -> Result<B::Value, DecodeError> {
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
    fn header(&mut self, input: &mut Input<'a>) -> Result<Header, DecodeError> {
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
            return Ok(Header::Reference(index));
        }
        self.objects += 1;
        Ok(Header::Inline(raw >> 1))
    }

    /// The value of an object-table reference.
    fn reference(&mut self, index: u32) -> B::Value {
        self.builder.leaf(Leaf::Reference(index))
    }

    /// Reads a string value, class name or member name through the string table.
    fn read_string(
        &mut self,
        input: &mut Input<'a>,
        what: &'static str,
    ) -> Result<B::Str, DecodeError> {
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
            return Ok(self.builder.str(""));
        }
        let text = input.text(what, len, offset)?;
        let text = self.builder.str(text);
        self.strings.push(text.clone());
        Ok(text)
    }

    /// XML and XMLDocument: text that lives in the object table, not the string table.
    fn read_text(
        &mut self,
        input: &mut Input<'a>,
        what: &'static str,
        wrap: fn(&'a str) -> Leaf<'a>,
    ) -> Result<B::Value, DecodeError> {
        let offset = input.position();
        match self.header(input)? {
            Header::Reference(index) => Ok(self.reference(index)),
            Header::Inline(len) => {
                let text = input.text(what, len as usize, offset)?;
                Ok(self.builder.leaf(wrap(text)))
            }
        }
    }

    fn read_date(&mut self, input: &mut Input<'a>) -> Result<B::Value, DecodeError> {
        match self.header(input)? {
            Header::Reference(index) => Ok(self.reference(index)),
            Header::Inline(_) => {
                let ms = input.f64("a Date")?;
                Ok(self.builder.leaf(Leaf::Date(ms)))
            }
        }
    }

    fn read_byte_array(&mut self, input: &mut Input<'a>) -> Result<B::Value, DecodeError> {
        let offset = input.position();
        match self.header(input)? {
            Header::Reference(index) => Ok(self.reference(index)),
            Header::Inline(len) => {
                let bytes = input.take("ByteArray length", len as usize, offset)?;
                Ok(self.builder.leaf(Leaf::ByteArray(bytes)))
            }
        }
    }

    fn read_array(&mut self, input: &mut Input<'a>) -> Result<B::Value, DecodeError> {
        let offset = input.position();
        let dense_count = match self.header(input)? {
            Header::Reference(index) => return Ok(self.reference(index)),
            Header::Inline(count) => count,
        };
        input.check_count("array count", u64::from(dense_count), 1, offset)?;
        let mut assoc = self.builder.list(0);
        loop {
            let key = self.read_string(input, "an array key")?;
            if key.as_ref().is_empty() {
                break;
            }
            self.read_value_then(input, |value| B::push(&mut assoc, (key, value)))?;
        }
        let mut dense = self
            .builder
            .list((dense_count as usize).min(PREALLOCATE_AT_MOST));
        for _ in 0..dense_count {
            self.read_value_then(input, |item| B::push(&mut dense, item))?;
        }
        Ok(self.builder.array(assoc, dense))
    }

    fn read_object(&mut self, input: &mut Input<'a>) -> Result<B::Value, DecodeError> {
        let header_offset = input.position();
        let flags = match self.header(input)? {
            Header::Reference(index) => return Ok(self.reference(index)),
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
        let mut members = self.builder.list(
            sealed_count.min(PREALLOCATE_AT_MOST)
                + if dynamic { DYNAMIC_MEMBERS_EXPECTED } else { 0 },
        );
        for member in 0..sealed_count {
            // The table only grows while the value is read, so the traits stay at `index`.
            let name = self.traits[index].sealed_names[member].clone();
            self.read_value_then(input, |value| B::push(&mut members, (name, value)))?;
        }
        if dynamic {
            loop {
                let name = self.read_string(input, "a member name")?;
                if name.as_ref().is_empty() {
                    break;
                }
                self.read_value_then(input, |value| B::push(&mut members, (name, value)))?;
            }
        }
        Ok(self
            .builder
            .object(class_name, sealed_count, dynamic, members))
    }

    /// Reads inline traits or resolves a trait reference, returning the traits' index in the table;
    /// `flags` is the object header without its inline bit, read at `offset`.
    fn read_traits(
        &mut self,
        input: &mut Input<'a>,
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
        input: &mut Input<'a>,
        class_name: B::Str,
    ) -> Result<B::Value, DecodeError> {
        if !self.options.externals.knows(class_name.as_ref()) {
            return Err(input.error(DecodeErrorKind::UnknownExternalizable {
                class_name: class_name.as_ref().to_string(),
                remaining: input.remaining(),
                remainder_hex: input.hex_prefix(64),
            }));
        }
        let body = self.read_value(input)?;
        Ok(self.builder.externalizable(class_name, body))
    }

    /// Reads a Vector of fixed-size items: `wrap` says which kind, given the items' bytes.
    fn read_plain_vector(
        &mut self,
        input: &mut Input<'a>,
        what: &'static str,
        item_size: u64,
        wrap: fn(&'a [u8]) -> PlainVector<'a>,
    ) -> Result<B::Value, DecodeError> {
        let offset = input.position();
        let count = match self.header(input)? {
            Header::Reference(index) => return Ok(self.reference(index)),
            Header::Inline(count) => count,
        };
        let fixed = input.u8(what)? != 0;
        input.check_count(what, u64::from(count), item_size, offset)?;
        let raw = input.take(what, (u64::from(count) * item_size) as usize, offset)?;
        Ok(self.builder.plain_vector(fixed, wrap(raw)))
    }

    fn read_object_vector(&mut self, input: &mut Input<'a>) -> Result<B::Value, DecodeError> {
        let offset = input.position();
        let count = match self.header(input)? {
            Header::Reference(index) => return Ok(self.reference(index)),
            Header::Inline(count) => count,
        };
        let fixed = input.u8("a Vector.<Object>")? != 0;
        input.check_count("Vector.<Object> count", u64::from(count), 1, offset)?;
        let type_name = self.read_string(input, "a Vector type name")?;
        let mut items = self.builder.list((count as usize).min(PREALLOCATE_AT_MOST));
        for _ in 0..count {
            self.read_value_then(input, |item| B::push(&mut items, item))?;
        }
        Ok(self.builder.object_vector(fixed, type_name, items))
    }

    fn read_dictionary(&mut self, input: &mut Input<'a>) -> Result<B::Value, DecodeError> {
        let offset = input.position();
        let count = match self.header(input)? {
            Header::Reference(index) => return Ok(self.reference(index)),
            Header::Inline(count) => count,
        };
        let weak_keys = input.u8("a Dictionary")? != 0;
        input.check_count("Dictionary count", u64::from(count), 2, offset)?;
        let mut entries = self.builder.list((count as usize).min(PREALLOCATE_AT_MOST));
        for _ in 0..count {
            let key = self.read_value(input)?;
            self.read_value_then(input, |value| B::push(&mut entries, (key, value)))?;
        }
        Ok(self.builder.dictionary(weak_keys, entries))
    }
}
