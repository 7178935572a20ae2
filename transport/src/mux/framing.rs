//! Length-prefixed message framing for streams carrying many small
//! messages (see [`super::writer`] and [`super::reader`]).
//!
//! ## Wire
//!
//! Each message is its length as a 32-bit unsigned integer, big-endian
//! ([`PREFIX_LEN`] = 4 bytes), then that many bytes. Zero-length messages
//! are allowed. A receiver refuses a length above its bound
//! ([`DEFAULT_MAX_MESSAGE`] unless configured) before buffering any of it,
//! so a peer cannot make it allocate more than the bound plus one read.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Default bound on one message's length: 1 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// A framing rule was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// A message is longer than the bound.
    #[error("too-long: message of {len} bytes, the bound is {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The stream ended inside a message.
    #[error("truncated: the stream ended {0} bytes into a message")]
    Truncated(usize),
}

impl FrameError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLong { .. } => "too-long",
            Self::Truncated(_) => "truncated",
        }
    }
}

/// Appends `message` with its prefix to `out`, if it is within `max`.
pub fn encode(message: &[u8], max: usize, out: &mut BytesMut) -> Result<(), FrameError> {
    let len = message.len();
    let prefix = u32::try_from(len)
        .ok()
        .filter(|_| len <= max)
        .ok_or(FrameError::TooLong { len, max })?;
    out.reserve(PREFIX_LEN + len);
    out.extend_from_slice(&prefix.to_be_bytes());
    out.extend_from_slice(message);
    Ok(())
}

/// Splits a byte stream, fed in chunks of any size, into messages.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max: usize,
}

impl FrameDecoder {
    /// A decoder refusing messages longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Adds the next bytes of the stream.
    pub fn extend(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next whole message, if one is buffered. A message over the
    /// bound is an error as soon as its prefix is in.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(prefix) = self.buf.first_chunk::<PREFIX_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > self.max {
            return Err(FrameError::TooLong { len, max: self.max });
        }
        if self.buf.len() - PREFIX_LEN < len {
            return Ok(None);
        }
        self.buf.advance(PREFIX_LEN);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Checks the end of the stream: an error if it cut a message.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(FrameError::Truncated(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn stream(messages: &[&[u8]]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for m in messages {
            encode(m, DEFAULT_MAX_MESSAGE, &mut out).unwrap();
        }
        out.to_vec()
    }

    #[test]
    fn round_trip_across_any_chunking() {
        let messages: [&[u8]; 4] = [b"abc", b"", &[7u8; 300], b"z"];
        let bytes = stream(&messages);
        assert_eq!(&bytes[..4], &[0, 0, 0, 3], "big-endian length first");
        for split in 1..=bytes.len() {
            let mut decoder = FrameDecoder::new(DEFAULT_MAX_MESSAGE);
            let mut got = Vec::new();
            for chunk in bytes.chunks(split) {
                decoder.extend(chunk);
                while let Some(m) = decoder.next_message().unwrap() {
                    got.push(m.to_vec());
                }
            }
            decoder.finish().unwrap();
            let want: Vec<Vec<u8>> = messages.iter().map(|m| m.to_vec()).collect();
            assert_eq!(got, want, "chunks of {split}");
        }
    }

    #[test]
    fn over_the_bound_is_refused_from_the_prefix_alone() {
        let mut out = BytesMut::new();
        assert_eq!(
            encode(&[0; 9], 8, &mut out),
            Err(FrameError::TooLong { len: 9, max: 8 })
        );
        assert!(out.is_empty(), "nothing written for a refused message");
        let mut decoder = FrameDecoder::new(8);
        decoder.extend(&9u32.to_be_bytes());
        let err = decoder.next_message().unwrap_err();
        assert_eq!(err.kind(), "too-long");
        assert_eq!(
            err.to_string(),
            "too-long: message of 9 bytes, the bound is 8"
        );
    }

    #[test]
    fn a_cut_message_is_truncated() {
        let bytes = stream(&[b"hello"]);
        let mut decoder = FrameDecoder::new(16);
        decoder.extend(&bytes[..6]);
        assert_eq!(decoder.next_message(), Ok(None));
        assert_eq!(decoder.finish(), Err(FrameError::Truncated(6)));
    }
}
