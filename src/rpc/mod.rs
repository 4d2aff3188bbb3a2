//! The AMF Socket RPC layer, above framing: the envelope (and, with the serve issue, the peer).

pub mod envelope;

pub use envelope::{
    Envelope, EnvelopeError, Message, PING_COMMAND, Request, Response, new_message_id,
};
