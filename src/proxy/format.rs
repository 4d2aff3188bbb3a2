//! How events look: one JSON object per line for the log file (schema in the README), and one
//! readable line per event for the terminal.

use std::io::{self, Write};
use std::time::SystemTime;

use serde_json::{Map, Value as Json, json};

use super::Transport;
use super::decode::{Content, Decoded};
use super::log::{Direction, Event, FrameEntry, What};
use crate::codec::display::compact;
use crate::codec::json::to_canonical_json;
use crate::codec::{Format, Limits};

/// Characters of a value shown on a terminal line.
const TERMINAL_VALUE_CHARS: usize = 160;

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-21T10:02:03.123456Z`.
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

/// Writes `event` as one JSON line.
pub fn json_line(event: &Event, out: &mut impl Write) -> io::Result<()> {
    let mut line = Map::new();
    line.insert("t".into(), json!(rfc3339(event.at.wall)));
    line.insert("conn".into(), json!(event.conn));
    match &event.what {
        What::Open {
            client,
            upstream,
            transport,
        } => open_fields(client, upstream, *transport, &mut line),
        What::Policy {
            client,
            action,
            error,
        } => {
            line.insert("event".into(), json!("policy"));
            line.insert("client".into(), json!(client.to_string()));
            line.insert("action".into(), json!(action));
            if let Some(error) = error {
                line.insert("error".into(), json!(error));
            }
        }
        What::Close {
            reason,
            c2s,
            s2c,
            transport,
        } => {
            line.insert("event".into(), json!("close"));
            line.insert("transport".into(), json!(transport.name()));
            line.insert("reason".into(), json!(reason));
            line.insert("c2s_bytes".into(), json!(c2s));
            line.insert("s2c_bytes".into(), json!(s2c));
        }
        What::Frame(entry) => frame_fields(entry, &mut line),
        What::Chunk { .. } => return Ok(()),
    }
    serde_json::to_writer(&mut *out, &Json::Object(line))?;
    out.write_all(b"\n")
}

/// The members of an `open` event, in the log and the recording alike.
pub(super) fn open_fields(
    client: &std::net::SocketAddr,
    upstream: &str,
    transport: Transport,
    line: &mut Map<String, Json>,
) {
    line.insert("event".into(), json!("open"));
    line.insert("client".into(), json!(client.to_string()));
    line.insert("upstream".into(), json!(upstream));
    line.insert("transport".into(), json!(transport.name()));
}

fn frame_fields(entry: &FrameEntry, line: &mut Map<String, Json>) {
    let Decoded { kind, len, content } = &entry.decoded;
    line.insert("event".into(), json!(kind.name()));
    line.insert("dir".into(), json!(entry.dir.name()));
    line.insert("seq".into(), json!(entry.seq));
    line.insert("len".into(), json!(len));
    match content {
        Content::Amf { value, rpc } => {
            if let Some(rpc) = rpc {
                line.insert(
                    "rpc".into(),
                    json!({ "type": rpc.type_name, "command": rpc.command.as_deref(), "messageId": &*rpc.message_id }),
                );
            }
            if let Some(latency) = entry.latency {
                line.insert("latency_us".into(), json!(latency.as_micros() as u64));
            }
            match to_canonical_json(value, Format::Amf3, &Limits::default()) {
                Ok(value) => {
                    line.insert("value".into(), value);
                }
                Err(why) => {
                    line.insert(
                        "error".into(),
                        json!(format!("cannot render the value: {why}")),
                    );
                    line.insert("hex".into(), json!(hex_prefix(entry.raw.as_deref())));
                }
            }
        }
        Content::Text(text) => {
            line.insert("value".into(), json!(text));
        }
        Content::Bytes(bytes) => {
            line.insert("hex".into(), json!(hex::encode(bytes)));
        }
        Content::Error { error, prefix } => {
            line.insert("error".into(), json!(error));
            line.insert("hex".into(), json!(hex::encode(prefix)));
        }
    }
}

fn hex_prefix(raw: Option<&[u8]>) -> String {
    let raw = raw.unwrap_or_default();
    hex::encode(&raw[..raw.len().min(super::tap::PREFIX_LEN)])
}

/// Writes `event` as one readable line: time, connection, direction arrow, size, RPC kind,
/// command and a compact rendering of the value.
pub fn terminal_line(event: &Event, out: &mut impl Write) -> io::Result<()> {
    let time = rfc3339(event.at.wall);
    let clock = time.get(11..26).unwrap_or(&time);
    let conn = event.conn;
    match &event.what {
        What::Open {
            client,
            upstream,
            transport,
        } => {
            let via = transport.label();
            writeln!(out, "{clock} #{conn} open {client}{via} => {upstream}")
        }
        What::Policy {
            client,
            action,
            error,
        } => {
            let error = error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            writeln!(
                out,
                "{clock} #{conn} policy request from {client}: {action}{error}"
            )
        }
        What::Close {
            reason,
            c2s,
            s2c,
            transport,
        } => writeln!(
            out,
            "{clock} #{conn} close{} ({reason}), {c2s} B up, {s2c} B down",
            transport.label()
        ),
        What::Frame(entry) => {
            let arrow = match entry.dir {
                Direction::ClientToServer => "->",
                Direction::ServerToClient => "<-",
            };
            let len = entry.decoded.len;
            let summary = summary(entry);
            writeln!(out, "{clock} #{conn} {arrow} {len} B {summary}")
        }
        What::Chunk { .. } => Ok(()),
    }
}

fn summary(entry: &FrameEntry) -> String {
    match &entry.decoded.content {
        Content::Amf { value, rpc } => {
            let value = compact(
                value,
                Format::Amf3,
                &Limits::default(),
                TERMINAL_VALUE_CHARS,
            );
            let Some(rpc) = rpc else {
                return value;
            };
            let command = rpc.command.as_deref().unwrap_or("?");
            let latency = entry
                .latency
                .map(|took| format!(" in {:.3} ms", took.as_secs_f64() * 1000.0))
                .unwrap_or_default();
            format!(
                "{} {command} id {}{latency} {value}",
                rpc.type_name, rpc.message_id
            )
        }
        Content::Text(text) => {
            let shown: String = text.chars().take(TERMINAL_VALUE_CHARS).collect();
            format!("{shown:?}")
        }
        Content::Bytes(bytes) => hex_prefix(Some(bytes)),
        Content::Error { error, prefix } => format!("!! {error} [{}]", hex::encode(prefix)),
    }
}
