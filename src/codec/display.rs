//! Readable renderings of a value for people: one compact line (logs) or an indented tree
//! (`amf-bench decode`). References are resolved as in canonical JSON; cycles show as `<cycle #n>`.

use std::borrow::Cow;
use std::fmt::Write;

use super::Format;
use super::error::RenderError;
use super::graph::{Resolved, Resolver};
use super::limits::Limits;
use super::value::{Member, Value};

/// ByteArrays show at most this many bytes of hex.
const BYTES_SHOWN: usize = 32;

/// `text` as it may go to a terminal: as is, or quoted with its control characters escaped
/// (`"evil\u{1b}[2J"`) when it has any, so that a peer's names cannot forge lines or send
/// escape sequences to the operator's terminal.
pub fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(format!("{text:?}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// The value on one line, cut with `…` after about `max_chars` characters. Never fails: a value
/// whose references cannot be resolved within the limits shows what could be rendered, then why not.
pub fn compact(value: &Value, format: Format, limits: &Limits, max_chars: usize) -> String {
    let mut out = Output {
        text: String::new(),
        max_len: max_chars,
        indent: None,
    };
    let mut renderer = Renderer {
        resolver: Resolver::new(value, format, limits),
        out: &mut out,
    };
    match renderer.render(value, 0) {
        Ok(()) => {}
        Err(Stop::Full) => out.text.push('…'),
        Err(Stop::Render(error)) => {
            let _ = write!(out.text, " <{error}>");
        }
    }
    out.text
}

/// The value as an indented tree, two spaces a level, one member or item a line.
pub fn tree(value: &Value, format: Format, limits: &Limits) -> Result<String, RenderError> {
    let mut out = Output {
        text: String::new(),
        max_len: usize::MAX,
        indent: Some(TREE_INDENT),
    };
    let mut renderer = Renderer {
        resolver: Resolver::new(value, format, limits).charging_indent(TREE_INDENT),
        out: &mut out,
    };
    match renderer.render(value, 0) {
        Ok(()) | Err(Stop::Full) => Ok(out.text),
        Err(Stop::Render(error)) => Err(error),
    }
}

/// Spaces per level of a tree.
const TREE_INDENT: usize = 2;

/// Why rendering stopped early.
enum Stop {
    /// The compact line is full.
    Full,
    /// References could not be resolved within the limits.
    Render(RenderError),
}

impl From<RenderError> for Stop {
    fn from(error: RenderError) -> Self {
        Stop::Render(error)
    }
}

/// The text being built, its length cap, and the indent step (`None` for one line).
struct Output {
    text: String,
    max_len: usize,
    indent: Option<usize>,
}

impl Output {
    fn push(&mut self, piece: &str) -> Result<(), Stop> {
        self.text.push_str(piece);
        if self.text.len() > self.max_len {
            let mut cut = self.max_len;
            while !self.text.is_char_boundary(cut) {
                cut -= 1;
            }
            self.text.truncate(cut);
            return Err(Stop::Full);
        }
        Ok(())
    }

    /// Separates items: a comma and a space on one line, a new indented line in a tree.
    fn separator(&mut self, first: bool, level: usize) -> Result<(), Stop> {
        match self.indent {
            None if first => Ok(()),
            None => self.push(", "),
            Some(step) => self.push(&format!("\n{:width$}", "", width = step * level)),
        }
    }
}

struct Renderer<'v, 'o> {
    resolver: Resolver<'v>,
    out: &'o mut Output,
}

impl<'v> Renderer<'v, '_> {
    fn render(&mut self, node: &'v Value, level: usize) -> Result<(), Stop> {
        let value = match self.resolver.resolve(node)? {
            Resolved::Cycle(index) => return self.out.push(&format!("<cycle #{index}>")),
            Resolved::Value(value) => value,
        };
        match value {
            Value::Undefined => self.out.push("undefined"),
            Value::Null => self.out.push("null"),
            Value::Bool(b) => self.out.push(if *b { "true" } else { "false" }),
            Value::Integer(n) => self.out.push(&n.to_string()),
            Value::Double(n) => self.out.push(&format!("{n:?}")),
            Value::String(text) => self.out.push(&format!("{:?}", &**text)),
            Value::Xml(text) => self.out.push(&format!("XML({:?})", &**text)),
            Value::XmlDocument(text) => self.out.push(&format!("XMLDocument({:?})", &**text)),
            Value::Date(ms) => self.out.push(&format!("Date({})", format_date(*ms))),
            Value::ByteArray(bytes) => self.out.push(&format_bytes(bytes)),
            Value::VectorInt(v) => self.out.push(&format!("Vector.<int>{:?}", v.items)),
            Value::VectorUint(v) => self.out.push(&format!("Vector.<uint>{:?}", v.items)),
            Value::VectorDouble(v) => self.out.push(&format!("Vector.<Number>{:?}", v.items)),
            Value::Reference(index) => self.out.push(&format!("<reference #{index}>")),
            container => self.render_container(container, level),
        }
    }

    fn render_container(&mut self, container: &'v Value, level: usize) -> Result<(), Stop> {
        self.resolver.enter(container)?;
        match container {
            Value::Object(object) => {
                if !object.class_name.is_empty() {
                    self.out.push(&printable(&object.class_name))?;
                    self.out.push(" ")?;
                }
                self.render_members("{", &object.members, "}", level)?;
            }
            Value::Externalizable(ext) => {
                self.out.push(&printable(&ext.class_name))?;
                self.out.push(" (externalizable) ")?;
                self.render(&ext.body, level)?;
            }
            Value::Array(array) => {
                self.out.push("[")?;
                let mut first = true;
                for (name, value) in &array.assoc {
                    self.render_member(first, name, value, level + 1)?;
                    first = false;
                }
                for item in &array.dense {
                    self.out.separator(first, level + 1)?;
                    self.render(item, level + 1)?;
                    first = false;
                }
                self.close(first, "]", level)?;
            }
            Value::EcmaArray(members) => {
                self.out.push("ECMA ")?;
                self.render_members("{", members, "}", level)?;
            }
            Value::VectorObject(vector) => {
                self.out
                    .push(&format!("Vector.<{}>[", printable(&vector.type_name)))?;
                for (position, item) in vector.items.iter().enumerate() {
                    self.out.separator(position == 0, level + 1)?;
                    self.render(item, level + 1)?;
                }
                self.close(vector.items.is_empty(), "]", level)?;
            }
            Value::Dictionary(dict) => {
                self.out.push("Dictionary {")?;
                for (position, (key, value)) in dict.entries.iter().enumerate() {
                    self.out.separator(position == 0, level + 1)?;
                    self.render(key, level + 1)?;
                    self.out.push(" => ")?;
                    self.render(value, level + 1)?;
                }
                self.close(dict.entries.is_empty(), "}", level)?;
            }
            Value::Avmplus(inner) => self.render(inner, level)?,
            other => self.out.push(&format!("{other:?}"))?,
        }
        self.resolver.leave();
        Ok(())
    }

    fn render_members(
        &mut self,
        open: &str,
        members: &'v [Member],
        close: &str,
        level: usize,
    ) -> Result<(), Stop> {
        self.out.push(open)?;
        for (position, (name, value)) in members.iter().enumerate() {
            self.render_member(position == 0, name, value, level + 1)?;
        }
        self.close(members.is_empty(), close, level)
    }

    fn render_member(
        &mut self,
        first: bool,
        name: &str,
        value: &'v Value,
        level: usize,
    ) -> Result<(), Stop> {
        self.out.separator(first, level)?;
        self.out.push(&printable(name))?;
        self.out.push(": ")?;
        self.render(value, level)
    }

    /// Closes a container: on its own line in a tree, unless it was empty.
    fn close(&mut self, empty: bool, close: &str, level: usize) -> Result<(), Stop> {
        if !empty && self.out.indent.is_some() {
            self.out.separator(false, level)?;
        }
        self.out.push(close)
    }
}

fn format_bytes(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(BYTES_SHOWN)];
    let more = if bytes.len() > BYTES_SHOWN { "…" } else { "" };
    format!(
        "ByteArray({} bytes: {}{more})",
        bytes.len(),
        hex::encode(shown)
    )
}

/// An ISO 8601 UTC timestamp for a Date within ActionScript's range, else the raw milliseconds.
pub fn format_date(ms: f64) -> String {
    const MAX_MS: f64 = 8.64e15;
    if !ms.is_finite() || ms.fract() != 0.0 || ms.abs() > MAX_MS {
        return format!("{ms:?} ms");
    }
    let ms = ms as i64;
    let days = ms.div_euclid(86_400_000);
    let of_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1000 % 60,
        of_day % 1000
    )
}

/// The proleptic Gregorian (year, month, day) of a day count from 1970-01-01 (Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Str, Value};

    fn envelope() -> Value {
        Value::object(vec![
            (Str::from("command"), Value::string("echo")),
            (
                Str::from("params"),
                Value::object(vec![(
                    Str::from("list"),
                    Value::array(vec![Value::Integer(1), Value::Double(0.5)]),
                )]),
            ),
        ])
    }

    #[test]
    fn compact_is_one_line() {
        let line = compact(&envelope(), Format::Amf3, &Limits::default(), 200);
        assert_eq!(line, r#"{command: "echo", params: {list: [1, 0.5]}}"#);
    }

    #[test]
    fn names_with_control_characters_are_quoted_and_escaped() {
        assert_eq!(printable("plain name"), "plain name");
        assert_eq!(printable("a\nb\u{1b}[2J"), r#""a\nb\u{1b}[2J""#);
        let value = Value::object(vec![(Str::from("x\n  fake"), Value::Integer(1))]);
        let text = tree(&value, Format::Amf3, &Limits::default()).expect("renders");
        assert_eq!(text, "{\n  \"x\\n  fake\": 1\n}");
    }

    #[test]
    fn compact_cuts_long_values() {
        let line = compact(&envelope(), Format::Amf3, &Limits::default(), 12);
        assert_eq!(line, "{command: \"e…");
    }

    #[test]
    fn tree_indents_each_member() {
        let text = tree(&envelope(), Format::Amf3, &Limits::default()).expect("renders");
        assert_eq!(
            text,
            "{\n  command: \"echo\"\n  params: {\n    list: [\n      1\n      0.5\n    ]\n  }\n}"
        );
    }

    /// `[[1], [ref 1, ref 1], [ref 2, ref 2], ...]`: level k of the chain expands to 2^k leaves,
    /// each nested k + 2 deep.
    fn chained_references(levels: u32) -> Value {
        let mut items = vec![Value::array(vec![Value::Integer(1)])];
        items.extend((1..=levels).map(|k| Value::array(vec![Value::Reference(k); 2])));
        Value::array(items)
    }

    #[test]
    fn a_tree_counts_its_indentation_against_the_expansion_budget() {
        let limits = Limits::default();
        // 2^17 leaves are within the budget's floor as nodes, but each is an indented line.
        let value = chained_references(16);
        let json = crate::codec::json::to_canonical_json(&value, Format::Amf3, &limits);
        assert!(json.is_ok(), "{json:?}");
        assert!(matches!(
            tree(&value, Format::Amf3, &limits),
            Err(RenderError::ExpansionBudget { .. })
        ));
        // Without references a deep tree's indentation is on both sides of the ratio.
        let mut deep = Value::array(vec![Value::Integer(7); 20_000]);
        for _ in 0..100 {
            deep = Value::array(vec![deep]);
        }
        let text = tree(&deep, Format::Amf3, &limits).expect("renders");
        assert!(text.len() > 4_000_000, "{}", text.len());
    }

    #[test]
    fn cycles_and_typed_objects_show() {
        let value = Value::typed_object("Node", vec![(Str::from("self"), Value::Reference(0))]);
        assert_eq!(
            compact(&value, Format::Amf3, &Limits::default(), 100),
            "Node {self: <cycle #0>}"
        );
    }

    #[test]
    fn dates_are_iso_8601() {
        assert_eq!(format_date(1_577_934_245_678.0), "2020-01-02T03:04:05.678Z");
        assert_eq!(format_date(-1000.0), "1969-12-31T23:59:59.000Z");
        assert_eq!(format_date(8.64e15), "275760-09-13T00:00:00.000Z");
        assert_eq!(format_date(0.5), "0.5 ms");
    }
}
