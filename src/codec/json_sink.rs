//! Where the canonical JSON form goes: straight into a `String` as compact JSON text (the proxy's
//! log, `decode --json`), or into a `serde_json::Value` tree. Both take the same calls from the
//! one writer in `json.rs`, so the two can never disagree.

use serde_json::{Map, Value as Json};

/// A receiver of JSON tokens. The writer calls `comma` between the members of an object and the
/// items of an array, and `key` before each member's value.
pub trait Sink: Default {
    /// `{`.
    fn open_object(&mut self);
    /// `}`.
    fn close_object(&mut self);
    /// `[`.
    fn open_array(&mut self);
    /// `]`.
    fn close_array(&mut self);
    /// A member's name and its `:`.
    fn key(&mut self, key: &str);
    /// The separator between members or items.
    fn comma(&mut self);
    /// `null`.
    fn null(&mut self);
    /// `true` or `false`.
    fn bool(&mut self, value: bool);
    /// A signed integer.
    fn int(&mut self, value: i64);
    /// An unsigned integer.
    fn uint(&mut self, value: u64);
    /// A string.
    fn str(&mut self, text: &str);
    /// Bytes as a string of lowercase hex.
    fn hex(&mut self, bytes: &[u8]);
    /// One whole value that was written apart into another sink.
    fn append(&mut self, value: Self);
}

/// Compact JSON text, exactly as `serde_json` writes it.
impl Sink for String {
    fn open_object(&mut self) {
        self.push('{');
    }

    fn close_object(&mut self) {
        self.push('}');
    }

    fn open_array(&mut self) {
        self.push('[');
    }

    fn close_array(&mut self) {
        self.push(']');
    }

    fn key(&mut self, key: &str) {
        push_json_string(self, key);
        self.push(':');
    }

    fn comma(&mut self) {
        self.push(',');
    }

    fn null(&mut self) {
        self.push_str("null");
    }

    fn bool(&mut self, value: bool) {
        self.push_str(if value { "true" } else { "false" });
    }

    fn int(&mut self, value: i64) {
        self.push_str(itoa::Buffer::new().format(value));
    }

    fn uint(&mut self, value: u64) {
        self.push_str(itoa::Buffer::new().format(value));
    }

    fn str(&mut self, text: &str) {
        push_json_string(self, text);
    }

    fn hex(&mut self, bytes: &[u8]) {
        self.push('"');
        push_hex(self, bytes);
        self.push('"');
    }

    fn append(&mut self, value: Self) {
        self.push_str(&value);
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as lowercase hex.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &byte in bytes {
        out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(byte & 15)]));
    }
}

/// Whether JSON needs `byte` escaped (serde_json escapes exactly these).
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// The offset of the first byte of `text` that needs escaping, if any. Looks at whole blocks
/// without branching on each byte, which is what most texts (nothing to escape) cost.
fn first_escape(text: &[u8]) -> Option<usize> {
    const BLOCK: usize = 32;
    let mut offset = 0;
    for block in text.chunks(BLOCK) {
        if block
            .iter()
            .fold(false, |any, &byte| any | needs_escape(byte))
        {
            return block
                .iter()
                .position(|&byte| needs_escape(byte))
                .map(|at| offset + at);
        }
        offset += block.len();
    }
    None
}

/// Appends `text` as a JSON string, escaped as `serde_json` does: `\"`, `\\`, `\b`, `\f`, `\n`,
/// `\r`, `\t`, other control characters as `\u00xx`, everything else as it is.
pub fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    let mut rest = text;
    while let Some(at) = first_escape(rest.as_bytes()) {
        // `at` is an ASCII byte, so both sides of it are whole characters.
        let (clean, escaped) = rest.split_at(at);
        out.push_str(clean);
        push_escape(out, escaped.as_bytes()[0]);
        rest = &escaped[1..];
    }
    out.push_str(rest);
    out.push('"');
}

fn push_escape(out: &mut String, byte: u8) {
    let short = match byte {
        b'"' => "\\\"",
        b'\\' => "\\\\",
        0x08 => "\\b",
        0x0C => "\\f",
        b'\n' => "\\n",
        b'\r' => "\\r",
        b'\t' => "\\t",
        _ => {
            out.push_str("\\u00");
            push_hex(out, &[byte]);
            return;
        }
    };
    out.push_str(short);
}

/// Builds a `serde_json::Value`: what `to_canonical_json` returns.
#[derive(Default)]
pub struct TreeBuilder {
    open: Vec<Open>,
    done: Option<Json>,
}

/// A container being built, with the member name waiting for its value.
enum Open {
    Object(Map<String, Json>, String),
    Array(Vec<Json>),
}

impl TreeBuilder {
    /// The value built.
    pub fn finish(self) -> Json {
        self.done.unwrap_or(Json::Null)
    }

    /// Puts a finished value into the innermost open container. A repeated member name keeps
    /// its first place and takes the last value (`serde_json::Map` with `preserve_order`).
    fn put(&mut self, value: Json) {
        match self.open.last_mut() {
            Some(Open::Array(items)) => items.push(value),
            Some(Open::Object(map, key)) => {
                map.insert(std::mem::take(key), value);
            }
            None => self.done = Some(value),
        }
    }

    fn close(&mut self) {
        let value = match self.open.pop() {
            Some(Open::Object(map, _)) => Json::Object(map),
            Some(Open::Array(items)) => Json::Array(items),
            None => return,
        };
        self.put(value);
    }
}

impl Sink for TreeBuilder {
    fn open_object(&mut self) {
        self.open.push(Open::Object(Map::new(), String::new()));
    }

    fn close_object(&mut self) {
        self.close();
    }

    fn open_array(&mut self) {
        self.open.push(Open::Array(Vec::new()));
    }

    fn close_array(&mut self) {
        self.close();
    }

    fn key(&mut self, name: &str) {
        if let Some(Open::Object(_, key)) = self.open.last_mut() {
            *key = name.to_owned();
        }
    }

    fn comma(&mut self) {}

    fn null(&mut self) {
        self.put(Json::Null);
    }

    fn bool(&mut self, value: bool) {
        self.put(Json::Bool(value));
    }

    fn int(&mut self, value: i64) {
        self.put(Json::from(value));
    }

    fn uint(&mut self, value: u64) {
        self.put(Json::from(value));
    }

    fn str(&mut self, text: &str) {
        self.put(Json::String(text.to_owned()));
    }

    fn hex(&mut self, bytes: &[u8]) {
        self.put(Json::String(hex::encode(bytes)));
    }

    fn append(&mut self, value: Self) {
        if let Some(value) = value.done {
            self.put(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every_byte: String = (0u8..0x80).map(char::from).collect();
        every_byte.push_str("é\u{2028}😀 and a longer tail past one block \"\\ of thirty-two");
        for text in [every_byte.as_str(), "", "plain", "\u{7f}", "ends with \n"] {
            let mut ours = String::new();
            push_json_string(&mut ours, text);
            assert_eq!(ours, Json::from(text).to_string(), "{text:?}");
        }
    }

    #[test]
    fn hex_is_lowercase() {
        let mut out = String::new();
        push_hex(&mut out, &[0x00, 0xAB, 0x7F, 0xFF]);
        assert_eq!(out, "00ab7fff");
    }
}
