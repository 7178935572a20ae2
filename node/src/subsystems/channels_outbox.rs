//! One peer's outgoing reliable channel frames, shared by the driver (which
//! encodes frames straight into the buffer, length-prefixed, under one lock
//! per run of frames) and the peer's writer task (which takes everything
//! buffered as one stream write).
//!
//! Nothing is ever dropped here. The buffer has a soft bound
//! ([`OUTBOX_BYTES`]): while it is reached the driver holds the peer's
//! further frames back (in order) and the writer wakes the driver once it
//! has taken the buffer, so the peer's memory is this bound plus what the
//! peer's credit lets the cores produce.

use std::sync::{Mutex, MutexGuard};

use relay_proto::wire::channel::{ChannelFrame, ChannelFrameError};
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

    /// Opens the buffer for appending a run of frames (one lock for all
    /// of them; the writer is woken when the appender is dropped).
    pub fn append(&self) -> Appender<'_> {
        Appender {
            outbox: self,
            state: self.lock(),
            wake: false,
        }
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

/// Appends frames to an [`Outbox`] (see [`Outbox::append`]).
#[derive(Debug)]
pub struct Appender<'a> {
    outbox: &'a Outbox,
    state: MutexGuard<'a, State>,
    /// The buffer was empty: the writer may be waiting.
    wake: bool,
}

impl Appender<'_> {
    /// Encodes `frame` (length-prefixed) into the buffer if it is below
    /// its bound; `Ok(false)` when full (the caller holds the frame back
    /// and retries once woken).
    pub fn push(&mut self, frame: &ChannelFrame) -> Result<bool, ChannelFrameError> {
        if self.state.buf.len() >= OUTBOX_BYTES {
            self.state.held = true;
            return Ok(false);
        }
        self.wake |= self.state.buf.is_empty();
        frame.encode_into(&mut self.state.buf)?;
        Ok(true)
    }
}

impl Drop for Appender<'_> {
    fn drop(&mut self) {
        if self.wake && !self.state.buf.is_empty() {
            self.outbox.ready.notify_one();
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
        let frame = ChannelFrame::Publish {
            link: 1,
            seq: 2,
            data: vec![7u8; 1000].into(),
        };
        let framed = frame.encode().unwrap().len() + 4;
        let mut pushed = 0;
        while o.append().push(&frame).unwrap() {
            pushed += 1;
        }
        assert_eq!(pushed, OUTBOX_BYTES.div_ceil(framed));
        let mut batch = Vec::new();
        assert_eq!(o.take(&mut batch).await, Some(true));
        assert_eq!(batch.len(), pushed * framed);
        assert_eq!(&batch[..4], &((framed - 4) as u32).to_be_bytes());
        assert_eq!(
            ChannelFrame::decode(&batch[4..framed]).unwrap(),
            frame,
            "the frame as encoded"
        );
        {
            let mut a = o.append();
            assert!(a.push(&frame).unwrap(), "room again after the take");
            assert!(a.push(&frame).unwrap(), "one lock, two frames");
        }
        o.close();
        assert_eq!(
            o.take(&mut batch).await,
            Some(false),
            "buffered frames still go"
        );
        assert_eq!(batch.len(), 2 * framed);
        assert_eq!(o.take(&mut batch).await, None);
    }
}
