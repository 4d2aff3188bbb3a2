//! A client's mailbox: the messages the server sent on one connection, kept (the newest
//! `MAILBOX_LEN`) until a `wait_message` step takes the one it awaits.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::codec::Str;

/// Messages from the server not yet awaited, newest last; old ones fall off past this many.
const MAILBOX_LEN: usize = 256;

/// Server messages kept for `wait_message` steps.
#[derive(Default)]
pub struct Mailbox {
    messages: Mutex<VecDeque<(Str, Instant)>>,
    arrived: Notify,
}

impl Mailbox {
    /// Keeps a message with `command`, arrived now, and wakes the waits.
    pub fn put(&self, command: Str) {
        let mut messages = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        if messages.len() == MAILBOX_LEN {
            messages.pop_front();
        }
        messages.push_back((command, Instant::now()));
        drop(messages);
        self.arrived.notify_waiters();
    }

    fn take(&self, command: &str) -> Option<Instant> {
        let mut messages = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        let position = messages.iter().position(|(name, _)| name == command)?;
        messages.remove(position).map(|(_, at)| at)
    }

    /// When a message with `command` arrived (perhaps before the wait began), or none by `deadline`.
    pub async fn wait(&self, command: &str, deadline: Instant) -> Option<Instant> {
        loop {
            let arrived = self.arrived.notified();
            if let Some(at) = self.take(command) {
                return Some(at);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.take(command);
            }
        }
    }
}
