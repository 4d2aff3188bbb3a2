//! The TOML scenario: its schema (unknown keys rejected, in `file`), and its validation (in
//! `validate`) into a `Scenario` whose errors name the key, the value and what was expected.

mod file;
mod validate;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use super::template::Template;
use crate::codec::Str;
use validate::{csv_sources, duration_at, positive_duration_at, spacing, stages, validate_session};

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Names the results directory.
    pub name: String,
    /// `HOST:PORT`, or none for the embedded server.
    pub target: Option<String>,
    /// Simulated clients, each a persistent connection.
    pub connections: usize,
    /// New connections per second while connecting.
    pub connect_rate: f64,
    /// How long the run lasts.
    pub duration: Duration,
    /// The default request and wait timeout.
    pub timeout: Duration,
    /// Sessions each client runs at once on its connection (requests in flight per socket).
    pub in_flight: usize,
    /// After a lost connection, reconnect after this long; none: the client stops.
    pub reconnect: Option<Duration>,
    /// Local addresses the clients' sockets are bound to, client i to entry i mod n (past about
    /// 28,000 connections to one target, one local address runs out of ports); none: any.
    pub source_addresses: Vec<IpAddr>,
    /// How sessions start.
    pub load: Load,
    /// What clients do, with their weights.
    pub sessions: Vec<Session>,
    /// Conditions checked at the end, in the file's order of keys.
    pub thresholds: Vec<(String, String)>,
}

/// How sessions start.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// On a schedule of stages, whether clients are free or not.
    Open {
        /// The rate over time.
        stages: Vec<Stage>,
        /// How arrivals are spaced.
        spacing: Spacing,
    },
    /// Each client runs sessions back to back.
    Closed,
}

/// A stretch of an open model: the session rate goes linearly from `from` to `to` (per second)
/// over `length`; a steady stage has `from == to`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// Sessions per second at the start.
    pub from: f64,
    /// Sessions per second at the end.
    pub to: f64,
    /// How long.
    pub length: Duration,
}

/// How the arrivals of an open model are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spacing {
    /// Evenly: the k-th arrival when k sessions are due.
    Even,
    /// As a Poisson process of the same rate, from a seeded generator (the same seed gives the
    /// same schedule).
    Poisson {
        /// The generator's seed.
        seed: u64,
    },
}

/// The seed of Poisson arrivals when the scenario names none.
pub const DEFAULT_SEED: u64 = 1;

/// The most sessions one client runs at once.
pub const MAX_IN_FLIGHT: u64 = 1024;

/// A weighted list of steps.
#[derive(Debug, Clone)]
pub struct Session {
    /// Named in the results.
    pub name: String,
    /// Relative frequency.
    pub weight: u32,
    /// In order.
    pub steps: Vec<Step>,
}

/// One thing a client does.
#[derive(Debug, Clone)]
pub enum Step {
    /// A request, waiting for its reply.
    Request {
        /// The command.
        command: Str,
        /// Its params.
        params: Template,
        /// How long to wait for the reply.
        timeout: Duration,
    },
    /// A fire-and-forget message.
    Message {
        /// The command.
        command: Str,
        /// Its params.
        params: Template,
    },
    /// Waits for a message from the server with this command.
    WaitMessage {
        /// The command.
        command: Str,
        /// How long to wait.
        timeout: Duration,
    },
    /// A pause.
    Think(Think),
}

/// A think time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Think {
    /// Always this long.
    Fixed(Duration),
    /// Exponentially distributed with this mean.
    Exponential(Duration),
    /// Uniform between the two.
    Uniform(Duration, Duration),
}

impl Think {
    /// One sample.
    pub fn sample(self) -> Duration {
        match self {
            Think::Fixed(duration) => duration,
            Think::Exponential(mean) => {
                let uniform: f64 = rand::random_range(f64::EPSILON..1.0);
                mean.mul_f64(-uniform.ln())
            }
            Think::Uniform(low, high) => {
                Duration::from_secs_f64(rand::random_range(low.as_secs_f64()..=high.as_secs_f64()))
            }
        }
    }
}

/// The longest duration a scenario may give: a run adds durations to the current time, which
/// panics past what an `Instant` can hold (about 292 years), so absurd ones are refused instead.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `30s`, `2m`, `200ms`, `1.5s`, `100us`, `1h`, up to `MAX_DURATION`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| *duration <= MAX_DURATION)
}

/// The most of a scenario file read (its data goes in CSV files, read separately).
const MAX_SCENARIO_FILE: u64 = 16 << 20;

impl Scenario {
    /// Reads and validates a scenario file; its CSV files are found relative to it.
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = crate::text_file::read_at_most(path, MAX_SCENARIO_FILE)
            .with_context(|| format!("cannot read scenario {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Scenario::parse_in(&text, base).with_context(|| format!("in scenario {}", path.display()))
    }

    /// A warning when `connect_rate` opens the clients over longer than the run lasts, so that
    /// some never connect: legal (a run may measure its ramp), but easy to do by mistake.
    pub fn connect_ramp_warning(&self) -> Option<String> {
        let ramp = (self.connections - 1) as f64 / self.connect_rate;
        let duration = self.duration.as_secs_f64();
        if ramp < duration {
            return None;
        }
        let connecting = ((duration * self.connect_rate).ceil() as usize).min(self.connections);
        // Shown as durations are elsewhere (Debug picks the unit), so that a run of 100us is
        // not "0.0 s".
        let ramp = Duration::try_from_secs_f64(ramp).unwrap_or(MAX_DURATION);
        Some(format!(
            "connect_rate {} opens the {} clients over {ramp:.1?}, but the run lasts {:.1?}: \
             only about {connecting} will connect",
            self.connect_rate, self.connections, self.duration
        ))
    }

    /// Validates the text of a scenario file, CSV files relative to the current directory.
    pub fn parse(text: &str) -> anyhow::Result<Scenario> {
        Scenario::parse_in(text, Path::new("."))
    }

    /// Validates the text of a scenario file, CSV files relative to `base`.
    pub fn parse_in(text: &str, base: &Path) -> anyhow::Result<Scenario> {
        let file = file::read(text)?;
        if file.connections == 0 || file.connections > 1_000_000 {
            bail!(
                "connections: {} is out of range; expected 1 to 1000000",
                file.connections
            );
        }
        let connect_rate = file.connect_rate.unwrap_or(1000.0);
        if !(connect_rate.is_finite() && connect_rate > 0.0) {
            bail!(
                "connect_rate: {connect_rate} must be a number of connections per second above 0"
            );
        }
        // The last client connects (connections - 1) / connect_rate seconds after the start.
        if (file.connections - 1) as f64 / connect_rate > MAX_DURATION.as_secs_f64() {
            bail!(
                // Debug, so that a tiny rate shows as 1e-300 rather than 300 digits.
                "connect_rate: {connect_rate:?} is too low: connecting {} clients would take \
                 more than 8760h",
                file.connections
            );
        }
        let load = match file.load.model.as_str() {
            "open" => Load::Open {
                stages: stages(&file.load.stages)?,
                spacing: spacing(&file.load)?,
            },
            "closed" if file.load.arrivals.is_some() || file.load.seed.is_some() => {
                bail!(
                    "load.arrivals: a closed model has no arrivals (each client loops its session)"
                )
            }
            "closed" if file.load.stages.is_empty() => Load::Closed,
            "closed" => {
                bail!("load.stages: a closed model has no stages (each client loops its session)")
            }
            other => bail!("load.model: '{other}' is not a model; expected \"open\" or \"closed\""),
        };
        if file.name.trim().is_empty() {
            bail!("name: the scenario's name is empty; it names the results directory");
        }
        if file.session.is_empty() {
            bail!("session: at least one [[session]] is needed");
        }
        let timeout = positive_duration_at("timeout", &file.timeout)?;
        let in_flight = file.in_flight.unwrap_or(1);
        if !(1..=MAX_IN_FLIGHT).contains(&in_flight) {
            bail!("in_flight: {in_flight} is out of range; expected 1 to {MAX_IN_FLIGHT}");
        }
        let reconnect = match &file.reconnect {
            Some(text) => Some(duration_at("reconnect", text)?),
            None => None,
        };
        let sources = csv_sources(&file.csv, base)?;
        let source_addresses = file
            .source_addresses
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, text)| {
                text.parse::<IpAddr>().with_context(|| {
                    format!("source_addresses[{index}]: '{text}' is not an IP address, e.g. \"127.0.0.2\"")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let sessions = file
            .session
            .iter()
            .enumerate()
            .map(|(index, session)| validate_session(index, session, timeout, &sources))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if sessions.iter().all(|session| session.weight == 0) {
            bail!("session: every weight is 0; at least one session must have a weight above 0");
        }
        Ok(Scenario {
            name: file.name,
            target: file.target,
            connections: file.connections as usize,
            connect_rate,
            duration: positive_duration_at("duration", &file.duration)?,
            timeout,
            in_flight: in_flight as usize,
            reconnect,
            source_addresses,
            load,
            sessions,
            thresholds: file.thresholds.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        name = "lobby"
        connections = 20
        connect_rate = 500
        duration = "2s"
        [load]
        model = "open"
        stages = [{ rate = 10, for = "1s" }, { rate = 50, for = "1s" }]
        [[session]]
        name = "login"
        weight = 3
        steps = [
          { request = "login", params = { user = "u{{client}}" } },
          { think = "exp(200ms)" },
          { request = "getRoom", params = { id = "{{random_int(1,50)}}" }, timeout = "2s" },
          { message = "chat", params = { text = "hi" } },
          { wait_message = "chatEcho", timeout = "1s" },
        ]
        [[session]]
        name = "idle"
        steps = [{ think = "uniform(1s,5s)" }]
        [thresholds]
        "login.p99" = "< 50ms"
        error_rate = "< 0.1%"
    "#;

    #[test]
    fn the_documented_example_parses() {
        let scenario = Scenario::parse(EXAMPLE).expect("valid");
        assert_eq!(scenario.connections, 20);
        let steady = |rate, seconds| Stage {
            from: rate,
            to: rate,
            length: Duration::from_secs(seconds),
        };
        assert_eq!(
            scenario.load,
            Load::Open {
                stages: vec![steady(10.0, 1), steady(50.0, 1)],
                spacing: Spacing::Even
            }
        );
        assert_eq!(scenario.in_flight, 1);
        assert_eq!(scenario.reconnect, None);
        assert_eq!(scenario.sessions[0].steps.len(), 5);
        assert_eq!(scenario.sessions[1].weight, 1);
        assert!(
            matches!(scenario.sessions[0].steps[2], Step::Request { timeout, .. } if timeout == Duration::from_secs(2))
        );
        let keys: Vec<&str> = scenario
            .thresholds
            .iter()
            .map(|(key, _)| key.as_str())
            .collect();
        assert_eq!(keys, ["login.p99", "error_rate"], "the file's order");
    }

    #[test]
    fn a_connect_ramp_longer_than_the_run_is_warned_of() {
        let scenario_lasting = |connections: u32, rate: u32, duration: &str| {
            Scenario::parse(&format!(
                "name = 'r'\nconnections = {connections}\nconnect_rate = {rate}\n\
                 duration = '{duration}'\n[load]\nmodel = 'closed'\n[[session]]\nname = 's'\nsteps = [{{ think = '1s' }}]\n"
            ))
            .expect("valid")
        };
        let scenario = |connections: u32, rate: u32| scenario_lasting(connections, rate, "2s");
        assert_eq!(
            scenario_lasting(2, 1000, "100us")
                .connect_ramp_warning()
                .as_deref(),
            Some(
                "connect_rate 1000 opens the 2 clients over 1.0ms, but the run lasts 100.0\u{b5}s: \
                 only about 1 will connect"
            ),
            "durations below a second in a unit that shows them"
        );
        assert_eq!(
            scenario(10, 2).connect_ramp_warning().as_deref(),
            Some(
                "connect_rate 2 opens the 10 clients over 4.5s, but the run lasts 2.0s: only \
             about 4 will connect"
            )
        );
        assert_eq!(
            scenario(4, 2).connect_ramp_warning(),
            None,
            "the last at 1.5 s"
        );
        assert_eq!(scenario(1, 1).connect_ramp_warning(), None);
    }

    #[test]
    fn durations_and_think_times() {
        assert_eq!(parse_duration("200ms"), Some(Duration::from_millis(200)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("100us"), Some(Duration::from_micros(100)));
        for bad in ["", "5", "5x", "-1s", "ms"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        let mean = Duration::from_millis(10);
        let samples: Vec<Duration> = (0..2000)
            .map(|_| Think::Exponential(mean).sample())
            .collect();
        let average = samples.iter().sum::<Duration>() / 2000;
        assert!(
            average > Duration::from_millis(8) && average < Duration::from_millis(12),
            "{average:?}"
        );
    }

    #[test]
    fn mistakes_name_the_key_the_value_and_the_expected_form() {
        let cases = [
            (
                "duration = \"2s\"",
                "duration = \"2 parsecs\"",
                "duration: '2 parsecs' is not a duration",
            ),
            (
                "model = \"open\"",
                "model = \"shut\"",
                "load.model: 'shut' is not a model; expected \"open\" or \"closed\"",
            ),
            (
                "{ think = \"exp(200ms)\" }",
                "{ think = \"exp(soon)\" }",
                "session[0].steps[1].think: 'exp(soon)' is not a think time",
            ),
            (
                "{ think = \"exp(200ms)\" }",
                "{ think = \"1s\", request = \"x\" }",
                "session[0].steps[1]: a step is exactly one of",
            ),
            (
                "connections = 20",
                "connections = 0",
                "connections: 0 is out of range",
            ),
            ("weight = 3", "wieght = 3", "unknown field `wieght`"),
            (
                "model = \"open\"",
                "model = \"open\"\narrivals = \"bursty\"",
                "load.arrivals: 'bursty' is not a spacing; expected \"even\" or \"poisson\"",
            ),
            (
                "model = \"open\"",
                "model = \"open\"\nseed = 3",
                "load.seed: only Poisson arrivals take a seed",
            ),
            (
                "{ rate = 10, for = \"1s\" }",
                "{ from = -1, rate = 10, for = \"1s\" }",
                "load.stages[0].from: -1 must be sessions per second",
            ),
            (
                "connections = 20",
                "connections = 20\nin_flight = 0",
                "in_flight: 0 is out of range; expected 1 to 1024",
            ),
            (
                "connections = 20",
                "connections = 20\nreconnect = \"soon\"",
                "reconnect: 'soon' is not a duration",
            ),
            (
                "connections = 20",
                "connections = 20\nsource_addresses = [\"127.0.0.2\", \"localhost\"]",
                "source_addresses[1]: 'localhost' is not an IP address",
            ),
            (
                "duration = \"2s\"",
                "duration = \"0s\"",
                "duration: '0s' is zero; expected a duration above zero",
            ),
            (
                "connections = 20",
                "connections = 20\ntimeout = \"0ms\"",
                "timeout: '0ms' is zero",
            ),
            (
                "timeout = \"2s\"",
                "timeout = \"0s\"",
                "session[0].steps[2].timeout: '0s' is zero",
            ),
            (
                "{ rate = 50, for = \"1s\" }",
                "{ rate = 1e300, for = \"1s\" }",
                "load.stages[1].rate: 1e300 must be sessions per second, 0 to 10000000",
            ),
            (
                "\"{{random_int(1,50)}}\"",
                "\"{{random_int(50,1)}}\"",
                "session[0].steps[2].params.id: '{{random_int(50,1)}}': 50 is above 1",
            ),
            (
                "name = \"lobby\"",
                "name = \" \"",
                "name: the scenario's name is empty",
            ),
            (
                "{ think = \"exp(200ms)\" },",
                "\"think\",",
                "expected a table such as { request = \"echo\" }",
            ),
            (
                "params = { text = \"hi\" }",
                "params = { \"\" = 1 }",
                "session[0].steps[3].params.\"\": a member name cannot be empty",
            ),
            (
                "params = { text = \"hi\" }",
                "params = 5",
                "session[0].steps[3].params: '5' is not a table",
            ),
            (
                "params = { text = \"hi\" }",
                "params = [1, 2]",
                "session[0].steps[3].params: '[1, 2]' is not a table",
            ),
            (
                "params = { text = \"hi\" }",
                "params = { _null = true }",
                "is not a table; the envelope's params are an object",
            ),
            (
                "request = \"getRoom\"",
                "request = \"\"",
                "session[0].steps[2].request: the command name is empty",
            ),
            (
                "wait_message = \"chatEcho\"",
                "wait_message = \"\"",
                "session[0].steps[4].wait_message: the command name is empty",
            ),
            (
                "request = \"getRoom\"",
                "request = \"wait_message:chatEcho\"",
                "session[0].steps[2].request: 'wait_message:chatEcho' is reserved",
            ),
            (
                "request = \"getRoom\"",
                "request = \"message:chat\"",
                "session[0].steps[2].request: 'message:chat' is reserved",
            ),
        ];
        for (from, to, expected) in cases {
            let text = EXAMPLE.replacen(from, to, 1);
            assert_ne!(text, EXAMPLE, "{from}");
            let message = format!("{:#}", Scenario::parse(&text).expect_err(to));
            assert!(message.contains(expected), "{to}: {message}");
        }
    }
}
