//! AMF3 encoding, writing string, trait and object references as Flash, Ruffle and RocketAMF do.
//!
//! Strings are sent by reference when equal to one already written (the empty string never is);
//! traits when the class name, dynamic flag and sealed member names equal ones already written;
//! objects only where the value holds a `Value::Reference`, since a tree has no other identity.

use std::hash::{Hash, Hasher};

use bytes::BufMut;
use smallvec::SmallVec;

use super::table::{Key, RefTable};
use super::u29;
use crate::codec::error::EncodeError;
use crate::codec::limits::Limits;
use crate::codec::marker::amf3 as marker;
use crate::codec::value::{Member, Object, Value, Vector};

/// Longest string, XML text or ByteArray an inline U29 header can declare.
const MAX_INLINE_LEN: usize = (u29::MAX >> 1) as usize;
/// Most sealed members a U29 trait header can declare.
const MAX_SEALED: usize = (u29::MAX >> 4) as usize;

/// Encodes one AMF3 value with fresh reference tables.
pub fn encode(value: &Value, limits: &Limits) -> Result<Vec<u8>, EncodeError> {
    // Room for a typical RPC envelope (a few hundred bytes) without growing: growing copies.
    let mut out = Vec::with_capacity(512);
    encode_into(value, limits, &mut out)?;
    Ok(out)
}

/// Appends one AMF3 value, with fresh reference tables, to `out`.
pub fn encode_into(
    value: &Value,
    limits: &Limits,
    out: &mut impl BufMut,
) -> Result<(), EncodeError> {
    Writer::new(limits.max_depth, 0)
        .write_value(value, out)
        .map_err(|error| *error)
}

/// The writer's result: the error boxed, so that the result fits a register and every call's
/// check reads no memory.
pub(crate) type Written = Result<(), Box<EncodeError>>;

/// What makes two objects share traits: a trait reference is written when all of it matches.
#[derive(Clone, Copy)]
struct TraitKey<'v> {
    class_name: &'v str,
    dynamic: bool,
    externalizable: bool,
    sealed: &'v [Member],
}

impl PartialEq for TraitKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.class_name == other.class_name
            && self.dynamic == other.dynamic
            && self.externalizable == other.externalizable
            && self.sealed.len() == other.sealed.len()
            && self
                .sealed
                .iter()
                .zip(other.sealed)
                .all(|((a, _), (b, _))| a == b)
    }
}

impl Eq for TraitKey<'_> {}

impl Hash for TraitKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.class_name.hash(state);
        self.dynamic.hash(state);
        self.externalizable.hash(state);
        for (name, _) in self.sealed {
            let name: &str = name;
            name.hash(state);
        }
    }
}

impl Key for TraitKey<'_> {
    fn tag(&self) -> u32 {
        self.class_name.tag() ^ ((self.sealed.len() as u32) << 24)
    }
}

/// The reference tables of one AMF3 value being written (see `RefTable` for how they search).
pub(crate) struct Writer<'v> {
    max_depth: usize,
    depth: usize,
    /// Sized so that a typical RPC envelope's strings and traits never leave the stack.
    strings: RefTable<&'v str, 32>,
    traits: RefTable<TraitKey<'v>, 4>,
    /// The marker of each object-table entry written, so a reference repeats its target's marker.
    object_markers: SmallVec<[u8; 16]>,
}

impl<'v> Writer<'v> {
    /// A writer with empty tables, already `depth` containers deep (non-zero inside AMF0).
    pub(crate) fn new(max_depth: usize, depth: usize) -> Writer<'v> {
        Writer {
            max_depth,
            depth,
            strings: RefTable::new(),
            traits: RefTable::new(),
            object_markers: SmallVec::new(),
        }
    }

    /// Writes one value. The common leaves are written inline, in the caller; the rest in
    /// `write_other`, so that a member's integer or string costs no call.
    #[inline(always)]
    pub(crate) fn write_value(&mut self, value: &'v Value, out: &mut impl BufMut) -> Written {
        match value {
            Value::Null => out.put_u8(marker::NULL),
            Value::Bool(false) => out.put_u8(marker::FALSE),
            Value::Bool(true) => out.put_u8(marker::TRUE),
            Value::Integer(n) if (u29::INT_MIN..=u29::INT_MAX).contains(n) => {
                out.put_u8(marker::INTEGER);
                u29::write_signed(out, *n);
            }
            Value::Double(n) => write_double(out, *n),
            Value::String(text) => {
                out.put_u8(marker::STRING);
                self.write_string(text, out)?;
            }
            other => self.write_other(other, out)?,
        }
        Ok(())
    }

    /// Writes a value of any type but the leaves `write_value` writes itself.
    #[inline(never)]
    fn write_other(&mut self, value: &'v Value, out: &mut impl BufMut) -> Written {
        match value {
            Value::Undefined => out.put_u8(marker::UNDEFINED),
            Value::Integer(n) if !(u29::INT_MIN..=u29::INT_MAX).contains(n) => {
                write_double(out, f64::from(*n))
            }
            Value::Null
            | Value::Bool(_)
            | Value::Integer(_)
            | Value::Double(_)
            | Value::String(_) => self.write_value(value, out)?,
            Value::XmlDocument(text) => self.write_text(marker::XML_DOCUMENT, text, out)?,
            Value::Xml(text) => self.write_text(marker::XML, text, out)?,
            Value::Date(ms) => {
                self.begin_entry(marker::DATE, out);
                u29::write(out, 1);
                out.put_f64(*ms);
            }
            Value::ByteArray(bytes) => {
                self.begin_entry(marker::BYTE_ARRAY, out);
                write_inline_len("ByteArray", bytes.len(), out)?;
                out.put_slice(bytes);
            }
            Value::Array(array) => {
                self.nested(|writer| writer.write_array(&array.assoc, &array.dense, out))?
            }
            Value::EcmaArray(members) => {
                self.nested(|writer| writer.write_array(members, &[], out))?
            }
            Value::Object(object) => self.nested(|writer| writer.write_object(object, out))?,
            Value::Externalizable(ext) => self.nested(|writer| {
                writer.begin_entry(marker::OBJECT, out);
                writer.write_traits(
                    TraitKey {
                        class_name: &ext.class_name,
                        dynamic: false,
                        externalizable: true,
                        sealed: &[],
                    },
                    out,
                )?;
                writer.write_value(&ext.body, out)
            })?,
            Value::VectorInt(vector) => {
                self.write_vector(marker::VECTOR_INT, vector, out, |out, n| out.put_i32(*n))?
            }
            Value::VectorUint(vector) => {
                self.write_vector(marker::VECTOR_UINT, vector, out, |out, n| out.put_u32(*n))?
            }
            Value::VectorDouble(vector) => {
                self.write_vector(marker::VECTOR_DOUBLE, vector, out, |out, n| out.put_f64(*n))?
            }
            Value::VectorObject(vector) => self.nested(|writer| {
                writer.begin_entry(marker::VECTOR_OBJECT, out);
                write_inline_len("Vector.<Object>", vector.items.len(), out)?;
                out.put_u8(u8::from(vector.fixed));
                writer.write_string(&vector.type_name, out)?;
                vector
                    .items
                    .iter()
                    .try_for_each(|item| writer.write_value(item, out))
            })?,
            Value::Dictionary(dict) => self.nested(|writer| {
                writer.begin_entry(marker::DICTIONARY, out);
                write_inline_len("Dictionary", dict.entries.len(), out)?;
                out.put_u8(u8::from(dict.weak_keys));
                dict.entries.iter().try_for_each(|(key, value)| {
                    writer.write_value(key, out)?;
                    writer.write_value(value, out)
                })
            })?,
            // In AMF3 the AMF0 switch means nothing: its value is written as it is.
            Value::Avmplus(inner) => self.write_value(inner, out)?,
            Value::Reference(index) => {
                let Some(&target_marker) = self.object_markers.get(*index as usize) else {
                    return Err(EncodeError::DanglingReference {
                        index: *index,
                        written: self.object_markers.len(),
                    }
                    .into());
                };
                out.put_u8(target_marker);
                u29::write(out, index << 1);
            }
        }
        Ok(())
    }

    /// Runs `write` one container deeper, failing at the depth limit before recursing.
    fn nested(&mut self, write: impl FnOnce(&mut Self) -> Written) -> Written {
        if self.depth >= self.max_depth {
            return Err(EncodeError::TooDeep {
                limit: self.max_depth,
            }
            .into());
        }
        self.depth += 1;
        let result = write(self);
        self.depth -= 1;
        result
    }

    /// Writes the marker of a value that takes an object-table entry, and numbers it.
    fn begin_entry(&mut self, type_marker: u8, out: &mut impl BufMut) {
        out.put_u8(type_marker);
        self.object_markers.push(type_marker);
    }

    /// Writes a string through the string table (without a marker). Inlined in its callers: an
    /// envelope writes some twenty strings, and the call cost 8% of encoding one (callgrind).
    #[inline(always)]
    fn write_string(&mut self, text: &'v str, out: &mut impl BufMut) -> Written {
        if text.is_empty() {
            u29::write(out, 1);
            return Ok(());
        }
        match self.strings.find_or_add(text) {
            Some(index) => u29::write(out, index << 1),
            None => {
                write_inline_len("string", text.len(), out)?;
                out.put_slice(text.as_bytes());
            }
        }
        Ok(())
    }

    /// XML and XMLDocument: object-table entries whose text bypasses the string table.
    fn write_text(&mut self, type_marker: u8, text: &str, out: &mut impl BufMut) -> Written {
        self.begin_entry(type_marker, out);
        write_inline_len("XML text", text.len(), out)?;
        out.put_slice(text.as_bytes());
        Ok(())
    }

    fn write_array(
        &mut self,
        assoc: &'v [Member],
        dense: &'v [Value],
        out: &mut impl BufMut,
    ) -> Written {
        self.begin_entry(marker::ARRAY, out);
        write_inline_len("array", dense.len(), out)?;
        self.write_dynamic_members(assoc, out)?;
        dense
            .iter()
            .try_for_each(|item| self.write_value(item, out))
    }

    /// Writes named values ended by the empty string.
    fn write_dynamic_members(&mut self, members: &'v [Member], out: &mut impl BufMut) -> Written {
        for (name, value) in members {
            if name.is_empty() {
                return Err(EncodeError::EmptyKey.into());
            }
            self.write_string(name, out)?;
            self.write_value(value, out)?;
        }
        u29::write(out, 1);
        Ok(())
    }

    fn write_object(&mut self, object: &'v Object, out: &mut impl BufMut) -> Written {
        let members = &object.members;
        if object.sealed_count > members.len() {
            return Err(EncodeError::SealedCountTooLarge {
                class_name: object.class_name.to_string(),
                sealed_count: object.sealed_count,
                members: members.len(),
            }
            .into());
        }
        let (sealed, dynamic) = members.split_at(object.sealed_count);
        self.begin_entry(marker::OBJECT, out);
        self.write_traits(
            TraitKey {
                class_name: &object.class_name,
                // Members past the sealed ones can only be sent as dynamic members.
                dynamic: object.dynamic || !dynamic.is_empty(),
                externalizable: false,
                sealed,
            },
            out,
        )?;
        sealed
            .iter()
            .try_for_each(|(_, value)| self.write_value(value, out))?;
        if object.dynamic || !dynamic.is_empty() {
            self.write_dynamic_members(dynamic, out)?;
        }
        Ok(())
    }

    /// Writes a trait reference, or the traits inline when these have not been written yet.
    fn write_traits(&mut self, key: TraitKey<'v>, out: &mut impl BufMut) -> Written {
        if key.sealed.len() > MAX_SEALED {
            return Err(EncodeError::TooLong {
                what: "sealed member list",
                len: key.sealed.len(),
            }
            .into());
        }
        let flags = if key.externalizable {
            0b0111
        } else {
            ((key.sealed.len() as u32) << 4) | (u32::from(key.dynamic) << 3) | 0b0011
        };
        if let Some(index) = self.traits.find_or_add(key) {
            u29::write(out, (index << 2) | 0b01);
            return Ok(());
        }
        u29::write(out, flags);
        self.write_string(key.class_name, out)?;
        for (name, _) in key.sealed {
            self.write_string(name, out)?;
        }
        Ok(())
    }

    fn write_vector<T>(
        &mut self,
        type_marker: u8,
        vector: &Vector<T>,
        out: &mut impl BufMut,
        write_item: impl Fn(&mut dyn BufMut, &T),
    ) -> Written {
        self.begin_entry(type_marker, out);
        write_inline_len("Vector", vector.items.len(), out)?;
        out.put_u8(u8::from(vector.fixed));
        for item in &vector.items {
            write_item(out, item);
        }
        Ok(())
    }
}

fn write_double(out: &mut impl BufMut, n: f64) {
    out.put_u8(marker::DOUBLE);
    out.put_f64(n);
}

/// Writes the U29 of an inline length or count (low bit set).
fn write_inline_len(
    what: &'static str,
    len: usize,
    out: &mut impl BufMut,
) -> Result<(), EncodeError> {
    if len > MAX_INLINE_LEN {
        return Err(EncodeError::TooLong { what, len });
    }
    u29::write(out, ((len as u32) << 1) | 1);
    Ok(())
}
