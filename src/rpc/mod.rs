//! The AMF Socket RPC layer, above framing: the envelope, its payload encodings, and the
//! per-connection peer that `serve` and `run` share.

pub mod envelope;
pub mod json;
pub mod peer;
pub mod toml_value;
pub mod wire;

pub use envelope::{
    Envelope, EnvelopeError, EnvelopeHeader, Message, PING_COMMAND, Request, Response,
    new_message_id,
};
pub use peer::{BadEnvelopes, CallError, CloseReason, Incoming, Peer, PeerConfig, PingConfig};
pub use wire::{Encoding, WireError};
