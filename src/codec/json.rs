//! The canonical JSON form of a value (shared/vectors/README.md), used by `decode --json` and the
//! proxy's JSON log: lossless for every AMF type, references resolved, cycles marked.

use serde_json::{Map, Value as Json, json};

use super::Format;
use super::error::RenderError;
use super::graph::{Resolved, Resolver};
use super::limits::Limits;
use super::value::{Member, Value};

/// Doubles of at least this magnitude are written by their bits: a JSON integer would not
/// round-trip through common JSON readers.
pub const INTEGRAL_BELOW: f64 = 9_007_199_254_740_992.0; // 2^53

/// The canonical JSON of `value`, a top-level value of `format`.
pub fn to_canonical_json(
    value: &Value,
    format: Format,
    limits: &Limits,
) -> Result<Json, RenderError> {
    let mut renderer = Renderer {
        resolver: Resolver::new(value, format, limits),
    };
    renderer.render(value)
}

/// The number rule: integral and below 2^53 in magnitude as a JSON integer, anything else (fractions,
/// infinities, NaN, huge values) as `{"$f": IEEE-754 bits}`.
pub fn number(n: f64) -> Json {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < INTEGRAL_BELOW {
        // Exact: integral and within 2^53. Also maps -0.0 to 0.
        json!(n as i64)
    } else {
        json!({ "$f": n.to_bits() })
    }
}

/// `{key: value}`. Rendered parts are moved in, never passed through `json!`, which would copy
/// them (through `serde_json::to_value`): at every level, so that deep input cost O(size x depth).
fn tagged(key: &str, value: Json) -> Json {
    let mut map = Map::with_capacity(1);
    map.insert(key.into(), value);
    Json::Object(map)
}

struct Renderer<'v> {
    resolver: Resolver<'v>,
}

impl<'v> Renderer<'v> {
    fn render(&mut self, node: &'v Value) -> Result<Json, RenderError> {
        let value = match self.resolver.resolve(node)? {
            Resolved::Cycle(index) => return Ok(json!({ "$cycle": index })),
            Resolved::Value(value) => value,
        };
        Ok(match value {
            Value::Undefined | Value::Null => Json::Null,
            Value::Bool(b) => json!(b),
            Value::Integer(n) => json!(n),
            Value::Double(n) => number(*n),
            Value::String(text) => json!(text.as_ref() as &str),
            Value::XmlDocument(text) => json!({ "$xmldoc": text.as_ref() as &str }),
            Value::Xml(text) => json!({ "$xml": text.as_ref() as &str }),
            Value::Date(ms) => tagged("$date", number(*ms)),
            Value::ByteArray(bytes) => json!({ "$bytes": hex::encode(bytes) }),
            Value::VectorInt(vector) => json!({ "$vint": vector.items }),
            Value::VectorUint(vector) => json!({ "$vuint": vector.items }),
            Value::VectorDouble(vector) => tagged(
                "$vdouble",
                vector.items.iter().map(|n| number(*n)).collect(),
            ),
            Value::Object(object) => self.nested(value, |this| {
                let mut map = Map::with_capacity(object.members.len() + 1);
                map.insert("$class".into(), json!(object.class_name.as_ref() as &str));
                this.render_members_into(&object.members, &mut map)?;
                Ok(Json::Object(map))
            })?,
            Value::Externalizable(ext) => self.nested(value, |this| {
                let mut map = Map::with_capacity(2);
                map.insert("$class".into(), json!(ext.class_name.as_ref() as &str));
                map.insert("$ext".into(), this.render(&ext.body)?);
                Ok(Json::Object(map))
            })?,
            Value::Array(array) if array.assoc.is_empty() => {
                self.nested(value, |this| this.render_items(&array.dense))?
            }
            Value::Array(array) => self.nested(value, |this| {
                let mut assoc = Map::with_capacity(array.assoc.len());
                this.render_members_into(&array.assoc, &mut assoc)?;
                let mut map = Map::with_capacity(2);
                map.insert("$assoc".into(), Json::Object(assoc));
                map.insert("$dense".into(), this.render_items(&array.dense)?);
                Ok(Json::Object(map))
            })?,
            Value::EcmaArray(members) => self.nested(value, |this| {
                let mut map = Map::with_capacity(members.len());
                this.render_members_into(members, &mut map)?;
                Ok(tagged("$ecma", Json::Object(map)))
            })?,
            Value::VectorObject(vector) => self.nested(value, |this| {
                let mut map = Map::with_capacity(2);
                map.insert("$vobj".into(), json!(vector.type_name.as_ref() as &str));
                map.insert("items".into(), this.render_items(&vector.items)?);
                Ok(Json::Object(map))
            })?,
            Value::Dictionary(dict) => self.nested(value, |this| {
                let mut pairs = Vec::with_capacity(dict.entries.len());
                for (key, value) in &dict.entries {
                    pairs.push(Json::Array(vec![this.render(key)?, this.render(value)?]));
                }
                Ok(tagged("$dict", Json::Array(pairs)))
            })?,
            Value::Avmplus(inner) => self.nested(value, |this| this.render(inner))?,
            Value::Reference(index) => {
                // `resolve` never returns a reference: it returns the target or a cycle.
                json!({ "$cycle": index })
            }
        })
    }

    /// Renders a container's contents one level deeper on the resolver's path.
    fn nested(
        &mut self,
        container: &'v Value,
        render: impl FnOnce(&mut Self) -> Result<Json, RenderError>,
    ) -> Result<Json, RenderError> {
        self.resolver.enter(container)?;
        let rendered = render(self)?;
        self.resolver.leave();
        Ok(rendered)
    }

    fn render_items(&mut self, items: &'v [Value]) -> Result<Json, RenderError> {
        items
            .iter()
            .map(|item| self.render(item))
            .collect::<Result<Vec<_>, _>>()
            .map(Json::Array)
    }

    fn render_members_into(
        &mut self,
        members: &'v [Member],
        map: &mut Map<String, Json>,
    ) -> Result<(), RenderError> {
        for (name, value) in members {
            let rendered = self.render(value)?;
            map.insert(name.to_string(), rendered);
        }
        Ok(())
    }
}
