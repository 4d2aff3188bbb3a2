//! What the AMF3 reader makes of what it has checked: an owned `Value` tree, or a borrowed `View`.
//!
//! The reader does every check (lengths, counts, depth, references, UTF-8) and calls a builder
//! only to assemble values, so both representations accept and refuse exactly the same input.

use bytes::Bytes;

use crate::codec::input::owned_str;
use crate::codec::value::{
    Array, Dictionary, Externalizable, Object, ObjectVector, Str, Value, Vector,
};

/// A value without children, as the reader hands it to a builder.
pub(crate) enum Leaf<'a> {
    Undefined,
    Null,
    Bool(bool),
    Integer(i32),
    Double(f64),
    Date(f64),
    XmlDocument(&'a str),
    Xml(&'a str),
    /// The bytes of a ByteArray, borrowed from the input.
    ByteArray(&'a [u8]),
    /// An object-table index.
    Reference(u32),
}

/// The kind of Vector of fixed-size items, with its items still in wire form.
pub(crate) enum PlainVector<'a> {
    Int(&'a [u8]),
    Uint(&'a [u8]),
    Double(&'a [u8]),
}

/// Assembles values from parts the reader has already checked; `'a` is the input's lifetime.
pub(crate) trait Build<'a> {
    /// A string: a value, class name, member name or string-table entry.
    type Str: Clone + AsRef<str> + 'a;
    /// A decoded value.
    type Value: 'a;
    /// A growing list of children.
    type List<T: 'a>;

    /// Checked text as a string.
    fn str(&mut self, text: &'a str) -> Self::Str;
    /// A value without children.
    fn leaf(&mut self, leaf: Leaf<'a>) -> Self::Value;
    /// A string value.
    fn string(&mut self, text: Self::Str) -> Self::Value;
    /// An empty list with room for `capacity` items.
    fn list<T: 'a>(&mut self, capacity: usize) -> Self::List<T>;
    /// Appends `item` to `list`.
    fn push<T: 'a>(list: &mut Self::List<T>, item: T);
    /// An array from its associative and dense parts.
    fn array(
        &mut self,
        assoc: Self::List<(Self::Str, Self::Value)>,
        dense: Self::List<Self::Value>,
    ) -> Self::Value;
    /// An object whose first `sealed_count` members are sealed.
    fn object(
        &mut self,
        class_name: Self::Str,
        sealed_count: usize,
        dynamic: bool,
        members: Self::List<(Self::Str, Self::Value)>,
    ) -> Self::Value;
    /// An externalizable object of a registered class.
    fn externalizable(&mut self, class_name: Self::Str, body: Self::Value) -> Self::Value;
    /// A Vector of ints, uints or doubles; its length is a whole number of items.
    fn plain_vector(&mut self, fixed: bool, items: PlainVector<'a>) -> Self::Value;
    /// A `Vector.<T>` of objects.
    fn object_vector(
        &mut self,
        fixed: bool,
        type_name: Self::Str,
        items: Self::List<Self::Value>,
    ) -> Self::Value;
    /// A Dictionary.
    fn dictionary(
        &mut self,
        weak_keys: bool,
        entries: Self::List<(Self::Value, Self::Value)>,
    ) -> Self::Value;
}

/// Big-endian items of `N` bytes, converted by `convert`.
pub(crate) fn items<const N: usize, T: 'static>(
    raw: &[u8],
    convert: fn([u8; N]) -> T,
) -> impl ExactSizeIterator<Item = T> + '_ {
    raw.chunks_exact(N).map(move |chunk| {
        let mut bytes = [0; N];
        bytes.copy_from_slice(chunk);
        convert(bytes)
    })
}

/// Builds owned `Value`s; byte arrays share `source`, the buffer the input borrows from.
pub(crate) struct Owned<'a> {
    pub(crate) source: &'a Bytes,
}

impl<'a> Build<'a> for Owned<'a> {
    type Str = Str;
    type Value = Value;
    type List<T: 'a> = Vec<T>;

    #[inline]
    fn str(&mut self, text: &'a str) -> Str {
        owned_str(text)
    }

    #[inline]
    fn leaf(&mut self, leaf: Leaf<'a>) -> Value {
        match leaf {
            Leaf::Undefined => Value::Undefined,
            Leaf::Null => Value::Null,
            Leaf::Bool(value) => Value::Bool(value),
            Leaf::Integer(value) => Value::Integer(value),
            Leaf::Double(value) => Value::Double(value),
            Leaf::Date(value) => Value::Date(value),
            Leaf::XmlDocument(text) => Value::XmlDocument(owned_str(text)),
            Leaf::Xml(text) => Value::Xml(owned_str(text)),
            Leaf::ByteArray(bytes) => Value::ByteArray(self.source.slice_ref(bytes)),
            Leaf::Reference(index) => Value::Reference(index),
        }
    }

    #[inline]
    fn string(&mut self, text: Str) -> Value {
        Value::String(text)
    }

    #[inline]
    fn list<T: 'a>(&mut self, capacity: usize) -> Vec<T> {
        Vec::with_capacity(capacity)
    }

    #[inline]
    fn push<T: 'a>(list: &mut Vec<T>, item: T) {
        list.push(item);
    }

    fn array(&mut self, assoc: Vec<(Str, Value)>, dense: Vec<Value>) -> Value {
        Value::Array(Box::new(Array { assoc, dense }))
    }

    fn object(
        &mut self,
        class_name: Str,
        sealed_count: usize,
        dynamic: bool,
        members: Vec<(Str, Value)>,
    ) -> Value {
        Value::Object(Box::new(Object {
            class_name,
            sealed_count,
            dynamic,
            members,
        }))
    }

    fn externalizable(&mut self, class_name: Str, body: Value) -> Value {
        Value::Externalizable(Box::new(Externalizable { class_name, body }))
    }

    fn plain_vector(&mut self, fixed: bool, items_raw: PlainVector<'a>) -> Value {
        match items_raw {
            PlainVector::Int(raw) => Value::VectorInt(Box::new(Vector {
                fixed,
                items: items(raw, i32::from_be_bytes).collect(),
            })),
            PlainVector::Uint(raw) => Value::VectorUint(Box::new(Vector {
                fixed,
                items: items(raw, u32::from_be_bytes).collect(),
            })),
            PlainVector::Double(raw) => Value::VectorDouble(Box::new(Vector {
                fixed,
                items: items(raw, f64::from_be_bytes).collect(),
            })),
        }
    }

    fn object_vector(&mut self, fixed: bool, type_name: Str, items: Vec<Value>) -> Value {
        Value::VectorObject(Box::new(ObjectVector {
            fixed,
            type_name,
            items,
        }))
    }

    fn dictionary(&mut self, weak_keys: bool, entries: Vec<(Value, Value)>) -> Value {
        Value::Dictionary(Box::new(Dictionary { weak_keys, entries }))
    }
}
