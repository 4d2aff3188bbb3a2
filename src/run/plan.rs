//! When things are due: session arrivals of an open model, computed from the stages as
//! `stage start + k / rate` (never from accumulated sleeps, so a late wake-up does not shift
//! later arrivals), connection times from the connect rate, and weighted session picks.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::scenario::{Session, Spacing, Stage};

/// Arrival offsets from the start of the run, ending at `until`. The k-th arrival is due when the
/// integral of the rate over time reaches `k` (even spacing) or the k-th point of a unit-rate
/// Poisson process (Poisson spacing): one formula for steady stages and linear ramps alike.
#[derive(Debug)]
pub struct Arrivals {
    stages: Vec<Stage>,
    /// The stage the last arrival fell in.
    stage: usize,
    /// When that stage starts, and how many sessions were due before it.
    stage_start: Duration,
    due_before_stage: f64,
    /// How many sessions are due at the next arrival.
    next_due: f64,
    poisson: Option<StdRng>,
    until: Duration,
}

impl Arrivals {
    /// The arrivals of `stages` spaced by `spacing`, none at or after `until`.
    pub fn new(stages: &[Stage], spacing: Spacing, until: Duration) -> Arrivals {
        let mut poisson = match spacing {
            Spacing::Even => None,
            Spacing::Poisson { seed } => Some(StdRng::seed_from_u64(seed)),
        };
        Arrivals {
            stages: stages.to_vec(),
            stage: 0,
            stage_start: Duration::ZERO,
            due_before_stage: 0.0,
            next_due: poisson.as_mut().map_or(0.0, unit_gap),
            poisson,
            until,
        }
    }

    /// How many arrivals the plan holds before `until`: counted without walking them for even
    /// spacing (a long run at a high rate plans billions), walked for Poisson spacing.
    pub fn planned(stages: &[Stage], spacing: Spacing, until: Duration) -> u64 {
        match spacing {
            Spacing::Even => even_count(stages, until),
            Spacing::Poisson { .. } => Arrivals::new(stages, spacing, until).count() as u64,
        }
    }
}

/// When an evenly spaced arrival is due once `due` sessions are (the k-th is due at `due = k`),
/// as `Arrivals` computes it; none past the last stage.
fn even_at(stages: &[Stage], due: f64) -> Option<Duration> {
    let mut stage_start = Duration::ZERO;
    let mut due_before_stage = 0.0;
    for stage in stages {
        let within = due - due_before_stage;
        if within < stage.sessions() {
            return Some(stage_start + stage.time_of(within));
        }
        due_before_stage += stage.sessions();
        stage_start += stage.length;
    }
    None
}

/// Sessions due by `until`: the integral of the rate.
fn sessions_due_by(stages: &[Stage], until: Duration) -> f64 {
    let mut stage_start = Duration::ZERO;
    let mut due = 0.0;
    for stage in stages {
        if until >= stage_start + stage.length {
            due += stage.sessions();
        } else if until > stage_start {
            let t = (until - stage_start).as_secs_f64();
            let slope = (stage.to - stage.from) / stage.length.as_secs_f64();
            due += stage.from * t + slope * t * t / 2.0;
        }
        stage_start += stage.length;
    }
    due
}

/// Evenly spaced arrivals before `until`: the sessions due by then, rounded up, then moved to
/// where `Arrivals` puts the boundary, whose arithmetic may round the other way.
fn even_count(stages: &[Stage], until: Duration) -> u64 {
    let is_before = |k: u64| even_at(stages, k as f64).is_some_and(|at| at < until);
    let mut count = sessions_due_by(stages, until).ceil().max(0.0) as u64;
    while count > 0 && !is_before(count - 1) {
        count -= 1;
    }
    while is_before(count) {
        count += 1;
    }
    count
}

/// One gap of a unit-rate Poisson process: exponential with mean 1.
fn unit_gap(rng: &mut StdRng) -> f64 {
    let uniform: f64 = rng.random_range(f64::EPSILON..1.0);
    -uniform.ln()
}

impl Stage {
    /// Sessions due over the whole stage.
    fn sessions(&self) -> f64 {
        (self.from + self.to) / 2.0 * self.length.as_secs_f64()
    }

    /// When, from the stage start, `sessions` are due: solves
    /// `from * t + (to - from) * t^2 / (2 * length) = sessions` for t, in the form that stays
    /// exact for steady stages and for a ramp starting at 0.
    fn time_of(&self, sessions: f64) -> Duration {
        if sessions <= 0.0 {
            return Duration::ZERO;
        }
        let length = self.length.as_secs_f64();
        let slope = (self.to - self.from) / length;
        let root = (self.from * self.from + 2.0 * slope * sessions)
            .max(0.0)
            .sqrt();
        let seconds = 2.0 * sessions / (self.from + root);
        Duration::try_from_secs_f64(seconds.clamp(0.0, length)).unwrap_or(self.length)
    }
}

impl Iterator for Arrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        while let Some(stage) = self.stages.get(self.stage) {
            let within = self.next_due - self.due_before_stage;
            if within < stage.sessions() {
                let at = self.stage_start + stage.time_of(within);
                if at >= self.until {
                    return None;
                }
                self.next_due += self.poisson.as_mut().map_or(1.0, unit_gap);
                return Some(at);
            }
            self.due_before_stage += stage.sessions();
            self.stage_start += stage.length;
            self.stage += 1;
        }
        None
    }
}

/// The planned session rate over the interval from `start` lasting `length`: the sessions the
/// plan holds in it (the integral of the rate, across stage boundaries and ramps) over its
/// length, none from `run_ends` on, when arrivals stop. It is what the sessions achieved over the
/// same interval compare with; for Poisson arrivals it is the expected rate. An interval shorter
/// than a millisecond counts as one, as the achieved rate does.
pub fn planned_rate(
    stages: &[Stage],
    start: Duration,
    length: Duration,
    run_ends: Duration,
) -> f64 {
    let end = (start + length).min(run_ends);
    let sessions = sessions_due_by(stages, end) - sessions_due_by(stages, start.min(run_ends));
    sessions.max(0.0) / length.as_secs_f64().max(1e-3)
}

/// When the client with this index connects: `index / rate` seconds after the start.
pub fn connect_offset(index: usize, rate: f64) -> Duration {
    Duration::from_secs_f64(index as f64 / rate)
}

/// Picks a session by weight.
pub fn pick(sessions: &[Session]) -> Option<&Session> {
    let total: u64 = sessions.iter().map(|s| u64::from(s.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut ticket = rand::random_range(0..total);
    sessions.iter().find(|session| {
        let weight = u64::from(session.weight);
        if ticket < weight {
            true
        } else {
            ticket -= weight;
            false
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steady(rate: f64, length: Duration) -> Stage {
        Stage {
            from: rate,
            to: rate,
            length,
        }
    }

    #[test]
    fn even_arrivals_are_counted_as_the_walk_counts_them() {
        let ramp = |from: f64, to: f64, ms: u64| Stage {
            from,
            to,
            length: Duration::from_millis(ms),
        };
        let plans = [
            vec![steady(10.0, Duration::from_secs(1))],
            vec![ramp(0.0, 100.0, 10_000), ramp(100.0, 0.0, 10_000)],
            vec![
                steady(10.0, Duration::from_secs(1)),
                steady(0.0, Duration::from_secs(1)),
                ramp(3.0, 7.5, 1_300),
                steady(1_000.0, Duration::from_millis(2_345)),
            ],
            vec![steady(0.0, Duration::from_secs(5))],
            vec![ramp(0.1, 0.3, 60_000)],
        ];
        for stages in &plans {
            for until_ms in (0..25_000).step_by(37) {
                let until = Duration::from_millis(until_ms);
                let walked = Arrivals::new(stages, Spacing::Even, until).count() as u64;
                assert_eq!(
                    even_count(stages, until),
                    walked,
                    "{stages:?} until {until:?}"
                );
            }
        }
    }

    #[test]
    fn arrivals_follow_each_stage_rate() {
        let stages = [
            steady(10.0, Duration::from_secs(1)),
            steady(0.0, Duration::from_secs(1)),
            steady(20.0, Duration::from_millis(500)),
        ];
        let times: Vec<Duration> =
            Arrivals::new(&stages, Spacing::Even, Duration::from_secs(60)).collect();
        assert_eq!(times.len(), 20);
        assert_eq!(times[0], Duration::ZERO);
        assert_eq!(times[9], Duration::from_millis(900));
        assert_eq!(
            times[10],
            Duration::from_secs(2),
            "the zero-rate stage holds no arrivals"
        );
        assert_eq!(times[19], Duration::from_millis(2450));
        assert_eq!(
            Arrivals::planned(&stages, Spacing::Even, Duration::from_millis(500)),
            5,
            "none after the run ends"
        );
    }

    #[test]
    fn a_ramp_integrates_its_rate() {
        // 0 -> 100 per second over 10 s: 500 sessions, t(k) = sqrt(k / 5).
        let ramp = [Stage {
            from: 0.0,
            to: 100.0,
            length: Duration::from_secs(10),
        }];
        let times: Vec<Duration> =
            Arrivals::new(&ramp, Spacing::Even, Duration::from_secs(60)).collect();
        assert_eq!(times.len(), 500);
        assert_eq!(times[0], Duration::ZERO);
        let seconds = |k: usize| times[k].as_secs_f64();
        assert!((seconds(5) - 1.0).abs() < 1e-9, "{}", seconds(5));
        assert!((seconds(125) - 5.0).abs() < 1e-9, "{}", seconds(125));
        assert!(times.windows(2).all(|pair| pair[0] <= pair[1]));
        let down = [Stage {
            from: 100.0,
            to: 0.0,
            length: Duration::from_secs(10),
        }];
        let times: Vec<Duration> =
            Arrivals::new(&down, Spacing::Even, Duration::from_secs(60)).collect();
        assert_eq!(times.len(), 500);
        assert!((times[375].as_secs_f64() - 5.0).abs() < 1e-9);
    }

    /// The progress line sets the sessions achieved over an interval beside the plan's over the
    /// same interval: not the rate at its end, which is the next stage's at a boundary, and on a
    /// ramp always ahead of (or behind) what the interval held.
    #[test]
    fn the_planned_rate_is_the_plans_average_over_the_interval() {
        let second = Duration::from_secs(1);
        let stages = [
            steady(10.0, second),
            steady(1000.0, second),
            steady(10.0, second),
        ];
        let run_ends = 3 * second;
        let rate = |start_ms: u64, length_ms: u64| {
            let start = Duration::from_millis(start_ms);
            planned_rate(&stages, start, Duration::from_millis(length_ms), run_ends)
        };
        let close = |rate: f64, expected: f64| (rate - expected).abs() < 1e-6;
        assert!(close(rate(0, 1000), 10.0), "{}", rate(0, 1000));
        assert!(close(rate(1000, 1000), 1000.0), "{}", rate(1000, 1000));
        assert!(close(rate(2000, 1000), 10.0), "{}", rate(2000, 1000));
        assert!(
            close(rate(500, 1000), 505.0),
            "half of each: {}",
            rate(500, 1000)
        );
        assert!(
            close(rate(2500, 1000), 5.0),
            "none after the run: {}",
            rate(2500, 1000)
        );
        assert!(close(rate(3000, 1), 0.0), "{}", rate(3000, 1));
        // 0 -> 100 per second over 10 s: 10 t per second, so 45 sessions in the fifth second,
        // where the rate at its end is 50.
        let ramp = [Stage {
            from: 0.0,
            to: 100.0,
            length: 10 * second,
        }];
        let ramp_rate = planned_rate(&ramp, 4 * second, second, 60 * second);
        assert!(close(ramp_rate, 45.0), "{ramp_rate}");
    }

    #[test]
    fn poisson_arrivals_are_seeded_and_keep_the_rate() {
        let stages = [steady(1000.0, Duration::from_secs(10))];
        let until = Duration::from_secs(60);
        let first: Vec<Duration> =
            Arrivals::new(&stages, Spacing::Poisson { seed: 7 }, until).collect();
        let again: Vec<Duration> =
            Arrivals::new(&stages, Spacing::Poisson { seed: 7 }, until).collect();
        let other: Vec<Duration> =
            Arrivals::new(&stages, Spacing::Poisson { seed: 8 }, until).collect();
        assert_eq!(first, again, "the same seed, the same schedule");
        assert_ne!(first, other);
        // 10,000 expected; a Poisson count has a standard deviation of 100.
        assert!((9_500..10_500).contains(&first.len()), "{}", first.len());
        let gaps: Vec<f64> = first
            .windows(2)
            .map(|pair| (pair[1] - pair[0]).as_secs_f64())
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let variance = gaps.iter().map(|gap| (gap - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        // Exponential gaps: the standard deviation equals the mean (1 ms).
        assert!(
            (variance.sqrt() / mean - 1.0).abs() < 0.1,
            "{mean} {variance}"
        );
    }

    #[test]
    fn sessions_are_picked_by_weight() {
        let session = |name: &str, weight| Session {
            name: name.into(),
            weight,
            steps: Vec::new(),
        };
        let sessions = [session("a", 3), session("b", 1), session("never", 0)];
        let picks_a = (0..4000)
            .filter(|_| pick(&sessions).is_some_and(|s| s.name == "a"))
            .count();
        assert!((2700..3300).contains(&picks_a), "{picks_a}");
        assert!((0..1000).all(|_| pick(&sessions).is_some_and(|s| s.name != "never")));
    }
}
