//! Line charts as inline SVG for `report.html`: no scripts, no fonts, nothing fetched, so the
//! report opens anywhere, offline, years later.

use std::fmt::Write as _;

/// One line.
#[derive(Debug, Clone)]
pub struct Series {
    /// Shown in the legend.
    pub name: String,
    /// (x, y) in chart units, in x order.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (a secondary measure of the series before it, say).
    pub dashed: bool,
    /// Index into the palette; series of one command share it.
    pub color: usize,
}

/// A chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Above the plot.
    pub title: String,
    /// Below the x axis.
    pub x_label: String,
    /// Beside the y axis.
    pub y_label: String,
    /// Fixed x ticks (value, label); none: evenly spaced numbers.
    pub x_ticks: Option<Vec<(f64, String)>>,
    /// The lines.
    pub series: Vec<Series>,
}

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 44.0;

/// The colour of palette entry `index`.
pub fn color(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// Escapes text for HTML and SVG.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round step giving about `count` ticks over `span`.
fn nice_step(span: f64, count: f64) -> f64 {
    let raw = (span / count).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude);
    step.max(f64::MIN_POSITIVE)
}

fn number_label(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// Evenly spaced ticks from 0 (or `low`) up past `high`.
/// Round tick values (and their labels) covering `low` to `high`.
pub fn ticks(low: f64, high: f64) -> Vec<(f64, String)> {
    let step = nice_step(high - low, 5.0);
    let first = (low / step).floor() * step;
    (0..=12)
        .map(|k| first + step * f64::from(k))
        .take_while(|value| *value <= high + step * 0.999)
        .map(|value| {
            let rounded = (value / step).round() * step;
            (rounded, number_label((rounded * 1e6).round() / 1e6))
        })
        .collect()
}

/// The chart as an `<svg>` element.
pub fn line_chart(chart: &Chart) -> String {
    let points = chart.series.iter().flat_map(|series| &series.points);
    let (mut x_low, mut x_high, mut y_high) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in points {
        x_low = x_low.min(x);
        x_high = x_high.max(x);
        y_high = y_high.max(y);
    }
    let x_ticks = chart
        .x_ticks
        .clone()
        .unwrap_or_else(|| ticks(x_low.min(0.0), x_high.max(1.0)));
    if let (Some(first), Some(last)) = (x_ticks.first(), x_ticks.last()) {
        x_low = x_low.min(first.0);
        x_high = x_high.max(last.0);
    }
    if x_low >= x_high {
        x_low = 0.0;
        x_high = 1.0;
    }
    let y_ticks = ticks(0.0, if y_high > 0.0 { y_high } else { 1.0 });
    let y_top = y_ticks
        .last()
        .map_or(1.0, |tick| tick.0)
        .max(f64::MIN_POSITIVE);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - x_low) / (x_high - x_low) * plot_w;
    let sy = |y: f64| TOP + plot_h - y / y_top * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{}</text>"#,
        escape(&chart.title)
    );
    for (value, label) in &y_ticks {
        let y = sy(*value);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            escape(label)
        );
    }
    for (value, label) in &x_ticks {
        let x = sx(*value);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            escape(label)
        );
    }
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 6.0,
        escape(&chart.x_label),
        TOP + plot_h / 2.0,
        escape(&chart.y_label)
    );
    for (index, series) in chart.series.iter().enumerate() {
        let path: Vec<String> = series
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let dash = if series.dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        };
        let stroke = color(series.color);
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{stroke}" stroke-width="1.6"{dash} points="{}"/>"#,
            path.join(" ")
        );
        // A line through one point draws nothing: mark it.
        if let [(x, y)] = series.points[..] {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{stroke}"/>"#,
                sx(x),
                sy(y)
            );
        }
        let legend_y = TOP + 14.0 * index as f64 + 8.0;
        let legend_x = LEFT + plot_w + 12.0;
        let _ = write!(
            svg,
            r#"<line x1="{legend_x:.1}" x2="{:.1}" y1="{legend_y:.1}" y2="{legend_y:.1}" stroke="{stroke}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            legend_x + 18.0,
            legend_x + 22.0,
            legend_y + 4.0,
            escape(&series.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let labels: Vec<String> = ticks(0.0, 37.0).into_iter().map(|t| t.1).collect();
        assert_eq!(labels, ["0", "10", "20", "30", "40"]);
        let labels: Vec<String> = ticks(0.0, 0.9).into_iter().map(|t| t.1).collect();
        assert_eq!(labels, ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
    }

    #[test]
    fn a_chart_draws_each_series_with_escaped_names() {
        let svg = line_chart(&Chart {
            title: "latency <p99>".into(),
            x_label: "s".into(),
            y_label: "ms".into(),
            x_ticks: None,
            series: vec![Series {
                name: "a&b".into(),
                points: vec![(0.0, 1.0), (1.0, 3.0)],
                dashed: false,
                color: 0,
            }],
        });
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("latency &lt;p99&gt;") && svg.contains("a&amp;b"));
        assert!(!svg.contains("NaN"), "{svg}");
    }

    #[test]
    fn a_series_of_one_point_is_marked() {
        let chart = Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_ticks: None,
            series: vec![Series {
                name: "one".into(),
                points: vec![(0.5, 3.0)],
                dashed: false,
                color: 0,
            }],
        };
        assert!(line_chart(&chart).contains("<circle "));
    }

    #[test]
    fn an_empty_chart_is_still_drawn() {
        let svg = line_chart(&Chart {
            title: "nothing".into(),
            x_label: "s".into(),
            y_label: "ms".into(),
            x_ticks: None,
            series: Vec::new(),
        });
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }
}
