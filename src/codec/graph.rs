//! References: object tables by scope, resolving references within a budget, and moving values
//! between trees.
//!
//! A `Value::Reference(n)` names the n-th object-table entry of its scope, numbered in the order the
//! entries' markers appear on the wire, a container before its contents: a pre-order walk. An AMF3
//! value has one scope. In AMF0, the AMF0 table holds objects, typed objects, strict and ECMA arrays
//! only, and each AMF3 value inside it (after an AVM+ switch, or an AMF3-only value that the AMF0
//! encoder writes through one) opens a scope of its own.

use std::collections::{HashMap, HashSet};

use super::Format;
use super::error::RenderError;
use super::limits::Limits;
use super::value::{Children, Member, Str, Value};

impl Value {
    /// Whether this value takes an object-table entry in a scope of `format`.
    pub fn takes_table_entry(&self, format: Format) -> bool {
        match format {
            Format::Amf3 => matches!(
                self,
                Value::Object(_)
                    | Value::Externalizable(_)
                    | Value::Array(_)
                    | Value::EcmaArray(_)
                    | Value::Date(_)
                    | Value::Xml(_)
                    | Value::XmlDocument(_)
                    | Value::ByteArray(_)
                    | Value::VectorInt(_)
                    | Value::VectorUint(_)
                    | Value::VectorDouble(_)
                    | Value::VectorObject(_)
                    | Value::Dictionary(_)
            ),
            Format::Amf0 => {
                matches!(self, Value::Object(_) | Value::EcmaArray(_))
                    || matches!(self, Value::Array(array) if array.assoc.is_empty())
            }
        }
    }

    /// Whether AMF0 has no marker for this value, so that it is written as AMF3 after an AVM+ switch.
    pub fn is_amf3_only(&self) -> bool {
        match self {
            Value::Xml(_)
            | Value::ByteArray(_)
            | Value::Externalizable(_)
            | Value::VectorInt(_)
            | Value::VectorUint(_)
            | Value::VectorDouble(_)
            | Value::VectorObject(_)
            | Value::Dictionary(_) => true,
            Value::Array(array) => !array.assoc.is_empty(),
            _ => false,
        }
    }

    /// In a scope of `format`, the root of the AMF3 scope this value opens, if it opens one.
    pub fn opens_scope(&self, format: Format) -> Option<&Value> {
        match (format, self) {
            (Format::Amf3, _) => None,
            (Format::Amf0, Value::Avmplus(inner)) => Some(inner),
            (Format::Amf0, other) if other.is_amf3_only() => Some(other),
            _ => None,
        }
    }

    /// The rendering cost of this node alone: one, plus the bytes of its texts and member names as
    /// `text_cost` counts them.
    fn node_cost(&self, text_cost: &mut impl FnMut(&Str) -> usize) -> usize {
        let mut names = |members: &[Member]| {
            members
                .iter()
                .map(|(name, _)| text_cost(name))
                .sum::<usize>()
        };
        1 + match self {
            Value::String(text) | Value::Xml(text) | Value::XmlDocument(text) => text_cost(text),
            Value::ByteArray(bytes) => bytes.len(),
            Value::Object(object) => names(&object.members) + text_cost(&object.class_name),
            Value::Externalizable(ext) => text_cost(&ext.class_name),
            Value::Array(array) => names(&array.assoc) + array.dense.len(),
            Value::EcmaArray(members) => names(members),
            Value::VectorInt(vector) => vector.items.len(),
            Value::VectorUint(vector) => vector.items.len(),
            Value::VectorDouble(vector) => vector.items.len(),
            Value::VectorObject(vector) => text_cost(&vector.type_name),
            _ => 0,
        }
    }

    /// The cost of rendering this node once.
    fn render_cost(&self) -> usize {
        self.node_cost(&mut |text| text.len())
    }
}

/// Visits `root` and everything inside it in pre-order, each with its depth (the root's is 0),
/// without recursing, so that any depth is safe.
fn walk_preorder<'v>(root: &'v Value, mut visit: impl FnMut(&'v Value, usize) -> bool) {
    if !visit(root, 0) {
        return;
    }
    let mut stack: Vec<Children<'v>> = vec![root.children()];
    while let Some(children) = stack.last_mut() {
        match children.next() {
            Some(child) => {
                if visit(child, stack.len()) {
                    stack.push(child.children());
                }
            }
            None => {
                stack.pop();
            }
        }
    }
}

/// The size of a whole tree as sent: references unresolved, and each shared string (a string
/// reference on the wire, or a member name repeated through a trait reference) counted once, so
/// that the rendering budget grows with the input, not with what references expand to. Each node
/// also costs `per_level` for each level it is nested at: the indentation of its line in a tree.
pub fn tree_cost(root: &Value, per_level: usize) -> usize {
    let mut shared_seen = HashSet::new();
    let mut text_cost = |text: &Str| {
        let first_time = !text.is_heap_allocated() || shared_seen.insert(text.as_ptr() as usize);
        if first_time { text.len() } else { 0 }
    };
    let mut cost = 0usize;
    walk_preorder(root, |value, depth| {
        let indent = per_level.saturating_mul(depth);
        cost = cost.saturating_add(value.node_cost(&mut text_cost).saturating_add(indent));
        true
    });
    cost
}

/// The object table of one scope: its entries in table order.
pub struct ObjectTable<'v> {
    entries: Vec<&'v Value>,
}

impl<'v> ObjectTable<'v> {
    /// The table of the scope whose root is `root`.
    pub fn build(root: &'v Value, format: Format) -> ObjectTable<'v> {
        let mut entries = Vec::new();
        walk_preorder(root, |value, _| {
            // A nested scope's entries belong to its own table.
            if value.opens_scope(format).is_some() {
                return false;
            }
            if value.takes_table_entry(format) {
                entries.push(value);
            }
            true
        });
        ObjectTable { entries }
    }

    /// The entry with this index.
    pub fn get(&self, index: u32) -> Option<&'v Value> {
        self.entries.get(index as usize).copied()
    }

    /// How many entries the table holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The index of this very entry (by identity, not equality).
    pub fn index_of(&self, entry: &Value) -> Option<u32> {
        self.entries
            .iter()
            .position(|candidate| std::ptr::eq(*candidate, entry))
            .map(|index| index as u32)
    }
}

/// What a node of the walk stands for once references are resolved.
pub enum Resolved<'v> {
    /// A value to render (the target, for a reference).
    Value(&'v Value),
    /// A reference to a container on the current path: it closes a cycle at this table index.
    Cycle(u32),
}

/// Resolves references during a depth-first walk: finds targets, detects cycles, and bounds the
/// work and the depth of the expanded tree. What only references need (a scope's object table,
/// the size of the tree for the budget) is worked out the first time it is needed, so a value
/// without references, of modest size, costs no set-up walk.
pub struct Resolver<'v> {
    /// One scope per scope entered; the last is the current one.
    scopes: Vec<Scope<'v>>,
    /// The containers being rendered, and whether each opened a scope.
    path: Vec<(&'v Value, bool)>,
    /// Containers on the path, as the decoder counts nesting: an AVM+ switch is not one.
    depth: usize,
    root: &'v Value,
    limits: Limits,
    /// The tree's size and the budget it gives, once the work done reaches the budget's floor.
    budget: Option<(usize, usize)>,
    spent: usize,
    /// What each node costs per level of depth on top of its own cost (a tree's indentation).
    per_level: usize,
}

/// A scope: its root and format, and its object table once a reference needs it.
struct Scope<'v> {
    format: Format,
    root: &'v Value,
    table: Option<ObjectTable<'v>>,
}

impl<'v> Scope<'v> {
    fn new(format: Format, root: &'v Value) -> Scope<'v> {
        Scope {
            format,
            root,
            table: None,
        }
    }

    fn table(&mut self) -> &ObjectTable<'v> {
        let (format, root) = (self.format, self.root);
        self.table
            .get_or_insert_with(|| ObjectTable::build(root, format))
    }
}

impl<'v> Resolver<'v> {
    /// A resolver for walking `root`, a top-level value of `format`.
    pub fn new(root: &'v Value, format: Format, limits: &Limits) -> Resolver<'v> {
        Resolver {
            scopes: vec![Scope::new(format, root)],
            path: Vec::new(),
            depth: 0,
            root,
            limits: *limits,
            budget: None,
            spent: 0,
            per_level: 0,
        }
    }

    /// Charges each node `per_level` more per level of depth, in the work done and in the
    /// tree's size alike: an indented tree's output grows with depth as well as with nodes, and
    /// the budget must bound the output, not only the nodes.
    pub fn charging_indent(mut self, per_level: usize) -> Resolver<'v> {
        self.per_level = per_level;
        self
    }

    fn current(&mut self) -> &mut Scope<'v> {
        let last = self.scopes.len() - 1;
        // There is always the root scope.
        &mut self.scopes[last]
    }

    /// Resolves the node met next in the walk and charges its cost to the budget.
    pub fn resolve(&mut self, node: &'v Value) -> Result<Resolved<'v>, RenderError> {
        let target = match node {
            Value::Reference(index) => {
                let table = self.current().table();
                table.get(*index).ok_or(RenderError::ReferenceOutOfRange {
                    index: *index,
                    len: table.len(),
                })?
            }
            other => other,
        };
        // Reached through a reference, a container's own children may be on the path too.
        if target.takes_table_entry(self.current().format)
            && self
                .path
                .iter()
                .any(|(open, _)| std::ptr::eq(*open, target))
        {
            let index = match node {
                Value::Reference(index) => *index,
                _ => self.current().table().index_of(target).unwrap_or(0),
            };
            return Ok(Resolved::Cycle(index));
        }
        self.charge(target)?;
        Ok(Resolved::Value(target))
    }

    /// Charges rendering `target` once to the work budget.
    fn charge(&mut self, target: &Value) -> Result<(), RenderError> {
        let indent = self.per_level.saturating_mul(self.depth);
        self.spent = self
            .spent
            .saturating_add(target.render_cost().saturating_add(indent));
        // The budget is never below its floor, so until then the tree's size is not needed.
        if self.spent <= self.limits.expansion_floor {
            return Ok(());
        }
        let (size, budget) = *self.budget.get_or_insert_with(|| {
            let size = tree_cost(self.root, self.per_level);
            (size, self.limits.expansion_budget(size))
        });
        if self.spent > budget {
            return Err(RenderError::ExpansionBudget { budget, size });
        }
        Ok(())
    }

    /// Enters a resolved container before rendering its children.
    pub fn enter(&mut self, container: &'v Value) -> Result<(), RenderError> {
        let counts = !matches!(container, Value::Avmplus(_));
        if counts && self.depth >= self.limits.max_depth {
            return Err(RenderError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        self.depth += usize::from(counts);
        let scope = container.opens_scope(self.current().format);
        if let Some(scope_root) = scope {
            self.scopes.push(Scope::new(Format::Amf3, scope_root));
        }
        self.path.push((container, scope.is_some()));
        Ok(())
    }

    /// Leaves the container entered last.
    pub fn leave(&mut self) {
        if let Some((container, opened_scope)) = self.path.pop() {
            self.depth -= usize::from(!matches!(container, Value::Avmplus(_)));
            if opened_scope {
                self.scopes.pop();
            }
        }
    }
}

/// Copies `node`, a value inside the AMF3 value `root`, into a value that stands alone: entries
/// it references outside itself are copied in (each once, later occurrences become references), and
/// every reference is renumbered for the copy's own table. Costs O(size of `root`).
pub fn detach(root: &Value, node: &Value, limits: &Limits) -> Result<Value, RenderError> {
    let table = ObjectTable::build(root, Format::Amf3);
    let mut copier = Copier {
        table: &table,
        copied: HashMap::new(),
        max_depth: limits.max_depth,
        depth: 0,
    };
    copier.copy(node)
}

/// The state of one `detach`.
struct Copier<'t, 'v> {
    table: &'t ObjectTable<'v>,
    /// Entries of the source table already in the copy, by address, with their index in the copy.
    copied: HashMap<usize, u32>,
    max_depth: usize,
    depth: usize,
}

impl<'v> Copier<'_, 'v> {
    fn copy(&mut self, node: &'v Value) -> Result<Value, RenderError> {
        let target = match node {
            Value::Reference(index) => {
                self.table
                    .get(*index)
                    .ok_or(RenderError::ReferenceOutOfRange {
                        index: *index,
                        len: self.table.len(),
                    })?
            }
            other => other,
        };
        if target.takes_table_entry(Format::Amf3) {
            let address = target as *const Value as usize;
            if let Some(&index) = self.copied.get(&address) {
                return Ok(Value::Reference(index));
            }
            let index = self.copied.len() as u32;
            self.copied.insert(address, index);
        }
        if self.depth >= self.max_depth {
            return Err(RenderError::TooDeep {
                limit: self.max_depth,
            });
        }
        self.depth += 1;
        let copy = target.try_map_children(&mut |child| self.copy(child));
        self.depth -= 1;
        copy
    }
}

/// Adds `by` to every reference in `value`: what a self-contained value needs when it is placed in
/// a larger tree after `by` table entries.
pub fn shift_references(value: &mut Value, by: u32) {
    if let Value::Reference(index) = value {
        *index += by;
    }
    value.for_each_child_mut(&mut |child| shift_references(child, by));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::json::to_canonical_json;
    use bytes::Bytes;

    /// An array of one 256-byte string and `count` references to it.
    fn string_references(count: u32) -> Value {
        let mut bytes = vec![0x09];
        let mut len = Vec::new();
        crate::codec::amf3::u29::write(&mut len, ((count + 1) << 1) | 1);
        bytes.extend_from_slice(&len);
        bytes.extend_from_slice(&[0x01, 0x06]);
        crate::codec::amf3::u29::write(&mut bytes, (256 << 1) | 1);
        bytes.extend(std::iter::repeat_n(b'x', 256));
        for _ in 0..count {
            bytes.extend_from_slice(&[0x06, 0x00]);
        }
        crate::codec::decode(Bytes::from(bytes), Format::Amf3).expect("decodes")
    }

    #[test]
    fn a_shared_string_counts_once_in_the_tree() {
        // The array (one plus its four items), the string once, then three one-node references.
        assert_eq!(tree_cost(&string_references(3), 0), (1 + 4) + (1 + 256) + 3);
    }

    #[test]
    fn rendering_many_references_to_a_long_string_exceeds_the_budget() {
        let limits = Limits::default();
        assert!(to_canonical_json(&string_references(100), Format::Amf3, &limits).is_ok());
        assert!(matches!(
            to_canonical_json(&string_references(100_000), Format::Amf3, &limits),
            Err(RenderError::ExpansionBudget { .. })
        ));
    }
}
