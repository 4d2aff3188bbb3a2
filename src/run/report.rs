//! The results of a run: `summary.json` (schema in the README), a plain-text table for the
//! terminal, and the thresholds evaluated against them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::bail;
use hdrhistogram::Histogram;
use serde_json::{Value as Json, json};

use super::metrics::{ErrorKind, Recorded};
use super::scenario::{Load, Scenario, Spacing, Step, parse_duration};

/// What the run planned and achieved, beside the measurements.
pub struct RunFacts {
    /// `HOST:PORT` measured, or "embedded".
    pub target: String,
    /// How long the run actually lasted.
    pub elapsed: Duration,
    /// Sessions the plan held for that time (open model only).
    pub planned_sessions: Option<u64>,
    /// Whether Ctrl-C ended the run early.
    pub interrupted: bool,
    /// The share (0 to 1) of its workers' time the generator's runtime was busy.
    pub generator_busy: f64,
    /// The runtime's worker threads.
    pub generator_threads: usize,
    /// Whether the server was the embedded one, on the same workers.
    pub embedded_server: bool,
}

const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99_9", 99.9),
    ("max", 100.0),
];

/// The percentiles of `histogram`, or null when it holds nothing: not 0 microseconds (a command
/// none of whose requests was sent has no service time), and null whole, as `connect_us` is.
fn percentiles(histogram: &Histogram<u64>) -> Json {
    if histogram.is_empty() {
        return Json::Null;
    }
    let mut map = serde_json::Map::new();
    for (name, quantile) in PERCENTILES {
        let value = if quantile >= 100.0 {
            json!(histogram.max())
        } else {
            json!(histogram.value_at_percentile(quantile))
        };
        map.insert(name.into(), value);
    }
    Json::Object(map)
}

fn error_table(errors: &BTreeMap<ErrorKind, u64>) -> Json {
    errors
        .iter()
        .map(|(kind, count)| (kind.name().to_string(), json!(count)))
        .collect()
}

/// Requests, waits and connection attempts that failed, and connections lost during the run,
/// over all requests, waits, attempts and losses, in percent. A client that cannot connect, or
/// has lost its connection, sends nothing; counting only requests, a run against a dead server
/// would pass `error_rate < 1%`.
pub fn error_rate(recorded: &Recorded) -> f64 {
    let failed_connects: u64 = recorded.connect_errors.values().sum();
    let connects = failed_connects + recorded.connect.as_ref().map_or(0, |h| h.len());
    let lost: u64 = recorded.disconnects.values().sum();
    let (count, errors) = recorded.commands.values().fold(
        (connects + lost, failed_connects + lost),
        |(count, errors), metrics| {
            (
                count + metrics.count,
                errors + metrics.errors.values().sum::<u64>(),
            )
        },
    );
    if count == 0 {
        0.0
    } else {
        errors as f64 * 100.0 / count as f64
    }
}

/// Sessions started over sessions planned, in percent (100 for a closed model).
pub fn achieved_percent(recorded: &Recorded, facts: &RunFacts) -> f64 {
    match facts.planned_sessions {
        Some(0) | None => 100.0,
        Some(planned) => recorded.sessions_started as f64 * 100.0 / planned as f64,
    }
}

/// " (N% of plan)" after the sessions started, or nothing for a closed model, which plans none.
fn share_of_plan(recorded: &Recorded, facts: &RunFacts) -> String {
    match facts.planned_sessions {
        Some(_) => format!(" ({:.1}% of plan)", achieved_percent(recorded, facts)),
        None => String::new(),
    }
}

/// The `summary.json` document.
pub fn summary(
    scenario: &Scenario,
    recorded: &Recorded,
    facts: &RunFacts,
    thresholds: &[Outcome],
) -> Json {
    let seconds = facts.elapsed.as_secs_f64();
    // Rates over no time at all (a run stopped before it began) are 0, not a division by zero.
    let per_second = |count: f64| {
        if seconds > 0.0 { count / seconds } else { 0.0 }
    };
    let commands: serde_json::Map<String, Json> = recorded
        .commands
        .iter()
        .map(|(command, metrics)| {
            let entry = json!({
                "count": metrics.count,
                "errors": error_table(&metrics.errors),
                "latency_us": percentiles(&metrics.latency),
                "service_us": percentiles(&metrics.service),
                "lag_us": percentiles(&metrics.lag),
            });
            (command.clone(), entry)
        })
        .collect();
    json!({
        "name": scenario.name,
        "target": facts.target,
        "model": match scenario.load { Load::Open { .. } => "open", Load::Closed => "closed" },
        "arrivals": match scenario.load {
            Load::Open { spacing: Spacing::Even, .. } => json!("even"),
            Load::Open { spacing: Spacing::Poisson { seed }, .. } => json!({ "poisson_seed": seed }),
            Load::Closed => Json::Null,
        },
        "in_flight": scenario.in_flight,
        "duration_s": seconds,
        "interrupted": facts.interrupted,
        "unfinished": recorded.unfinished,
        "sessions": {
            "planned": facts.planned_sessions,
            "started": recorded.sessions_started,
            "cut_short": recorded.sessions_cut_short,
            "lost": recorded.sessions_lost,
            "dropped": recorded.dropped,
            "unstarted": facts.planned_sessions.map(|planned| planned.saturating_sub(recorded.sessions_started + recorded.dropped)),
            "planned_rate": facts.planned_sessions.map(|planned| per_second(planned as f64)),
            "achieved_rate": per_second(recorded.sessions_started as f64),
        },
        "connections": {
            "planned": scenario.connections,
            "connected": recorded.connect.as_ref().map_or(0, Histogram::len),
            "reconnects": recorded.reconnects,
            "objects_dropped": recorded.objects_dropped,
            "errors": error_table(&recorded.connect_errors),
            "first_error": recorded.first_connect_error,
            "lost": error_table(&recorded.disconnects),
            "connect_us": recorded.connect.as_ref().map(percentiles),
        },
        "generator": {
            "threads": facts.generator_threads,
            "busy_percent": facts.generator_busy * 100.0,
            "saturated": facts.generator_busy >= super::busy::SATURATED,
        },
        "error_rate_percent": error_rate(recorded),
        "commands": commands,
        "thresholds": thresholds.iter().map(|outcome| json!({
            "name": outcome.name, "condition": outcome.condition, "measured": outcome.measured, "unit": outcome.unit, "ok": outcome.ok,
        })).collect::<Vec<_>>(),
    })
}

/// The terminal table: one row per command, latencies in milliseconds.
pub fn table(recorded: &Recorded, facts: &RunFacts) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<28} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "command (latency, ms)", "count", "errors", "p50", "p90", "p99", "p99.9", "max"
    );
    let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
    for (command, metrics) in &recorded.commands {
        let h = &metrics.latency;
        let _ = writeln!(
            text,
            "{:<28} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            crate::codec::display::printable(command),
            metrics.count,
            metrics.errors.values().sum::<u64>(),
            ms(h.value_at_percentile(50.0)),
            ms(h.value_at_percentile(90.0)),
            ms(h.value_at_percentile(99.0)),
            ms(h.value_at_percentile(99.9)),
            ms(h.max()),
        );
    }
    let _ = writeln!(
        text,
        "sessions: {} started{}, {} cut short at the end, {} cut short by a lost connection, {} dropped; connections: {} connected, {} failed, {} lost; errors: {:.3}%; {:.1} s",
        recorded.sessions_started,
        share_of_plan(recorded, facts),
        recorded.sessions_cut_short,
        recorded.sessions_lost,
        recorded.dropped,
        recorded.connect.as_ref().map_or(0, Histogram::len),
        recorded.connect_errors.values().sum::<u64>(),
        recorded.disconnects.values().sum::<u64>(),
        error_rate(recorded),
        facts.elapsed.as_secs_f64(),
    );
    if recorded.unfinished > 0 {
        let _ = writeln!(
            text,
            "unfinished: {} requests and waits were under way when the run stopped waiting \
             (not in the figures above)",
            recorded.unfinished
        );
    }
    if recorded.objects_dropped > 0 {
        let _ = writeln!(
            text,
            "objects dropped: the server sent {} frames that are not envelopes (an unknown type?); \
             the clients dropped them, as the ActionScript client does",
            recorded.objects_dropped
        );
    }
    if let Some(error) = &recorded.first_connect_error {
        let _ = writeln!(text, "first connect error: {error}");
    }
    let _ = writeln!(
        text,
        "generator: {} worker thread(s) busy {:.0}% of the run",
        facts.generator_threads,
        facts.generator_busy * 100.0
    );
    if let Some(warning) = super::busy::warning(
        facts.generator_busy,
        facts.generator_threads,
        facts.embedded_server,
    ) {
        let _ = writeln!(text, "warning: {warning}");
    }
    text
}

/// A threshold as written: what it measures and the bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    name: String,
    condition: String,
    metric: Metric,
    less: bool,
    /// `<=` or `>=`: the bound itself passes.
    inclusive: bool,
    bound: f64,
}

#[derive(Debug, Clone, PartialEq)]
enum Metric {
    /// A latency percentile of a command, in microseconds (100 = max).
    Latency {
        command: String,
        percentile: f64,
    },
    ErrorRate,
    AchievedRate,
}

/// A threshold's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// As written in the scenario.
    pub name: String,
    /// As written in the scenario.
    pub condition: String,
    /// The measured value, in `unit`.
    pub measured: f64,
    /// `ms` for latencies, `%` for rates.
    pub unit: &'static str,
    /// Whether it holds.
    pub ok: bool,
}

/// Parses the scenario's thresholds, checking that each names a command the scenario sends.
pub fn parse_thresholds(scenario: &Scenario) -> anyhow::Result<Vec<Threshold>> {
    let commands: Vec<String> = scenario
        .sessions
        .iter()
        .flat_map(|session| &session.steps)
        .filter_map(|step| match step {
            Step::Request { command, .. } => Some(command.to_string()),
            Step::WaitMessage { command, .. } => Some(format!("wait_message:{command}")),
            _ => None,
        })
        .collect();
    scenario
        .thresholds
        .iter()
        .map(|(name, condition)| parse_threshold(name, condition, &commands, scenario))
        .collect()
}

fn parse_threshold(
    name: &str,
    condition: &str,
    commands: &[String],
    scenario: &Scenario,
) -> anyhow::Result<Threshold> {
    let key = format!("thresholds.\"{name}\"");
    let trimmed = condition.trim();
    let (less, rest) = match (trimmed.strip_prefix('<'), trimmed.strip_prefix('>')) {
        (Some(rest), _) => (true, rest),
        (_, Some(rest)) => (false, rest),
        _ => bail!(
            "{key}: '{condition}' must start with <, <=, > or >=, e.g. \"< 50ms\" or \"> 95%\""
        ),
    };
    let (inclusive, bound_text) = match rest.strip_prefix('=') {
        Some(rest) => (true, rest.trim()),
        None => (false, rest.trim()),
    };
    let percent = |text: &str| -> anyhow::Result<f64> {
        match text
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
            .filter(|n| n.is_finite())
        {
            Some(value) => Ok(value),
            None => bail!("{key}: '{text}' is not a percentage, e.g. 0.1%"),
        }
    };
    let (metric, bound) = match name {
        "error_rate" => (Metric::ErrorRate, percent(bound_text)?),
        "achieved_rate" if matches!(scenario.load, Load::Closed) => {
            bail!("{key}: a closed model has no planned rate to achieve")
        }
        "achieved_rate" => (Metric::AchievedRate, percent(bound_text)?),
        _ => {
            let (command, percentile) = latency_threshold(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "{key}: expected COMMAND.pNN (e.g. login.p99, login.p99.9, login.max), \
                     error_rate or achieved_rate"
                )
            })?;
            if !commands.iter().any(|known| known == command) {
                if is_message_step(scenario, command) {
                    bail!(
                        "{key}: '{command}' is sent by message steps, which get no reply and so \
                         have no latency; latency thresholds are for request and wait_message \
                         steps"
                    );
                }
                bail!("{key}: no step of the scenario sends '{command}'");
            }
            let bound = parse_duration(bound_text).ok_or_else(|| {
                anyhow::anyhow!("{key}: '{bound_text}' is not a duration, e.g. 50ms")
            })?;
            (
                Metric::Latency {
                    command: command.into(),
                    percentile,
                },
                bound.as_secs_f64() * 1e6,
            )
        }
    };
    Ok(Threshold {
        name: name.into(),
        condition: condition.into(),
        metric,
        less,
        inclusive,
        bound,
    })
}

fn is_message_step(scenario: &Scenario, command: &str) -> bool {
    scenario
        .sessions
        .iter()
        .flat_map(|session| &session.steps)
        .any(|step| matches!(step, Step::Message { command: sent, .. } if &**sent == command))
}

/// `COMMAND.pNN` (`NN` above 0 and below 100, decimals allowed) or `COMMAND.max`: the command
/// and the percentile, 100 for the maximum. A command's own name may hold dots.
fn latency_threshold(name: &str) -> Option<(&str, f64)> {
    if let Some(command) = name.strip_suffix(".max") {
        return Some((command, 100.0));
    }
    let (command, percentile) = name.rsplit_once(".p")?;
    let percentile = percentile
        .parse::<f64>()
        .ok()
        .filter(|p| *p > 0.0 && *p < 100.0)?;
    Some((command, percentile))
}

/// Evaluates the thresholds; latencies are reported in ms, rates in %.
pub fn evaluate(thresholds: &[Threshold], recorded: &Recorded, facts: &RunFacts) -> Vec<Outcome> {
    thresholds
        .iter()
        .map(|threshold| {
            let (measured, reported, unit) = match &threshold.metric {
                Metric::ErrorRate => (error_rate(recorded), error_rate(recorded), "%"),
                Metric::AchievedRate => (
                    achieved_percent(recorded, facts),
                    achieved_percent(recorded, facts),
                    "%",
                ),
                Metric::Latency {
                    command,
                    percentile,
                } => {
                    // NaN when nothing was measured: no bound holds for it, `<` nor `>`.
                    let us = recorded
                        .commands
                        .get(command)
                        .filter(|metrics| !metrics.latency.is_empty())
                        .map_or(f64::NAN, |metrics| {
                            if *percentile >= 100.0 {
                                metrics.latency.max() as f64
                            } else {
                                metrics.latency.value_at_percentile(*percentile) as f64
                            }
                        });
                    (us, us / 1000.0, "ms")
                }
            };
            // Every comparison with NaN is false: a command never measured meets no bound.
            let ok = match (threshold.less, threshold.inclusive) {
                (true, false) => measured < threshold.bound,
                (true, true) => measured <= threshold.bound,
                (false, false) => measured > threshold.bound,
                (false, true) => measured >= threshold.bound,
            };
            Outcome {
                name: threshold.name.clone(),
                condition: threshold.condition.clone(),
                measured: reported,
                unit,
                ok,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds(lines: &str) -> anyhow::Result<Vec<Threshold>> {
        let scenario = Scenario::parse(&format!(
            "name = \"t\"\nconnections = 1\nduration = \"1s\"\n[load]\nmodel = \"closed\"\n\
             [[session]]\nname = \"s\"\nsteps = [{{ request = \"lobby.join\" }}, \
             {{ wait_message = \"tick\" }}, {{ message = \"chat\" }}]\n[thresholds]\n{lines}"
        ))
        .expect("parses");
        parse_thresholds(&scenario)
    }

    fn latency(threshold: &Threshold) -> (&str, f64) {
        match &threshold.metric {
            Metric::Latency {
                command,
                percentile,
            } => (command.as_str(), *percentile),
            other => panic!("not a latency: {other:?}"),
        }
    }

    #[test]
    fn percentiles_may_have_decimals_and_commands_dots() {
        let parsed = thresholds(
            "\"lobby.join.p99.9\" = \"< 200ms\"\n\"lobby.join.p50\" = \"< 1s\"\n\
             \"lobby.join.max\" = \"< 2s\"\n\"wait_message:tick.p99.99\" = \"< 1s\"\n",
        )
        .expect("valid");
        let found: Vec<(&str, f64)> = parsed.iter().map(latency).collect();
        assert_eq!(
            found,
            [
                ("lobby.join", 99.9),
                ("lobby.join", 50.0),
                ("lobby.join", 100.0),
                ("wait_message:tick", 99.99),
            ],
            "in the file's order"
        );
        assert_eq!(parsed[0].bound, 200_000.0);
    }

    #[test]
    fn a_percentile_out_of_range_or_unknown_command_is_named() {
        for (line, expected) in [
            ("\"lobby.join.p100\" = \"< 1s\"", "expected COMMAND.pNN"),
            ("\"lobby.join.p0\" = \"< 1s\"", "expected COMMAND.pNN"),
            ("\"lobby.join.pNaN\" = \"< 1s\"", "expected COMMAND.pNN"),
            ("\"lobby.join\" = \"< 1s\"", "expected COMMAND.pNN"),
            (
                "\"lobby.p99\" = \"< 1s\"",
                "no step of the scenario sends 'lobby'",
            ),
            ("\"chat.p99\" = \"< 1s\"", "'chat' is sent by message steps"),
            ("error_rate = \"< NaN%\"", "'NaN%' is not a percentage"),
            ("error_rate = \"< inf%\"", "'inf%' is not a percentage"),
            (
                "\"lobby.join.p99\" = \"= 1s\"",
                "must start with <, <=, > or >=",
            ),
        ] {
            let error = thresholds(line).expect_err(line).to_string();
            assert!(error.contains(expected), "{line}: {error}");
        }
    }

    #[test]
    fn lost_connections_and_every_connect_count_in_the_error_rate() {
        use super::super::metrics::{ErrorKind, Metrics, Sample};
        use std::time::Duration;
        let metrics = Metrics::new().expect("metrics");
        let ok = Sample {
            latency: Duration::from_millis(1),
            service: Some(Duration::from_millis(1)),
            lag: Some(Duration::ZERO),
            error: None,
        };
        for _ in 0..5 {
            metrics.record("echo", ok);
        }
        metrics.record(
            "echo",
            Sample {
                error: Some(ErrorKind::ServerClosed),
                ..ok
            },
        );
        metrics.connected(Duration::from_millis(1));
        metrics.connected(Duration::from_millis(1));
        metrics.connect_failed(ErrorKind::ConnectRefused, &"refused");
        metrics.disconnected(ErrorKind::ServerClosed);
        // 6 requests (1 failed), 3 connects (1 failed), 1 connection lost: 3 of 10.
        assert_eq!(error_rate(&metrics.snapshot()), 30.0);
    }

    #[test]
    fn or_equal_comparisons_let_the_bound_itself_pass() {
        let parsed =
            thresholds("error_rate = \"<= 1%\"\n\"lobby.join.p99\" = \">= 5ms\"\n").expect("valid");
        let by_name = |name: &str| {
            parsed
                .iter()
                .find(|threshold| threshold.name == name)
                .expect("parsed")
        };
        let error_rate = by_name("error_rate");
        assert!(error_rate.less && error_rate.inclusive && error_rate.bound == 1.0);
        let p99 = by_name("lobby.join.p99");
        assert!(!p99.less && p99.inclusive && p99.bound == 5_000.0);
        let strict = thresholds("error_rate = \"< 1%\"\n").expect("valid");
        assert!(strict[0].less && !strict[0].inclusive);
    }

    #[test]
    fn a_command_never_measured_meets_no_latency_bound_either_way() {
        let parsed = thresholds(
            "\"lobby.join.p99\" = \"> 1ms\"\n\"lobby.join.max\" = \">= 0ms\"\n\
             \"lobby.join.p50\" = \"< 1s\"\n",
        )
        .expect("valid");
        let facts = RunFacts {
            target: "embedded".into(),
            elapsed: Duration::from_secs(1),
            planned_sessions: None,
            interrupted: false,
            generator_busy: 0.0,
            generator_threads: 1,
            embedded_server: true,
        };
        let outcomes = evaluate(&parsed, &Recorded::default(), &facts);
        assert_eq!(outcomes.len(), 3);
        for outcome in outcomes {
            assert!(!outcome.ok, "{} {} passed", outcome.name, outcome.condition);
            assert!(outcome.measured.is_nan(), "{}", outcome.measured);
        }
    }

    #[test]
    fn a_run_stopped_before_it_began_lasted_no_time_at_any_rate() {
        let scenario = crate::run::scenario::Scenario::parse(
            "name = 'n'\nconnections = 1\nduration = '1s'\n[load]\nmodel = 'open'\n\
             stages = [{ rate = 10, for = '1s' }]\n[[session]]\nname = 's'\n\
             steps = [{ think = '1s' }]\n",
        )
        .expect("valid");
        let facts = RunFacts {
            target: "embedded".into(),
            elapsed: Duration::ZERO,
            planned_sessions: Some(0),
            interrupted: true,
            generator_busy: 0.0,
            generator_threads: 1,
            embedded_server: true,
        };
        let summary = summary(&scenario, &Recorded::default(), &facts, &[]);
        assert_eq!(summary["duration_s"], 0.0);
        assert_eq!(summary["sessions"]["planned_rate"], 0.0);
        assert_eq!(summary["sessions"]["achieved_rate"], 0.0);
    }
}
