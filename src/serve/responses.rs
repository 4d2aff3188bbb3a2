//! `--responses FILE.toml`: canned results per command, with an optional fixed or random delay, so
//! the server can stand in for a real backend.
//!
//! ```toml
//! [commands.login]
//! result = { _class = "com.example.Session", token = "abc", expires = 2026-12-31T00:00:00Z }
//! delay_ms = 20                      # fixed, or
//! # delay_ms = { min = 10, max = 50 }  # uniformly random in [min, max]
//!
//! [commands.logout]                  # no result: replies null
//! ```
//! Values are written as `rpc::toml_value` describes.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::commands::MAX_DELAY;
use crate::codec::{Str, Value};
use crate::rpc::toml_value::toml_to_value;

/// One command's canned reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Canned {
    /// The result sent back.
    pub result: Value,
    /// The shortest delay before replying.
    pub min_delay: Duration,
    /// The longest delay (equal to `min_delay` for a fixed delay).
    pub max_delay: Duration,
}

impl Canned {
    /// The delay for one reply: fixed, or uniform in [min, max].
    pub fn delay(&self) -> Duration {
        if self.max_delay <= self.min_delay {
            return self.min_delay;
        }
        let min = self.min_delay.as_micros() as u64;
        let max = self.max_delay.as_micros() as u64;
        Duration::from_micros(rand::random_range(min..=max))
    }
}

/// Canned results by command.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Responses {
    by_command: HashMap<Str, Canned>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchema {
    #[serde(default)]
    commands: HashMap<String, CannedSchema>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CannedSchema {
    result: Option<toml::Value>,
    delay_ms: Option<DelaySchema>,
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "delay_ms must be whole milliseconds (e.g. 20) or a range { min = 5, max = 50 }"
)]
enum DelaySchema {
    Fixed(u64),
    Range(DelayRange),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelayRange {
    min: u64,
    max: u64,
}

/// The most of a responses file read.
const MAX_RESPONSES_FILE: u64 = 64 << 20;

impl Responses {
    /// Reads and checks a responses file.
    pub fn load(path: &Path) -> anyhow::Result<Responses> {
        let text = crate::text_file::read_at_most(path, MAX_RESPONSES_FILE)
            .with_context(|| format!("cannot read responses file {}", path.display()))?;
        Responses::parse(&text).with_context(|| format!("in responses file {}", path.display()))
    }

    /// Parses the text of a responses file.
    pub fn parse(text: &str) -> anyhow::Result<Responses> {
        let schema: FileSchema = toml::from_str(text)?;
        let mut by_command = HashMap::with_capacity(schema.commands.len());
        for (command, canned) in schema.commands {
            let path = format!("commands.{command}");
            let result = match &canned.result {
                Some(result) => toml_to_value(result, &format!("{path}.result"))?,
                None => Value::Null,
            };
            let (min, max) = match canned.delay_ms {
                None => (0, 0),
                Some(DelaySchema::Fixed(ms)) => (ms, ms),
                Some(DelaySchema::Range(DelayRange { min, max })) => (min, max),
            };
            if min > max {
                bail!("{path}.delay_ms: min ({min}) is above max ({max})");
            }
            if Duration::from_millis(max) > MAX_DELAY {
                bail!(
                    "{path}.delay_ms: {max} ms is above the limit of {} ms",
                    MAX_DELAY.as_millis()
                );
            }
            let canned = Canned {
                result,
                min_delay: Duration::from_millis(min),
                max_delay: Duration::from_millis(max),
            };
            by_command.insert(Str::from(command), canned);
        }
        Ok(Responses { by_command })
    }

    /// The canned reply for `command`, if any.
    pub fn get(&self, command: &str) -> Option<&Canned> {
        self.by_command.get(command)
    }

    /// Every command with its canned reply.
    pub fn iter(&self) -> impl Iterator<Item = (&Str, &Canned)> {
        self.by_command.iter()
    }

    /// How many commands have canned replies.
    pub fn len(&self) -> usize {
        self.by_command.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_command.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_with_fixed_random_and_no_results() {
        let responses = Responses::parse(
            r#"
            [commands.login]
            result = { _class = "com.example.Session", token = "abc" }
            delay_ms = 20
            [commands.search]
            result = [1, 2]
            delay_ms = { min = 5, max = 10 }
            [commands.logout]
            "#,
        )
        .expect("valid");
        assert_eq!(responses.len(), 3);
        let login = responses.get("login").expect("present");
        assert_eq!(login.delay(), Duration::from_millis(20));
        let class = login.result.as_object().map(|o| o.class_name.to_string());
        assert_eq!(class.as_deref(), Some("com.example.Session"));
        let search = responses.get("search").expect("present");
        for _ in 0..50 {
            let delay = search.delay();
            assert!((Duration::from_millis(5)..=Duration::from_millis(10)).contains(&delay));
        }
        assert_eq!(
            responses.get("logout").map(|c| &c.result),
            Some(&Value::Null)
        );
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("[commands.a]\nreslt = 1", "unknown field `reslt`"),
            (
                "[commands.a]\ndelay_ms = { min = 9, max = 1 }",
                "commands.a.delay_ms: min (9) is above max (1)",
            ),
            ("[commands.a]\ndelay_ms = 99999999", "above the limit"),
            (
                "[commands.a]\nresult = { _class = 1 }",
                "commands.a.result: '_class' must be a string",
            ),
            ("[command.a]", "unknown field `command`"),
            // A delay in any other form says which forms it may take, never a type's name.
            (
                "[commands.a]\ndelay_ms = \"20ms\"",
                "whole milliseconds (e.g. 20) or a range",
            ),
            ("[commands.a]\ndelay_ms = -5", "whole milliseconds"),
            ("[commands.a]\ndelay_ms = { min = 1 }", "whole milliseconds"),
            (
                "[commands.a]\ndelay_ms = { min = 1, max = 5, mx = 9 }",
                "whole milliseconds",
            ),
        ];
        for (text, expected) in cases {
            let error = format!("{:#}", Responses::parse(text).expect_err(text));
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
