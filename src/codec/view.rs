//! A borrowed AMF3 value: strings and byte arrays point into the frame, containers into an arena
//! that a `ViewDecoder` reuses from frame to frame.
//!
//! Decoding a frame into a `View` copies no text, allocates nothing once the arena has grown to the
//! size of the frames seen, and frees nothing: the whole tree goes when the next frame is decoded.
//! The same reader as `amf3::decode` checks the input, so a frame decodes into a `View` exactly
//! when it decodes into a `Value`, with the same error, and `View::to_value` gives the same value.

use bumpalo::Bump;
use bumpalo::collections::Vec as ArenaVec;
use bytes::Bytes;

use super::amf3::build::{Build, Leaf, PlainVector, items};
use super::amf3::read::Reader;
use super::error::DecodeError;
use super::input::{Input, owned_str};
use super::value::{Array, Dictionary, Externalizable, Object, ObjectVector, Str, Value, Vector};
use super::{DecodeOptions, Limits};

/// A named member of an object or associative array entry, borrowed.
pub type MemberView<'a> = (&'a str, View<'a>);

/// One decoded AMF3 value, borrowing the frame and the decoder's arena. The variants mirror
/// [`Value`]'s AMF3 ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum View<'a> {
    /// 0x00.
    Undefined,
    /// 0x01.
    Null,
    /// 0x02 / 0x03.
    Bool(bool),
    /// 0x04.
    Integer(i32),
    /// 0x05.
    Double(f64),
    /// 0x06.
    String(&'a str),
    /// 0x07.
    XmlDocument(&'a str),
    /// 0x0B.
    Xml(&'a str),
    /// 0x08: milliseconds since 1970-01-01 UTC.
    Date(f64),
    /// 0x0C.
    ByteArray(&'a [u8]),
    /// 0x09.
    Array(&'a ArrayView<'a>),
    /// 0x0A, not externalizable.
    Object(&'a ObjectView<'a>),
    /// 0x0A, externalizable, of a known class.
    Externalizable(&'a ExternalizableView<'a>),
    /// 0x0D.
    VectorInt(&'a VectorView<'a, i32>),
    /// 0x0E.
    VectorUint(&'a VectorView<'a, u32>),
    /// 0x0F.
    VectorDouble(&'a VectorView<'a, f64>),
    /// 0x10.
    VectorObject(&'a ObjectVectorView<'a>),
    /// 0x11.
    Dictionary(&'a DictionaryView<'a>),
    /// A reference to the object-table entry with this index (see [`Value::Reference`]).
    Reference(u32),
}

/// An array: the associative part, then the dense part.
#[derive(Debug, PartialEq)]
pub struct ArrayView<'a> {
    /// Named entries, in wire order.
    pub assoc: &'a [MemberView<'a>],
    /// Indexed entries.
    pub dense: &'a [View<'a>],
}

/// An object: anonymous when `class_name` is empty.
#[derive(Debug, PartialEq)]
pub struct ObjectView<'a> {
    /// The class alias.
    pub class_name: &'a str,
    /// How many of the leading `members` are sealed.
    pub sealed_count: usize,
    /// Whether the traits are dynamic.
    pub dynamic: bool,
    /// Sealed members first, then dynamic ones, in wire order.
    pub members: &'a [MemberView<'a>],
}

/// An externalizable object of a registered class.
#[derive(Debug, PartialEq)]
pub struct ExternalizableView<'a> {
    /// The class alias.
    pub class_name: &'a str,
    /// The value the class writes in `writeExternal`.
    pub body: View<'a>,
}

/// A Vector of a primitive item type.
#[derive(Debug, PartialEq)]
pub struct VectorView<'a, T> {
    /// The fixed-length flag.
    pub fixed: bool,
    /// The items.
    pub items: &'a [T],
}

/// A `Vector.<T>` of objects.
#[derive(Debug, PartialEq)]
pub struct ObjectVectorView<'a> {
    /// The fixed-length flag.
    pub fixed: bool,
    /// The item type name as sent.
    pub type_name: &'a str,
    /// The items.
    pub items: &'a [View<'a>],
}

/// A `flash.utils.Dictionary`.
#[derive(Debug, PartialEq)]
pub struct DictionaryView<'a> {
    /// The weak-keys flag.
    pub weak_keys: bool,
    /// Key and value pairs in wire order.
    pub entries: &'a [(View<'a>, View<'a>)],
}

/// Arena bytes kept from one frame to the next; a bigger arena (left by a big frame) is dropped
/// before the next decode, so an idle connection does not hold the memory of its largest frame.
const ARENA_KEPT: usize = 64 << 10;

/// Decodes AMF3 values into [`View`]s, reusing one arena.
#[derive(Default)]
pub struct ViewDecoder {
    options: DecodeOptions,
    arena: Bump,
}

impl ViewDecoder {
    /// A decoder with these options.
    pub fn new(options: DecodeOptions) -> ViewDecoder {
        ViewDecoder {
            options,
            arena: Bump::new(),
        }
    }

    /// The limits it decodes within.
    pub fn limits(&self) -> Limits {
        self.options.limits
    }

    /// Decodes exactly one AMF3 value from `bytes`; anything left over is an error. The view
    /// lives until the next decode.
    pub fn decode<'a>(&'a mut self, bytes: &'a [u8]) -> Result<View<'a>, DecodeError> {
        if self.arena.allocated_bytes() > ARENA_KEPT {
            self.arena = Bump::new();
        } else {
            self.arena.reset();
        }
        let mut input = Input::new(bytes);
        let builder = InArena { arena: &self.arena };
        let view = Reader::new(&self.options, 0, builder).read_value(&mut input)?;
        input.finish()?;
        Ok(view)
    }
}

/// Builds views in an arena.
struct InArena<'a> {
    arena: &'a Bump,
}

impl<'a> Build<'a> for InArena<'a> {
    type Str = &'a str;
    type Value = View<'a>;
    type List<T: 'a> = ArenaVec<'a, T>;

    #[inline]
    fn str(&mut self, text: &'a str) -> &'a str {
        text
    }

    #[inline]
    fn leaf(&mut self, leaf: Leaf<'a>) -> View<'a> {
        match leaf {
            Leaf::Undefined => View::Undefined,
            Leaf::Null => View::Null,
            Leaf::Bool(value) => View::Bool(value),
            Leaf::Integer(value) => View::Integer(value),
            Leaf::Double(value) => View::Double(value),
            Leaf::Date(value) => View::Date(value),
            Leaf::XmlDocument(text) => View::XmlDocument(text),
            Leaf::Xml(text) => View::Xml(text),
            Leaf::ByteArray(bytes) => View::ByteArray(bytes),
            Leaf::Reference(index) => View::Reference(index),
        }
    }

    #[inline]
    fn string(&mut self, text: &'a str) -> View<'a> {
        View::String(text)
    }

    #[inline]
    fn list<T: 'a>(&mut self, capacity: usize) -> ArenaVec<'a, T> {
        ArenaVec::with_capacity_in(capacity, self.arena)
    }

    #[inline]
    fn push<T: 'a>(list: &mut ArenaVec<'a, T>, item: T) {
        list.push(item);
    }

    // Inlined, the view goes from registers to where it is kept; returned from a call, it went
    // through memory, and the wider reload of its narrower stores stalled every object read
    // (`perf annotate`). Not in debug builds, whose frames it would swell past the depth limit's
    // stack budget.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn array(
        &mut self,
        assoc: ArenaVec<'a, MemberView<'a>>,
        dense: ArenaVec<'a, View<'a>>,
    ) -> View<'a> {
        View::Array(self.arena.alloc(ArrayView {
            assoc: assoc.into_bump_slice(),
            dense: dense.into_bump_slice(),
        }))
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    fn object(
        &mut self,
        class_name: &'a str,
        sealed_count: usize,
        dynamic: bool,
        members: ArenaVec<'a, MemberView<'a>>,
    ) -> View<'a> {
        View::Object(self.arena.alloc(ObjectView {
            class_name,
            sealed_count,
            dynamic,
            members: members.into_bump_slice(),
        }))
    }

    fn externalizable(&mut self, class_name: &'a str, body: View<'a>) -> View<'a> {
        View::Externalizable(self.arena.alloc(ExternalizableView { class_name, body }))
    }

    fn plain_vector(&mut self, fixed: bool, raw: PlainVector<'a>) -> View<'a> {
        let arena = self.arena;
        match raw {
            PlainVector::Int(raw) => View::VectorInt(arena.alloc(VectorView {
                fixed,
                items: arena.alloc_slice_fill_iter(items(raw, i32::from_be_bytes)),
            })),
            PlainVector::Uint(raw) => View::VectorUint(arena.alloc(VectorView {
                fixed,
                items: arena.alloc_slice_fill_iter(items(raw, u32::from_be_bytes)),
            })),
            PlainVector::Double(raw) => View::VectorDouble(arena.alloc(VectorView {
                fixed,
                items: arena.alloc_slice_fill_iter(items(raw, f64::from_be_bytes)),
            })),
        }
    }

    fn object_vector(
        &mut self,
        fixed: bool,
        type_name: &'a str,
        items: ArenaVec<'a, View<'a>>,
    ) -> View<'a> {
        View::VectorObject(self.arena.alloc(ObjectVectorView {
            fixed,
            type_name,
            items: items.into_bump_slice(),
        }))
    }

    fn dictionary(
        &mut self,
        weak_keys: bool,
        entries: ArenaVec<'a, (View<'a>, View<'a>)>,
    ) -> View<'a> {
        View::Dictionary(self.arena.alloc(DictionaryView {
            weak_keys,
            entries: entries.into_bump_slice(),
        }))
    }
}

impl<'a> View<'a> {
    /// The text of a string value.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            View::String(text) => Some(text),
            _ => None,
        }
    }

    /// The object behind this value, if it is one.
    pub fn as_object(&self) -> Option<&'a ObjectView<'a>> {
        match self {
            View::Object(object) => Some(object),
            _ => None,
        }
    }

    /// Whether an object reference occurs anywhere in this value.
    pub fn contains_reference(&self) -> bool {
        let in_items = |items: &[View<'a>]| items.iter().any(View::contains_reference);
        let in_members = |members: &[MemberView<'a>]| {
            members.iter().any(|(_, value)| value.contains_reference())
        };
        match *self {
            View::Reference(_) => true,
            View::Array(array) => in_members(array.assoc) || in_items(array.dense),
            View::Object(object) => in_members(object.members),
            View::Externalizable(ext) => ext.body.contains_reference(),
            View::VectorObject(vector) => in_items(vector.items),
            View::Dictionary(dict) => dict
                .entries
                .iter()
                .any(|(key, value)| key.contains_reference() || value.contains_reference()),
            _ => false,
        }
    }

    /// The same value, owned (byte arrays copied).
    pub fn to_value(&self) -> Value {
        let owned_members = |members: &[MemberView<'a>]| -> Vec<(Str, Value)> {
            members
                .iter()
                .map(|(name, value)| (owned_str(name), value.to_value()))
                .collect()
        };
        let owned_items = |items: &[View<'a>]| -> Vec<Value> {
            items.iter().map(|item| item.to_value()).collect()
        };
        match *self {
            View::Undefined => Value::Undefined,
            View::Null => Value::Null,
            View::Bool(value) => Value::Bool(value),
            View::Integer(value) => Value::Integer(value),
            View::Double(value) => Value::Double(value),
            View::String(text) => Value::String(owned_str(text)),
            View::XmlDocument(text) => Value::XmlDocument(owned_str(text)),
            View::Xml(text) => Value::Xml(owned_str(text)),
            View::Date(ms) => Value::Date(ms),
            View::ByteArray(bytes) => Value::ByteArray(Bytes::copy_from_slice(bytes)),
            View::Array(array) => Value::Array(Box::new(Array {
                assoc: owned_members(array.assoc),
                dense: owned_items(array.dense),
            })),
            View::Object(object) => Value::Object(Box::new(Object {
                class_name: owned_str(object.class_name),
                sealed_count: object.sealed_count,
                dynamic: object.dynamic,
                members: owned_members(object.members),
            })),
            View::Externalizable(ext) => Value::Externalizable(Box::new(Externalizable {
                class_name: owned_str(ext.class_name),
                body: ext.body.to_value(),
            })),
            View::VectorInt(vector) => Value::VectorInt(Box::new(owned_vector(vector))),
            View::VectorUint(vector) => Value::VectorUint(Box::new(owned_vector(vector))),
            View::VectorDouble(vector) => Value::VectorDouble(Box::new(owned_vector(vector))),
            View::VectorObject(vector) => Value::VectorObject(Box::new(ObjectVector {
                fixed: vector.fixed,
                type_name: owned_str(vector.type_name),
                items: owned_items(vector.items),
            })),
            View::Dictionary(dict) => Value::Dictionary(Box::new(Dictionary {
                weak_keys: dict.weak_keys,
                entries: dict
                    .entries
                    .iter()
                    .map(|(key, value)| (key.to_value(), value.to_value()))
                    .collect(),
            })),
            View::Reference(index) => Value::Reference(index),
        }
    }
}

impl<'a> ObjectView<'a> {
    /// The value of the first member with this name.
    pub fn get(&self, name: &str) -> Option<View<'a>> {
        self.members
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value)
    }
}

/// A primitive Vector, owned.
fn owned_vector<T: Copy>(vector: &VectorView<'_, T>) -> Vector<T> {
    Vector {
        fixed: vector.fixed,
        items: vector.items.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::amf3;

    fn encoded(value: &Value) -> Vec<u8> {
        amf3::encode(value, &Limits::default()).expect("encodes")
    }

    #[test]
    fn members_are_found_by_name_and_frames_do_not_mix() {
        let mut decoder = ViewDecoder::default();
        let first = encoded(&Value::object(vec![
            ("command".into(), Value::string("game.move")),
            ("x".into(), Value::Integer(3)),
        ]));
        let second = encoded(&Value::array(vec![Value::string("after")]));
        let view = decoder.decode(&first).expect("decodes");
        let object = view.as_object().expect("an object");
        assert_eq!(
            object.get("command").and_then(|v| v.as_str()),
            Some("game.move")
        );
        assert_eq!(object.get("x"), Some(View::Integer(3)));
        assert_eq!(object.get("y"), None);
        let view = decoder.decode(&second).expect("decodes");
        assert_eq!(view.to_value(), Value::array(vec![Value::string("after")]));
    }

    #[test]
    fn a_big_frame_does_not_keep_its_arena() {
        let mut decoder = ViewDecoder::default();
        let big = encoded(&Value::array(vec![Value::Integer(1); 20_000]));
        decoder.decode(&big).expect("decodes");
        assert!(decoder.arena.allocated_bytes() > ARENA_KEPT);
        let small = encoded(&Value::Integer(1));
        decoder.decode(&small).expect("decodes");
        assert!(decoder.arena.allocated_bytes() <= ARENA_KEPT);
    }
}
