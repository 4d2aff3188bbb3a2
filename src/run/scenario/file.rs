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
