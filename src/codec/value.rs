//! The decoded AMF value: one tree per top-level value, with object references kept as table indices.
//!
//! A reference to an earlier object (or to an ancestor, which makes a cycle) is `Value::Reference(n)`,
//! where `n` is the object-table index of its target: the n-th table entry met in a pre-order walk of
//! the tree (see `graph`). Decoding therefore never copies what a reference points to, so a frame of N
//! bytes decodes in O(N) time and memory whatever its references, and re-encoding writes the same
//! references back. Strings up to 23 bytes are stored inline and longer ones are shared, so a
//! string reference costs O(1) too; byte arrays share the input buffer.

use bytes::Bytes;

/// An immutable UTF-8 string: inline up to 23 bytes, shared beyond, so clones never copy much.
pub type Str = smol_str::SmolStr;

/// A named member of an object, an associative array entry or an ECMA array entry.
pub type Member = (Str, Value);

/// One AMF0 or AMF3 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// AMF3 0x00, AMF0 0x06.
    Undefined,
    /// AMF3 0x01, AMF0 0x05 (and AMF0's "unsupported" 0x0D).
    Null,
    /// AMF3 0x02 / 0x03, AMF0 0x01.
    Bool(bool),
    /// AMF3 0x04. Written as a double when outside the 29-bit range [-2^28, 2^28 - 1].
    Integer(i32),
    /// AMF3 0x05, AMF0 0x00.
    Double(f64),
    /// AMF3 0x06, AMF0 0x02 and 0x0C.
    String(Str),
    /// AMF3 0x07 (legacy XMLDocument), AMF0 0x0F.
    XmlDocument(Str),
    /// AMF3 0x0B (E4X XML).
    Xml(Str),
    /// AMF3 0x08, AMF0 0x0B: milliseconds since 1970-01-01 UTC.
    Date(f64),
    /// AMF3 0x0C.
    ByteArray(Bytes),
    /// AMF3 0x09 (dense and associative parts), AMF0 0x0A strict array (dense part only).
    Array(Box<Array>),
    /// AMF3 0x0A (not externalizable), AMF0 0x03 and 0x10.
    Object(Box<Object>),
    /// AMF3 0x0A with externalizable traits, for a class whose external form is known.
    Externalizable(Box<Externalizable>),
    /// AMF3 0x0D.
    VectorInt(Box<Vector<i32>>),
    /// AMF3 0x0E.
    VectorUint(Box<Vector<u32>>),
    /// AMF3 0x0F.
    VectorDouble(Box<Vector<f64>>),
    /// AMF3 0x10.
    VectorObject(Box<ObjectVector>),
    /// AMF3 0x11.
    Dictionary(Box<Dictionary>),
    /// AMF0 0x08: string keys in wire order.
    EcmaArray(Box<Vec<Member>>),
    /// AMF0 0x11: the value that follows is AMF3, with reference tables of its own.
    Avmplus(Box<Value>),
    /// A reference to the object-table entry with this index, in the scope the reference sits in.
    Reference(u32),
}

/// An AMF3 array: the associative part (written first on the wire) and the dense part.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Array {
    /// Named entries, in wire order.
    pub assoc: Vec<Member>,
    /// Indexed entries.
    pub dense: Vec<Value>,
}

/// An object: anonymous when `class_name` is empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Object {
    /// The class alias; empty for an anonymous object.
    pub class_name: Str,
    /// How many of the leading `members` are sealed (declared by the class traits).
    pub sealed_count: usize,
    /// Whether members after the sealed ones may follow (dynamic traits).
    pub dynamic: bool,
    /// Sealed members first, then dynamic ones, in wire order.
    pub members: Vec<Member>,
}

/// An externalizable object whose external form is one AMF3 value (see `ExternalRegistry`).
#[derive(Debug, Clone, PartialEq)]
pub struct Externalizable {
    /// The class alias, e.g. `flex.messaging.io.ArrayCollection`.
    pub class_name: Str,
    /// The value the class writes in `writeExternal`.
    pub body: Value,
}

/// A Vector of a primitive item type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vector<T> {
    /// The fixed-length flag.
    pub fixed: bool,
    /// The items.
    pub items: Vec<T>,
}

/// A `Vector.<T>` of objects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectVector {
    /// The fixed-length flag.
    pub fixed: bool,
    /// The item type name exactly as sent, e.g. `*` or `com.example.Foo`.
    pub type_name: Str,
    /// The items.
    pub items: Vec<Value>,
}

/// A `flash.utils.Dictionary`: keys may be any value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dictionary {
    /// The weak-keys flag.
    pub weak_keys: bool,
    /// Key and value pairs in wire order.
    pub entries: Vec<(Value, Value)>,
}

impl Value {
    /// A string value, copying `text`.
    pub fn string(text: &str) -> Value {
        Value::String(Str::from(text))
    }

    /// An anonymous dynamic object with these members, in this order.
    pub fn object(members: Vec<Member>) -> Value {
        Value::Object(Box::new(Object {
            class_name: Str::default(),
            sealed_count: 0,
            dynamic: true,
            members,
        }))
    }

    /// A typed object whose members are all sealed, as a class with these fields.
    pub fn typed_object(class_name: &str, members: Vec<Member>) -> Value {
        Value::Object(Box::new(Object {
            class_name: Str::from(class_name),
            sealed_count: members.len(),
            dynamic: false,
            members,
        }))
    }

    /// A dense array.
    pub fn array(items: Vec<Value>) -> Value {
        Value::Array(Box::new(Array {
            assoc: Vec::new(),
            dense: items,
        }))
    }

    /// The number as an AMF integer when it fits 32 bits, else as a double.
    pub fn number_from_i64(n: i64) -> Value {
        match i32::try_from(n) {
            Ok(small) => Value::Integer(small),
            Err(_) => Value::Double(n as f64),
        }
    }

    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// The value of a number (integer or double).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Integer(n) => Some(f64::from(*n)),
            Value::Double(n) => Some(*n),
            _ => None,
        }
    }

    /// The object behind this value, if it is one.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(object) => Some(object),
            _ => None,
        }
    }

    /// What kind of value this is, for error messages: "a string", "an object"...
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Undefined => "undefined",
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Integer(_) => "an integer",
            Value::Double(_) => "a double",
            Value::String(_) => "a string",
            Value::XmlDocument(_) => "an XMLDocument",
            Value::Xml(_) => "an XML value",
            Value::Date(_) => "a Date",
            Value::ByteArray(_) => "a ByteArray",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
            Value::Externalizable(_) => "an externalizable object",
            Value::VectorInt(_)
            | Value::VectorUint(_)
            | Value::VectorDouble(_)
            | Value::VectorObject(_) => "a Vector",
            Value::Dictionary(_) => "a Dictionary",
            Value::EcmaArray(_) => "an ECMA array",
            Value::Avmplus(inner) => inner.kind_name(),
            Value::Reference(_) => "a reference",
        }
    }

    /// Whether this value or anything inside it is an object reference.
    pub fn contains_reference(&self) -> bool {
        match self {
            Value::Reference(_) => true,
            other => other.children().any(Value::contains_reference),
        }
    }

    /// The values directly inside this one, in wire order (for an array: associative part first;
    /// for a dictionary: each key, then its value).
    pub fn children(&self) -> Children<'_> {
        match self {
            Value::Array(array) => Children::ArrayParts(array.assoc.iter(), array.dense.iter()),
            Value::Object(object) => Children::Members(object.members.iter()),
            Value::EcmaArray(members) => Children::Members(members.iter()),
            Value::Externalizable(ext) => Children::One(Some(&ext.body)),
            Value::Avmplus(inner) => Children::One(Some(inner)),
            Value::VectorObject(vector) => Children::Values(vector.items.iter()),
            Value::Dictionary(dict) => Children::Pairs(dict.entries.iter(), None),
            _ => Children::One(None),
        }
    }

    /// Calls `visit` on each value directly inside this one, in wire order.
    pub fn for_each_child_mut(&mut self, visit: &mut impl FnMut(&mut Value)) {
        match self {
            Value::Array(array) => {
                array.assoc.iter_mut().for_each(|(_, value)| visit(value));
                array.dense.iter_mut().for_each(visit);
            }
            Value::Object(object) => object
                .members
                .iter_mut()
                .for_each(|(_, value)| visit(value)),
            Value::EcmaArray(members) => members.iter_mut().for_each(|(_, value)| visit(value)),
            Value::Externalizable(ext) => visit(&mut ext.body),
            Value::Avmplus(inner) => visit(inner),
            Value::VectorObject(vector) => vector.items.iter_mut().for_each(visit),
            Value::Dictionary(dict) => dict.entries.iter_mut().for_each(|(key, value)| {
                visit(key);
                visit(value);
            }),
            _ => {}
        }
    }
}

impl Value {
    /// A copy of this value with each value directly inside it replaced by `map` of it, called in
    /// wire order.
    pub fn try_map_children<'a, E>(
        &'a self,
        map: &mut impl FnMut(&'a Value) -> Result<Value, E>,
    ) -> Result<Value, E> {
        let mut map_members = |members: &'a [Member]| -> Result<Vec<Member>, E> {
            members
                .iter()
                .map(|(name, value)| Ok((name.clone(), map(value)?)))
                .collect()
        };
        Ok(match self {
            Value::Array(array) => {
                let assoc = map_members(&array.assoc)?;
                let dense = array
                    .dense
                    .iter()
                    .map(&mut *map)
                    .collect::<Result<_, E>>()?;
                Value::Array(Box::new(Array { assoc, dense }))
            }
            Value::Object(object) => Value::Object(Box::new(Object {
                members: map_members(&object.members)?,
                class_name: object.class_name.clone(),
                ..**object
            })),
            Value::EcmaArray(members) => Value::EcmaArray(Box::new(map_members(members)?)),
            Value::Externalizable(ext) => Value::Externalizable(Box::new(Externalizable {
                class_name: ext.class_name.clone(),
                body: map(&ext.body)?,
            })),
            Value::Avmplus(inner) => Value::Avmplus(Box::new(map(inner)?)),
            Value::VectorObject(vector) => Value::VectorObject(Box::new(ObjectVector {
                fixed: vector.fixed,
                type_name: vector.type_name.clone(),
                items: vector
                    .items
                    .iter()
                    .map(&mut *map)
                    .collect::<Result<_, E>>()?,
            })),
            Value::Dictionary(dict) => {
                let mut entries = Vec::with_capacity(dict.entries.len());
                for (key, value) in &dict.entries {
                    let key = map(key)?;
                    entries.push((key, map(value)?));
                }
                Value::Dictionary(Box::new(Dictionary {
                    weak_keys: dict.weak_keys,
                    entries,
                }))
            }
            leaf => leaf.clone(),
        })
    }
}

/// The values directly inside a value, in wire order; see [`Value::children`].
pub enum Children<'a> {
    /// Member values of an object or ECMA array.
    Members(std::slice::Iter<'a, Member>),
    /// Items of a vector of objects.
    Values(std::slice::Iter<'a, Value>),
    /// An array: associative values, then dense items.
    ArrayParts(std::slice::Iter<'a, Member>, std::slice::Iter<'a, Value>),
    /// A dictionary's entries, with the value still due after the last key.
    Pairs(std::slice::Iter<'a, (Value, Value)>, Option<&'a Value>),
    /// At most one value.
    One(Option<&'a Value>),
}

impl<'a> Iterator for Children<'a> {
    type Item = &'a Value;

    fn next(&mut self) -> Option<&'a Value> {
        match self {
            Children::Members(members) => members.next().map(|(_, value)| value),
            Children::Values(values) => values.next(),
            Children::ArrayParts(assoc, dense) => match assoc.next() {
                Some((_, value)) => Some(value),
                None => dense.next(),
            },
            Children::Pairs(entries, due) => match due.take() {
                Some(value) => Some(value),
                None => entries.next().map(|(key, value)| {
                    *due = Some(value);
                    key
                }),
            },
            Children::One(value) => value.take(),
        }
    }
}

impl Object {
    /// The value of the first member with this name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.members
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// Takes the value of the first member with this name out of the object.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        let position = self.members.iter().position(|(key, _)| key == name)?;
        Some(std::mem::replace(
            &mut self.members[position].1,
            Value::Undefined,
        ))
    }
}
