//! One direction's observer: the relay shows it a copy of every chunk after writing it; the
//! observer taps frames out of it, decodes them, matches replies for latency and queues log
//! events. Nothing here can hold up or change the relayed bytes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use super::Shared;
use super::decode::{Content, decode};
use super::latency::Matcher;
use super::log::{Direction, Event, FrameEntry, Stamp, What};
use super::tap::{Framing, Tap, Tapped};
use crate::codec::ViewDecoder;

/// What the two directions of a connection share.
#[derive(Debug, Default)]
pub(super) struct ConnState {
    /// Requests awaiting replies, in either direction.
    pub(super) matcher: Mutex<Matcher>,
    /// The client asked for a policy that goes upstream: both directions are NUL-ended text.
    pub(super) policy_exchange: AtomicBool,
}

/// Taps, decodes and logs one direction.
pub(super) struct Observer<'c> {
    dir: Direction,
    conn: u64,
    shared: &'c Shared,
    state: &'c ConnState,
    tap: Tap,
    framing: Framing,
    /// Checks AMF3 payloads, its arena reused from frame to frame.
    decoder: ViewDecoder,
    tapped: Vec<Tapped>,
    /// Events of the chunk being observed, queued together at its end.
    pending: Vec<Event>,
    seq: u64,
    /// Whether `finish` ran: the direction's end is reported once.
    finished: bool,
    /// Bytes relayed this way.
    pub(super) bytes: u64,
}

impl<'c> Observer<'c> {
    pub(super) fn new(
        dir: Direction,
        conn: u64,
        shared: &'c Shared,
        state: &'c ConnState,
    ) -> Observer<'c> {
        let framing = shared.config.framing;
        Observer {
            dir,
            conn,
            shared,
            state,
            tap: Tap::new(framing, shared.config.limits),
            framing,
            decoder: ViewDecoder::new(shared.config.decode.clone()),
            tapped: Vec::new(),
            pending: Vec::new(),
            seq: 0,
            finished: false,
            bytes: 0,
        }
    }

    /// Looks at a chunk that was just relayed, read at `at`.
    pub(super) fn observe(&mut self, chunk: &[u8], at: Stamp) {
        if self.bytes == 0 && self.state.policy_exchange.load(Ordering::Relaxed) {
            self.framing = Framing::Xmlsocket;
            self.tap = Tap::new(self.framing, self.shared.config.limits);
        }
        self.bytes += chunk.len() as u64;
        if self.tap.is_lost() {
            if self.shared.recording {
                let bytes = Bytes::copy_from_slice(chunk);
                let what = What::Chunk {
                    dir: self.dir,
                    bytes,
                };
                self.send(at, what, false);
                self.flush();
            }
            return;
        }
        let mut tapped = std::mem::take(&mut self.tapped);
        self.tap.feed(chunk, &mut |item| tapped.push(item));
        for item in tapped.drain(..) {
            self.log(item, at);
        }
        self.tapped = tapped;
        self.flush();
    }

    /// The direction ended (closed, failed, or abandoned when the other failed or the proxy
    /// shut down): a frame left incomplete is logged, once.
    pub(super) fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let at = Stamp::now();
        let mut tapped = Vec::new();
        self.tap.finish(&mut |item| tapped.push(item));
        for item in tapped {
            self.log(item, at);
        }
        self.flush();
    }

    fn log(&mut self, tapped: Tapped, at: Stamp) {
        let config = &self.shared.config;
        let mut decoded = decode(&tapped, self.framing, &config.limits, &mut self.decoder);
        self.seq += 1;
        let mut latency = None;
        if let Content::Checked { rpc: Some(rpc), .. } = &mut decoded.content {
            let mut matcher = self.state.matcher.lock().unwrap_or_else(|p| p.into_inner());
            latency = matcher.observe(self.dir, rpc, at.mono, &self.shared.latency);
        }
        let rpc = match &decoded.content {
            Content::Checked { rpc, .. } => rpc.as_ref(),
            _ => None,
        };
        let logged = self.shared.logging && config.filter.shows_frame(self.conn, self.dir, rpc);
        if !logged && !self.shared.recording {
            return;
        }
        let raw = match tapped {
            Tapped::Frame(bytes) | Tapped::Lost { bytes, .. } if self.shared.recording => {
                Some(bytes)
            }
            _ => None,
        };
        let entry = FrameEntry {
            dir: self.dir,
            seq: self.seq,
            decoded,
            latency,
            raw,
        };
        self.send(at, What::Frame(Box::new(entry)), logged);
    }

    fn send(&mut self, at: Stamp, what: What, logged: bool) {
        self.pending.push(Event {
            at,
            conn: self.conn,
            what,
            logged,
        });
    }

    /// Queues the events of the chunk just observed, as one batch.
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.shared.log.send_all(std::mem::take(&mut self.pending));
        }
    }
}
