//! The run's clock: one thread that releases the open model's arrivals as they fall due and
//! wakes the clients whose think time has ended, on the operating system's timer rather than
//! tokio's. tokio rounds every deadline up to the next millisecond, which would add up to that to
//! every arrival's lag and every step after a think time (and so to their latency, measured from
//! the time they were due). One thread for both means one wake-up of the busy runtime serves
//! both. A client first waits on tokio's timer until shortly before its deadline, so the thread
//! only holds the deadlines of the next few milliseconds.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Poll, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::queue::ArrivalQueue;

/// How early a client hands its deadline from tokio's timer to the clock thread: more than
/// tokio's rounding (one millisecond), with room for a busy runtime.
const HAND_OVER_LEAD: Duration = Duration::from_millis(2);

/// The thread's shortest sleep: arrivals and deadlines closer together than this are released
/// and woken together, so that at high rates the thread (and the runtime it wakes) is not woken
/// for every one, and the requests of the arrivals a connection takes together leave in one
/// write. This is the most a release or wake-up is late by design.
pub const GRANULE: Duration = Duration::from_micros(200);

/// The thread's longest sleep between looks at whether the run is still going.
const WATCH: Duration = Duration::from_millis(20);

/// A handle on the clock thread; the thread ends once every handle is dropped.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    thread: Thread,
}

struct State {
    /// Deadlines still to wake, earliest first.
    due: BinaryHeap<Alarm>,
    /// When the thread will next look at `due` unless woken.
    sleeping_until: Instant,
}

/// One deadline and the task to wake at it.
struct Alarm {
    at: Instant,
    waker: Waker,
}

// Ordered so that `BinaryHeap`, a max-heap, keeps the earliest deadline on top.
impl Ord for Alarm {
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at)
    }
}

impl PartialOrd for Alarm {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Alarm {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Alarm {}

impl Clock {
    /// Starts the clock thread, releasing `arrivals` (an open model's) until their schedule is
    /// over or `stop` is cancelled.
    pub fn start(
        arrivals: Option<Arc<ArrivalQueue>>,
        stop: CancellationToken,
    ) -> anyhow::Result<Clock> {
        let (handle_sender, handle_receiver) = std::sync::mpsc::sync_channel::<Weak<Inner>>(1);
        let thread = std::thread::Builder::new()
            .name("clock".into())
            .spawn(move || {
                if let Ok(inner) = handle_receiver.recv() {
                    run(&inner, arrivals, &stop);
                }
            })
            .context("cannot start the run's clock thread")?;
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                due: BinaryHeap::new(),
                sleeping_until: Instant::now(),
            }),
            thread: thread.thread().clone(),
        });
        handle_sender
            .send(Arc::downgrade(&inner))
            .context("the run's clock thread ended at once")?;
        Ok(Clock { inner })
    }

    /// Returns at `deadline`, a granule late at most when the runtime is not busy.
    pub async fn sleep_until(&self, deadline: tokio::time::Instant) {
        let hand_over = deadline.checked_sub(HAND_OVER_LEAD).unwrap_or(deadline);
        if hand_over > tokio::time::Instant::now() {
            tokio::time::sleep_until(hand_over).await;
        }
        let deadline = deadline.into_std();
        let mut registered: Option<Waker> = None;
        poll_fn(|cx| {
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            if !registered
                .as_ref()
                .is_some_and(|waker| waker.will_wake(cx.waker()))
            {
                self.inner.register(deadline, cx.waker().clone());
                registered = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
    }
}

impl Inner {
    fn register(&self, at: Instant, waker: Waker) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.due.push(Alarm { at, waker });
        // A deadline due before the thread's next look (by more than a granule) wakes it now.
        let early = at + GRANULE < state.sleeping_until;
        drop(state);
        if early {
            self.thread.unpark();
        }
    }

    /// Wakes the tasks whose deadline has passed; returns how long to sleep, `longest` at most.
    fn wake_due(&self, woken: &mut Vec<Waker>, longest: Duration) -> Duration {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.due.peek().is_some_and(|alarm| alarm.at <= now) {
            if let Some(alarm) = state.due.pop() {
                woken.push(alarm.waker);
            }
        }
        let sleep = state
            .due
            .peek()
            .map_or(longest, |alarm| until(alarm.at, now).min(longest));
        state.sleeping_until = now + sleep;
        drop(state);
        for waker in woken.drain(..) {
            waker.wake();
        }
        sleep
    }
}

/// How long the thread sleeps for something due `at`: a granule at least, `WATCH` at most.
fn until(at: Instant, now: Instant) -> Duration {
    at.saturating_duration_since(now).clamp(GRANULE, WATCH)
}

/// The clock thread: releases arrivals (until their schedule is over or `stop` is cancelled)
/// and wakes due tasks, until the last handle is gone.
fn run(inner: &Weak<Inner>, mut arrivals: Option<Arc<ArrivalQueue>>, stop: &CancellationToken) {
    let mut woken = Vec::new();
    loop {
        let mut next_arrival = None;
        if let Some(queue) = arrivals.as_ref().filter(|_| !stop.is_cancelled()) {
            next_arrival = queue.release();
        }
        if next_arrival.is_none() {
            arrivals = None;
        }
        let longest = next_arrival.map_or(WATCH, |at| until(at.into_std(), Instant::now()));
        let sleep = match inner.upgrade() {
            Some(inner) => inner.wake_due(&mut woken, longest),
            None => return,
        };
        std::thread::park_timeout(sleep);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
    use std::task::Wake;

    use super::*;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, AtomicOrdering::SeqCst);
        }
    }

    #[test]
    fn due_alarms_are_woken_and_the_thread_sleeps_until_the_next() {
        let clock = Clock::start(None, CancellationToken::new()).expect("starts");
        let now = Instant::now();
        let (past, later) = (Arc::new(Count::default()), Arc::new(Count::default()));
        clock.inner.register(
            now - Duration::from_millis(1),
            Waker::from(Arc::clone(&past)),
        );
        clock.inner.register(
            now + Duration::from_secs(5),
            Waker::from(Arc::clone(&later)),
        );
        // The thread may have looked already; either way the past one is woken exactly once.
        let sleep = clock.inner.wake_due(&mut Vec::new(), WATCH);
        assert_eq!(past.0.load(AtomicOrdering::SeqCst), 1);
        assert_eq!(later.0.load(AtomicOrdering::SeqCst), 0);
        assert_eq!(
            sleep, WATCH,
            "five seconds away: the thread looks again within WATCH"
        );
        clock.inner.register(
            Instant::now() + Duration::from_millis(7),
            Waker::from(Arc::clone(&later)),
        );
        let sleep = clock.inner.wake_due(&mut Vec::new(), WATCH);
        assert!(
            sleep > GRANULE && sleep <= Duration::from_millis(7),
            "until the next deadline: {sleep:?}"
        );
        // Closer than a granule: the thread sleeps a granule, unless it is due already (then
        // it has been woken).
        let soon = Arc::new(Count::default());
        let due_soon = Instant::now() + Duration::from_micros(100);
        clock
            .inner
            .register(due_soon, Waker::from(Arc::clone(&soon)));
        let sleep = clock.inner.wake_due(&mut Vec::new(), WATCH);
        assert!(
            sleep == GRANULE || soon.0.load(AtomicOrdering::SeqCst) == 1,
            "{sleep:?}"
        );
    }

    #[tokio::test]
    async fn sleeps_end_at_or_after_their_deadlines_in_any_order() {
        let clock = Clock::start(None, CancellationToken::new()).expect("starts");
        let start = tokio::time::Instant::now();
        let mut sleeps = tokio::task::JoinSet::new();
        for offset_us in [4_000, 150, 3_000, 0, 2_500, 10_000] {
            let clock = clock.clone();
            let deadline = start + Duration::from_micros(offset_us);
            sleeps.spawn(async move {
                clock.sleep_until(deadline).await;
                tokio::time::Instant::now() >= deadline
            });
        }
        let mut ended = 0;
        let bound = Duration::from_secs(10);
        while let Ok(Some(on_time)) = tokio::time::timeout(bound, sleeps.join_next()).await {
            assert_eq!(on_time.ok(), Some(true), "none ends early");
            ended += 1;
        }
        assert_eq!(ended, 6, "every sleep ends");
    }

    #[test]
    fn the_thread_holds_no_handle_of_its_own() {
        let clock = Clock::start(None, CancellationToken::new()).expect("starts");
        let weak = Arc::downgrade(&clock.inner);
        drop(clock);
        assert!(
            weak.upgrade().is_none(),
            "so it ends with the run's last one"
        );
    }
}
