//! AMF0: Flash Remoting and RTMP's format, with the AVM+ switch (0x11) to AMF3.

pub mod read;
pub mod write;

pub use read::decode;
pub use write::{encode, encode_into};
