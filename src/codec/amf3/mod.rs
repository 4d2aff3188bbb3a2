//! AMF3: the format of every AMF Socket frame body.

pub(crate) mod build;
pub mod read;
mod table;
pub(crate) mod u29;
pub mod write;

pub use read::decode;
pub use write::{encode, encode_into};
