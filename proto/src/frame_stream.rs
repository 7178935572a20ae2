//! The local API's binary frame stream (`Upgrade: relay-node-frames/1`):
//! after the HTTP upgrade both directions carry frames, each a u32
//! big-endian payload length (at most [`MAX_FRAME`]) followed by the
//! payload.
//!
//! [`FrameDecoder`] is sans-IO: push the bytes read, then take the complete
//! frames. It never buffers more than one frame's header and payload plus
//! what the caller pushed since the last complete frame, and refuses a
//! length over its limit as soon as the header arrives.

use thiserror::Error;

/// The `Upgrade` protocol token of the frame stream.
pub const UPGRADE_PROTOCOL: &str = "relay-node-frames/1";
/// Largest payload of one frame (1 MiB).
pub const MAX_FRAME: usize = 1 << 20;
/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// A frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// A frame's length is over the limit.
    #[error("frame-too-large: a frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The announced or given length.
        len: u64,
        /// The limit.
        max: usize,
    },
}

impl FrameError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "frame-too-large",
        }
    }
}

/// Appends one frame carrying `payload` to `out`.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let too_large = || FrameError::TooLarge {
        len: u64::try_from(payload.len()).unwrap_or(u64::MAX),
        max: MAX_FRAME,
    };
    if payload.len() > MAX_FRAME {
        return Err(too_large());
    }
    let len = u32::try_from(payload.len()).map_err(|_| too_large())?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Splits a byte stream into frames.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`.
    start: usize,
    max: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(MAX_FRAME)
    }
}

impl FrameDecoder {
    /// A decoder refusing payloads over `max` bytes (at most [`MAX_FRAME`]).
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max: max.min(MAX_FRAME),
        }
    }

    /// Adds bytes read from the stream (dropping those already returned
    /// first, so the buffer holds at most one incomplete frame plus `data`).
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes pushed and not yet returned in a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame's payload, `None` until one is complete. After
    /// an error the stream cannot be framed any more; drop the decoder.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        Ok(self.next_payload()?.map(<[u8]>::to_vec))
    }

    /// Like [`Self::next_frame`], without a copy: the payload borrowed from
    /// the decoder's buffer (valid until the next call).
    pub fn next_payload(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let unread = self.buf.get(self.start..).unwrap_or_default();
        let Some(header) = unread.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; HEADER_LEN];
        len_bytes.copy_from_slice(header);
        let len = u32::from_be_bytes(len_bytes);
        let too_large = FrameError::TooLarge {
            len: u64::from(len),
            max: self.max,
        };
        let len = usize::try_from(len).map_err(|_| too_large.clone())?;
        if len > self.max {
            return Err(too_large);
        }
        if unread.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let from = self.start + HEADER_LEN;
        self.start = from + len;
        Ok(self.buf.get(from..self.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_pieces() {
        let mut wire = Vec::new();
        for payload in [&b""[..], b"a", b"hello world", &[0u8; 1000][..]] {
            encode_frame(payload, &mut wire).unwrap();
        }
        assert_eq!(&wire[..5], &[0, 0, 0, 0, 0, 0, 0, 1][..5]);
        // Feed one byte at a time.
        let mut dec = FrameDecoder::default();
        let mut got = Vec::new();
        for b in &wire {
            dec.push(std::slice::from_ref(b));
            while let Some(frame) = dec.next_frame().unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(got.len(), 4);
        assert_eq!(got[1], b"a");
        assert_eq!(got[2], b"hello world");
        assert_eq!(got[3].len(), 1000);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn payloads_borrowed_across_pushes() {
        let mut wire = Vec::new();
        for payload in [&b"one"[..], b"", b"three"] {
            encode_frame(payload, &mut wire).unwrap();
        }
        let mut dec = FrameDecoder::default();
        dec.push(&wire[..9]);
        assert_eq!(dec.next_payload().unwrap(), Some(&b"one"[..]));
        assert_eq!(dec.next_payload().unwrap(), None, "half a header");
        dec.push(&wire[9..13]);
        assert_eq!(dec.next_payload().unwrap(), Some(&b""[..]));
        assert_eq!(dec.next_payload().unwrap(), None);
        assert_eq!(dec.buffered(), 2);
        dec.push(&wire[13..]);
        assert_eq!(dec.next_payload().unwrap(), Some(&b"three"[..]));
        assert_eq!(dec.buffered(), 0);
        assert_eq!(dec.next_payload().unwrap(), None);
    }

    #[test]
    fn header_bytes_are_pinned() {
        let mut wire = Vec::new();
        encode_frame(b"xy", &mut wire).unwrap();
        assert_eq!(wire, [0, 0, 0, 2, b'x', b'y']);
    }

    #[test]
    fn oversized_lengths_are_refused_at_the_header() {
        let mut dec = FrameDecoder::new(8);
        dec.push(&[0, 0, 0, 9]);
        assert_eq!(
            dec.next_frame(),
            Err(FrameError::TooLarge { len: 9, max: 8 })
        );
        let mut dec = FrameDecoder::default();
        dec.push(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(dec.next_frame().unwrap_err().kind(), "frame-too-large");
        let big = vec![0u8; MAX_FRAME + 1];
        assert!(encode_frame(&big, &mut Vec::new()).is_err());
        assert!(encode_frame(&big[..MAX_FRAME], &mut Vec::new()).is_ok());
    }
}
