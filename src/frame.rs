//! AMF Socket framing: a 4-byte big-endian payload length, then that many bytes of one AMF3 value.
//!
//! Pure functions over a buffer, plus the same logic as a tokio-util codec. Incomplete input is
//! "need more" (`Ok(None)`), never an error; a zero length or a length above the cap is a protocol
//! error decided by the header alone, so a peer cannot make us wait for (or buffer) a gigabyte.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::codec::{self, EncodeError, Limits, Value};

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 4;
/// The default cap on a frame's payload length: far above any RPC, far below any harm.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Room reserved ahead for the rest of an incomplete frame, at most (a read's worth): a header
/// alone must not make us allocate what it declares (16 MiB for four bytes, on every
/// connection), so a larger frame's buffer grows, doubling, as its bytes arrive.
pub const RESERVE_AHEAD_AT_MOST: usize = 8 * 1024;

/// A framing protocol error.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A header declaring a zero-length payload: AMF Socket never sends one.
    #[error("frame header declares a zero-length payload")]
    Empty,
    /// A header declaring more than the cap.
    #[error("frame header declares {len} bytes, above the cap of {max} (header bytes {header})")]
    TooLarge {
        /// The declared payload length.
        len: usize,
        /// The configured cap.
        max: usize,
        /// The four header bytes in hex, which tell e.g. a policy request (`3c706f6c`) at a glance.
        header: String,
    },
    /// A value whose encoding is longer than the cap.
    #[error("the encoded frame is {len} bytes, above the cap of {max}")]
    EncodedTooLarge {
        /// The encoded payload's length.
        len: usize,
        /// The configured cap.
        max: usize,
    },
    /// A value that cannot be encoded.
    #[error("cannot encode the value: {0}")]
    Encode(#[from] EncodeError),
    /// Reading or writing the socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads the header at the start of `buffer`: the payload length, `None` if fewer than 4 bytes
/// are there, or an error for a zero or oversized length.
pub fn parse_header(buffer: &[u8], max_len: usize) -> Result<Option<usize>, FrameError> {
    let Some(header) = buffer.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*header) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max_len {
        return Err(FrameError::TooLarge {
            len,
            max: max_len,
            header: hex::encode(header),
        });
    }
    Ok(Some(len))
}

/// Takes one whole frame's payload off the front of `buffer`, or returns `None` (leaving the
/// buffer as it was, with room reserved for the rest) when the frame is not complete yet.
pub fn split_frame(buffer: &mut BytesMut, max_len: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(len) = parse_header(buffer, max_len)? else {
        return Ok(None);
    };
    let total = HEADER_LEN + len;
    if buffer.len() < total {
        buffer.reserve((total - buffer.len()).min(RESERVE_AHEAD_AT_MOST));
        return Ok(None);
    }
    buffer.advance(HEADER_LEN);
    Ok(Some(buffer.split_to(len).freeze()))
}

/// Appends `value` to `out` as one frame; fails if its encoding exceeds `max_len`.
pub fn encode_frame(value: &Value, max_len: usize, out: &mut BytesMut) -> Result<(), FrameError> {
    encode_frame_within(value, max_len, &Limits::default(), out)
}

/// `encode_frame` within `limits` (a nesting depth other than the default).
pub fn encode_frame_within(
    value: &Value,
    max_len: usize,
    limits: &Limits,
    out: &mut BytesMut,
) -> Result<(), FrameError> {
    let start = out.len();
    out.put_u32(0);
    codec::amf3::encode_into(value, limits, out)?;
    let len = out.len() - start - HEADER_LEN;
    if len > max_len {
        out.truncate(start);
        return Err(FrameError::EncodedTooLarge { len, max: max_len });
    }
    out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// The AMF Socket framing as a tokio-util codec: decodes payloads (still AMF3 bytes, so callers
/// choose how to decode them) and encodes values.
///
/// Written over `parse_header` rather than wrapping `LengthDelimitedCodec`, so that a zero-length
/// frame is refused and errors stay typed.
#[derive(Debug, Clone, Copy)]
pub struct AmfSocketCodec {
    max_len: usize,
}

impl AmfSocketCodec {
    /// A codec refusing payloads longer than `max_len`.
    pub fn new(max_len: usize) -> AmfSocketCodec {
        AmfSocketCodec { max_len }
    }
}

impl Default for AmfSocketCodec {
    fn default() -> Self {
        AmfSocketCodec::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl Decoder for AmfSocketCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        split_frame(buffer, self.max_len)
    }
}

impl Encoder<&Value> for AmfSocketCodec {
    type Error = FrameError;

    fn encode(&mut self, value: &Value, out: &mut BytesMut) -> Result<(), FrameError> {
        encode_frame(value, self.max_len, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_input_needs_more() {
        for len in 0..4 {
            assert!(matches!(parse_header(&[0, 0, 0, 5][..len], 16), Ok(None)));
        }
        let mut buffer = BytesMut::from(&[0u8, 0, 0, 3, 0x01, 0x01][..]);
        assert!(matches!(split_frame(&mut buffer, 16), Ok(None)));
        assert_eq!(buffer.len(), 6, "an incomplete frame stays in the buffer");
    }

    #[test]
    fn a_header_alone_reserves_a_bounded_room() {
        let mut buffer = BytesMut::from(&[0x00, 0xff, 0xff, 0xff, 0x0a][..]);
        assert!(matches!(
            split_frame(&mut buffer, DEFAULT_MAX_FRAME_LEN),
            Ok(None)
        ));
        assert!(
            buffer.capacity() >= RESERVE_AHEAD_AT_MOST,
            "room to read into"
        );
        assert!(
            buffer.capacity() < 2 * RESERVE_AHEAD_AT_MOST,
            "{} bytes reserved for a frame whose bytes have not come",
            buffer.capacity()
        );
        // A small frame still gets all its room at once.
        let mut buffer = BytesMut::from(&[0, 0, 0x10, 0, 0x0a][..]);
        assert!(matches!(split_frame(&mut buffer, 1 << 20), Ok(None)));
        assert!(buffer.capacity() >= 4 + 0x1000);
    }

    #[test]
    fn zero_and_oversized_lengths_are_errors() {
        assert!(matches!(
            parse_header(&[0, 0, 0, 0], 16),
            Err(FrameError::Empty)
        ));
        assert!(matches!(
            parse_header(&[0, 0, 0, 17], 16),
            Err(FrameError::TooLarge {
                len: 17,
                max: 16,
                ..
            })
        ));
        assert!(matches!(parse_header(&[0, 0, 0, 16], 16), Ok(Some(16))));
    }

    #[test]
    fn several_frames_split_from_one_read() {
        let mut buffer = BytesMut::new();
        encode_frame(&Value::Integer(7), 16, &mut buffer).expect("encodes");
        encode_frame(&Value::string("ab"), 16, &mut buffer).expect("encodes");
        buffer.extend_from_slice(&[0, 0]);
        let first = split_frame(&mut buffer, 16).expect("valid").expect("whole");
        let second = split_frame(&mut buffer, 16).expect("valid").expect("whole");
        assert_eq!(&first[..], &[0x04, 0x07]);
        assert_eq!(&second[..], &[0x06, 0x05, b'a', b'b']);
        assert!(matches!(split_frame(&mut buffer, 16), Ok(None)));
        assert_eq!(&buffer[..], &[0, 0]);
    }

    #[test]
    fn encoding_above_the_cap_fails_and_writes_nothing() {
        let mut out = BytesMut::from(&b"xy"[..]);
        let big = Value::string(&"z".repeat(100));
        let refused = encode_frame(&big, 16, &mut out);
        let message = refused.as_ref().map_err(ToString::to_string).err();
        assert_eq!(
            message.as_deref(),
            Some("the encoded frame is 103 bytes, above the cap of 16")
        );
        assert!(matches!(
            refused,
            Err(FrameError::EncodedTooLarge { len: 103, max: 16 })
        ));
        assert_eq!(&out[..], b"xy");
    }
}
