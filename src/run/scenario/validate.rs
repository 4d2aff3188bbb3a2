//! The checks that turn the scenario file's values into a `Scenario`'s: each error names the key,
//! the value and what was expected.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use super::file::{CsvFile, LoadFile, SessionFile, StageFile, StepFile};
use super::{DEFAULT_SEED, Session, Spacing, Stage, Step, Think, parse_duration};
use crate::codec::Str;
use crate::run::data::{CsvTable, RowOrder};
use crate::run::template::Template;

pub(super) fn duration_at(key: &str, text: &str) -> anyhow::Result<Duration> {
    parse_duration(text).with_context(|| {
        format!(
            "{key}: '{text}' is not a duration; expected a number and a unit, e.g. 200ms, 30s, 2m, \
             of at most 8760h"
        )
    })
}

/// `duration_at` for a run's length and timeouts, where zero would end the run, or fail every
/// request and wait, before it began.
pub(super) fn positive_duration_at(key: &str, text: &str) -> anyhow::Result<Duration> {
    let duration = duration_at(key, text)?;
    if duration.is_zero() {
        bail!("{key}: '{text}' is zero; expected a duration above zero, e.g. 200ms or 30s");
    }
    Ok(duration)
}

/// A rate as the scenario gave it, in exponent form when its digits would fill the line.
fn shown_rate(rate: f64) -> String {
    if rate.is_finite() && rate.abs() >= 1e9 {
        format!("{rate:e}")
    } else {
        rate.to_string()
    }
}

fn think_at(key: &str, text: &str) -> anyhow::Result<Think> {
    let expected = || {
        format!(
            "{key}: '{text}' is not a think time; expected e.g. 200ms, exp(200ms) or uniform(1s,5s)"
        )
    };
    let inner = |prefix: &str| {
        text.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
    };
    if let Some(mean) = inner("exp(") {
        return Ok(Think::Exponential(
            parse_duration(mean).with_context(expected)?,
        ));
    }
    if let Some(bounds) = inner("uniform(") {
        let (low, high) = bounds.split_once(',').with_context(expected)?;
        let (low, high) = (
            parse_duration(low).with_context(expected)?,
            parse_duration(high).with_context(expected)?,
        );
        if low > high {
            bail!("{key}: '{text}': the lower bound is above the upper one");
        }
        return Ok(Think::Uniform(low, high));
    }
    parse_duration(text)
        .map(Think::Fixed)
        .with_context(expected)
}

pub(super) fn csv_sources(
    files: &BTreeMap<String, CsvFile>,
    base: &Path,
) -> anyhow::Result<Vec<Arc<CsvTable>>> {
    files
        .iter()
        .map(|(name, file)| {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                bail!("csv.{name}: a CSV name is letters, digits and '_'");
            }
            let order = match &file.order {
                Some(text) => RowOrder::parse(&format!("csv.{name}.order"), text)?,
                None => RowOrder::Client,
            };
            let path = base.join(&file.file);
            let table = CsvTable::load(name, &path, order, &format!("csv.{name}.file"))?;
            Ok(Arc::new(table))
        })
        .collect()
}

pub(super) fn spacing(load: &LoadFile) -> anyhow::Result<Spacing> {
    match load.arrivals.as_deref() {
        None | Some("even") if load.seed.is_some() => {
            bail!("load.seed: only Poisson arrivals take a seed (arrivals = \"poisson\")")
        }
        None | Some("even") => Ok(Spacing::Even),
        Some("poisson") => Ok(Spacing::Poisson {
            seed: load.seed.unwrap_or(DEFAULT_SEED),
        }),
        Some(other) => {
            bail!("load.arrivals: '{other}' is not a spacing; expected \"even\" or \"poisson\"")
        }
    }
}

fn stage_rate(key: &str, rate: f64) -> anyhow::Result<f64> {
    if !(rate.is_finite() && (0.0..=1e7).contains(&rate)) {
        bail!(
            "{key}: {} must be sessions per second, 0 to 10000000",
            shown_rate(rate)
        );
    }
    Ok(rate)
}

pub(super) fn stages(stages: &[StageFile]) -> anyhow::Result<Vec<Stage>> {
    if stages.is_empty() {
        bail!(
            "load.stages: an open model needs stages, e.g. stages = [{{ rate = 100, for = \"10s\" }}]"
        );
    }
    stages
        .iter()
        .enumerate()
        .map(|(index, stage)| {
            let key = format!("load.stages[{index}]");
            let to = stage_rate(&format!("{key}.rate"), stage.rate)?;
            let from = match stage.from {
                Some(from) => stage_rate(&format!("{key}.from"), from)?,
                None => to,
            };
            Ok(Stage {
                from,
                to,
                length: duration_at(&format!("{key}.for"), &stage.lasting)?,
            })
        })
        .collect()
}

pub(super) fn validate_session(
    index: usize,
    session: &SessionFile,
    default_timeout: Duration,
    sources: &[Arc<CsvTable>],
) -> anyhow::Result<Session> {
    let steps = session
        .steps
        .iter()
        .enumerate()
        .map(|(step_index, step)| {
            validate_step(
                &format!("session[{index}].steps[{step_index}]"),
                step,
                default_timeout,
                sources,
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if steps.is_empty() {
        bail!("session[{index}].steps: a session needs at least one step");
    }
    Ok(Session {
        name: session.name.clone(),
        weight: session.weight,
        steps,
    })
}

fn validate_step(
    key: &str,
    step: &StepFile,
    default_timeout: Duration,
    sources: &[Arc<CsvTable>],
) -> anyhow::Result<Step> {
    let kinds = [
        &step.request,
        &step.message,
        &step.wait_message,
        &step.think,
    ];
    if kinds.iter().filter(|kind| kind.is_some()).count() != 1 {
        bail!("{key}: a step is exactly one of request, message, wait_message or think");
    }
    for (kind, command) in [
        ("request", &step.request),
        ("message", &step.message),
        ("wait_message", &step.wait_message),
    ] {
        if command.as_deref().is_some_and(str::is_empty) {
            bail!("{key}.{kind}: the command name is empty");
        }
    }
    let timeout = match &step.timeout {
        Some(text) => positive_duration_at(&format!("{key}.timeout"), text)?,
        None => default_timeout,
    };
    let params = || -> anyhow::Result<Template> {
        let empty = toml::Value::Table(toml::Table::new());
        let params = step.params.as_ref().unwrap_or(&empty);
        let is_object = params
            .as_table()
            .is_some_and(|table| !table.contains_key(crate::rpc::toml_value::NULL_KEY));
        if !is_object {
            bail!(
                "{key}.params: '{params}' is not a table; the envelope's params are an object, \
                 e.g. params = {{ id = 1 }}"
            );
        }
        Ok(Template::parse(params, &format!("{key}.params"), sources)?)
    };
    let no_params = |kind: &str| {
        if step.params.is_some() {
            bail!("{key}.params: a {kind} step takes no params");
        }
        Ok(())
    };
    if let Some(command) = &step.request {
        // The results name message and wait_message steps `message:X` and `wait_message:X`.
        if command.starts_with("message:") || command.starts_with("wait_message:") {
            bail!(
                "{key}.request: '{command}' is reserved: the results name message and \
                 wait_message steps so, and the two would share one row"
            );
        }
        return Ok(Step::Request {
            command: Str::from(command.as_str()),
            params: params()?,
            timeout,
        });
    }
    if step.timeout.is_some() && (step.message.is_some() || step.think.is_some()) {
        bail!("{key}.timeout: only request and wait_message steps take a timeout");
    }
    if let Some(command) = &step.message {
        return Ok(Step::Message {
            command: Str::from(command.as_str()),
            params: params()?,
        });
    }
    if let Some(command) = &step.wait_message {
        no_params("wait_message")?;
        return Ok(Step::WaitMessage {
            command: Str::from(command.as_str()),
            timeout,
        });
    }
    no_params("think")?;
    let think = step.think.as_deref().unwrap_or_default();
    Ok(Step::Think(think_at(&format!("{key}.think"), think)?))
}
