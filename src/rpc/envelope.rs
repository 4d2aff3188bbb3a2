//! The AMF Socket RPC envelope: requests, replies and fire-and-forget messages, to and from `Value`.
//!
//! Parsing ignores member order and unknown keys; building writes members in sorted order, as the
//! Ruby server (RocketAMF) does, so the bytes match its frames.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::codec::graph::{ObjectTable, detach, shift_references};
use crate::codec::{Format, Limits, Object, RenderError, Str, Value, View};

/// The command of the keepalive request both sides send.
pub const PING_COMMAND: &str = "amf_socket_ping";

/// A request: the peer must answer with a `Response` carrying the same message id.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Opaque, unique per sender; the reply carries it back.
    pub message_id: Str,
    /// What to do.
    pub command: Str,
    /// Arguments: an object.
    pub params: Value,
}

/// A reply to a request. There is no error field: a failure is a result by convention.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The request's message id.
    pub message_id: Str,
    /// Any value, null included.
    pub result: Value,
}

/// A fire-and-forget message: nothing answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Opaque, unique per sender.
    pub message_id: Str,
    /// What it is about.
    pub command: Str,
    /// Arguments: an object.
    pub params: Value,
}

/// One AMF Socket RPC envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// `type: "rpcRequest"`.
    Request(Request),
    /// `type: "rpcResponse"`.
    Response(Response),
    /// `type: "rpcMessage"`.
    Message(Message),
}

/// What identifies an envelope, borrowed: its type, message id and command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeHeader<'a> {
    /// `rpcRequest`, `rpcResponse` or `rpcMessage`.
    pub type_name: &'static str,
    /// The message id.
    pub message_id: &'a str,
    /// The command of a request or message.
    pub command: Option<&'a str>,
}

impl<'a> EnvelopeHeader<'a> {
    /// Reads the header of a frame decoded into a view, copying nothing. For a view without
    /// object references (see `View::contains_reference`) it accepts exactly the envelopes
    /// `Envelope::from_value` accepts; a view with them needs `from_value`, which resolves them.
    pub fn of_view(view: View<'a>) -> Option<EnvelopeHeader<'a>> {
        let outer = view.as_object()?;
        let Some(View::String(type_name)) = outer.get("type") else {
            return None;
        };
        let kind = [REQUEST, RESPONSE, MESSAGE]
            .into_iter()
            .find(|kind| kind.type_name == type_name)?;
        let body = outer.get(kind.body)?.as_object()?;
        let Some(View::String(message_id)) = body.get("messageId") else {
            return None;
        };
        let payload = body.get(kind.payload_key)?;
        let command = if kind.type_name == RESPONSE.type_name {
            None
        } else {
            let Some(View::String(command)) = body.get("command") else {
                return None;
            };
            payload.as_object()?;
            Some(command)
        };
        Some(EnvelopeHeader {
            type_name: kind.type_name,
            message_id,
            command,
        })
    }
}

/// Why a value is not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The top-level value is not an object.
    #[error("an envelope is an object, but the frame holds {found}")]
    NotAnObject {
        /// What it holds instead.
        found: &'static str,
    },
    /// No `type` member, or not a string.
    #[error("the envelope has no \"type\" string member")]
    MissingType,
    /// A `type` other than rpcRequest, rpcResponse and rpcMessage.
    #[error("unknown envelope type \"{0}\" (expected rpcRequest, rpcResponse or rpcMessage)")]
    UnknownType(String),
    /// A required member is missing.
    #[error("{kind} has no \"{field}\" member")]
    MissingField {
        /// The envelope type.
        kind: &'static str,
        /// The member's path, e.g. `request.messageId`.
        field: &'static str,
    },
    /// A required member has the wrong type.
    #[error("{kind} member \"{field}\" must be {expected}, but is {found}")]
    WrongType {
        /// The envelope type.
        kind: &'static str,
        /// The member's path.
        field: &'static str,
        /// The type required.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// A reference inside the envelope could not be resolved.
    #[error("cannot resolve a reference in the envelope: {0}")]
    Reference(#[from] RenderError),
}

/// The three envelope kinds and their member names.
#[derive(Clone, Copy)]
struct Kind {
    type_name: &'static str,
    body: &'static str,
    message_id: &'static str,
    command: &'static str,
    /// The payload member's name in the body: `params` or `result`.
    payload_key: &'static str,
    payload: &'static str,
}

const REQUEST: Kind = Kind {
    type_name: "rpcRequest",
    body: "request",
    message_id: "request.messageId",
    command: "request.command",
    payload_key: "params",
    payload: "request.params",
};
const RESPONSE: Kind = Kind {
    type_name: "rpcResponse",
    body: "response",
    message_id: "response.messageId",
    command: "",
    payload_key: "result",
    payload: "response.result",
};
const MESSAGE: Kind = Kind {
    type_name: "rpcMessage",
    body: "message",
    message_id: "message.messageId",
    command: "message.command",
    payload_key: "params",
    payload: "message.params",
};

/// Table entries before the payload (params or result) in a built envelope: the outer object,
/// then the body object. A payload with references of its own is shifted by this much.
const ENTRIES_BEFORE_PAYLOAD: u32 = 2;

impl Envelope {
    /// Parses a decoded AMF3 frame body.
    pub fn from_value(value: &Value) -> Result<Envelope, EnvelopeError> {
        Envelope::from_value_within(value, &Limits::default())
    }

    /// `from_value`, resolving references within `limits` (those the frame was decoded within).
    pub fn from_value_within(value: &Value, limits: &Limits) -> Result<Envelope, EnvelopeError> {
        Parser::new(value, limits).parse()
    }

    /// Parses a decoded frame the caller gives up: when the frame holds no object references
    /// (every frame a reference-free peer sends), the params or result are moved out of it
    /// rather than copied.
    pub fn from_owned(value: Value) -> Result<Envelope, EnvelopeError> {
        Envelope::from_owned_within(value, &Limits::default())
    }

    /// `from_owned`, resolving references within `limits` (those the frame was decoded within).
    pub fn from_owned_within(mut value: Value, limits: &Limits) -> Result<Envelope, EnvelopeError> {
        let mut parser = Parser::new(&value, limits);
        if parser.table.is_some() {
            return parser.parse();
        }
        parser.move_payload = true;
        let mut envelope = parser.parse()?;
        let (kind, slot) = match &mut envelope {
            Envelope::Request(request) => (REQUEST, &mut request.params),
            Envelope::Response(response) => (RESPONSE, &mut response.result),
            Envelope::Message(message) => (MESSAGE, &mut message.params),
        };
        // `parse` checked that the body and its payload are there, unreferenced.
        if let Value::Object(outer) = &mut value
            && let Some((_, Value::Object(body))) =
                outer.members.iter_mut().find(|(name, _)| name == kind.body)
            && let Some(payload) = body.take(kind.payload_key)
        {
            *slot = payload;
        }
        Ok(envelope)
    }

    /// Parses a decoded frame body for its type, message id and command only: when the frame
    /// holds no object references, the payload is left out (`Undefined`) instead of copied. It
    /// accepts and rejects exactly what `from_value_within` does with the same `limits`.
    pub fn without_payload(value: &Value, limits: &Limits) -> Result<Envelope, EnvelopeError> {
        let mut parser = Parser::new(value, limits);
        parser.move_payload = true;
        parser.parse()
    }

    /// The envelope as a value, members in sorted order.
    pub fn into_value(self) -> Value {
        let (kind, message_id, command, payload) = match self {
            Envelope::Request(r) => (REQUEST, r.message_id, Some(r.command), r.params),
            Envelope::Response(r) => (RESPONSE, r.message_id, None, r.result),
            Envelope::Message(m) => (MESSAGE, m.message_id, Some(m.command), m.params),
        };
        let mut payload = payload;
        if payload.contains_reference() {
            shift_references(&mut payload, ENTRIES_BEFORE_PAYLOAD);
        }
        let mut body = Vec::with_capacity(3);
        if let Some(command) = command {
            body.push((Str::new_static("command"), Value::String(command)));
        }
        body.push((Str::new_static("messageId"), Value::String(message_id)));
        body.push((Str::new_static(kind.payload_key), payload));
        Value::object(vec![
            (Str::new_static(kind.body), Value::object(body)),
            (
                Str::new_static("type"),
                Value::String(Str::new_static(kind.type_name)),
            ),
        ])
    }

    /// Its type, message id and command.
    pub fn header(&self) -> EnvelopeHeader<'_> {
        EnvelopeHeader {
            type_name: self.type_name(),
            message_id: self.message_id(),
            command: self.command(),
        }
    }

    /// The envelope's type as on the wire: `rpcRequest`, `rpcResponse` or `rpcMessage`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Envelope::Request(_) => REQUEST.type_name,
            Envelope::Response(_) => RESPONSE.type_name,
            Envelope::Message(_) => MESSAGE.type_name,
        }
    }

    /// The message id.
    pub fn message_id(&self) -> &str {
        match self {
            Envelope::Request(r) => &r.message_id,
            Envelope::Response(r) => &r.message_id,
            Envelope::Message(m) => &m.message_id,
        }
    }

    /// The command of a request or message.
    pub fn command(&self) -> Option<&str> {
        match self {
            Envelope::Request(r) => Some(&r.command),
            Envelope::Response(_) => None,
            Envelope::Message(m) => Some(&m.command),
        }
    }
}

impl Request {
    /// Whether this is the `amf_socket_ping` keepalive.
    pub fn is_ping(&self) -> bool {
        &*self.command == PING_COMMAND
    }

    /// A keepalive: `time` in Unix seconds, `latency` the last round trip in seconds.
    pub fn ping(message_id: Str, time: f64, latency: f64) -> Request {
        Request {
            message_id,
            command: Str::new_static(PING_COMMAND),
            params: Value::object(vec![
                (Str::new_static("latency"), Value::Double(latency)),
                (Str::new_static("time"), Value::Double(time)),
            ]),
        }
    }
}

/// A message id in the ActionScript client's style: `<ms since epoch>:<9 digits>:<9 digits>`.
pub fn new_message_id() -> Str {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    let first: u32 = rand::random_range(100_000_000..=999_999_999);
    let second: u32 = rand::random_range(100_000_000..=999_999_999);
    Str::from(format!("{ms}:{first}:{second}"))
}

/// Reads an envelope out of a decoded frame, resolving object references where there are any.
struct Parser<'v> {
    root: &'v Value,
    /// Built only when the frame holds object references.
    table: Option<ObjectTable<'v>>,
    /// Leave the payload out (`Undefined`): the caller moves it out of the frame itself.
    move_payload: bool,
    /// Resolving references goes no deeper, and expands no further, than these.
    limits: Limits,
}

impl<'v> Parser<'v> {
    fn new(root: &'v Value, limits: &Limits) -> Parser<'v> {
        let table = root
            .contains_reference()
            .then(|| ObjectTable::build(root, Format::Amf3));
        Parser {
            root,
            table,
            move_payload: false,
            limits: *limits,
        }
    }

    fn parse(&self) -> Result<Envelope, EnvelopeError> {
        let Value::Object(outer) = self.root else {
            return Err(EnvelopeError::NotAnObject {
                found: self.root.kind_name(),
            });
        };
        let Some(Value::String(type_name)) = outer.get("type") else {
            return Err(EnvelopeError::MissingType);
        };
        let kind = [REQUEST, RESPONSE, MESSAGE]
            .into_iter()
            .find(|kind| kind.type_name == &**type_name)
            .ok_or_else(|| EnvelopeError::UnknownType(type_name.to_string()))?;
        let body = self.object(kind, outer, kind.body, kind.body)?;
        let message_id = self.string(kind, body, "messageId", kind.message_id)?;
        if kind.type_name == RESPONSE.type_name {
            let result = self.member(kind, body, kind.payload_key, kind.payload)?;
            return Ok(Envelope::Response(Response {
                message_id,
                result: self.standalone(result)?,
            }));
        }
        let command = self.string(kind, body, "command", kind.command)?;
        let params = self.member(kind, body, kind.payload_key, kind.payload)?;
        if !matches!(params, Value::Object(_)) {
            return Err(wrong_type(kind, kind.payload, "an object", params));
        }
        let params = self.standalone(params)?;
        Ok(if kind.type_name == REQUEST.type_name {
            Envelope::Request(Request {
                message_id,
                command,
                params,
            })
        } else {
            Envelope::Message(Message {
                message_id,
                command,
                params,
            })
        })
    }

    /// The value a member holds, references resolved.
    fn member(
        &self,
        kind: Kind,
        object: &'v Object,
        name: &str,
        path: &'static str,
    ) -> Result<&'v Value, EnvelopeError> {
        let value = object.get(name).ok_or(EnvelopeError::MissingField {
            kind: kind.type_name,
            field: path,
        })?;
        match (value, &self.table) {
            (Value::Reference(index), Some(table)) => table.get(*index).ok_or(
                EnvelopeError::Reference(RenderError::ReferenceOutOfRange {
                    index: *index,
                    len: table.len(),
                }),
            ),
            _ => Ok(value),
        }
    }

    fn object(
        &self,
        kind: Kind,
        object: &'v Object,
        name: &str,
        path: &'static str,
    ) -> Result<&'v Object, EnvelopeError> {
        match self.member(kind, object, name, path)? {
            Value::Object(inner) => Ok(inner),
            other => Err(wrong_type(kind, path, "an object", other)),
        }
    }

    fn string(
        &self,
        kind: Kind,
        object: &'v Object,
        name: &str,
        path: &'static str,
    ) -> Result<Str, EnvelopeError> {
        match self.member(kind, object, name, path)? {
            Value::String(text) => Ok(text.clone()),
            other => Err(wrong_type(kind, path, "a string", other)),
        }
    }

    /// A copy of a value inside the frame that stands on its own: references into the rest of
    /// the frame are resolved and renumbered.
    fn standalone(&self, value: &'v Value) -> Result<Value, EnvelopeError> {
        match self.table {
            Some(_) => Ok(detach(self.root, value, &self.limits)?),
            None if self.move_payload => Ok(Value::Undefined),
            None => Ok(value.clone()),
        }
    }
}

fn wrong_type(
    kind: Kind,
    field: &'static str,
    expected: &'static str,
    found: &Value,
) -> EnvelopeError {
    EnvelopeError::WrongType {
        kind: kind.type_name,
        field,
        expected,
        found: found.kind_name(),
    }
}
