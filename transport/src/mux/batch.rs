//! The batching machinery behind the coalescing writers
//! ([`super::writer::FramedWriter`] for framed messages,
//! [`super::buffered::BufferedSendStream`] for a plain byte stream): a
//! buffer shared between senders and one flusher task, which hands the
//! buffer to the stream as one write when the sans-IO [`Coalescer`] says a
//! batch is due (size or time bound), when [`BatchWriter::flush`] asks, or
//! at the end.
//!
//! Senders wait (backpressure) while [`CoalesceConfig::max_buffered`]
//! bytes are buffered. A sender wakes the flusher only when the buffer goes
//! from empty to non-empty or reaches the size bound, so a burst of writes
//! costs one wake-up per batch. This file only locks, reads the clock,
//! sleeps and writes.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::coalesce::{CoalesceConfig, Coalescer};
use super::framing::FrameError;
use super::writer::WriteFrameError;
use crate::SendStream;

/// Where a writer's batches go: a [`SendStream`], or anything else that
/// takes whole batches (tests use a recording sink).
pub trait BatchSink: Send + 'static {
    /// Writes one batch; an error ends the writer with its text.
    fn write_batch(&mut self, batch: Bytes) -> impl Future<Output = Result<(), String>> + Send;
    /// Ends the stream after the last batch.
    fn finish(&mut self);
}

impl BatchSink for SendStream {
    async fn write_batch(&mut self, batch: Bytes) -> Result<(), String> {
        // The batch moves into quinn's send buffer without a copy.
        self.write_chunk(batch).await.map_err(|e| e.to_string())
    }

    fn finish(&mut self) {
        let _ = SendStream::finish(self);
    }
}

#[derive(Debug)]
struct State {
    core: Coalescer,
    /// Bytes pushed / taken for writing / written, since the start.
    pushed: u64,
    taken: u64,
    written: u64,
    /// Everything pushed up to here must be written without waiting for a
    /// bound ([`BatchWriter::flush`]).
    flush_to: u64,
    closing: bool,
    error: Option<WriteFrameError>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the flusher.
    flusher: Notify,
    /// Wakes senders and flush callers after progress.
    progress: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the flusher does next.
enum Step {
    Write(Bytes),
    Wait(Option<Instant>),
    Finish,
}

/// A buffer and its flusher task on one send stream. See the module docs.
#[derive(Debug)]
pub(crate) struct BatchWriter {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl BatchWriter {
    /// Starts a writer (and its flusher task) on `stream`. Must run inside
    /// a tokio runtime.
    pub(crate) fn new(stream: impl BatchSink, config: CoalesceConfig) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                core: Coalescer::new(config),
                pushed: 0,
                taken: 0,
                written: 0,
                flush_to: 0,
                closing: false,
                error: None,
            }),
            flusher: Notify::new(),
            progress: Notify::new(),
        });
        let task = tokio::spawn(flusher(shared.clone(), stream));
        Self {
            shared,
            task: Some(task),
        }
    }

    /// Appends to the buffer with `push` (given the core and the time the
    /// batch started); waits only while the buffer bound is reached.
    pub(crate) async fn push(
        &self,
        mut push: impl FnMut(&mut Coalescer, std::time::Instant) -> Result<(), FrameError>,
    ) -> Result<(), WriteFrameError> {
        loop {
            let progress = {
                let mut state = self.shared.lock();
                if let Some(e) = &state.error {
                    return Err(e.clone());
                }
                if state.closing {
                    return Err(WriteFrameError::Closed);
                }
                if state.core.has_room() || state.core.is_empty() {
                    let was_empty = state.core.is_empty();
                    let before = state.core.len();
                    // The clock is read once per batch, not per write.
                    let now = state
                        .core
                        .oldest()
                        .unwrap_or_else(|| Instant::now().into_std());
                    push(&mut state.core, now)?;
                    state.pushed += (state.core.len() - before) as u64;
                    let wake = was_empty || state.core.batch_full();
                    drop(state);
                    if wake {
                        self.shared.flusher.notify_one();
                    }
                    return Ok(());
                }
                // Registered before the lock is released: no wake-up lost.
                self.shared.progress.notified()
            };
            progress.await;
        }
    }

    /// Writes everything pushed so far to the stream now, and waits until
    /// the stream has taken it.
    pub(crate) async fn flush(&self) -> Result<(), WriteFrameError> {
        let target = {
            let mut state = self.shared.lock();
            state.flush_to = state.pushed;
            state.pushed
        };
        self.shared.flusher.notify_one();
        loop {
            let progress = {
                let state = self.shared.lock();
                if let Some(e) = &state.error {
                    return Err(e.clone());
                }
                if state.written >= target {
                    return Ok(());
                }
                self.shared.progress.notified()
            };
            progress.await;
        }
    }

    /// Writes what is buffered, finishes the stream and waits for the
    /// flusher to end.
    pub(crate) async fn finish(mut self) -> Result<(), WriteFrameError> {
        self.close();
        if let Some(task) = self.task.take() {
            task.await
                .map_err(|e| WriteFrameError::Stream(e.to_string()))?;
        }
        self.error().map_or(Ok(()), Err)
    }

    /// The error that ended the writer, if any.
    pub(crate) fn error(&self) -> Option<WriteFrameError> {
        self.shared.lock().error.clone()
    }

    /// Asks the flusher to write what is buffered and finish the stream,
    /// without waiting.
    pub(crate) fn close(&self) {
        self.shared.lock().closing = true;
        self.shared.flusher.notify_one();
    }
}

impl Drop for BatchWriter {
    /// Dropped without [`BatchWriter::finish`]: the flusher still writes
    /// what is buffered and finishes the stream, in the background.
    fn drop(&mut self) {
        self.close();
    }
}

/// The flusher task: writes batches when the core says they are due.
async fn flusher(shared: Arc<Shared>, mut stream: impl BatchSink) {
    loop {
        let step = {
            let mut state = shared.lock();
            let now = Instant::now().into_std();
            let forced = state.closing || state.flush_to > state.taken;
            if !state.core.is_empty() && (forced || state.core.due(now)) {
                let batch = state.core.take();
                state.taken += batch.len() as u64;
                Step::Write(batch)
            } else if state.core.is_empty() && state.closing {
                Step::Finish
            } else {
                Step::Wait(state.core.deadline().map(Instant::from_std))
            }
        };
        match step {
            Step::Write(batch) => {
                // Room in the buffer again.
                shared.progress.notify_waiters();
                let len = batch.len() as u64;
                let result = stream.write_batch(batch).await;
                let mut state = shared.lock();
                match result {
                    Ok(()) => state.written += len,
                    Err(e) => state.error = Some(WriteFrameError::Stream(e)),
                }
                let failed = state.error.is_some();
                drop(state);
                shared.progress.notify_waiters();
                if failed {
                    return;
                }
            }
            Step::Wait(deadline) => match deadline {
                Some(at) => {
                    tokio::select! {
                        _ = shared.flusher.notified() => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => shared.flusher.notified().await,
            },
            Step::Finish => {
                stream.finish();
                shared.progress.notify_waiters();
                return;
            }
        }
    }
}
