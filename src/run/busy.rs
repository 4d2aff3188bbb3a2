//! How busy the generator's own runtime was during a run: a generator that is never idle adds
//! its own queueing to every latency it measures, so the run says so rather than blame the
//! server.

use std::time::{Duration, Instant};

use tokio::runtime::Handle;

/// At or above this share of its workers' time busy, the generator is taken to be saturated.
pub const SATURATED: f64 = 0.9;

/// The runtime's worker time busy so far, read at the start of a run.
pub struct BusyClock {
    /// Real time, as the runtime counts busy time (a paused test clock would not).
    started: Instant,
    busy_at_start: Duration,
}

impl BusyClock {
    /// Starts counting on the current runtime.
    pub fn start() -> BusyClock {
        let (_, busy_at_start) = workers_busy();
        BusyClock {
            started: Instant::now(),
            busy_at_start,
        }
    }

    /// The workers' share of time busy since `start`, 0 to 1, and how many workers there are.
    /// A worker adds its busy time to the runtime's count when it parks or every few dozen tasks,
    /// so a read during a run misses at most that last stretch.
    pub fn read(&self) -> (f64, usize) {
        let (workers, busy) = workers_busy();
        let busy = busy.saturating_sub(self.busy_at_start);
        (busy_share(busy, self.started.elapsed(), workers), workers)
    }
}

/// The number of workers of the current runtime and the time they have been busy in all.
fn workers_busy() -> (usize, Duration) {
    let metrics = Handle::current().metrics();
    let workers = metrics.num_workers();
    let busy = (0..workers)
        .map(|worker| metrics.worker_total_busy_duration(worker))
        .sum();
    (workers, busy)
}

/// `busy` as a share of `workers` workers' time over `elapsed`, clamped to 0 to 1 (the
/// runtime's counters and the clock are read at slightly different moments).
fn busy_share(busy: Duration, elapsed: Duration, workers: usize) -> f64 {
    let available = elapsed.as_secs_f64() * workers as f64;
    if available <= 0.0 {
        return 0.0;
    }
    (busy.as_secs_f64() / available).clamp(0.0, 1.0)
}

/// The warning for a run whose generator was `busy` (a share) of its time with `workers`
/// workers, or `None` when it had time to spare; `embedded` when the server ran on the same
/// workers.
pub fn warning(busy: f64, workers: usize, embedded: bool) -> Option<String> {
    if busy < SATURATED {
        return None;
    }
    let shared = if embedded {
        ", shared with the embedded server,"
    } else {
        ""
    };
    Some(format!(
        "the generator's {workers} worker thread(s){shared} were busy {:.0}% of the run: its own \
         queueing is part of the latencies measured; give it more cores (--threads), fewer \
         connections or a lower rate",
        busy * 100.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_busy_time_over_the_workers_time() {
        let second = Duration::from_secs(1);
        assert_eq!(busy_share(second, 2 * second, 1), 0.5);
        assert_eq!(busy_share(second, 2 * second, 2), 0.25);
        assert_eq!(busy_share(3 * second, second, 2), 1.0);
        assert_eq!(busy_share(second, Duration::ZERO, 2), 0.0);
    }

    #[test]
    fn only_a_saturated_generator_is_warned_about() {
        assert_eq!(warning(0.89, 1, false), None);
        let text = warning(0.97, 2, true).expect("a warning at 97%");
        assert!(text.contains("busy 97%"), "{text}");
        assert!(
            text.contains("2 worker thread(s), shared with the embedded server"),
            "{text}"
        );
        let text = warning(SATURATED, 1, false).expect("a warning at the threshold");
        assert!(!text.contains("embedded"), "{text}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_spinning_for_the_whole_span_reads_as_busy() {
        let clock = BusyClock::start();
        let spin = tokio::spawn(async {
            let until = Instant::now() + Duration::from_millis(500);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        });
        spin.await.expect("the spinning task");
        // A worker reports its busy time when it parks: let it go idle first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (busy, workers) = clock.read();
        assert_eq!(workers, 2);
        // One of two workers spun the whole time: about half, whatever the other did (a slow
        // wake-up of this test's thread after the spin lowers the share a little).
        assert!((0.3..=1.0).contains(&busy), "busy {busy}");
    }
}
