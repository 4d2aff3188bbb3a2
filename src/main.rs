//! The `amf-bench` binary.
fn main() {}
