//! How events look: one JSON object per line for the log file (schema in the README), and one
//! readable line per event for the terminal.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::SystemTime;

use super::decode::{Content, Decoded, Rpc};
use super::log::{Direction, Event, FrameEntry, What};
use crate::codec::display::{compact, printable};
use crate::codec::json::{Sink, write_canonical_json};
use crate::codec::{Format, Limits, Value};

/// Characters of a value shown on a terminal line.
const TERMINAL_VALUE_CHARS: usize = 160;

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-21T10:02:03.123456Z`.
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

/// Appends `event` to `line` as one JSON line, `\n` included (nothing for a chunk, which is
/// only recorded). Written member by member straight into the text: no tree is built.
pub fn json_line(event: &Event, line: &mut String) {
    if matches!(event.what, What::Chunk { .. }) {
        return;
    }
    let mut members = Members::open(line);
    members.time("t", event.at.wall);
    members.uint("conn", event.conn);
    match &event.what {
        What::Open {
            client,
            upstream,
            transport,
        } => {
            members.str("event", "open");
            members.str("client", &client.to_string());
            members.str("upstream", upstream);
            members.str("transport", transport.name());
        }
        What::Policy {
            client,
            action,
            error,
        } => {
            members.str("event", "policy");
            members.str("client", &client.to_string());
            members.str("action", action);
            if let Some(error) = error {
                members.str("error", error);
            }
        }
        What::Close {
            reason,
            c2s,
            s2c,
            transport,
        } => {
            members.str("event", "close");
            members.str("transport", transport.name());
            members.str("reason", reason);
            members.uint("c2s_bytes", *c2s);
            members.uint("s2c_bytes", *s2c);
        }
        What::Frame(entry) => frame_members(entry, &mut members),
        What::Chunk { .. } => {}
    }
    members.close();
    line.push('\n');
}

/// A JSON object being written into a line, one member at a time.
struct Members<'o> {
    out: &'o mut String,
    first: bool,
}

impl<'o> Members<'o> {
    fn open(out: &'o mut String) -> Members<'o> {
        out.open_object();
        Members { out, first: true }
    }

    /// Starts a member: its name; its value comes next.
    fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.comma();
        }
        self.first = false;
        self.out.key(key);
        self.out
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key).str(value);
    }

    fn uint(&mut self, key: &str, value: u64) {
        self.key(key).uint(value);
    }

    fn hex(&mut self, key: &str, bytes: &[u8]) {
        self.key(key).hex(bytes);
    }

    /// An RFC 3339 time, as `rfc3339` writes it.
    fn time(&mut self, key: &str, at: SystemTime) {
        let out = self.key(key);
        out.push('"');
        // Writing into a `String` cannot fail.
        let _ = write!(out, "{}", humantime::format_rfc3339_micros(at));
        out.push('"');
    }

    fn close(self) {
        self.out.close_object();
    }
}

fn frame_members(entry: &FrameEntry, members: &mut Members<'_>) {
    let Decoded { kind, len, content } = &entry.decoded;
    members.str("event", kind.name());
    members.str("dir", entry.dir.name());
    members.uint("seq", entry.seq);
    members.uint("len", *len as u64);
    match content {
        Content::Amf {
            value,
            rpc,
            payload,
            limits,
        } => {
            rpc_and_latency(rpc.as_ref(), entry, members);
            value_member(value, payload, limits, members);
        }
        // Only when rendered before the log's writer decoded it: its first bytes stand in.
        Content::Checked { payload, rpc } => {
            rpc_and_latency(rpc.as_ref(), entry, members);
            members.hex("hex", hex_prefix(Some(payload)));
        }
        Content::Text(text) => members.str("value", text),
        Content::Bytes(bytes) => members.hex("hex", bytes),
        Content::Error { error, prefix } => {
            members.str("error", error);
            members.hex("hex", prefix);
        }
    }
}

fn rpc_and_latency(rpc: Option<&Rpc>, entry: &FrameEntry, members: &mut Members<'_>) {
    if let Some(rpc) = rpc {
        rpc_member(rpc, members);
    }
    if let Some(latency) = entry.latency {
        members.uint("latency_us", latency.as_micros() as u64);
    }
}

fn rpc_member(rpc: &Rpc, members: &mut Members<'_>) {
    let out = members.key("rpc");
    out.open_object();
    out.key("type");
    out.str(rpc.type_name);
    out.comma();
    out.key("command");
    match rpc.command.as_deref() {
        Some(command) => out.str(command),
        None => out.null(),
    }
    out.comma();
    out.key("messageId");
    out.str(&rpc.message_id);
    out.close_object();
}

/// `"value"`: the canonical JSON, or, when it cannot be rendered, why and the frame's first bytes.
fn value_member(value: &Value, payload: &[u8], limits: &Limits, members: &mut Members<'_>) {
    let mark = members.out.len();
    let out = members.key("value");
    if let Err(why) = write_canonical_json(value, Format::Amf3, limits, out) {
        members.out.truncate(mark);
        members.str("error", &format!("cannot render the value: {why}"));
        members.hex("hex", hex_prefix(Some(payload)));
    }
}

fn hex_prefix(raw: Option<&[u8]>) -> &[u8] {
    let raw = raw.unwrap_or_default();
    &raw[..raw.len().min(super::tap::PREFIX_LEN)]
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
            "{clock} #{conn} close{} ({}), {c2s} B up, {s2c} B down",
            transport.label(),
            printable(reason)
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
    let (rpc, value) = match &entry.decoded.content {
        Content::Amf {
            value, rpc, limits, ..
        } => (
            rpc,
            compact(value, Format::Amf3, limits, TERMINAL_VALUE_CHARS),
        ),
        Content::Checked { payload, rpc } => (rpc, hex::encode(hex_prefix(Some(payload)))),
        Content::Text(text) => {
            let shown: String = text.chars().take(TERMINAL_VALUE_CHARS).collect();
            return format!("{shown:?}");
        }
        Content::Bytes(bytes) => return hex::encode(hex_prefix(Some(bytes))),
        Content::Error { error, prefix } => {
            return format!("!! {error} [{}]", hex::encode(prefix));
        }
    };
    let Some(rpc) = rpc else {
        return value;
    };
    let command = printable(rpc.command.as_deref().unwrap_or("?"));
    let latency = entry
        .latency
        .map(|took| format!(" in {:.3} ms", took.as_secs_f64() * 1000.0))
        .unwrap_or_default();
    format!(
        "{} {command} id {}{latency} {value}",
        rpc.type_name,
        printable(&rpc.message_id)
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, UNIX_EPOCH};

    use bytes::Bytes;
    use serde_json::json;

    use super::*;
    use crate::codec::Str;
    use crate::proxy::Transport;
    use crate::proxy::decode::EntryKind;
    use crate::proxy::log::Stamp;

    fn event(what: What) -> Event {
        Event {
            at: Stamp {
                wall: UNIX_EPOCH + Duration::from_micros(1_795_000_000_123_456),
                mono: Instant::now(),
            },
            conn: 3,
            what,
            logged: true,
        }
    }

    fn frame(content: Content, latency: Option<Duration>) -> What {
        What::Frame(Box::new(FrameEntry {
            dir: Direction::ServerToClient,
            seq: 9,
            decoded: Decoded {
                kind: EntryKind::Frame,
                len: 112,
                content,
            },
            latency,
            raw: None,
        }))
    }

    fn line(what: What) -> String {
        let mut line = String::new();
        json_line(&event(what), &mut line);
        line
    }

    const T: &str = "2026-11-18T11:06:40.123456Z";

    /// Each line is byte for byte what serializing the README's schema with `serde_json` gives:
    /// members in this order, escaped the same way.
    #[test]
    fn lines_are_the_schema_in_order() {
        let client = "127.0.0.1:5".parse().expect("an address");
        let open = What::Open {
            client,
            upstream: "up \"quoted\"\n".into(),
            transport: Transport::WebSocket,
        };
        let expected = json!({"t": T, "conn": 3, "event": "open", "client": "127.0.0.1:5", "upstream": "up \"quoted\"\n", "transport": "websocket"});
        assert_eq!(line(open), format!("{expected}\n"));
        let policy = What::Policy {
            client,
            action: "failed",
            error: Some("no\tway".into()),
        };
        let expected = json!({"t": T, "conn": 3, "event": "policy", "client": "127.0.0.1:5", "action": "failed", "error": "no\tway"});
        assert_eq!(line(policy), format!("{expected}\n"));
        let close = What::Close {
            reason: "closed by both sides".into(),
            c2s: 10,
            s2c: u64::MAX,
            transport: Transport::Tcp,
        };
        let expected = json!({"t": T, "conn": 3, "event": "close", "transport": "tcp", "reason": "closed by both sides", "c2s_bytes": 10, "s2c_bytes": u64::MAX});
        assert_eq!(line(close), format!("{expected}\n"));
    }

    #[test]
    fn frame_lines_are_the_schema_in_order() {
        let rpc = Rpc {
            type_name: "rpcResponse",
            command: None,
            message_id: Str::from("1:2:3"),
        };
        let value = Value::object(vec![("a\u{1}".into(), Value::Double(0.5))]);
        let amf = Content::Amf {
            value,
            rpc: Some(rpc),
            payload: Bytes::new(),
            limits: Limits::default(),
        };
        let expected = json!({"t": T, "conn": 3, "event": "frame", "dir": "s2c", "seq": 9, "len": 112,
            "rpc": {"type": "rpcResponse", "command": null, "messageId": "1:2:3"},
            "latency_us": 1500, "value": {"$class": "", "a\u{1}": {"$f": 0.5f64.to_bits()}}});
        let latency = Some(Duration::from_micros(1500));
        assert_eq!(line(frame(amf, latency)), format!("{expected}\n"));
        let text = frame(Content::Text("<a/>".into()), None);
        let expected = json!({"t": T, "conn": 3, "event": "frame", "dir": "s2c", "seq": 9, "len": 112, "value": "<a/>"});
        assert_eq!(line(text), format!("{expected}\n"));
        let error = Content::Error {
            error: "bad".into(),
            prefix: Bytes::from_static(&[0, 0xAB]),
        };
        let expected = json!({"t": T, "conn": 3, "event": "frame", "dir": "s2c", "seq": 9, "len": 112, "error": "bad", "hex": "00ab"});
        assert_eq!(line(frame(error, None)), format!("{expected}\n"));
        let chunk = What::Chunk {
            dir: Direction::ClientToServer,
            bytes: Bytes::from_static(b"x"),
        };
        assert_eq!(line(chunk), "");
    }

    #[test]
    fn a_payload_not_decoded_yet_shows_its_envelope_and_first_bytes() {
        let rpc = Rpc {
            type_name: "rpcRequest",
            command: Some(Str::from("echo")),
            message_id: Str::from("m-1"),
        };
        let checked = Content::Checked {
            payload: Bytes::from_static(&[0x0a, 0x0b, 0x01]),
            rpc: Some(rpc),
        };
        let expected = json!({"t": T, "conn": 3, "event": "frame", "dir": "s2c", "seq": 9, "len": 112,
            "rpc": {"type": "rpcRequest", "command": "echo", "messageId": "m-1"}, "hex": "0a0b01"});
        assert_eq!(line(frame(checked.clone(), None)), format!("{expected}\n"));
        let mut terminal = Vec::new();
        terminal_line(&event(frame(checked, None)), &mut terminal).expect("writes");
        let terminal = String::from_utf8(terminal).expect("UTF-8");
        assert!(
            terminal.ends_with("<- 112 B rpcRequest echo id m-1 0a0b01\n"),
            "{terminal}"
        );
    }

    #[test]
    fn a_peer_s_names_reach_the_terminal_escaped() {
        let rpc = Rpc {
            type_name: "rpcRequest",
            command: Some(Str::from("evil\n01:00:00.000000 #9 FAKE\u{1b}[31m")),
            message_id: Str::from("id\r\u{7}"),
        };
        let value = Value::object(vec![(Str::from("k\u{1b}[2J"), Value::Integer(1))]);
        let amf = Content::Amf {
            value,
            rpc: Some(rpc),
            payload: Bytes::new(),
            limits: Limits::default(),
        };
        let mut terminal = Vec::new();
        terminal_line(&event(frame(amf, None)), &mut terminal).expect("writes");
        let terminal = String::from_utf8(terminal).expect("UTF-8");
        assert_eq!(terminal.lines().count(), 1, "{terminal:?}");
        assert!(
            !terminal.contains(['\u{1b}', '\r', '\u{7}']),
            "{terminal:?}"
        );
        assert!(
            terminal.contains(
                r#"rpcRequest "evil\n01:00:00.000000 #9 FAKE\u{1b}[31m" id "id\r\u{7}" {"k\u{1b}[2J": 1}"#
            ),
            "{terminal}"
        );
    }

    #[test]
    fn a_value_that_cannot_be_rendered_gives_the_error_instead() {
        let amf = Content::Amf {
            value: Value::array(vec![Value::Reference(5)]),
            rpc: None,
            payload: Bytes::from_static(&[0x09, 0x03, 0x01, 0x0a, 0x0a]),
            limits: Limits::default(),
        };
        let expected = json!({"t": T, "conn": 3, "event": "frame", "dir": "s2c", "seq": 9, "len": 112,
            "error": "cannot render the value: reference 5 is out of range: the object table holds 1", "hex": "0903010a0a"});
        assert_eq!(line(frame(amf, None)), format!("{expected}\n"));
    }

    /// The value is rendered within the limits it was decoded within (`--max-depth`), not the
    /// default ones.
    #[test]
    fn rendering_keeps_to_the_decoding_limits() {
        let nested = |limit| Content::Amf {
            value: Value::array(vec![Value::array(vec![Value::array(vec![])])]),
            rpc: None,
            payload: Bytes::from_static(&[0x09]),
            limits: Limits {
                max_depth: limit,
                ..Limits::default()
            },
        };
        assert!(line(frame(nested(3), None)).contains(r#""value":[[[]]]"#));
        let refused = line(frame(nested(2), None));
        assert!(
            refused.contains(r#""error":"cannot render the value: "#),
            "{refused}"
        );
    }
}
