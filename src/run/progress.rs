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
    /// Sessions per second the plan holds now (open model).
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
}

impl Progress {
    /// A line for a run of `total`, drawn only when `show` and stderr is a terminal.
    pub fn new(show: bool, total: Duration) -> Progress {
        if !show || !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let bar = ProgressBar::with_draw_target(
            Some(total.as_secs().max(1)),
            ProgressDrawTarget::stderr_with_hz(4),
        );
        let style = ProgressStyle::with_template("{pos:>4}/{len} s [{bar:20}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        Progress { bar }
    }

    /// No line at all.
    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
        }
    }

    /// Shows `status`.
    pub fn update(&self, status: &Status) {
        if self.bar.is_hidden() {
            return;
        }
        self.bar.set_position(status.elapsed.as_secs());
        self.bar.set_message(describe(status));
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

/// The message part of the line.
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
}
