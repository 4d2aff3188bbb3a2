//! A cursor over the input shared by the AMF0 and AMF3 readers: bounds-checked reads with offsets.

use super::error::{DecodeError, DecodeErrorKind};
use super::value::Str;

/// How many items a container may reserve room for before they are actually read: counts are
/// checked against the bytes left, but nested containers could each reserve that much.
pub(crate) const PREALLOCATE_AT_MOST: usize = 64;

/// The longest string `Str` stores without allocating.
const INLINE_CAPACITY: usize = 23;

/// The bytes being decoded and the read position.
pub(crate) struct Input<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Input<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Input<'a> {
        Input { bytes, position: 0 }
    }

    /// The offset of the next byte.
    pub(crate) fn position(&self) -> usize {
        self.position
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    /// An error at `offset`.
    pub(crate) fn error_at(offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError { offset, kind }
    }

    /// An error at the current position.
    pub(crate) fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        Self::error_at(self.position, kind)
    }

    /// Fails unless `count` items of at least `min_size` bytes each can fit in what is left.
    pub(crate) fn check_count(
        &self,
        what: &'static str,
        count: u64,
        min_size: u64,
        offset: usize,
    ) -> Result<(), DecodeError> {
        if count.saturating_mul(min_size) > self.remaining() as u64 {
            return Err(Self::error_at(
                offset,
                DecodeErrorKind::LengthPastEnd {
                    what,
                    declared: count,
                    available: self.remaining(),
                },
            ));
        }
        Ok(())
    }

    fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let end = self.position + N;
        let Some(slice) = self.bytes.get(self.position..end) else {
            return Err(self.error(DecodeErrorKind::UnexpectedEnd {
                what,
                needed: N,
                available: self.remaining(),
            }));
        };
        let mut array = [0u8; N];
        array.copy_from_slice(slice);
        self.position = end;
        Ok(array)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.fixed::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.fixed(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.fixed(what)?))
    }

    pub(crate) fn f64(&mut self, what: &'static str) -> Result<f64, DecodeError> {
        Ok(f64::from_be_bytes(self.fixed(what)?))
    }

    /// The next `len` bytes; `offset` is where the length was declared.
    pub(crate) fn take(
        &mut self,
        what: &'static str,
        len: usize,
        offset: usize,
    ) -> Result<&'a [u8], DecodeError> {
        self.check_count(what, len as u64, 1, offset)?;
        let taken = &self.bytes[self.position..self.position + len];
        self.position += len;
        Ok(taken)
    }

    /// The next `len` bytes as UTF-8 text, borrowed from the input.
    pub(crate) fn text(
        &mut self,
        what: &'static str,
        len: usize,
        offset: usize,
    ) -> Result<&'a str, DecodeError> {
        let bytes = self.take(what, len, offset)?;
        // Nearly all names and values on the wire are ASCII, which is checked a word at a time;
        // `str::from_utf8` checks short strings a byte at a time.
        match ascii::AsciiStr::from_ascii(bytes) {
            Ok(ascii) => Ok(ascii.as_str()),
            Err(_) => std::str::from_utf8(bytes)
                .map_err(|_| Self::error_at(offset, DecodeErrorKind::InvalidUtf8 { what })),
        }
    }

    /// `text`, copied into a `Str`.
    pub(crate) fn owned_text(
        &mut self,
        what: &'static str,
        len: usize,
        offset: usize,
    ) -> Result<Str, DecodeError> {
        self.text(what, len, offset).map(owned_str)
    }

    /// Hex of up to `max` bytes from the current position, for error reports.
    pub(crate) fn hex_prefix(&self, max: usize) -> String {
        let end = self.bytes.len().min(self.position + max);
        hex::encode(&self.bytes[self.position..end])
    }

    /// Fails if anything is left after a complete value.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(self.error(DecodeErrorKind::TrailingBytes { count })),
        }
    }
}

/// `text` as a `Str`: `new_inline` skips the general constructor's checks for the common short
/// string.
pub(crate) fn owned_str(text: &str) -> Str {
    if text.len() <= INLINE_CAPACITY {
        Str::new_inline(text)
    } else {
        Str::new(text)
    }
}
