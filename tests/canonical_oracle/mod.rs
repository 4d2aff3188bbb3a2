//! The canonical JSON form as it was first written, building a `serde_json::Value` node by node
//! with an eager resolver (object tables and the tree's size worked out up front). Kept as an
//! independent oracle: the streaming writer in `codec::json` must give exactly this, as a tree
//! and as text, on every value (tests/properties.rs, tests/vectors.rs).
#![allow(dead_code)]

use amf_bench::codec::graph::{ObjectTable, Resolved, tree_cost};
use amf_bench::codec::{Format, Limits, Member, RenderError, Value};
use serde_json::{Map, Value as Json, json};

/// The canonical JSON of `value`, a top-level value of `format`, by the original renderer.
pub fn render(value: &Value, format: Format, limits: &Limits) -> Result<Json, RenderError> {
    let mut renderer = Renderer {
        resolver: Resolver::new(value, format, limits),
    };
    renderer.render(value)
}

const INTEGRAL_BELOW: f64 = 9_007_199_254_740_992.0; // 2^53

fn number(n: f64) -> Json {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < INTEGRAL_BELOW {
        json!(n as i64)
    } else {
        json!({ "$f": n.to_bits() })
    }
}

/// The cost of rendering one node: one, plus the bytes of its texts and member names.
fn render_cost(value: &Value) -> usize {
    let names = |members: &[Member]| members.iter().map(|(name, _)| name.len()).sum::<usize>();
    1 + match value {
        Value::String(text) | Value::Xml(text) | Value::XmlDocument(text) => text.len(),
        Value::ByteArray(bytes) => bytes.len(),
        Value::Object(object) => names(&object.members) + object.class_name.len(),
        Value::Externalizable(ext) => ext.class_name.len(),
        Value::Array(array) => names(&array.assoc) + array.dense.len(),
        Value::EcmaArray(members) => names(members),
        Value::VectorInt(vector) => vector.items.len(),
        Value::VectorUint(vector) => vector.items.len(),
        Value::VectorDouble(vector) => vector.items.len(),
        Value::VectorObject(vector) => vector.type_name.len(),
        _ => 0,
    }
}

struct Resolver<'v> {
    /// One table per scope entered; the last is the current one.
    scopes: Vec<(Format, ObjectTable<'v>)>,
    /// The containers being rendered, and whether each opened a scope.
    path: Vec<(&'v Value, bool)>,
    /// Containers on the path, as the decoder counts nesting: an AVM+ switch is not one.
    depth: usize,
    budget: usize,
    size: usize,
    spent: usize,
    max_depth: usize,
}

impl<'v> Resolver<'v> {
    /// A resolver for walking `root`, a top-level value of `format`.
    fn new(root: &'v Value, format: Format, limits: &Limits) -> Resolver<'v> {
        let size = tree_cost(root, 0);
        Resolver {
            scopes: vec![(format, ObjectTable::build(root, format))],
            path: Vec::new(),
            depth: 0,
            budget: limits.expansion_budget(size),
            size,
            spent: 0,
            max_depth: limits.max_depth,
        }
    }

    fn current(&self) -> &(Format, ObjectTable<'v>) {
        // There is always the root scope.
        &self.scopes[self.scopes.len() - 1]
    }

    /// Resolves the node met next in the walk and charges its cost to the budget.
    fn resolve(&mut self, node: &'v Value) -> Result<Resolved<'v>, RenderError> {
        let (format, table) = self.current();
        let target = match node {
            Value::Reference(index) => {
                table.get(*index).ok_or(RenderError::ReferenceOutOfRange {
                    index: *index,
                    len: table.len(),
                })?
            }
            other => other,
        };
        if target.takes_table_entry(*format)
            && self
                .path
                .iter()
                .any(|(open, _)| std::ptr::eq(*open, target))
        {
            let index = match node {
                Value::Reference(index) => *index,
                _ => table.index_of(target).unwrap_or(0),
            };
            return Ok(Resolved::Cycle(index));
        }
        self.spent = self.spent.saturating_add(render_cost(target));
        if self.spent > self.budget {
            return Err(RenderError::ExpansionBudget {
                budget: self.budget,
                size: self.size,
            });
        }
        Ok(Resolved::Value(target))
    }

    /// Enters a resolved container before rendering its children.
    fn enter(&mut self, container: &'v Value) -> Result<(), RenderError> {
        let counts = !matches!(container, Value::Avmplus(_));
        if counts && self.depth >= self.max_depth {
            return Err(RenderError::TooDeep {
                limit: self.max_depth,
            });
        }
        self.depth += usize::from(counts);
        let (format, _) = self.current();
        let scope = container.opens_scope(*format);
        if let Some(scope_root) = scope {
            self.scopes
                .push((Format::Amf3, ObjectTable::build(scope_root, Format::Amf3)));
        }
        self.path.push((container, scope.is_some()));
        Ok(())
    }

    /// Leaves the container entered last.
    fn leave(&mut self) {
        if let Some((container, opened_scope)) = self.path.pop() {
            self.depth -= usize::from(!matches!(container, Value::Avmplus(_)));
            if opened_scope {
                self.scopes.pop();
            }
        }
    }
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
            Value::Date(ms) => json!({ "$date": number(*ms) }),
            Value::ByteArray(bytes) => json!({ "$bytes": hex::encode(bytes) }),
            Value::VectorInt(vector) => json!({ "$vint": vector.items }),
            Value::VectorUint(vector) => json!({ "$vuint": vector.items }),
            Value::VectorDouble(vector) => {
                json!({ "$vdouble": vector.items.iter().map(|n| number(*n)).collect::<Vec<_>>() })
            }
            Value::Object(object) => self.nested(value, |this| {
                let mut map = Map::with_capacity(object.members.len() + 1);
                map.insert("$class".into(), json!(object.class_name.as_ref() as &str));
                this.render_members_into(&object.members, &mut map)?;
                Ok(Json::Object(map))
            })?,
            Value::Externalizable(ext) => self.nested(value, |this| {
                Ok(json!({ "$class": ext.class_name.as_ref() as &str, "$ext": this.render(&ext.body)? }))
            })?,
            Value::Array(array) if array.assoc.is_empty() => {
                self.nested(value, |this| this.render_items(&array.dense))?
            }
            Value::Array(array) => self.nested(value, |this| {
                let mut assoc = Map::with_capacity(array.assoc.len());
                this.render_members_into(&array.assoc, &mut assoc)?;
                Ok(json!({ "$assoc": assoc, "$dense": this.render_items(&array.dense)? }))
            })?,
            Value::EcmaArray(members) => self.nested(value, |this| {
                let mut map = Map::with_capacity(members.len());
                this.render_members_into(members, &mut map)?;
                Ok(json!({ "$ecma": map }))
            })?,
            Value::VectorObject(vector) => self.nested(value, |this| {
                Ok(json!({ "$vobj": vector.type_name.as_ref() as &str, "items": this.render_items(&vector.items)? }))
            })?,
            Value::Dictionary(dict) => self.nested(value, |this| {
                let mut pairs = Vec::with_capacity(dict.entries.len());
                for (key, value) in &dict.entries {
                    pairs.push(json!([this.render(key)?, this.render(value)?]));
                }
                Ok(json!({ "$dict": pairs }))
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
