//! When things are due: session arrivals of an open model, computed from the stages as
//! `stage start + k / rate` (never from accumulated sleeps, so a late wake-up does not shift
//! later arrivals), connection times from the connect rate, and weighted session picks.

use std::time::Duration;

use super::scenario::Session;

/// Arrival offsets from the start of the run, for stages of (sessions per second, length),
/// ending at `until`.
#[derive(Debug, Clone)]
pub struct Arrivals {
    stages: Vec<(f64, Duration)>,
    stage: usize,
    stage_start: Duration,
    index: u64,
    until: Duration,
}

impl Arrivals {
    /// The arrivals of `stages`, none after `until`.
    pub fn new(stages: &[(f64, Duration)], until: Duration) -> Arrivals {
        Arrivals {
            stages: stages.to_vec(),
            stage: 0,
            stage_start: Duration::ZERO,
            index: 0,
            until,
        }
    }

    /// How many arrivals the plan holds before `until`.
    pub fn planned(stages: &[(f64, Duration)], until: Duration) -> u64 {
        Arrivals::new(stages, until).count() as u64
    }
}

impl Iterator for Arrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        while let Some(&(rate, length)) = self.stages.get(self.stage) {
            if rate > 0.0 {
                let offset = Duration::from_secs_f64(self.index as f64 / rate);
                if offset < length {
                    let at = self.stage_start + offset;
                    if at >= self.until {
                        return None;
                    }
                    self.index += 1;
                    return Some(at);
                }
            }
            self.stage += 1;
            self.stage_start += length;
            self.index = 0;
        }
        None
    }
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

    #[test]
    fn arrivals_follow_each_stage_rate() {
        let stages = [
            (10.0, Duration::from_secs(1)),
            (0.0, Duration::from_secs(1)),
            (20.0, Duration::from_millis(500)),
        ];
        let times: Vec<Duration> = Arrivals::new(&stages, Duration::from_secs(60)).collect();
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
            Arrivals::planned(&stages, Duration::from_millis(500)),
            5,
            "none after the run ends"
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
