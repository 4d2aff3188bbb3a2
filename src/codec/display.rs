//! Readable rendering.
