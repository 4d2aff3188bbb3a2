//! `report.html`: one self-contained page per run (inline SVG and CSS, no scripts): the run's
//! facts and thresholds, a table per command, the latency percentile spectrum on a log axis,
//! latency and throughput over time, and the errors by kind.

use std::fmt::Write as _;

use serde_json::Value as Json;

use super::metrics::Recorded;
use super::points::{Point, PointCommand};
use super::svg::{Chart, Series, escape, line_chart};

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:980px}\
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 8px;\
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}\
.fail{color:#b00;font-weight:bold}.ok{color:#070}h2{margin-top:28px}";

/// The page for a finished run.
pub fn report(summary: &Json, recorded: &Recorded, points: &[Point]) -> String {
    let name = summary["name"].as_str().unwrap_or("run");
    let mut page = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>amf-bench run: {}</title>\
         <style>{STYLE}</style></head><body><h1>amf-bench run: {}</h1>",
        escape(name),
        escape(name)
    );
    page.push_str(&facts(summary));
    page.push_str(&thresholds(summary));
    page.push_str(&commands(summary));
    page.push_str("<h2>Latency by percentile</h2>");
    page.push_str(&line_chart(&spectrum(recorded)));
    page.push_str("<h2>Over time</h2>");
    page.push_str(&line_chart(&latency_over_time(points)));
    page.push_str(&line_chart(&throughput_over_time(points)));
    page.push_str(&errors(summary));
    page.push_str("</body></html>\n");
    page
}

fn cell(value: &Json) -> String {
    match value {
        Json::Null => "-".to_string(),
        Json::String(text) => escape(text),
        Json::Number(number) => match number.as_f64() {
            Some(float) if number.is_f64() => format!("{float:.2}"),
            _ => number.to_string(),
        },
        other => escape(&other.to_string()),
    }
}

fn facts(summary: &Json) -> String {
    let rows = [
        ("target", &summary["target"]),
        ("model", &summary["model"]),
        ("duration (s)", &summary["duration_s"]),
        ("interrupted", &summary["interrupted"]),
        ("sessions planned", &summary["sessions"]["planned"]),
        ("sessions started", &summary["sessions"]["started"]),
        (
            "sessions cut short at the end",
            &summary["sessions"]["cut_short"],
        ),
        (
            "sessions cut short by a lost connection",
            &summary["sessions"]["lost"],
        ),
        ("sessions dropped", &summary["sessions"]["dropped"]),
        (
            "sessions unstarted at the end",
            &summary["sessions"]["unstarted"],
        ),
        ("planned rate (/s)", &summary["sessions"]["planned_rate"]),
        ("achieved rate (/s)", &summary["sessions"]["achieved_rate"]),
        ("connections planned", &summary["connections"]["planned"]),
        ("connections made", &summary["connections"]["connected"]),
        ("error rate (%)", &summary["error_rate_percent"]),
        ("generator threads", &summary["generator"]["threads"]),
        ("generator busy (%)", &summary["generator"]["busy_percent"]),
    ];
    let mut html = String::from("<table>");
    for (label, value) in rows {
        let _ = write!(html, "<tr><th>{label}</th><td>{}</td></tr>", cell(value));
    }
    html.push_str("</table>");
    html
}

fn thresholds(summary: &Json) -> String {
    let Some(list) = summary["thresholds"]
        .as_array()
        .filter(|list| !list.is_empty())
    else {
        return String::new();
    };
    let mut html = String::from(
        "<h2>Thresholds</h2><table><tr><th>threshold</th><th>condition</th><th>measured</th><th>verdict</th></tr>",
    );
    for outcome in list {
        let ok = outcome["ok"].as_bool().unwrap_or(false);
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{} {}</td><td class=\"{}\">{}</td></tr>",
            cell(&outcome["name"]),
            cell(&outcome["condition"]),
            cell(&outcome["measured"]),
            cell(&outcome["unit"]),
            if ok { "ok" } else { "fail" },
            if ok { "ok" } else { "FAILED" },
        );
    }
    html.push_str("</table>");
    html
}

fn commands(summary: &Json) -> String {
    let Some(commands) = summary["commands"].as_object() else {
        return String::new();
    };
    let mut html = String::from(
        "<h2>Commands</h2><table><tr><th>command</th><th>count</th><th>errors</th>\
         <th>latency p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th>\
         <th>service p99</th><th>lag p99</th></tr>",
    );
    let ms = |value: &Json| {
        value.as_u64().map_or("-".to_string(), |us| {
            format!("{:.2} ms", us as f64 / 1000.0)
        })
    };
    for (command, entry) in commands {
        let errors: u64 = entry["errors"]
            .as_object()
            .map_or(0, |kinds| kinds.values().filter_map(Json::as_u64).sum());
        let latency = &entry["latency_us"];
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{errors}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(command),
            cell(&entry["count"]),
            ms(&latency["p50"]),
            ms(&latency["p90"]),
            ms(&latency["p99"]),
            ms(&latency["p99_9"]),
            ms(&latency["max"]),
            ms(&entry["service_us"]["p99"]),
            ms(&entry["lag_us"]["p99"]),
        );
    }
    html.push_str("</table>");
    html
}

fn errors(summary: &Json) -> String {
    let mut rows = Vec::new();
    let mut add = |scope: &str, table: &Json| {
        for (kind, count) in table.as_object().into_iter().flatten() {
            rows.push(format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(scope),
                escape(kind),
                cell(count)
            ));
        }
    };
    add("connect", &summary["connections"]["errors"]);
    add("connection lost", &summary["connections"]["lost"]);
    for (command, entry) in summary["commands"].as_object().into_iter().flatten() {
        add(command, &entry["errors"]);
    }
    if rows.is_empty() {
        return "<h2>Errors</h2><p>None.</p>".to_string();
    }
    format!(
        "<h2>Errors</h2><table><tr><th>where</th><th>kind</th><th>count</th></tr>{}</table>",
        rows.concat()
    )
}

/// Percentile `1 - 10^-(x)`: x = 1 is 90%, 2 is 99%, and so on.
fn quantile_at(x: f64) -> f64 {
    1.0 - 10f64.powf(-x)
}

fn spectrum(recorded: &Recorded) -> Chart {
    let most = recorded
        .commands
        .values()
        .map(|metrics| metrics.latency.len())
        .max()
        .unwrap_or(1);
    // As far right as the data supports: 99.9% needs a thousand samples.
    let nines = (most.max(10) as f64).log10().ceil().clamp(2.0, 6.0);
    let series = recorded
        .commands
        .iter()
        .enumerate()
        .map(|(index, (command, metrics))| Series {
            name: command.clone(),
            points: (0..=(nines * 10.0) as u32)
                .map(|step| {
                    let x = f64::from(step) / 10.0;
                    let us = metrics.latency.value_at_quantile(quantile_at(x));
                    (x, us as f64 / 1000.0)
                })
                .collect(),
            dashed: false,
            color: index,
        })
        .collect();
    let labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"];
    Chart {
        title: "latency (reply minus intended send) by percentile".into(),
        x_label: "percentile (log scale)".into(),
        y_label: "ms".into(),
        x_ticks: Some(
            labels
                .iter()
                .take(nines as usize + 1)
                .enumerate()
                .map(|(x, label)| (x as f64, (*label).to_string()))
                .collect(),
        ),
        series,
    }
}

/// Commands in the order they first appear, for stable colours.
fn command_names(points: &[Point]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for point in points {
        for command in &point.commands {
            if !names.contains(&command.command) {
                names.push(command.command.clone());
            }
        }
    }
    names.sort();
    names
}

fn latency_over_time(points: &[Point]) -> Chart {
    let mut series = Vec::new();
    for (index, name) in command_names(points).into_iter().enumerate() {
        let pick = |percentile: fn(&PointCommand) -> u64| {
            points
                .iter()
                .filter_map(|point| {
                    let command = point.commands.iter().find(|c| c.command == name)?;
                    Some((middle(point), percentile(command) as f64 / 1000.0))
                })
                .collect::<Vec<_>>()
        };
        series.push(Series {
            name: format!("{name} p99"),
            points: pick(|command| command.p99_us),
            dashed: false,
            color: index,
        });
        series.push(Series {
            name: format!("{name} p50"),
            points: pick(|command| command.p50_us),
            dashed: true,
            color: index,
        });
    }
    Chart {
        title: latency_title(points),
        x_label: "seconds into the run".into(),
        y_label: "ms".into(),
        x_ticks: Some(run_ticks(points)),
        series,
    }
}

/// "latency per second", or for a run longer than `MAX_POINTS` seconds, the span of its points
/// and what they show.
fn latency_title(points: &[Point]) -> String {
    let seconds = points
        .first()
        .map_or(1, |point| point.length.as_secs_f64().round() as u64);
    if seconds <= 1 {
        "latency per second".into()
    } else {
        format!("latency per {seconds} s (of each span, its worst second's p50 and p99)")
    }
}

/// The middle of an interval, in seconds into the run: where its figures are drawn.
fn middle(point: &Point) -> f64 {
    (point.start + point.length / 2).as_secs_f64()
}

/// The x axis of the charts over time: the whole run, the same for each.
fn run_ticks(points: &[Point]) -> Vec<(f64, String)> {
    let end = points
        .last()
        .map_or(1.0, |point| (point.start + point.length).as_secs_f64());
    super::svg::ticks(0.0, end.max(1.0))
}

/// Intervals shorter than this (the run's last, cut short) are left out of the rates: a few
/// requests in a few milliseconds make a rate that says nothing.
const SHORTEST_RATED: std::time::Duration = std::time::Duration::from_millis(500);

fn throughput_over_time(points: &[Point]) -> Chart {
    let per_second = |pick: &dyn Fn(&Point) -> u64| {
        points
            .iter()
            .filter(|point| point.length >= SHORTEST_RATED)
            .map(|point| {
                (
                    middle(point),
                    pick(point) as f64 / point.length.as_secs_f64(),
                )
            })
            .collect::<Vec<_>>()
    };
    let series = vec![
        Series {
            name: "requests/s".into(),
            points: per_second(&|point| point.commands.iter().map(|c| c.count).sum()),
            dashed: false,
            color: 0,
        },
        Series {
            name: "sessions/s".into(),
            points: per_second(&|point| point.sessions),
            dashed: false,
            color: 2,
        },
        Series {
            name: "errors/s".into(),
            points: per_second(&|point| point.commands.iter().map(|c| c.errors).sum()),
            dashed: false,
            color: 1,
        },
    ];
    Chart {
        title: "throughput per second".into(),
        x_label: "seconds into the run".into(),
        y_label: "per second".into(),
        x_ticks: Some(run_ticks(points)),
        series,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn point(start_ms: u64, length_ms: u64, count: u64) -> Point {
        Point {
            start: Duration::from_millis(start_ms),
            length: Duration::from_millis(length_ms),
            connected: 1,
            sessions: count,
            commands: vec![PointCommand {
                command: "echo".into(),
                count,
                errors: 0,
                p50_us: 1_000,
                p99_us: 2_000,
                max_us: 3_000,
            }],
        }
    }

    #[test]
    fn intervals_are_drawn_at_their_middle_and_a_short_last_one_has_no_rate() {
        let timeline = [
            point(0, 1_000, 100),
            point(1_000, 1_000, 300),
            point(2_000, 5, 2),
        ];
        let throughput = throughput_over_time(&timeline);
        assert_eq!(
            throughput.series[0].points,
            [(0.5, 100.0), (1.5, 300.0)],
            "2 requests in 5 ms are not 400 per second"
        );
        let latency = latency_over_time(&timeline);
        let p99 = &latency.series[0];
        assert_eq!(p99.name, "echo p99");
        assert_eq!(p99.points, [(0.5, 2.0), (1.5, 2.0), (2.0025, 2.0)]);
        assert_eq!(
            latency.x_ticks, throughput.x_ticks,
            "both charts span the run"
        );
        assert_eq!(latency.title, "latency per second");
    }

    #[test]
    fn points_of_a_long_run_say_what_span_they_cover() {
        let merged = [point(0, 4_000, 100), point(4_000, 4_000, 100)];
        assert_eq!(
            latency_over_time(&merged).title,
            "latency per 4 s (of each span, its worst second's p50 and p99)"
        );
        assert_eq!(
            throughput_over_time(&merged).series[0].points,
            [(2.0, 25.0), (6.0, 25.0)]
        );
    }
}
