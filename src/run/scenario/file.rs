//! The scenario file as written: serde's shape of the TOML, unknown keys rejected, before any
//! value is checked.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use serde::Deserialize;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScenarioFile {
    pub(super) name: String,
    pub(super) target: Option<String>,
    pub(super) connections: u64,
    pub(super) connect_rate: Option<f64>,
    pub(super) duration: String,
    #[serde(default = "default_timeout")]
    pub(super) timeout: String,
    pub(super) in_flight: Option<u64>,
    pub(super) reconnect: Option<String>,
    pub(super) source_addresses: Option<Vec<String>>,
    pub(super) load: LoadFile,
    #[serde(default)]
    pub(super) csv: BTreeMap<String, CsvFile>,
    pub(super) session: Vec<SessionFile>,
    #[serde(default)]
    pub(super) thresholds: IndexMap<String, String>,
}

/// A `[csv.NAME]` table.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { file = \"users.csv\" }"
)]
pub(super) struct CsvFile {
    pub(super) file: String,
    pub(super) order: Option<String>,
}

fn default_timeout() -> String {
    "10s".into()
}

/// `[load]`.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as [load] model = \"closed\""
)]
pub(super) struct LoadFile {
    pub(super) model: String,
    #[serde(default)]
    pub(super) stages: Vec<StageFile>,
    pub(super) arrivals: Option<String>,
    pub(super) seed: Option<u64>,
}

/// One of `load.stages`.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { rate = 100, for = \"10s\" }"
)]
pub(super) struct StageFile {
    pub(super) from: Option<f64>,
    pub(super) rate: f64,
    #[serde(rename = "for")]
    pub(super) lasting: String,
}

/// A `[[session]]`.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a [[session]] table with a name and steps"
)]
pub(super) struct SessionFile {
    pub(super) name: String,
    #[serde(default = "one")]
    pub(super) weight: u32,
    pub(super) steps: Vec<StepFile>,
}

fn one() -> u32 {
    1
}

/// One of a session's `steps`: `validate` checks that exactly one of its kinds is set.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { request = \"echo\" }"
)]
pub(super) struct StepFile {
    pub(super) request: Option<String>,
    pub(super) message: Option<String>,
    pub(super) wait_message: Option<String>,
    pub(super) think: Option<String>,
    pub(super) params: Option<toml::Value>,
    pub(super) timeout: Option<String>,
}

/// The most parts a dotted key may have: the toml crate refuses a key whose table path (every
/// part but the last) reaches 80, with a bare "recursion limit" that says neither which key nor
/// where.
const MAX_KEY_PARTS: usize = 80;

/// The most characters of a too deep key quoted in its error.
const KEY_SHOWN: usize = 40;

/// Reads the file's TOML into its shape. A key the parser finds too deep is named, with its
/// line and the limit, which the parser's own error does not give.
pub(super) fn read(text: &str) -> anyhow::Result<ScenarioFile> {
    toml::from_str(text).map_err(|error| {
        if error.span().is_some() || error.message() != "recursion limit" {
            return anyhow::Error::new(error);
        }
        match deepest_key(text).filter(|key| key.parts > MAX_KEY_PARTS) {
            Some(key) => anyhow::anyhow!(
                "line {}: the dotted key '{}' has {} parts, more than the {MAX_KEY_PARTS} a TOML \
                 key may have; nest the value less deeply",
                key.line,
                shortened(&text[key.span], KEY_SHOWN),
                key.parts
            ),
            None => anyhow::anyhow!(
                "a key nests too deeply: a TOML key may have at most {MAX_KEY_PARTS} parts"
            ),
        }
    })
}

/// `text`'s first `max` characters, with an ellipsis when there were more.
fn shortened(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// A dotted key found in the text: where it is and how many parts it has.
#[derive(Debug, PartialEq)]
struct DottedKey {
    /// Counted from 1.
    line: usize,
    span: std::ops::Range<usize>,
    parts: usize,
}

/// The dotted key with the most parts, found by a scan that knows just enough TOML to tell
/// keys from strings and comments: a run of bare or quoted parts joined by dots on one line.
fn deepest_key(text: &str) -> Option<DottedKey> {
    let mut scan = KeyScan::default();
    let mut at = 0;
    while let Some(c) = text[at..].chars().next() {
        at = match c {
            '#' => {
                scan.end_key();
                text[at..].find('\n').map_or(text.len(), |i| at + i)
            }
            '"' | '\'' if text[at..].starts_with(&c.to_string().repeat(3)) => {
                scan.end_key();
                let end = multi_line_end(text, at, c);
                scan.line += text[at..end].matches('\n').count();
                end
            }
            '"' | '\'' => scan.part(at, quoted_end(text, at, c)),
            c if is_bare(c) => {
                let end = text[at..]
                    .find(|c| !is_bare(c))
                    .map_or(text.len(), |i| at + i);
                scan.part(at, end)
            }
            '.' => scan.dot(at),
            ' ' | '\t' => at + 1,
            '\n' => {
                scan.end_key();
                scan.line += 1;
                at + 1
            }
            _ => {
                scan.end_key();
                at + c.len_utf8()
            }
        };
    }
    scan.end_key();
    scan.deepest
}

/// Whether `c` may be in a bare key.
fn is_bare(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Where the one-line string opening at `at` with `quote` ends (past its closing quote), or its
/// line ends when it is not closed; a basic string's quote may be escaped, a literal string's not.
fn quoted_end(text: &str, at: usize, quote: char) -> usize {
    let mut escaped = false;
    for (i, c) in text[at + 1..].char_indices() {
        match c {
            '\n' => return at + 1 + i,
            c if c == quote && !escaped => return at + 1 + i + 1,
            _ => escaped = quote == '"' && !escaped && c == '\\',
        }
    }
    text.len()
}

/// Where the multi-line string opening at `at` with three `quote`s ends, past its closing ones.
fn multi_line_end(text: &str, at: usize, quote: char) -> usize {
    let close = quote.to_string().repeat(3);
    text[at + 3..]
        .find(&close)
        .map_or(text.len(), |i| at + 3 + i + 3)
}

/// The state of `deepest_key`'s scan.
struct KeyScan {
    line: usize,
    /// The key being read, and whether a dot has just joined a part to it.
    current: Option<DottedKey>,
    after_dot: bool,
    deepest: Option<DottedKey>,
}

impl Default for KeyScan {
    fn default() -> Self {
        KeyScan {
            line: 1,
            current: None,
            after_dot: false,
            deepest: None,
        }
    }
}

impl KeyScan {
    /// A bare or quoted part from `start` to `end`: the next part of the key after a dot, or
    /// the first of another. Returns where the scan goes on.
    fn part(&mut self, start: usize, end: usize) -> usize {
        match &mut self.current {
            Some(key) if self.after_dot => {
                key.parts += 1;
                key.span.end = end;
            }
            _ => {
                self.end_key();
                self.current = Some(DottedKey {
                    line: self.line,
                    span: start..end,
                    parts: 1,
                });
            }
        }
        self.after_dot = false;
        end
    }

    /// A dot at `at`: it joins the next part to the key. Returns where the scan goes on.
    fn dot(&mut self, at: usize) -> usize {
        if self.current.is_some() && !self.after_dot {
            self.after_dot = true;
        } else {
            self.end_key();
        }
        at + 1
    }

    /// Ends the key being read, keeping it if it is the deepest yet.
    fn end_key(&mut self) {
        self.after_dot = false;
        if let Some(key) = self.current.take()
            && self
                .deepest
                .as_ref()
                .is_none_or(|deepest| key.parts > deepest.parts)
        {
            self.deepest = Some(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step whose params are a dotted key of `parts` parts, on line 10.
    fn deep_params(parts: usize) -> String {
        let key = format!("params{}", ".a".repeat(parts - 1));
        format!(
            "name = \"deep\"\nconnections = 1\nduration = \"300ms\"\n[load]\nmodel = \"closed\"\n\
             [[session]]\nname = \"s\"\n[[session.steps]]\nrequest = \"echo\"\n{key} = 1\n"
        )
    }

    #[test]
    fn a_key_too_deep_for_the_parser_is_named_with_its_line_and_the_limit() {
        let message = format!("{:#}", read(&deep_params(81)).err().expect("too deep"));
        assert_eq!(
            message,
            "line 10: the dotted key 'params.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a...' has 81 parts, \
             more than the 80 a TOML key may have; nest the value less deeply"
        );
        assert!(read(&deep_params(80)).is_ok(), "the most the parser takes");
    }

    #[test]
    fn the_scan_tells_keys_from_strings_and_comments() {
        let text = r#"a.b = "x.y.z.w" # c.d.e.f.g
'q.r'.s . t = '''
u.v.w.x.y.z
'''
[h."i\"j".k]
"#;
        let deepest = deepest_key(text).expect("keys");
        assert_eq!((deepest.line, deepest.parts), (2, 3));
        assert_eq!(&text[deepest.span], "'q.r'.s . t");
        let later = deepest_key(&format!("{text}x.x.x.x = 1")).expect("keys");
        assert_eq!(
            (later.line, later.parts),
            (6, 4),
            "lines of a multi-line string count"
        );
        let header = deepest_key("[a.b]\n[[c.d.e]]\n").expect("keys");
        assert_eq!((header.line, header.parts), (2, 3));
    }
}
