//! Reads the messages a [`super::writer::FramedWriter`] wrote: the
//! stream's chunks go through a [`FrameDecoder`], so one read yields every
//! whole message it carries, without a read per message.

use bytes::Bytes;
use thiserror::Error;

use super::framing::{FrameDecoder, FrameError};
use crate::RecvStream;

/// Reading a framed message failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadFrameError {
    /// The peer broke the framing (over the bound, cut short).
    #[error("{0}")]
    Frame(FrameError),
    /// The stream failed (reset by the peer, connection lost); the detail
    /// is the stream's error.
    #[error("stream: {0}")]
    Stream(String),
}

impl ReadFrameError {
    /// The stable kind (a framing error keeps its own).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Frame(e) => e.kind(),
            Self::Stream(_) => "stream",
        }
    }
}

impl From<FrameError> for ReadFrameError {
    fn from(e: FrameError) -> Self {
        Self::Frame(e)
    }
}

/// Length-prefixed messages from one receive stream.
#[derive(Debug)]
pub struct FramedReader {
    stream: RecvStream,
    decoder: FrameDecoder,
}

impl FramedReader {
    /// Reads `stream`, refusing messages longer than `max_message` bytes.
    pub fn new(stream: RecvStream, max_message: usize) -> Self {
        Self {
            stream,
            decoder: FrameDecoder::new(max_message),
        }
    }

    /// The next message; `None` at a clean end of the stream.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ReadFrameError> {
        loop {
            if let Some(message) = self.decoder.next_message()? {
                return Ok(Some(message));
            }
            match self.stream.read_chunk(usize::MAX, true).await {
                Ok(Some(chunk)) => self.decoder.extend(&chunk.bytes),
                Ok(None) => {
                    self.decoder.finish()?;
                    return Ok(None);
                }
                Err(e) => return Err(ReadFrameError::Stream(e.to_string())),
            }
        }
    }
}
