//! The JSON payload dialect (same envelope and framing, JSON instead of AMF3): plain JSON to and
//! from `Value`, as a JavaScript or ActionScript `JSON.stringify` peer would write it.
//!
//! Unlike the canonical JSON of `codec::json`, this form is lossy by design: class names, the
//! difference between integers and doubles, and AMF-only types are not kept, because a JSON peer
//! has no way to express them.

use serde_json::{Map, Number, Value as Json};

use crate::codec::graph::{Resolved, Resolver};
use crate::codec::json::INTEGRAL_BELOW;
use crate::codec::{Format, Limits, Member, RenderError, Str, Value, display};

/// Why a value cannot be written as plain JSON.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsonError {
    /// The value refers back to one of its ancestors, which JSON cannot express.
    #[error("the value holds a cycle (object table index {0}), which JSON cannot express")]
    Cycle(u32),
    /// Resolving references failed (too deep, or over the expansion budget).
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// A JSON number: integral values become integers (the encoder writes those beyond 29 bits as
/// doubles, as Flash does), others doubles.
fn number_to_value(number: &Number) -> Value {
    match number.as_i64() {
        Some(n) => Value::number_from_i64(n),
        None => Value::Double(number.as_f64().unwrap_or(f64::NAN)),
    }
}

/// A JSON value as an AMF value: objects become anonymous dynamic objects, arrays dense arrays.
pub fn json_to_value(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(number) => number_to_value(number),
        Json::String(text) => Value::string(text),
        Json::Array(items) => Value::array(items.iter().map(json_to_value).collect()),
        Json::Object(map) => Value::object(
            map.iter()
                .map(|(key, value)| (Str::from(key.as_str()), json_to_value(value)))
                .collect(),
        ),
    }
}

/// How deeply a JSON document's arrays and objects nest (0 for a scalar), counted as the AMF3
/// decoder counts containers for `Limits::max_depth`. Recursion is safe: the parser refuses
/// documents nested over 128 levels.
pub fn json_depth(json: &Json) -> usize {
    let deepest = |children: &mut dyn Iterator<Item = &Json>| children.map(json_depth).max();
    match json {
        Json::Array(items) => 1 + deepest(&mut items.iter()).unwrap_or(0),
        Json::Object(map) => 1 + deepest(&mut map.values()).unwrap_or(0),
        _ => 0,
    }
}

/// An AMF3 value as plain JSON: references resolved, dates as ISO-8601 strings, byte arrays as
/// arrays of numbers, XML as its text, non-finite numbers as null.
pub fn value_to_json(value: &Value, limits: &Limits) -> Result<Json, JsonError> {
    let mut writer = Writer {
        resolver: Resolver::new(value, Format::Amf3, limits),
    };
    writer.write(value)
}

struct Writer<'v> {
    resolver: Resolver<'v>,
}

impl<'v> Writer<'v> {
    fn write(&mut self, node: &'v Value) -> Result<Json, JsonError> {
        let value = match self.resolver.resolve(node)? {
            Resolved::Cycle(index) => return Err(JsonError::Cycle(index)),
            Resolved::Value(value) => value,
        };
        Ok(match value {
            Value::Undefined | Value::Null | Value::Reference(_) => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Integer(n) => Json::from(*n),
            Value::Double(n) | Value::Date(n) if !n.is_finite() => Json::Null,
            Value::Double(n) => double(*n),
            Value::Date(ms) => Json::String(display::format_date(*ms)),
            Value::String(text) | Value::XmlDocument(text) | Value::Xml(text) => {
                Json::String(text.to_string())
            }
            Value::ByteArray(bytes) => Json::Array(bytes.iter().map(|b| Json::from(*b)).collect()),
            Value::VectorInt(vector) => Json::from(vector.items.clone()),
            Value::VectorUint(vector) => Json::from(vector.items.clone()),
            Value::VectorDouble(vector) => vector.items.iter().map(|n| double(*n)).collect(),
            Value::Object(object) => self.nested(value, |this| this.members(&object.members))?,
            Value::EcmaArray(members) => self.nested(value, |this| this.members(members))?,
            Value::Externalizable(ext) => self.nested(value, |this| this.write(&ext.body))?,
            Value::Avmplus(inner) => self.nested(value, |this| this.write(inner))?,
            Value::Array(array) if array.assoc.is_empty() => {
                self.nested(value, |this| this.items(&array.dense))?
            }
            Value::Array(array) => self.nested(value, |this| {
                let mut map = this.member_map(&array.assoc)?;
                for (index, item) in array.dense.iter().enumerate() {
                    map.insert(index.to_string(), this.write(item)?);
                }
                Ok(Json::Object(map))
            })?,
            Value::VectorObject(vector) => self.nested(value, |this| this.items(&vector.items))?,
            Value::Dictionary(dict) => self.nested(value, |this| {
                let mut map = Map::with_capacity(dict.entries.len());
                for (key, value) in &dict.entries {
                    let key = match this.write(key)? {
                        Json::String(text) => text,
                        other => other.to_string(),
                    };
                    map.insert(key, this.write(value)?);
                }
                Ok(Json::Object(map))
            })?,
        })
    }

    fn nested(
        &mut self,
        container: &'v Value,
        write: impl FnOnce(&mut Self) -> Result<Json, JsonError>,
    ) -> Result<Json, JsonError> {
        self.resolver.enter(container)?;
        let written = write(self)?;
        self.resolver.leave();
        Ok(written)
    }

    fn items(&mut self, items: &'v [Value]) -> Result<Json, JsonError> {
        items.iter().map(|item| self.write(item)).collect()
    }

    fn members(&mut self, members: &'v [Member]) -> Result<Json, JsonError> {
        self.member_map(members).map(Json::Object)
    }

    fn member_map(&mut self, members: &'v [Member]) -> Result<Map<String, Json>, JsonError> {
        let mut map = Map::with_capacity(members.len());
        for (name, value) in members {
            let written = self.write(value)?;
            map.insert(name.to_string(), written);
        }
        Ok(map)
    }
}

/// A finite double as a JSON number: integral values print without a fraction, as JavaScript does.
fn double(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() < INTEGRAL_BELOW {
        Json::from(n as i64)
    } else {
        Number::from_f64(n).map_or(Json::Null, Json::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_through_values() {
        let original =
            json!({"a": 1, "b": [true, null, "x"], "c": {"d": 2.5, "big": 4_000_000_000i64}});
        let value = json_to_value(&original);
        let object = value.as_object().expect("an object");
        assert!(matches!(object.get("a"), Some(Value::Integer(1))));
        let big = object
            .get("c")
            .and_then(Value::as_object)
            .and_then(|c| c.get("big"));
        assert!(matches!(big, Some(Value::Double(n)) if *n == 4e9));
        let back = value_to_json(&value, &Limits::default()).expect("writes");
        assert_eq!(back, original);
    }

    #[test]
    fn depth_counts_nested_containers() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!([])), 1);
        assert_eq!(json_depth(&json!({"a": [1, {"b": []}], "c": 2})), 4);
    }

    #[test]
    fn references_resolve_and_cycles_are_refused() {
        let shared = Value::object(vec![(Str::from("n"), Value::Integer(1))]);
        let value = Value::array(vec![shared, Value::Reference(1)]);
        let written = value_to_json(&value, &Limits::default()).expect("writes");
        assert_eq!(written, json!([{"n": 1}, {"n": 1}]));

        let cycle = Value::object(vec![(Str::from("me"), Value::Reference(0))]);
        assert_eq!(
            value_to_json(&cycle, &Limits::default()),
            Err(JsonError::Cycle(0))
        );
    }

    #[test]
    fn amf_only_types_become_plain_json() {
        let value = Value::array(vec![
            Value::Date(0.0),
            Value::ByteArray(bytes::Bytes::from_static(&[1, 2])),
            Value::Double(f64::NAN),
            Value::Double(2.0),
        ]);
        let written = value_to_json(&value, &Limits::default()).expect("writes");
        assert_eq!(written[1], json!([1, 2]));
        assert_eq!(written[2], Json::Null);
        assert_eq!(written[3], json!(2));
        assert!(
            written[0]
                .as_str()
                .is_some_and(|date| date.starts_with("1970-01-01"))
        );
    }
}
