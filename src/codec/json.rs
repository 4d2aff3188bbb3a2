//! The canonical JSON form of a value (shared/vectors/README.md), used by `decode --json` and the
//! proxy's JSON log: lossless for every AMF type, references resolved, cycles marked.
//!
//! One writer holds the rules and streams the form into a `Sink` (`json_sink.rs`): JSON text
//! straight into a `String`, with no tree built, or a `serde_json::Value`.

use std::collections::HashMap;

use serde_json::Value as Json;

use super::Format;
use super::error::RenderError;
use super::graph::{Resolved, Resolver};
use super::json_sink::TreeBuilder;
pub use super::json_sink::{Sink, push_hex, push_json_string};
use super::limits::Limits;
use super::value::{Array, Dictionary, Externalizable, Member, ObjectVector, Str, Value};

/// Doubles of at least this magnitude are written by their bits: a JSON integer would not
/// round-trip through common JSON readers.
pub const INTEGRAL_BELOW: f64 = 9_007_199_254_740_992.0; // 2^53

/// Member lists up to this long are checked for repeated names pair by pair, longer ones
/// through a hash set.
const PAIRWISE_UP_TO: usize = 16;

/// The canonical JSON of `value`, a top-level value of `format`, as a tree.
pub fn to_canonical_json(
    value: &Value,
    format: Format,
    limits: &Limits,
) -> Result<Json, RenderError> {
    let mut tree = TreeBuilder::default();
    write_canonical_json(value, format, limits, &mut tree)?;
    Ok(tree.finish())
}

/// Writes the canonical JSON of `value`, a top-level value of `format`, into `out`: as text,
/// the same bytes as `to_canonical_json(..)?.to_string()`. On an error, what was written so
/// far stays in `out`; a caller that wants none of it cuts it off.
pub fn write_canonical_json<S: Sink>(
    value: &Value,
    format: Format,
    limits: &Limits,
    out: &mut S,
) -> Result<(), RenderError> {
    let mut writer = Writer {
        resolver: Resolver::new(value, format, limits),
        out,
    };
    writer.value(value)
}

/// Writes the number rule: integral and below 2^53 in magnitude as a JSON integer, anything
/// else (fractions, infinities, NaN, huge values) as `{"$f": IEEE-754 bits}`.
fn number(out: &mut impl Sink, n: f64) {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < INTEGRAL_BELOW {
        // Exact: integral and within 2^53. Also maps -0.0 to 0.
        out.int(n as i64);
    } else {
        out.open_object();
        out.key("$f");
        out.uint(n.to_bits());
        out.close_object();
    }
}

/// Writes a value with nothing inside to resolve.
fn write_leaf(out: &mut impl Sink, value: &Value) {
    match value {
        Value::Bool(b) => out.bool(*b),
        Value::Integer(n) => out.int((*n).into()),
        Value::Double(n) => number(out, *n),
        Value::String(text) => out.str(text),
        Value::XmlDocument(text) => tag(out, "$xmldoc", |out| out.str(text)),
        Value::Xml(text) => tag(out, "$xml", |out| out.str(text)),
        Value::Date(ms) => tag(out, "$date", |out| number(out, *ms)),
        Value::ByteArray(bytes) => tag(out, "$bytes", |out| out.hex(bytes)),
        Value::VectorInt(vector) => tag(out, "$vint", |out| {
            list(out, &vector.items, |out, n| out.int((*n).into()));
        }),
        Value::VectorUint(vector) => tag(out, "$vuint", |out| {
            list(out, &vector.items, |out, n| out.uint((*n).into()));
        }),
        Value::VectorDouble(vector) => tag(out, "$vdouble", |out| {
            list(out, &vector.items, |out, n| number(out, *n));
        }),
        // `resolve` never returns a reference: it returns the target or a cycle.
        Value::Reference(index) => tag(out, "$cycle", |out| out.uint((*index).into())),
        // Undefined and null; containers never come here (see `Writer::value`).
        _ => out.null(),
    }
}

/// `{"tag": ...}`, the inside written by `inner`.
fn tag<S: Sink>(out: &mut S, tag: &str, inner: impl FnOnce(&mut S)) {
    out.open_object();
    out.key(tag);
    inner(out);
    out.close_object();
}

/// A JSON array of plain items.
fn list<S: Sink, T>(out: &mut S, items: &[T], mut item: impl FnMut(&mut S, &T)) {
    out.open_array();
    for (index, each) in items.iter().enumerate() {
        if index > 0 {
            out.comma();
        }
        item(out, each);
    }
    out.close_array();
}

struct Writer<'v, 's, S> {
    resolver: Resolver<'v>,
    out: &'s mut S,
}

impl<'v, S: Sink> Writer<'v, '_, S> {
    fn value(&mut self, node: &'v Value) -> Result<(), RenderError> {
        let value = match self.resolver.resolve(node)? {
            Resolved::Cycle(index) => {
                tag(self.out, "$cycle", |out| out.uint(index.into()));
                return Ok(());
            }
            Resolved::Value(value) => value,
        };
        match value {
            Value::Object(object) => self.nested(value, |this| {
                this.members(Some(&object.class_name), &object.members)
            }),
            Value::Externalizable(ext) => self.nested(value, |this| this.externalizable(ext)),
            Value::Array(array) => self.nested(value, |this| this.array(array)),
            Value::EcmaArray(members) => self.nested(value, |this| {
                this.tagged("$ecma", |this| this.members(None, members))
            }),
            Value::VectorObject(vector) => self.nested(value, |this| this.object_vector(vector)),
            Value::Dictionary(dict) => self.nested(value, |this| this.dictionary(dict)),
            Value::Avmplus(inner) => self.nested(value, |this| this.value(inner)),
            leaf => {
                write_leaf(self.out, leaf);
                Ok(())
            }
        }
    }

    /// `{"tag": ...}`, the inside written by `inner`.
    fn tagged(
        &mut self,
        tag: &str,
        inner: impl FnOnce(&mut Self) -> Result<(), RenderError>,
    ) -> Result<(), RenderError> {
        self.out.open_object();
        self.out.key(tag);
        inner(self)?;
        self.out.close_object();
        Ok(())
    }

    /// Writes a container's contents one level deeper on the resolver's path.
    fn nested(
        &mut self,
        container: &'v Value,
        inside: impl FnOnce(&mut Self) -> Result<(), RenderError>,
    ) -> Result<(), RenderError> {
        self.resolver.enter(container)?;
        inside(self)?;
        self.resolver.leave();
        Ok(())
    }

    fn items(&mut self, items: &'v [Value]) -> Result<(), RenderError> {
        self.out.open_array();
        for (index, item) in items.iter().enumerate() {
            if index > 0 {
                self.out.comma();
            }
            self.value(item)?;
        }
        self.out.close_array();
        Ok(())
    }

    fn externalizable(&mut self, ext: &'v Externalizable) -> Result<(), RenderError> {
        self.named(("$class", &ext.class_name), "$ext", |this| {
            this.value(&ext.body)
        })
    }

    /// `{"name key": "name", "key": ...}`, the second member written by `inner`.
    fn named(
        &mut self,
        (name_key, name): (&str, &str),
        key: &str,
        inner: impl FnOnce(&mut Self) -> Result<(), RenderError>,
    ) -> Result<(), RenderError> {
        self.out.open_object();
        self.out.key(name_key);
        self.out.str(name);
        self.out.comma();
        self.out.key(key);
        inner(self)?;
        self.out.close_object();
        Ok(())
    }

    fn array(&mut self, array: &'v Array) -> Result<(), RenderError> {
        if array.assoc.is_empty() {
            return self.items(&array.dense);
        }
        self.out.open_object();
        self.out.key("$assoc");
        self.members(None, &array.assoc)?;
        self.out.comma();
        self.out.key("$dense");
        self.items(&array.dense)?;
        self.out.close_object();
        Ok(())
    }

    fn object_vector(&mut self, vector: &'v ObjectVector) -> Result<(), RenderError> {
        self.named(("$vobj", &vector.type_name), "items", |this| {
            this.items(&vector.items)
        })
    }

    fn dictionary(&mut self, dict: &'v Dictionary) -> Result<(), RenderError> {
        self.tagged("$dict", |this| {
            this.out.open_array();
            for (index, (key, value)) in dict.entries.iter().enumerate() {
                if index > 0 {
                    this.out.comma();
                }
                this.out.open_array();
                this.value(key)?;
                this.out.comma();
                this.value(value)?;
                this.out.close_array();
            }
            this.out.close_array();
            Ok(())
        })
    }

    /// A JSON object of `members`, after `"$class": class` for an object.
    fn members(
        &mut self,
        class: Option<&'v Str>,
        members: &'v [Member],
    ) -> Result<(), RenderError> {
        if has_repeats(class.is_some(), members) {
            return self.members_with_repeats(class, members);
        }
        self.out.open_object();
        if let Some(class) = class {
            self.out.key("$class");
            self.out.str(class);
        }
        for (index, (name, value)) in members.iter().enumerate() {
            if index > 0 || class.is_some() {
                self.out.comma();
            }
            self.out.key(name);
            self.value(value)?;
        }
        self.out.close_object();
        Ok(())
    }

    /// Members where a name repeats: as a JSON map builds them, each name in its first place with
    /// its last value. Every value is still written, in order, so references resolve and errors
    /// arise exactly as without repeats.
    fn members_with_repeats(
        &mut self,
        class: Option<&'v Str>,
        members: &'v [Member],
    ) -> Result<(), RenderError> {
        let mut entries: Vec<(&str, S)> = Vec::with_capacity(members.len() + 1);
        let mut places: HashMap<&str, usize> = HashMap::with_capacity(members.len() + 1);
        if let Some(class) = class {
            let mut rendered = S::default();
            rendered.str(class);
            places.insert("$class", 0);
            entries.push(("$class", rendered));
        }
        for (name, value) in members {
            let rendered = self.apart(value)?;
            match places.get(name.as_str()) {
                Some(&place) => entries[place].1 = rendered,
                None => {
                    places.insert(name, entries.len());
                    entries.push((name, rendered));
                }
            }
        }
        self.out.open_object();
        for (index, (name, rendered)) in entries.into_iter().enumerate() {
            if index > 0 {
                self.out.comma();
            }
            self.out.key(name);
            self.out.append(rendered);
        }
        self.out.close_object();
        Ok(())
    }

    /// Writes `value` into a sink of its own.
    fn apart(&mut self, value: &'v Value) -> Result<S, RenderError> {
        let saved = std::mem::take(self.out);
        let written = self.value(value);
        let rendered = std::mem::replace(self.out, saved);
        written.map(|()| rendered)
    }
}

/// Whether a member name repeats (`$class` counting as the first name when `with_class`).
fn has_repeats(with_class: bool, members: &[Member]) -> bool {
    let class = with_class.then_some("$class");
    let names = || {
        class
            .into_iter()
            .chain(members.iter().map(|(name, _)| name.as_str()))
    };
    if members.len() <= PAIRWISE_UP_TO {
        return names()
            .enumerate()
            .any(|(index, name)| names().take(index).any(|earlier| earlier == name));
    }
    let mut seen = std::collections::HashSet::with_capacity(members.len() + 1);
    !names().all(|name| seen.insert(name))
}

/// The canonical JSON of `value` as one line of text, for `decode --json`.
pub fn canonical_json_text(
    value: &Value,
    format: Format,
    limits: &Limits,
) -> Result<String, RenderError> {
    let mut text = String::new();
    write_canonical_json(value, format, limits, &mut text)?;
    Ok(text)
}
