//! The coalescing core of [`super::writer`]: a sans-IO buffer of framed
//! messages that says when a batch is due (size or time bound) and whether
//! senders must wait (buffer bound). It takes `now` as input and never
//! reads a clock.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::framing::{self, FrameError};

/// Bounds of a coalescing writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalesceConfig {
    /// A batch is written once this many bytes are buffered (default
    /// 64 KiB: one stream write carries about a thousand 64-byte messages).
    pub max_batch: usize,
    /// A message waits at most this long for others before its batch is
    /// written (default 1 ms). Zero writes at once whatever is buffered.
    pub max_delay: Duration,
    /// Senders wait while this many bytes are buffered and not yet handed
    /// to the stream (default 1 MiB).
    pub max_buffered: usize,
    /// Bound on one message's length (default
    /// [`framing::DEFAULT_MAX_MESSAGE`], 1 MiB).
    pub max_message: usize,
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        Self {
            max_batch: 64 * 1024,
            max_delay: Duration::from_millis(1),
            max_buffered: 1 << 20,
            max_message: framing::DEFAULT_MAX_MESSAGE,
        }
    }
}

/// Framed messages waiting to be written.
#[derive(Debug)]
pub struct Coalescer {
    config: CoalesceConfig,
    buf: BytesMut,
    /// When the oldest buffered message came.
    oldest: Option<Instant>,
}

impl Coalescer {
    /// An empty buffer with `config`'s bounds.
    pub fn new(config: CoalesceConfig) -> Self {
        Self {
            config,
            buf: BytesMut::new(),
            oldest: None,
        }
    }

    /// Buffers `message` (with its prefix) at `now`. A message is always
    /// taken when the buffer is empty, so one larger than
    /// [`CoalesceConfig::max_buffered`] still goes out.
    pub fn push(&mut self, message: &[u8], now: Instant) -> Result<(), FrameError> {
        framing::encode(message, self.config.max_message, &mut self.buf)?;
        self.oldest.get_or_insert(now);
        Ok(())
    }

    /// Buffers `bytes` as they are, with no prefix, at `now` (for a plain
    /// byte stream; see [`super::buffered`]).
    pub fn push_raw(&mut self, bytes: &[u8], now: Instant) {
        self.buf.extend_from_slice(bytes);
        self.oldest.get_or_insert(now);
    }

    /// When the oldest buffered message came (`None` if empty). A driver
    /// passes this as `now` to [`Self::push`] to skip reading the clock
    /// for every message after the first of a batch.
    pub fn oldest(&self) -> Option<Instant> {
        self.oldest
    }

    /// Whether a sender may push now (below the buffer bound).
    pub fn has_room(&self) -> bool {
        self.buf.len() < self.config.max_buffered
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes buffered.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the size bound is reached.
    pub fn batch_full(&self) -> bool {
        self.buf.len() >= self.config.max_batch
    }

    /// When the buffered batch is due by the time bound (`None` if empty).
    pub fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|at| at + self.config.max_delay)
    }

    /// Whether a batch is due at `now` (size or time bound).
    pub fn due(&self, now: Instant) -> bool {
        !self.is_empty() && (self.batch_full() || self.deadline().is_some_and(|d| d <= now))
    }

    /// Takes everything buffered as one batch.
    pub fn take(&mut self) -> Bytes {
        self.oldest = None;
        self.buf.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config() -> CoalesceConfig {
        CoalesceConfig {
            max_batch: 100,
            max_delay: Duration::from_millis(5),
            max_buffered: 200,
            max_message: 64,
        }
    }

    #[test]
    fn due_by_size() {
        let now = Instant::now();
        let mut c = Coalescer::new(config());
        for _ in 0..2 {
            c.push(&[1; 44], now).unwrap();
        }
        assert_eq!(c.len(), 96);
        assert!(!c.due(now), "below the size bound, before the deadline");
        c.push(&[1; 0], now).unwrap();
        assert!(c.batch_full() && c.due(now));
        let batch = c.take();
        assert_eq!(batch.len(), 100);
        assert!(c.is_empty() && c.deadline().is_none() && !c.due(now));
    }

    #[test]
    fn due_by_time_from_the_oldest_message() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(config());
        assert_eq!(c.deadline(), None);
        c.push(b"a", t0).unwrap();
        c.push(b"b", t0 + Duration::from_millis(3)).unwrap();
        assert_eq!(c.deadline(), Some(t0 + Duration::from_millis(5)));
        assert!(!c.due(t0 + Duration::from_millis(4)));
        assert!(c.due(t0 + Duration::from_millis(5)));
        c.take();
        c.push(b"c", t0 + Duration::from_millis(9)).unwrap();
        assert_eq!(c.deadline(), Some(t0 + Duration::from_millis(14)));
    }

    #[test]
    fn buffer_bound_and_message_bound() {
        let now = Instant::now();
        let mut c = Coalescer::new(config());
        for _ in 0..3 {
            assert!(c.has_room());
            c.push(&[0; 64], now).unwrap();
        }
        assert_eq!(c.len(), 204);
        assert!(!c.has_room(), "at the buffer bound senders wait");
        assert_eq!(c.push(&[0; 65], now).unwrap_err().kind(), "too-long");
        assert_eq!(c.len(), 204, "a refused message leaves nothing behind");
    }
}
