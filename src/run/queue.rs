//! An open model's arrivals on their way to the clients: the schedule releases each arrival (its
//! intended start time) into a bounded multi-consumer queue once it is due, and clients with a
//! free lane take them. Releasing is done by whichever comes first: the run's clock thread
//! (clock.rs), which sleeps until the next is due, or a client of the busy runtime between two
//! sessions, so that a release never waits for the operating system to schedule the thread on a
//! busy core.

use std::sync::{Arc, Mutex, TryLockError};

use tokio::time::Instant;

use super::clock::GRANULE;
use super::metrics::Metrics;
use super::plan::Arrivals;

/// The arrival queue shared by the clock thread and the clients.
pub struct ArrivalQueue {
    /// The arrivals not yet released.
    schedule: Mutex<Schedule>,
    sender: async_channel::Sender<Instant>,
    receiver: async_channel::Receiver<Instant>,
    /// Counts arrivals dropped because the queue was full.
    metrics: Arc<Metrics>,
}

/// The rest of the schedule, and its next arrival.
struct Schedule {
    arrivals: Arrivals,
    next: Option<Instant>,
    start: Instant,
}

impl Schedule {
    fn advance(&mut self) {
        self.next = self.arrivals.next().map(|offset| self.start + offset);
    }
}

impl ArrivalQueue {
    /// The queue of `arrivals` (offsets from `start`), holding at most `capacity` unclaimed.
    pub fn new(
        arrivals: Arrivals,
        start: Instant,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> ArrivalQueue {
        let (sender, receiver) = async_channel::bounded(capacity);
        let mut schedule = Schedule {
            arrivals,
            next: None,
            start,
        };
        schedule.advance();
        ArrivalQueue {
            schedule: Mutex::new(schedule),
            sender,
            receiver,
            metrics,
        }
    }

    /// Releases every arrival due by now, in schedule order; a full queue drops (and counts)
    /// them. Returns when the next one is due, or none when the schedule is over (and then
    /// closes the queue: clients take what is left, then see the end).
    pub fn release(&self) -> Option<Instant> {
        let mut schedule = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        self.release_from(&mut schedule)
    }

    /// As `release`, but only when the clock thread is late (the next arrival has been due
    /// for a granule), and not when another release is under way: for clients, which must not
    /// wait here, and which leave the thread to release arrivals together when it is on time.
    pub fn try_release(&self) {
        let mut schedule = match self.schedule.try_lock() {
            Ok(schedule) => schedule,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        if schedule
            .next
            .is_some_and(|due| due + GRANULE <= Instant::from_std(std::time::Instant::now()))
        {
            self.release_from(&mut schedule);
        }
    }

    fn release_from(&self, schedule: &mut Schedule) -> Option<Instant> {
        // The operating system's clock, as the clock thread has no runtime to ask.
        let now = Instant::from_std(std::time::Instant::now());
        while let Some(due) = schedule.next.filter(|due| *due <= now) {
            if self.sender.try_send(due).is_err() {
                self.metrics.dropped();
            }
            schedule.advance();
        }
        if schedule.next.is_none() {
            self.sender.close();
        }
        schedule.next
    }

    /// The next released arrival; none once the schedule is over and the queue empty.
    pub async fn recv(&self) -> Option<Instant> {
        self.receiver.recv().await.ok()
    }

    /// Moves up to `most` released arrivals into `starts`, in release order.
    pub fn take(&self, most: usize, starts: &mut Vec<Instant>) {
        for _ in 0..most {
            match self.receiver.try_recv() {
                Ok(intended) => starts.push(intended),
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::run::scenario::{Spacing, Stage};

    fn queue(rate: f64, length: Duration, capacity: usize) -> (ArrivalQueue, Arc<Metrics>) {
        let stages = [Stage {
            from: rate,
            to: rate,
            length,
        }];
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let arrivals = Arrivals::new(&stages, Spacing::Even, length);
        // Started a second ago: every arrival of a short plan is due.
        let start = Instant::from_std(std::time::Instant::now()) - Duration::from_secs(1);
        let queue = ArrivalQueue::new(arrivals, start, capacity, Arc::clone(&metrics));
        (queue, metrics)
    }

    #[test]
    fn due_arrivals_are_released_once_in_order_and_taken_no_more_than_asked() {
        let (queue, metrics) = queue(1000.0, Duration::from_millis(10), 100);
        queue.try_release();
        assert_eq!(
            queue.release(),
            None,
            "all ten were due; the schedule is over"
        );
        let mut taken = Vec::new();
        let mut batch = Vec::new();
        for most in [3, 0, 4, 10, 5] {
            queue.take(most, &mut batch);
            assert!(batch.len() <= most);
            taken.append(&mut batch);
        }
        assert_eq!(taken.len(), 10);
        assert!(
            taken
                .windows(2)
                .all(|pair| pair[1] - pair[0] == Duration::from_millis(1)),
            "each keeps its own intended time, in order"
        );
        assert_eq!(metrics.snapshot().dropped, 0);
    }

    #[test]
    fn arrivals_beyond_the_queue_are_dropped_and_counted() {
        let (queue, metrics) = queue(1000.0, Duration::from_millis(10), 4);
        queue.release();
        let mut taken = Vec::new();
        queue.take(100, &mut taken);
        assert_eq!(taken.len(), 4);
        assert_eq!(metrics.snapshot().dropped, 6);
    }

    #[test]
    fn arrivals_not_yet_due_stay_in_the_schedule() {
        let stages = [Stage {
            from: 1.0,
            to: 1.0,
            length: Duration::from_secs(60),
        }];
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let start = Instant::from_std(std::time::Instant::now());
        let queue = ArrivalQueue::new(
            Arrivals::new(&stages, Spacing::Even, Duration::from_secs(60)),
            start,
            10,
            metrics,
        );
        let next = queue.release();
        assert_eq!(next, Some(start + Duration::from_secs(1)));
        let mut taken = Vec::new();
        queue.take(10, &mut taken);
        assert_eq!(taken, [start], "only the first, due at the start");
    }
}
