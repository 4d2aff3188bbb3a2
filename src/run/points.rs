//! The report's points over time: one per interval (a second), at most `MAX_POINTS` of them,
//! neighbours merged in pairs whenever a longer run reaches that many.

use std::time::Duration;

/// One command in one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct PointCommand {
    /// The command.
    pub command: String,
    /// Requests that ended in the interval.
    pub count: u64,
    /// How many of them failed.
    pub errors: u64,
    /// Latency percentiles, in microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest.
    pub max_us: u64,
}

/// One interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// When it began, from the start of the run.
    pub start: Duration,
    /// How long it lasted (the last one may be short).
    pub length: Duration,
    /// Connections open at its end.
    pub connected: u64,
    /// Sessions started in it.
    pub sessions: u64,
    /// By command.
    pub commands: Vec<PointCommand>,
}

impl Point {
    /// Takes in the interval that follows this one: counts add up, latencies keep the worst of
    /// the two, and `connected` is the later's (the count at the end).
    fn absorb(&mut self, later: Point) {
        self.length = (later.start + later.length).saturating_sub(self.start);
        self.connected = later.connected;
        self.sessions += later.sessions;
        for command in later.commands {
            match self
                .commands
                .iter_mut()
                .find(|c| c.command == command.command)
            {
                Some(mine) => {
                    mine.count += command.count;
                    mine.errors += command.errors;
                    mine.p50_us = mine.p50_us.max(command.p50_us);
                    mine.p99_us = mine.p99_us.max(command.p99_us);
                    mine.max_us = mine.max_us.max(command.max_us);
                }
                None => self.commands.push(command),
            }
        }
    }
}

/// The most points the report keeps: an hour's, one a second. Each time a longer run reaches it,
/// neighbouring points merge in pairs and later points cover twice as many seconds, so a
/// day-long run's report costs the memory of an hour's.
pub const MAX_POINTS: usize = 3600;

/// The report's points as they come in, each covering `per_point` intervals.
#[derive(Debug)]
pub(crate) struct Points {
    done: Vec<Point>,
    /// The point being filled, and how many intervals it holds so far.
    filling: Option<(Point, usize)>,
    per_point: usize,
}

impl Points {
    /// No points yet, one interval a point.
    pub fn new() -> Self {
        Points {
            done: Vec::new(),
            filling: None,
            per_point: 1,
        }
    }

    /// Adds the next interval.
    pub fn push(&mut self, interval: Point) {
        let (point, held) = match self.filling.take() {
            Some((mut point, held)) => {
                point.absorb(interval);
                (point, held + 1)
            }
            None => (interval, 1),
        };
        if held < self.per_point {
            self.filling = Some((point, held));
            return;
        }
        self.done.push(point);
        if self.done.len() >= MAX_POINTS {
            self.merge_pairs();
        }
    }

    fn merge_pairs(&mut self) {
        let mut merged = Vec::with_capacity(MAX_POINTS / 2 + 1);
        let mut points = std::mem::take(&mut self.done).into_iter();
        while let Some(mut first) = points.next() {
            if let Some(second) = points.next() {
                first.absorb(second);
            }
            merged.push(first);
        }
        self.done = merged;
        self.per_point *= 2;
    }

    /// All points, the one still filling (the run's last, maybe short) included.
    pub fn finish(mut self) -> Vec<Point> {
        self.done.extend(self.filling.map(|(point, _)| point));
        self.done
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn second(index: u64, count: u64, p99_us: u64) -> Point {
        Point {
            start: Duration::from_secs(index),
            length: Duration::from_secs(1),
            connected: index,
            sessions: 1,
            commands: vec![PointCommand {
                command: "echo".into(),
                count,
                errors: 0,
                p50_us: p99_us / 2,
                p99_us,
                max_us: p99_us,
            }],
        }
    }

    /// A run of any length keeps at most `MAX_POINTS` points, which together still cover every
    /// second, count every request, and show its worst latency where it happened.
    #[test]
    fn a_long_run_keeps_a_bounded_number_of_points_covering_it_all() {
        let seconds = 4 * MAX_POINTS as u64 + 3;
        let worst_at = 3 * MAX_POINTS as u64 + 17;
        let mut points = Points::new();
        for index in 0..seconds {
            let p99_us = if index == worst_at { 90_000 } else { 1_000 };
            points.push(second(index, 10, p99_us));
        }
        let points = points.finish();
        assert!(points.len() <= MAX_POINTS, "{} points", points.len());
        assert_eq!(
            points[0].length,
            Duration::from_secs(8),
            "merged on reaching the cap at 1, 2 and 4 hours"
        );
        let mut covered = Duration::ZERO;
        for point in &points {
            assert_eq!(point.start, covered, "no gap and no overlap");
            covered += point.length;
        }
        assert_eq!(covered, Duration::from_secs(seconds));
        let requests: u64 = points.iter().map(|point| point.commands[0].count).sum();
        assert_eq!(requests, 10 * seconds);
        let sessions: u64 = points.iter().map(|point| point.sessions).sum();
        assert_eq!(sessions, seconds);
        let worst = points
            .iter()
            .find(|point| point.commands[0].p99_us == 90_000)
            .expect("the worst second is kept");
        let worst_second = Duration::from_secs(worst_at);
        assert!(worst.start <= worst_second && worst_second < worst.start + worst.length);
        let last = points.last().expect("points");
        assert_eq!(
            last.connected,
            seconds - 1,
            "connected at the end of the span"
        );
        assert_eq!(
            last.length,
            Duration::from_secs(3),
            "the part span at the end"
        );
    }

    #[test]
    fn a_run_within_the_cap_keeps_one_point_a_second() {
        let mut points = Points::new();
        for index in 0..MAX_POINTS as u64 - 1 {
            points.push(second(index, 1, 1_000));
        }
        let points = points.finish();
        assert_eq!(points.len(), MAX_POINTS - 1);
        assert!(
            points
                .iter()
                .all(|point| point.length == Duration::from_secs(1))
        );
    }
}
