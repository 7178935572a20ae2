//! A coalescing, framed writer for many small messages on one stream.
//!
//! Writing each small message with its own `write_all` costs a stream
//! write, a connection-lock round and often a task wake-up per message.
//! [`FramedWriter::send`] instead appends the message, behind its 4-byte
//! length ([`super::framing`]), to a buffer; a flusher task hands the
//! buffer to the stream as one write once [`CoalesceConfig::max_batch`]
//! bytes are in, once the oldest message has waited
//! [`CoalesceConfig::max_delay`], or when [`FramedWriter::flush`] asks.
//! Senders wait (backpressure) while [`CoalesceConfig::max_buffered`]
//! bytes are buffered. [`super::reader::FramedReader`] reads the messages
//! back.
//!
//! The buffer and its flusher task are [`super::batch`]'s; the policy
//! (when a batch is due) lives in the sans-IO
//! [`super::coalesce::Coalescer`]. This file adds the framing.

use thiserror::Error;

pub use super::batch::BatchSink;
use super::batch::BatchWriter;
use super::coalesce::CoalesceConfig;
use super::framing::FrameError;

/// Sending through a [`FramedWriter`] failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WriteFrameError {
    /// The message broke the framing bound.
    #[error("{0}")]
    Frame(FrameError),
    /// The stream failed (reset by the peer, connection lost); the detail
    /// is the stream's error.
    #[error("stream: {0}")]
    Stream(String),
    /// The writer was finished.
    #[error("closed: the writer is finished")]
    Closed,
}

impl WriteFrameError {
    /// The stable kind (a framing error keeps its own).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Frame(e) => e.kind(),
            Self::Stream(_) => "stream",
            Self::Closed => "closed",
        }
    }
}

impl From<FrameError> for WriteFrameError {
    fn from(e: FrameError) -> Self {
        Self::Frame(e)
    }
}

/// A buffered, framed writer on one send stream. See the module docs.
#[derive(Debug)]
pub struct FramedWriter {
    inner: BatchWriter,
}

impl FramedWriter {
    /// Starts a writer (and its flusher task) on `stream` (a
    /// [`crate::SendStream`]). Must run inside a tokio runtime.
    pub fn new(stream: impl BatchSink, config: CoalesceConfig) -> Self {
        Self {
            inner: BatchWriter::new(stream, config),
        }
    }

    /// Buffers one message; waits only while the buffer bound is reached.
    pub async fn send(&self, message: &[u8]) -> Result<(), WriteFrameError> {
        self.inner.push(|core, now| core.push(message, now)).await
    }

    /// Writes everything sent so far to the stream now, and waits until
    /// the stream has taken it.
    pub async fn flush(&self) -> Result<(), WriteFrameError> {
        self.inner.flush().await
    }

    /// Writes what is buffered, finishes the stream and waits for the
    /// flusher to end. Dropped without it, the writer still writes what is
    /// buffered and finishes the stream, in the background.
    pub async fn finish(self) -> Result<(), WriteFrameError> {
        self.inner.finish().await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::sync::Semaphore;
    use tokio::time::Instant;

    use super::*;
    use crate::mux::framing::FrameDecoder;

    /// Records each batch with the (paused) time it was written; writes
    /// wait for a permit when gated.
    #[derive(Clone, Default)]
    struct Recorder {
        batches: Arc<Mutex<Vec<(Instant, Bytes)>>>,
        finished: Arc<AtomicBool>,
        gate: Option<Arc<Semaphore>>,
        fail: bool,
    }

    impl BatchSink for Recorder {
        async fn write_batch(&mut self, batch: Bytes) -> Result<(), String> {
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            if self.fail {
                return Err("reset by peer".into());
            }
            self.batches.lock().unwrap().push((Instant::now(), batch));
            Ok(())
        }

        fn finish(&mut self) {
            self.finished.store(true, Ordering::SeqCst);
        }
    }

    impl Recorder {
        fn sizes(&self) -> Vec<usize> {
            self.batches
                .lock()
                .unwrap()
                .iter()
                .map(|b| b.1.len())
                .collect()
        }

        fn messages(&self) -> Vec<Bytes> {
            let mut decoder = FrameDecoder::new(1024);
            for (_, batch) in self.batches.lock().unwrap().iter() {
                decoder.extend(batch);
            }
            let mut out = Vec::new();
            while let Some(m) = decoder.next_message().unwrap() {
                out.push(m);
            }
            decoder.finish().unwrap();
            out
        }
    }

    fn config(max_batch: usize, max_delay_ms: u64) -> CoalesceConfig {
        CoalesceConfig {
            max_batch,
            max_delay: Duration::from_millis(max_delay_ms),
            max_buffered: 1000,
            max_message: 256,
        }
    }

    /// Lets the flusher task run what it can without time passing.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn coalesces_up_to_the_size_bound() {
        let sink = Recorder::default();
        let writer = FramedWriter::new(sink.clone(), config(100, 3_600_000));
        for i in 0..12u8 {
            writer.send(&[i; 16]).await.unwrap();
            settle().await;
        }
        // 20 bytes per framed message: batches at 100 bytes, 2 left over.
        assert_eq!(sink.sizes(), vec![100, 100]);
        writer.finish().await.unwrap();
        assert_eq!(sink.sizes(), vec![100, 100, 40]);
        assert!(sink.finished.load(Ordering::SeqCst));
        let got = sink.messages();
        assert_eq!(got.len(), 12);
        assert!(got.iter().enumerate().all(|(i, m)| m[..] == [i as u8; 16]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_message_waits_at_most_the_time_bound() {
        let sink = Recorder::default();
        let writer = FramedWriter::new(sink.clone(), config(1000, 5));
        let t0 = Instant::now();
        writer.send(b"one").await.unwrap();
        settle().await;
        assert!(sink.sizes().is_empty(), "not due yet");
        tokio::time::advance(Duration::from_millis(4)).await;
        writer.send(b"two").await.unwrap();
        settle().await;
        assert!(
            sink.sizes().is_empty(),
            "the bound runs from the oldest message"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        settle().await;
        let batches = sink.batches.lock().unwrap().clone();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].0 - t0, Duration::from_millis(5));
        assert_eq!(batches[0].1.len(), 14);
    }

    #[tokio::test(start_paused = true)]
    async fn flush_writes_at_once() {
        let sink = Recorder::default();
        let writer = FramedWriter::new(sink.clone(), config(1000, 3_600_000));
        let t0 = Instant::now();
        writer.send(b"now").await.unwrap();
        writer.flush().await.unwrap();
        assert_eq!(sink.sizes(), vec![7]);
        assert_eq!(Instant::now(), t0, "no time passed");
        writer.flush().await.unwrap();
        assert_eq!(sink.sizes(), vec![7], "nothing new to write");
    }

    #[tokio::test(start_paused = true)]
    async fn senders_wait_at_the_buffer_bound() {
        let gate = Arc::new(Semaphore::new(0));
        let sink = Recorder {
            gate: Some(gate.clone()),
            ..Recorder::default()
        };
        let mut bounds = config(40, 3_600_000);
        bounds.max_buffered = 60;
        let writer = FramedWriter::new(sink.clone(), bounds);
        // 20 bytes per framed message. The first batch (40 bytes) is stuck
        // in the sink; three more messages fill the buffer to its bound.
        for _ in 0..5 {
            writer.send(&[0; 16]).await.unwrap();
            settle().await;
        }
        let blocked = tokio::time::timeout(Duration::from_secs(1), writer.send(&[0; 16])).await;
        assert!(blocked.is_err(), "the sender waits for room");
        gate.add_permits(10);
        writer.send(&[0; 16]).await.unwrap();
        writer.finish().await.unwrap();
        assert_eq!(sink.messages().len(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_typed_and_sticky() {
        let sink = Recorder {
            fail: true,
            ..Recorder::default()
        };
        let writer = FramedWriter::new(sink, config(1000, 1));
        let err = writer.send(&[0; 257]).await.unwrap_err();
        assert_eq!(err.kind(), "too-long");
        writer.send(b"x").await.unwrap();
        let err = writer.flush().await.unwrap_err();
        assert_eq!(err.to_string(), "stream: reset by peer");
        assert_eq!(writer.send(b"y").await.unwrap_err().kind(), "stream");
    }
}
