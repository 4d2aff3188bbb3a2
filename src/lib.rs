//! amf-bench: Flash-era AMF socket tooling. Data flows one way through these modules:
//!
//! - `codec`: AMF0/AMF3 values, decoding, encoding, canonical JSON and readable rendering (pure);
//! - `frame`: the AMF Socket frame, a 4-byte big-endian length then one AMF3 value (pure);
//! - `rpc`: the RPC envelope, its payload encodings, and the per-connection peer;
//! - `policy`: Flash socket policy requests and answers;
//! - `serve`: the reference RPC server;
//! - `proxy`: the transparent proxy that logs each frame decoded and measures latency passively;
//! - `run`: the load tester (scenarios, schedule, simulated clients, metrics, report);
//! - `ws`: WebSocket as a byte-stream transport (Ruffle's socket proxy), for serve and proxy;
//! - `listener`, `shutdown`, `sniff`, `logging`, `open_files`, `text_file`: what the servers and
//!   `run` share;
//! - `cli` and the commands: what the `amf-bench` binary runs.

pub mod cli;
pub mod codec;
pub mod decode;
pub mod frame;
pub mod listener;
pub mod logging;
pub mod open_files;
pub mod policy;
pub mod proxy;
pub mod rpc;
pub mod run;
pub mod serve;
pub mod shutdown;
pub mod sniff;
pub mod text_file;
pub mod ws;
