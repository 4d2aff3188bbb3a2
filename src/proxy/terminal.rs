//! Standard output on a thread of its own. The proxy's event lines and latency tables reach it
//! through a queue bounded in bytes, so that a terminal or pipe nobody reads (a paused `less`,
//! Ctrl-S) holds back neither the JSON log, the recording, nor shutdown: lines that find the
//! queue full are counted, and said to be missing once there is room again.

use std::io::{self, BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most bytes of text waiting for standard output.
const QUEUE_BYTES: usize = 1 << 20;
/// The most pieces of text waiting (each a line or a table).
const QUEUE_PIECES: usize = 4096;

/// The sending end: a queue to the printing thread.
pub struct Terminal {
    /// None once the printer has stopped (standard output failed or was closed).
    queue: Option<SyncSender<Vec<u8>>>,
    queued: Arc<AtomicUsize>,
    /// Pieces left out since the last note saying so.
    missed: u64,
    printer: Option<JoinHandle<Option<String>>>,
}

impl Terminal {
    /// Starts the thread printing to standard output.
    pub fn start() -> io::Result<Terminal> {
        Terminal::printing_to(io::stdout())
    }

    /// Starts the thread printing to `out`.
    fn printing_to(out: impl Write + Send + 'static) -> io::Result<Terminal> {
        let (queue, pieces) = sync_channel(QUEUE_PIECES);
        let queued = Arc::new(AtomicUsize::new(0));
        let printing = Arc::clone(&queued);
        let printer = std::thread::Builder::new()
            .name("proxy-stdout".into())
            .spawn(move || print(&pieces, &printing, out))?;
        Ok(Terminal {
            queue: Some(queue),
            queued,
            missed: 0,
            printer: Some(printer),
        })
    }

    /// Queues `text` (whole lines); leaves it out, counted, when the queue is full.
    pub fn print(&mut self, text: Vec<u8>) {
        if self.missed > 0 {
            let note = format!(
                "!! {} lines not shown: standard output was not being read\n",
                self.missed
            );
            if !self.offer(note.into_bytes()) {
                self.missed += 1;
                return;
            }
            self.missed = 0;
        }
        if !self.offer(text) {
            self.missed += 1;
        }
    }

    /// Sends `text` if the queue has room for it.
    fn offer(&mut self, text: Vec<u8>) -> bool {
        let Some(queue) = &self.queue else {
            return true;
        };
        let size = text.len();
        if self.queued.load(Ordering::Relaxed) + size > QUEUE_BYTES {
            return false;
        }
        self.queued.fetch_add(size, Ordering::Relaxed);
        match queue.try_send(text) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.queued.fetch_sub(size, Ordering::Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.queue = None;
                true
            }
        }
    }

    /// Lets the printer write what is queued, for at most `within`, and says why printing
    /// failed, if it did (a closed pipe is not a failure: `amf-bench proxy | head` is a choice).
    /// A printer still blocked after `within` is left behind: the process ends without it.
    pub fn finish(mut self, within: Duration) -> Option<String> {
        self.queue = None;
        match joined_within(self.printer.take()?, within) {
            Some(Ok(failure)) => failure,
            Some(Err(_)) => Some("standard output: the printer stopped unexpectedly".into()),
            None => Some("standard output: not being read; the last lines were not shown".into()),
        }
    }
}

/// Prints `text` on standard output from a thread of its own, waiting at most `within` for it:
/// a standard output nobody reads must not keep the process from ending. A write that fails is
/// an error; one still waiting after `within` is left behind, with a warning.
pub fn print_within(text: String, within: Duration) -> io::Result<()> {
    let printer = std::thread::Builder::new()
        .name("proxy-summary".into())
        .spawn(move || {
            let mut out = io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|()| out.flush())
        })?;
    match joined_within(printer, within) {
        Some(Ok(written)) => written,
        Some(Err(_)) => Err(io::Error::other(
            "the summary's printer stopped unexpectedly",
        )),
        None => {
            tracing::warn!("standard output is not being read: the summary was not shown");
            Ok(())
        }
    }
}

/// `thread`'s end (its result, or its panic), if it comes within `within`; else none, and the
/// thread is left to itself (std cannot join with a time-out).
fn joined_within<T>(thread: JoinHandle<T>, within: Duration) -> Option<std::thread::Result<T>> {
    let deadline = Instant::now() + within;
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Some(thread.join())
}

/// The printing thread: writes pieces as they come, flushing whenever the queue runs empty,
/// until the sender is gone or a write fails.
fn print(pieces: &Receiver<Vec<u8>>, queued: &AtomicUsize, out: impl Write) -> Option<String> {
    let mut out = BufWriter::new(out);
    let written = (|| -> io::Result<()> {
        loop {
            let piece = match pieces.try_recv() {
                Ok(piece) => piece,
                Err(TryRecvError::Disconnected) => return out.flush(),
                Err(TryRecvError::Empty) => {
                    out.flush()?;
                    match pieces.recv() {
                        Ok(piece) => piece,
                        Err(_) => return Ok(()),
                    }
                }
            };
            out.write_all(&piece)?;
            queued.fetch_sub(piece.len(), Ordering::Relaxed);
        }
    })();
    match written {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
            let failure = format!("standard output: {error}");
            tracing::warn!("{failure}: writing it stops here; the traffic goes on");
            Some(failure)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A standard output nobody reads: every write waits until `release` is dropped.
    struct Stalled {
        release: std::sync::mpsc::Receiver<()>,
        seen: Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let _ = self.release.recv();
            self.seen.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_costs_lines_never_the_caller() {
        let (release, waiting) = std::sync::mpsc::channel::<()>();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = Stalled {
            release: waiting,
            seen: Arc::clone(&seen),
        };
        let mut terminal = Terminal::printing_to(out).expect("starts");
        let line = vec![b'x'; 1023];
        // Far more than the queue holds; none of these calls may wait.
        for _ in 0..5_000 {
            terminal.print([&line[..], b"\n"].concat());
        }
        assert!(terminal.missed > 0, "the queue filled");
        let started = Instant::now();
        let failure = terminal.finish(Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            failure
                .as_deref()
                .is_some_and(|f| f.contains("not being read")),
            "{failure:?}"
        );
        drop(release);
    }

    #[test]
    fn after_a_stall_the_missing_lines_are_counted_out_loud() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (release, waiting) = std::sync::mpsc::channel::<()>();
        let mut terminal = Terminal::printing_to(Stalled {
            release: waiting,
            seen: Arc::clone(&seen),
        })
        .expect("starts");
        let big = vec![b'y'; QUEUE_BYTES / 2];
        terminal.print(big.clone());
        terminal.print(big.clone());
        terminal.print(big);
        terminal.print(b"dropped\n".to_vec());
        assert_eq!(terminal.missed, 2);
        // The output moves again: everything queued goes, then the note, then new lines.
        drop(release);
        while terminal.queued.load(Ordering::Relaxed) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        terminal.print(b"after\n".to_vec());
        assert_eq!(terminal.finish(Duration::from_secs(10)), None);
        let seen = seen.lock().expect("lock");
        let text = String::from_utf8_lossy(&seen);
        assert!(
            text.ends_with("!! 2 lines not shown: standard output was not being read\nafter\n"),
            "{}",
            &text[text.len().saturating_sub(200)..]
        );
    }
}
