//! A send stream whose small writes are coalesced before they reach quinn:
//! [`BufferedSendStream`].
//!
//! quinn-proto 0.11 keeps every write as its own send-buffer segment and,
//! for each packet it fills, scans the unacknowledged segments from the
//! oldest. A stream fed one small `write_all` per message therefore spends
//! its time in that scan (docs/PERFORMANCE.md §9). A [`BufferedSendStream`]
//! keeps `write_all`'s contract — when it returns, the bytes will go out
//! with no further call — but moves a stream that takes more than one small
//! write onto a buffer and a flusher task ([`super::batch`]), which hands
//! everything written while its previous write was in progress to quinn as
//! one segment. There is no timer: the flusher writes as soon as it runs
//! ([`CoalesceConfig::max_delay`] zero), so the batching is exactly the
//! writes that came in while it was busy.
//!
//! A stream that is written once, or only in large writes (at least
//! [`SMALL_WRITE`] bytes), never starts the task: its writes go straight to
//! quinn, as with a plain [`SendStream`].
//!
//! Once batching, a write error (the peer stopped the stream, the
//! connection was lost) surfaces on the next [`BufferedSendStream::write_all`],
//! [`BufferedSendStream::flush`] or [`BufferedSendStream::finish`], as with
//! any buffered writer.

use bytes::Bytes;
use thiserror::Error;

use super::batch::{BatchSink, BatchWriter};
use super::coalesce::CoalesceConfig;
use super::writer::WriteFrameError;
use crate::SendStream;

/// Writes shorter than this many bytes are small: the second one moves the
/// stream onto the buffer.
pub const SMALL_WRITE: usize = 1024;

/// Writers wait while this many bytes are buffered and not yet handed to
/// quinn (the flusher is busy with the previous batch).
pub const MAX_BUFFERED: usize = 1 << 20;

/// Writing to a [`BufferedSendStream`] failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BufferedWriteError {
    /// The stream failed (stopped by the peer, connection lost); the detail
    /// is the stream's error.
    #[error("stream: {0}")]
    Stream(String),
    /// The stream was finished.
    #[error("closed: the stream is finished")]
    Closed,
}

impl BufferedWriteError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stream(_) => "stream",
            Self::Closed => "closed",
        }
    }
}

impl From<WriteFrameError> for BufferedWriteError {
    fn from(e: WriteFrameError) -> Self {
        match e {
            WriteFrameError::Closed => Self::Closed,
            WriteFrameError::Stream(detail) => Self::Stream(detail),
            // Raw pushes never frame; kept typed all the same.
            WriteFrameError::Frame(e) => Self::Stream(e.to_string()),
        }
    }
}

#[derive(Debug)]
enum Mode<S: BatchSink> {
    /// Writes go straight to the stream; `small` small writes so far.
    Direct { stream: S, small: u32 },
    /// Writes go through the buffer and its flusher.
    Batching(BatchWriter),
    /// Finished while direct.
    Finished,
}

/// A send stream that coalesces small writes. See the module docs.
#[derive(Debug)]
pub struct BufferedSendStream<S: BatchSink = SendStream> {
    mode: Mode<S>,
}

impl<S: BatchSink> BufferedSendStream<S> {
    /// Wraps `stream` (a [`SendStream`]). Must run inside a tokio runtime.
    pub fn new(stream: S) -> Self {
        Self {
            mode: Mode::Direct { stream, small: 0 },
        }
    }

    /// Writes all of `buf`. When this returns, the bytes go out without a
    /// further call; it waits only while quinn's flow control (direct) or
    /// the buffer bound ([`MAX_BUFFERED`]) holds the stream back.
    pub async fn write_all(&mut self, buf: &[u8]) -> Result<(), BufferedWriteError> {
        if let Mode::Direct { stream, small } = &mut self.mode {
            if buf.len() >= SMALL_WRITE || *small == 0 {
                if buf.len() < SMALL_WRITE {
                    *small += 1;
                }
                return stream
                    .write_batch(Bytes::copy_from_slice(buf))
                    .await
                    .map_err(BufferedWriteError::Stream);
            }
            self.start_batching();
        }
        match &self.mode {
            Mode::Batching(writer) => Ok(writer
                .push(|core, now| {
                    core.push_raw(buf, now);
                    Ok(())
                })
                .await?),
            Mode::Direct { .. } | Mode::Finished => Err(BufferedWriteError::Closed),
        }
    }

    /// Waits until quinn has taken everything written so far. Never needed
    /// for the bytes to go out; for a caller that wants write errors now.
    pub async fn flush(&mut self) -> Result<(), BufferedWriteError> {
        match &self.mode {
            Mode::Batching(writer) => Ok(writer.flush().await?),
            Mode::Direct { .. } => Ok(()),
            Mode::Finished => Err(BufferedWriteError::Closed),
        }
    }

    /// Ends the stream after what was written. Does not wait: buffered
    /// bytes are handed to quinn, then the stream is finished, in the
    /// background (as quinn's `finish` leaves sending to its driver).
    /// Returns an error a buffered write already met.
    pub fn finish(&mut self) -> Result<(), BufferedWriteError> {
        match std::mem::replace(&mut self.mode, Mode::Finished) {
            Mode::Direct { mut stream, .. } => {
                stream.finish();
                Ok(())
            }
            Mode::Batching(writer) => {
                let error = writer.error();
                // Dropping the writer closes it: its flusher hands quinn
                // what is buffered, then finishes the stream.
                drop(writer);
                error.map_or(Ok(()), |e| Err(e.into()))
            }
            Mode::Finished => Err(BufferedWriteError::Closed),
        }
    }

    /// Moves a direct stream onto the buffer and its flusher.
    fn start_batching(&mut self) {
        if let Mode::Direct { stream, .. } = std::mem::replace(&mut self.mode, Mode::Finished) {
            let config = CoalesceConfig {
                max_batch: SMALL_WRITE * 64,
                max_delay: std::time::Duration::ZERO,
                max_buffered: MAX_BUFFERED,
                max_message: usize::MAX,
            };
            self.mode = Mode::Batching(BatchWriter::new(stream, config));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records each write; writes after `fail_after` fail.
    #[derive(Clone, Default)]
    struct Recorder {
        writes: Arc<Mutex<Vec<Bytes>>>,
        finished: Arc<AtomicBool>,
        fail_after: Option<usize>,
        calls: Arc<AtomicUsize>,
    }

    impl BatchSink for Recorder {
        async fn write_batch(&mut self, batch: Bytes) -> Result<(), String> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail_after.is_some_and(|limit| n >= limit) {
                return Err("stopped by peer".into());
            }
            self.writes.lock().unwrap().push(batch);
            // A real stream's write returns to the scheduler now and then.
            tokio::task::yield_now().await;
            Ok(())
        }

        fn finish(&mut self) {
            self.finished.store(true, Ordering::SeqCst);
        }
    }

    impl Recorder {
        fn sizes(&self) -> Vec<usize> {
            self.writes
                .lock()
                .unwrap()
                .iter()
                .map(|b| b.len())
                .collect()
        }

        fn bytes(&self) -> Vec<u8> {
            self.writes.lock().unwrap().concat()
        }
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_small_write_and_large_writes_go_straight_through() {
        let sink = Recorder::default();
        let mut stream = BufferedSendStream::new(sink.clone());
        stream.write_all(b"request").await.unwrap();
        // No task hop: the stream has it when write_all returns.
        assert_eq!(sink.sizes(), vec![7]);
        stream.write_all(&[1; SMALL_WRITE]).await.unwrap();
        stream.write_all(&[2; 4 * SMALL_WRITE]).await.unwrap();
        assert_eq!(sink.sizes(), vec![7, SMALL_WRITE, 4 * SMALL_WRITE]);
        stream.finish().unwrap();
        assert!(sink.finished.load(Ordering::SeqCst));
        assert_eq!(stream.finish().unwrap_err().kind(), "closed");
    }

    #[tokio::test(start_paused = true)]
    async fn small_writes_are_coalesced_in_order_and_go_out_unflushed() {
        let sink = Recorder::default();
        let mut stream = BufferedSendStream::new(sink.clone());
        let mut sent = Vec::new();
        for i in 0..1000u32 {
            let message = i.to_be_bytes();
            stream.write_all(&message).await.unwrap();
            sent.extend_from_slice(&message);
        }
        // No flush and no finish: the flusher writes on its own.
        settle().await;
        assert_eq!(sink.bytes(), sent, "every byte, in order");
        let writes = sink.sizes().len();
        assert!(writes < 10, "1000 writes became {writes} stream writes");
        assert!(!sink.finished.load(Ordering::SeqCst));
        stream.write_all(b"last").await.unwrap();
        stream.finish().unwrap();
        settle().await;
        assert!(sink.bytes().ends_with(b"last"));
        assert!(sink.finished.load(Ordering::SeqCst));
        assert_eq!(stream.write_all(b"x").await.unwrap_err().kind(), "closed");
        assert_eq!(stream.finish().unwrap_err().kind(), "closed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_error_is_typed_and_sticky() {
        let sink = Recorder {
            fail_after: Some(1),
            ..Recorder::default()
        };
        let mut stream = BufferedSendStream::new(sink.clone());
        stream.write_all(b"a").await.unwrap();
        stream.write_all(b"b").await.unwrap();
        let err = stream.flush().await.unwrap_err();
        assert_eq!(err.to_string(), "stream: stopped by peer");
        assert_eq!(stream.write_all(b"c").await.unwrap_err().kind(), "stream");
        assert_eq!(stream.finish().unwrap_err().kind(), "stream");
        assert_eq!(sink.bytes(), b"a");
    }

    #[tokio::test(start_paused = true)]
    async fn a_direct_write_error_is_returned_at_once() {
        let sink = Recorder {
            fail_after: Some(0),
            ..Recorder::default()
        };
        let mut stream = BufferedSendStream::new(sink);
        let err = stream.write_all(&[0; SMALL_WRITE]).await.unwrap_err();
        assert_eq!(err.kind(), "stream");
    }
}
