//! One peer's outgoing reliable channel frames, shared by the driver (which
//! appends framed frames) and the peer's writer task (which takes
//! everything buffered as one stream write).
//!
//! Nothing is ever dropped here. The buffer has a soft bound
//! ([`OUTBOX_BYTES`]): while it is reached the driver holds the peer's
//! further frames back (in order) and the writer wakes the driver once it
//! has taken the buffer, so the peer's memory is this bound plus what the
//! peer's credit lets the cores produce.

use std::sync::{Mutex, MutexGuard};

use relay_proto::frame_stream::{encode_frame, FrameError};
use tokio::sync::Notify;

/// Bytes buffered for one peer before the driver holds frames back.
pub const OUTBOX_BYTES: usize = 1 << 20;

#[derive(Debug, Default)]
struct State {
    /// Length-prefixed frames not yet taken by the writer.
    buf: Vec<u8>,
    /// The driver held frames back since the writer last took the buffer.
    held: bool,
    /// No more frames will come: the writer finishes the stream.
    closed: bool,
}

/// One peer's buffered frames.
#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer (frames, or closed).
    ready: Notify,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `frame` (encoded) if the buffer is below its bound; `false`
    /// when full (the caller holds it back and retries once woken).
    pub fn try_push(&self, frame: &[u8]) -> Result<bool, FrameError> {
        let mut s = self.lock();
        if s.buf.len() >= OUTBOX_BYTES {
            s.held = true;
            return Ok(false);
        }
        let was_empty = s.buf.is_empty();
        encode_frame(frame, &mut s.buf)?;
        drop(s);
        if was_empty {
            self.ready.notify_one();
        }
        Ok(true)
    }

    /// No more frames: the writer writes what is buffered, then finishes.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Waits for frames and swaps them into `batch` (which is cleared
    /// first, and whose allocation the outbox reuses). Returns whether the
    /// driver held frames back (so must be woken), or `None` once closed
    /// and empty.
    pub async fn take(&self, batch: &mut Vec<u8>) -> Option<bool> {
        loop {
            {
                let mut s = self.lock();
                if !s.buf.is_empty() {
                    batch.clear();
                    std::mem::swap(batch, &mut s.buf);
                    return Some(std::mem::take(&mut s.held));
                }
                if s.closed {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn full_holds_back_and_take_reports_it() {
        let o = Outbox::default();
        let frame = vec![7u8; 1000];
        let mut pushed = 0;
        while o.try_push(&frame).unwrap() {
            pushed += 1;
        }
        assert_eq!(pushed, OUTBOX_BYTES.div_ceil(1004));
        let mut batch = Vec::new();
        assert_eq!(o.take(&mut batch).await, Some(true));
        assert_eq!(batch.len(), pushed * 1004);
        assert_eq!(&batch[..4], &1000u32.to_be_bytes());
        assert!(o.try_push(&frame).unwrap(), "room again after the take");
        o.close();
        assert_eq!(
            o.take(&mut batch).await,
            Some(false),
            "buffered frames still go"
        );
        assert_eq!(batch.len(), 1004);
        assert_eq!(o.take(&mut batch).await, None);
    }
}
