//! The live progress line of `amf-bench run` (indicatif, on stderr): elapsed and total time,
//! connected clients, achieved against planned session rate, request rate, the last second's p99
//! and the errors so far. Hidden with `--quiet` and whenever stderr is not a terminal (CI, pipes).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What one update shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Status {
    /// Time since the run began.
    pub elapsed: Duration,
    /// Connections open.
    pub connected: u64,
    /// Sessions started per second over the last interval.
    pub sessions_rate: f64,
    /// Sessions per second the plan holds over the same interval (open model).
    pub planned_rate: Option<f64>,
    /// Requests ended per second over the last interval.
    pub requests_rate: f64,
    /// The last interval's p99 latency over all commands, in microseconds.
    pub p99_us: Option<u64>,
    /// Errors since the run began.
    pub errors: u64,
}

/// The progress line, or nothing.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
    /// How long the run lasts.
    total: Duration,
}

impl Progress {
    /// A line for a run of `total`, drawn only when `show` and stderr is a terminal.
    pub fn new(show: bool, total: Duration) -> Progress {
        if !show || !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        // The whole line is the message, set at once: with the time and the bar drawn from the
        // bar's position, setting the two drew a line of the new second beside the figures of
        // the one before.
        let style =
            ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress { bar, total }
    }

    /// No line at all.
    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
            total: Duration::ZERO,
        }
    }

    /// Shows `status`.
    pub fn update(&self, status: &Status) {
        if self.bar.is_hidden() {
            return;
        }
        self.bar.set_message(line(status, self.total));
    }

    /// Prints `text` on stderr, above the line when it is shown (and alone when it is not).
    pub fn note(&self, text: &str) {
        // Notes are not worth a panic when standard error is closed.
        self.bar
            .suspend(|| writeln!(std::io::stderr(), "{text}").unwrap_or_default());
    }

    /// Removes the line, before the results are printed.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Cells of the bar.
const BAR_WIDTH: usize = 20;

/// The whole line for a run of `total`: the whole seconds elapsed of the total, a bar of them,
/// then the figures (of the interval that ended at `status.elapsed`).
pub fn line(status: &Status, total: Duration) -> String {
    let (elapsed, total) = (status.elapsed.as_secs(), total.as_secs().max(1));
    let filled = (elapsed.min(total) as f64 / total as f64) * BAR_WIDTH as f64;
    let whole = filled as usize;
    let head = usize::from(filled > 0.0 && whole < BAR_WIDTH);
    format!(
        "{elapsed:>4}/{total} s [{}{}{}] {}",
        "=".repeat(whole),
        ">".repeat(head),
        " ".repeat(BAR_WIDTH - whole - head),
        describe(status)
    )
}

/// The figures of the line.
pub fn describe(status: &Status) -> String {
    let planned = match status.planned_rate {
        Some(rate) => format!(" of {rate:.0}"),
        None => String::new(),
    };
    let p99 = match status.p99_us {
        Some(us) => format!("{:.1} ms", us as f64 / 1000.0),
        None => "-".to_string(),
    };
    format!(
        "clients {}  sessions {:.0}/s{planned}  requests {:.0}/s  p99 {p99}  errors {}",
        status.connected, status.sessions_rate, status.requests_rate, status.errors
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_every_figure() {
        let line = describe(&Status {
            elapsed: Duration::from_secs(3),
            connected: 2000,
            sessions_rate: 4980.4,
            planned_rate: Some(5000.0),
            requests_rate: 9960.0,
            p99_us: Some(12_345),
            errors: 2,
        });
        assert_eq!(
            line,
            "clients 2000  sessions 4980/s of 5000  requests 9960/s  p99 12.3 ms  errors 2"
        );
    }

    /// The time, the bar and the figures are one text, drawn at once, so the line never shows
    /// one second's time beside another's figures.
    #[test]
    fn the_time_and_the_figures_are_one_line() {
        let status = |seconds, sessions_rate| Status {
            elapsed: Duration::from_secs(seconds),
            connected: 5,
            sessions_rate,
            planned_rate: Some(10.0),
            requests_rate: 10.0,
            p99_us: None,
            errors: 0,
        };
        let total = Duration::from_secs(3);
        assert_eq!(
            line(&status(1, 11.0), total),
            "   1/3 s [======>             ] clients 5  sessions 11/s of 10  requests 10/s  p99 -  \
             errors 0"
        );
        assert_eq!(
            line(&status(0, 0.0), total),
            "   0/3 s [                    ] clients 5  sessions 0/s of 10  requests 10/s  p99 -  \
             errors 0"
        );
        assert!(line(&status(3, 9.0), total).starts_with("   3/3 s [====================] "));
        assert!(
            line(&status(4, 9.0), total).starts_with("   4/3 s [====================] "),
            "the wait for the requests under way, after the run's seconds"
        );
    }
}
