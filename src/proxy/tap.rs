//! The log's view of one direction of a connection: a frame splitter fed a copy of every relayed
//! chunk. It never touches the relayed bytes, holds at most one frame of up to `max_decode` bytes,
//! skips larger frames without buffering them, and once framing is lost it stops looking.

use bytes::{Bytes, BytesMut};

use crate::frame::{FrameError, HEADER_LEN, parse_header};

/// Room reserved ahead for a frame being collected for decoding, at most: a header alone must
/// not make us allocate all it declares (up to `--max-decode`, on both directions of every
/// connection), while frames up to this size, the common ones, still arrive into one buffer.
const COLLECT_AHEAD_AT_MOST: usize = 64 * 1024;

/// Bytes of a skipped or broken frame kept for the log, as hex.
pub const PREFIX_LEN: usize = 64;

/// How the bytes of a connection are cut into frames for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Framing {
    /// AMF Socket: a 4-byte big-endian length, then one AMF3 value.
    #[default]
    AmfSocket,
    /// Flash XMLSocket: text messages, each ended by one NUL byte.
    Xmlsocket,
    /// No framing: every chunk as read from the socket, shown as hex.
    Raw,
}

/// Size limits of a tap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapLimits {
    /// Frames up to this many bytes (header or NUL included) are kept whole and decoded.
    pub max_decode: usize,
    /// An AMF Socket header declaring more than this loses the framing.
    pub max_frame: usize,
}

/// What the tap made of the bytes it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tapped {
    /// One whole frame: header and payload (amf-socket), text and its NUL (xmlsocket), or a chunk
    /// (raw).
    Frame(Bytes),
    /// A frame above `max_decode`, skipped: its whole length and its first bytes.
    Oversize {
        /// The frame's length on the wire (header or NUL included).
        len: usize,
        /// Its first `PREFIX_LEN` bytes.
        prefix: Bytes,
    },
    /// The framing is lost: nothing more is decoded in this direction.
    Lost {
        /// Why (the framing error).
        error: String,
        /// The bad header and the rest of the chunk it came in (later chunks are not framed).
        bytes: Bytes,
    },
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes of the frame that arrived.
        have: usize,
        /// Bytes the frame needed, when its header said so.
        want: Option<usize>,
        /// Its first bytes.
        prefix: Bytes,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a frame into the buffer; `want` is its total length once known.
    Collecting { want: Option<usize> },
    /// Skipping the rest of an oversize frame (the buffer holds its prefix).
    Skipping { len: usize, left: usize },
    /// Framing lost.
    Lost,
}

/// A frame splitter for one direction.
#[derive(Debug)]
pub struct Tap {
    framing: Framing,
    limits: TapLimits,
    state: State,
    buffer: BytesMut,
    /// Bytes of the frame in progress, when skipping (the buffer holds only its prefix).
    seen: usize,
}

impl Tap {
    /// A tap at the start of a stream.
    pub fn new(framing: Framing, limits: TapLimits) -> Tap {
        Tap {
            framing,
            limits,
            state: State::Collecting { want: None },
            buffer: BytesMut::new(),
            seen: 0,
        }
    }

    /// Whether the framing was lost (nothing more will come out).
    pub fn is_lost(&self) -> bool {
        self.state == State::Lost
    }

    /// Looks at the next relayed chunk, calling `out` for each frame it completes.
    pub fn feed(&mut self, chunk: &[u8], out: &mut impl FnMut(Tapped)) {
        match self.framing {
            Framing::AmfSocket => self.feed_amf_socket(chunk, out),
            Framing::Xmlsocket => self.feed_xmlsocket(chunk, out),
            Framing::Raw => out(self.whole_or_oversize(chunk)),
        }
    }

    /// The end of the stream: reports a frame left incomplete.
    pub fn finish(&mut self, out: &mut impl FnMut(Tapped)) {
        let have = self.seen.max(self.buffer.len());
        if have == 0 || self.is_lost() {
            return;
        }
        let want = match self.state {
            State::Collecting { want } => want,
            State::Skipping { len, .. } if self.framing == Framing::AmfSocket => Some(len),
            State::Skipping { .. } | State::Lost => None,
        };
        out(Tapped::Truncated {
            have,
            want,
            prefix: self.take_prefix(),
        });
        self.state = State::Collecting { want: None };
    }

    fn feed_amf_socket(&mut self, mut chunk: &[u8], out: &mut impl FnMut(Tapped)) {
        while !chunk.is_empty() {
            match self.state {
                State::Lost => return,
                State::Skipping { len, left } => {
                    chunk = self.skip(chunk, len, left, out);
                }
                State::Collecting { want: None } => {
                    let missing = HEADER_LEN - self.buffer.len();
                    let (head, rest) = chunk.split_at(missing.min(chunk.len()));
                    self.buffer.extend_from_slice(head);
                    chunk = rest;
                    self.read_header(chunk, out);
                }
                State::Collecting { want: Some(want) } => {
                    let (body, rest) = chunk.split_at((want - self.buffer.len()).min(chunk.len()));
                    self.buffer.extend_from_slice(body);
                    chunk = rest;
                    if self.buffer.len() == want {
                        out(Tapped::Frame(self.buffer.split().freeze()));
                        self.state = State::Collecting { want: None };
                    }
                }
            }
        }
    }

    /// Decides what to do with a frame once its header is in the buffer.
    fn read_header(&mut self, rest: &[u8], out: &mut impl FnMut(Tapped)) {
        match parse_header(&self.buffer, self.limits.max_frame) {
            Ok(None) => {}
            Ok(Some(len)) if HEADER_LEN + len <= self.limits.max_decode => {
                self.buffer.reserve(len.min(COLLECT_AHEAD_AT_MOST));
                self.state = State::Collecting {
                    want: Some(HEADER_LEN + len),
                };
            }
            Ok(Some(len)) => {
                self.seen = HEADER_LEN;
                self.state = State::Skipping {
                    len: HEADER_LEN + len,
                    left: len,
                };
            }
            // A zero-length frame is a protocol error, but its extent is clear: log it, go on.
            Err(FrameError::Empty) => out(Tapped::Frame(self.buffer.split().freeze())),
            Err(error) => {
                self.buffer.extend_from_slice(rest);
                out(Tapped::Lost {
                    error: error.to_string(),
                    bytes: self.buffer.split().freeze(),
                });
                self.buffer = BytesMut::new();
                self.state = State::Lost;
            }
        }
    }

    /// Skips up to `left` bytes of an oversize frame, keeping its prefix; returns the rest.
    fn skip<'c>(
        &mut self,
        chunk: &'c [u8],
        len: usize,
        left: usize,
        out: &mut impl FnMut(Tapped),
    ) -> &'c [u8] {
        let (skipped, rest) = chunk.split_at(left.min(chunk.len()));
        self.keep_prefix(skipped);
        self.seen += skipped.len();
        let left = left - skipped.len();
        if left == 0 {
            out(Tapped::Oversize {
                len,
                prefix: self.take_prefix(),
            });
            self.state = State::Collecting { want: None };
        } else {
            self.state = State::Skipping { len, left };
        }
        rest
    }

    fn feed_xmlsocket(&mut self, mut chunk: &[u8], out: &mut impl FnMut(Tapped)) {
        while !chunk.is_empty() {
            let end = chunk.iter().position(|&byte| byte == 0);
            let (part, rest) = chunk.split_at(end.map_or(chunk.len(), |nul| nul + 1));
            chunk = rest;
            let total = self.seen.max(self.buffer.len()) + part.len();
            if total > self.limits.max_decode || matches!(self.state, State::Skipping { .. }) {
                if self.seen == 0 {
                    self.seen = self.buffer.len();
                }
                self.keep_prefix(part);
                self.seen += part.len();
                self.state = State::Skipping {
                    len: total,
                    left: 0,
                };
            } else {
                self.buffer.extend_from_slice(part);
            }
            if end.is_none() {
                return;
            }
            let message = match self.state {
                State::Skipping { len, .. } => Tapped::Oversize {
                    len,
                    prefix: self.take_prefix(),
                },
                _ => Tapped::Frame(self.buffer.split().freeze()),
            };
            out(message);
            self.state = State::Collecting { want: None };
        }
    }

    fn whole_or_oversize(&self, chunk: &[u8]) -> Tapped {
        if chunk.len() <= self.limits.max_decode {
            Tapped::Frame(Bytes::copy_from_slice(chunk))
        } else {
            Tapped::Oversize {
                len: chunk.len(),
                prefix: Bytes::copy_from_slice(&chunk[..PREFIX_LEN.min(chunk.len())]),
            }
        }
    }

    /// Adds to the kept prefix of a skipped frame, up to `PREFIX_LEN` bytes.
    fn keep_prefix(&mut self, bytes: &[u8]) {
        let room = PREFIX_LEN.saturating_sub(self.buffer.len());
        self.buffer
            .extend_from_slice(&bytes[..room.min(bytes.len())]);
    }

    /// The prefix of the frame in progress (cut to `PREFIX_LEN`), resetting for the next frame.
    fn take_prefix(&mut self) -> Bytes {
        self.seen = 0;
        self.buffer.truncate(PREFIX_LEN);
        let prefix = self.buffer.split().freeze();
        if self.buffer.capacity() > PREFIX_LEN * 4 {
            self.buffer = BytesMut::new();
        }
        prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TapLimits = TapLimits {
        max_decode: 16,
        max_frame: 1000,
    };

    fn tap_all(framing: Framing, chunks: &[&[u8]]) -> Vec<Tapped> {
        let mut tap = Tap::new(framing, LIMITS);
        let mut seen = Vec::new();
        for chunk in chunks {
            tap.feed(chunk, &mut |tapped| seen.push(tapped));
        }
        tap.finish(&mut |tapped| seen.push(tapped));
        seen
    }

    fn frame(bytes: &[u8]) -> Tapped {
        Tapped::Frame(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn a_header_alone_reserves_a_bounded_room() {
        let limits = TapLimits {
            max_decode: 1 << 20,
            max_frame: 16 << 20,
        };
        let mut tap = Tap::new(Framing::AmfSocket, limits);
        let mut seen = Vec::new();
        // A header declaring the largest frame decoded, and one byte of it.
        tap.feed(&[0x00, 0x0f, 0xff, 0xfc, 0x0a], &mut |tapped| {
            seen.push(tapped)
        });
        assert!(seen.is_empty());
        assert!(
            tap.buffer.capacity() < 2 * COLLECT_AHEAD_AT_MOST,
            "{} bytes reserved for a frame whose bytes have not come",
            tap.buffer.capacity()
        );
        // The frame still arrives whole as its bytes come.
        let rest = vec![0x0a; (1 << 20) - 5];
        for piece in rest.chunks(16 * 1024) {
            tap.feed(piece, &mut |tapped| seen.push(tapped));
        }
        assert!(matches!(&seen[..], [Tapped::Frame(frame)] if frame.len() == 1 << 20));
    }

    #[test]
    fn amf_socket_frames_split_across_and_within_chunks() {
        let stream = [&[0, 0, 0, 2, 4, 7, 0][..], &[0, 0, 1, 1], &[0, 0]];
        let seen = tap_all(Framing::AmfSocket, &stream);
        assert_eq!(seen[0], frame(&[0, 0, 0, 2, 4, 7]));
        assert_eq!(seen[1], frame(&[0, 0, 0, 1, 1]));
        assert!(matches!(
            &seen[2],
            Tapped::Truncated {
                have: 2,
                want: None,
                ..
            }
        ));
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let stream: Vec<u8> = [&[0u8, 0, 0, 3, 6, 3, 97][..], &[0, 0, 0, 1, 1]].concat();
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            let seen = tap_all(Framing::AmfSocket, &[a, b]);
            assert_eq!(
                seen,
                vec![frame(&stream[..7]), frame(&stream[7..])],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn an_oversize_frame_is_skipped_and_the_next_one_is_whole() {
        let mut stream = vec![0, 0, 0, 100];
        stream.extend(std::iter::repeat_n(0xAB, 100));
        stream.extend([0, 0, 0, 1, 1]);
        let seen = tap_all(Framing::AmfSocket, &[&stream[..50], &stream[50..]]);
        let Tapped::Oversize { len, prefix } = &seen[0] else {
            panic!("oversize first: {seen:?}")
        };
        assert_eq!(*len, 104);
        assert_eq!(prefix.len(), PREFIX_LEN);
        assert_eq!(&prefix[..5], &[0, 0, 0, 100, 0xAB]);
        assert_eq!(seen[1], frame(&[0, 0, 0, 1, 1]));
    }

    #[test]
    fn a_policy_request_read_as_a_header_loses_the_framing() {
        let seen = tap_all(
            Framing::AmfSocket,
            &[b"<policy-file-request/>\0", &[0, 0, 0, 1, 1]],
        );
        let [Tapped::Lost { error, bytes }] = &seen[..] else {
            panic!("lost once: {seen:?}")
        };
        assert!(error.contains("above the cap"), "{error}");
        assert_eq!(&bytes[..], b"<policy-file-request/>\0");
    }

    #[test]
    fn a_zero_length_frame_is_reported_and_framing_goes_on() {
        let seen = tap_all(Framing::AmfSocket, &[&[0, 0, 0, 0, 0, 0, 0, 1, 1]]);
        assert_eq!(seen, vec![frame(&[0, 0, 0, 0]), frame(&[0, 0, 0, 1, 1])]);
    }

    #[test]
    fn xmlsocket_messages_end_at_nul_and_long_ones_are_skipped() {
        let long = [b'x'; 40];
        let seen = tap_all(
            Framing::Xmlsocket,
            &[b"<a/>\0<b", b"/>\0", &long, &long, b"\0<c/>"],
        );
        assert_eq!(seen[0], frame(b"<a/>\0"));
        assert_eq!(seen[1], frame(b"<b/>\0"));
        assert!(
            matches!(&seen[2], Tapped::Oversize { len: 81, prefix } if prefix.len() == PREFIX_LEN)
        );
        assert!(matches!(
            &seen[3],
            Tapped::Truncated {
                have: 4,
                want: None,
                ..
            }
        ));
    }

    #[test]
    fn raw_chunks_are_frames_up_to_the_cap() {
        let big = [7u8; 100];
        let seen = tap_all(Framing::Raw, &[b"abc", &big]);
        assert_eq!(seen[0], frame(b"abc"));
        assert!(matches!(&seen[1], Tapped::Oversize { len: 100, .. }));
    }
}
