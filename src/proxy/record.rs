//! `--record FILE`: the session recording, JSON lines a replayer can read back. The format is
//! documented in the README ("Session recording"); its first line names it and its version.
//!
//! Every relayed byte that the tap kept is in it, as hex, with its time since the recording
//! started; frames above the decode cap are named with their length only (keeping them would
//! make the proxy's memory depend on the peer's frame sizes).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::time::Instant;

use serde_json::{Map, Value as Json, json};

use super::decode::{Content, EntryKind};
use super::format::rfc3339;
use super::log::{Event, What};
use super::tap::Framing;

/// The value of the first line's `format` member.
pub const FORMAT_NAME: &str = "amf-bench session";
/// The version of the format written.
pub const FORMAT_VERSION: u32 = 1;

/// Writes the recording.
pub struct Recorder {
    out: BufWriter<File>,
    started: Instant,
}

/// What the first line says about the session.
#[derive(Debug, Clone)]
pub struct Header {
    /// The proxy's framing mode.
    pub framing: Framing,
    /// The upstream, as given.
    pub upstream: String,
    /// The proxy's listening address.
    pub listen: String,
}

impl Recorder {
    /// Starts a recording in `out`, writing its header line; offsets count from now.
    pub fn start(mut out: BufWriter<File>, header: &Header) -> io::Result<Recorder> {
        let framing = match header.framing {
            Framing::AmfSocket => "amf-socket",
            Framing::Xmlsocket => "xmlsocket",
            Framing::Raw => "raw",
        };
        let first = json!({
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "started": rfc3339(std::time::SystemTime::now()),
            "framing": framing,
            "listen": header.listen,
            "upstream": header.upstream,
        });
        writeln!(out, "{first}")?;
        Ok(Recorder {
            out,
            started: Instant::now(),
        })
    }

    /// Records one event.
    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        let at = event.at.mono.saturating_duration_since(self.started);
        let mut line = Map::new();
        line.insert("at_us".into(), json!(at.as_micros() as u64));
        line.insert("conn".into(), json!(event.conn));
        match &event.what {
            What::Open {
                client,
                upstream,
                transport,
            } => open_fields(client, upstream, *transport, &mut line),
            What::Policy { action, .. } => {
                line.insert("event".into(), json!("policy"));
                line.insert("action".into(), json!(action));
            }
            What::Close { reason, .. } => {
                line.insert("event".into(), json!("close"));
                line.insert("reason".into(), json!(reason));
            }
            What::Frame(entry) => {
                let kind = entry.decoded.kind;
                line.insert("event".into(), json!(kind.name()));
                line.insert("dir".into(), json!(entry.dir.name()));
                line.insert("len".into(), json!(entry.decoded.len));
                match (&entry.raw, &entry.decoded.content) {
                    (Some(raw), _) => {
                        line.insert("hex".into(), json!(hex::encode(raw)));
                    }
                    (None, Content::Error { prefix, .. }) => {
                        line.insert("skipped".into(), json!(kind == EntryKind::Frame));
                        line.insert("prefix".into(), json!(hex::encode(prefix)));
                    }
                    (None, _) => {}
                }
            }
            What::Chunk { dir, bytes } => {
                line.insert("event".into(), json!("chunk"));
                line.insert("dir".into(), json!(dir.name()));
                line.insert("len".into(), json!(bytes.len()));
                line.insert("hex".into(), json!(hex::encode(bytes)));
            }
        }
        serde_json::to_writer(&mut self.out, &Json::Object(line))?;
        self.out.write_all(b"\n")
    }

    /// Notes that `count` events were dropped before `at` (the recording has a gap there).
    pub fn dropped(&mut self, count: u64, at: Instant) -> io::Result<()> {
        let at = at.saturating_duration_since(self.started).as_micros() as u64;
        writeln!(
            self.out,
            "{}",
            json!({ "at_us": at, "event": "dropped", "count": count })
        )
    }

    /// Flushes to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The members of an `open` event.
fn open_fields(
    client: &std::net::SocketAddr,
    upstream: &str,
    transport: super::Transport,
    line: &mut Map<String, Json>,
) {
    line.insert("event".into(), json!("open"));
    line.insert("client".into(), json!(client.to_string()));
    line.insert("upstream".into(), json!(upstream));
    line.insert("transport".into(), json!(transport.name()));
}
