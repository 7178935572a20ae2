//! Log output: `tracing` to stderr, filtered by `RUST_LOG` (default
//! `info`). Colors only when stderr is a terminal.
//!
//! Logging never panics, never fails a task and never blocks one:
//!
//! - An event is formatted into one line on the task that logs it and
//!   handed to a bounded queue ([`QUEUE_LINES`] lines) without waiting.
//! - One writer thread takes lines off the queue and writes them to
//!   stderr. A stderr nobody reads (a full pipe) stalls only that thread.
//! - A line that cannot be written (stderr closed, a broken pipe) or that
//!   finds the queue full is dropped and counted ([`dropped_lines`],
//!   exported as `relay_node_log_lines_dropped_total`).
//!
//! `eprintln!` would panic on a closed stderr, and the fmt layer's own
//! error report is an `eprintln!` too, so that report is off and the few
//! lines the binary prints outside `tracing` go through [`stderr_line`].
//! [`LogGuard`] flushes the queue (within [`FLUSH_TIMEOUT`]) when dropped,
//! so the last lines are not lost when `main` returns.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Lines waiting for the writer thread at most; more are dropped.
pub const QUEUE_LINES: usize = 1024;
/// How long dropping the [`LogGuard`] waits for queued lines to be written.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Log lines dropped since the process started.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// The installed sink, for [`stderr_line`].
static SINK: OnceLock<LineSink> = OnceLock::new();

/// How many log lines were dropped since the process started.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Installs the global subscriber and starts the writer thread; keep the
/// guard until the process ends. A second call installs nothing.
pub fn init() -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (sink, guard) = match spawn_writer(std::io::stderr(), QUEUE_LINES, &DROPPED) {
        Ok((sink, guard)) => (sink, guard),
        // No thread: write in place (still never panics).
        Err(_) => {
            let sink = LineSink::direct(&DROPPED);
            (sink.clone(), LogGuard { sink })
        }
    };
    if SINK.set(sink.clone()).is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(sink)
            .with_ansi(std::io::stderr().is_terminal())
            .log_internal_errors(false)
            .try_init();
    }
    guard
}

/// Writes one line to stderr, in order with the log lines, without ever
/// panicking (a closed stderr drops it), and waits (at most
/// [`FLUSH_TIMEOUT`]) until it is written. For the few lines printed
/// outside `tracing`, e.g. `error: kind: detail`.
pub fn stderr_line(line: &str) {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    match SINK.get() {
        Some(sink) => {
            sink.send(bytes);
            sink.flush(FLUSH_TIMEOUT);
        }
        None => LineSink::direct(&DROPPED).send(bytes),
    }
}

enum Msg {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// Where formatted lines go: the writer thread's queue, or (without one)
/// straight to stderr. A [`MakeWriter`] for the fmt layer.
#[derive(Clone)]
pub struct LineSink {
    queue: Option<SyncSender<Msg>>,
    counter: &'static AtomicU64,
}

impl std::fmt::Debug for LineSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineSink")
            .field("queued", &self.queue.is_some())
            .finish()
    }
}

impl LineSink {
    fn direct(counter: &'static AtomicU64) -> Self {
        Self {
            queue: None,
            counter,
        }
    }

    /// Waits until every line queued so far is written (or dropped), for
    /// at most `timeout`; whether that happened in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(queue) = &self.queue else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        let (ack, done) = sync_channel(1);
        let mut msg = Msg::Flush(ack);
        // The queue may be full; wait for room, but not past the deadline.
        loop {
            match queue.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    msg = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        done.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// Hands one whole line on, or drops and counts it.
    fn send(&self, line: Vec<u8>) {
        match &self.queue {
            Some(queue) => {
                if queue.try_send(Msg::Line(line)).is_err() {
                    self.counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                let mut out = LossyWriter::new(std::io::stderr(), self.counter);
                let _ = out.write_all(&line);
            }
        }
    }
}

impl<'a> MakeWriter<'a> for LineSink {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            sink: self,
            buf: Vec::new(),
        }
    }
}

/// One event's line, collected and handed to the sink when dropped (the
/// fmt layer makes one per event).
#[derive(Debug)]
pub struct Line<'a> {
    sink: &'a LineSink,
    buf: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.sink.send(std::mem::take(&mut self.buf));
        }
    }
}

/// Flushes the log queue when dropped.
#[derive(Debug)]
pub struct LogGuard {
    sink: LineSink,
}

impl LogGuard {
    /// Waits until every line queued so far is written (or dropped), for
    /// at most `timeout`; whether that happened in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.sink.flush(timeout)
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.flush(FLUSH_TIMEOUT);
    }
}

/// Starts the writer thread on `out` with a queue of `capacity` lines.
fn spawn_writer<W: Write + Send + 'static>(
    out: W,
    capacity: usize,
    counter: &'static AtomicU64,
) -> std::io::Result<(LineSink, LogGuard)> {
    let (queue, lines) = sync_channel(capacity);
    std::thread::Builder::new()
        .name("relay-node-log".into())
        .spawn(move || write_lines(out, &lines, counter))?;
    let sink = LineSink {
        queue: Some(queue),
        counter,
    };
    Ok((sink.clone(), LogGuard { sink }))
}

/// The writer thread: writes lines until every sender is gone.
fn write_lines<W: Write>(mut out: W, lines: &Receiver<Msg>, counter: &'static AtomicU64) {
    for msg in lines {
        match msg {
            Msg::Line(line) => {
                let mut w = LossyWriter::new(&mut out, counter);
                let _ = w.write_all(&line);
                let _ = w.flush();
            }
            Msg::Flush(ack) => {
                let _ = ack.send(());
            }
        }
    }
}

/// One line's writer that never returns an error: after the first error
/// the rest of the line is discarded and the line counts as dropped once.
#[derive(Debug)]
struct LossyWriter<W: Write> {
    inner: W,
    counter: &'static AtomicU64,
    failed: bool,
}

impl<W: Write> LossyWriter<W> {
    fn new(inner: W, counter: &'static AtomicU64) -> Self {
        Self {
            inner,
            counter,
            failed: false,
        }
    }

    fn fail(&mut self) {
        if !self.failed {
            self.failed = true;
            self.counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<W: Write> Write for LossyWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.failed || buf.is_empty() {
            return Ok(buf.len());
        }
        loop {
            match self.inner.write(buf) {
                // A writer that takes nothing would make `write_all` fail
                // with `WriteZero`; drop the line instead.
                Ok(0) => {
                    self.fail();
                    return Ok(buf.len());
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.fail();
                    return Ok(buf.len());
                }
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.failed && self.inner.flush().is_err() {
            self.fail();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;
    use std::sync::mpsc::channel;
    use std::sync::{Arc, Mutex};

    /// Fails every write with `kind`; counts the calls.
    struct Failing {
        kind: ErrorKind,
        calls: usize,
    }

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            self.calls += 1;
            Err(self.kind.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(self.kind.into())
        }
    }

    #[test]
    fn a_broken_pipe_drops_and_counts_the_line_once() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut w = LossyWriter::new(
            Failing {
                kind: ErrorKind::BrokenPipe,
                calls: 0,
            },
            &COUNTER,
        );
        w.write_all(b"first part of a line ").unwrap();
        w.write_all(b"rest of it\n").unwrap();
        w.flush().unwrap();
        assert_eq!(COUNTER.load(Ordering::Relaxed), 1);
        assert_eq!(w.inner.calls, 1, "no retry after the first failure");

        let mut next = LossyWriter::new(
            Failing {
                kind: ErrorKind::WouldBlock,
                calls: 0,
            },
            &COUNTER,
        );
        writeln!(next, "another line").unwrap();
        assert_eq!(COUNTER.load(Ordering::Relaxed), 2);
    }

    /// Interrupted once, then takes everything.
    struct InterruptedOnce {
        interrupted: bool,
        out: Vec<u8>,
    }

    impl Write for InterruptedOnce {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if !self.interrupted {
                self.interrupted = true;
                return Err(ErrorKind::Interrupted.into());
            }
            self.out.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_interrupted_write_is_retried_not_dropped() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut w = LossyWriter::new(
            InterruptedOnce {
                interrupted: false,
                out: Vec::new(),
            },
            &COUNTER,
        );
        w.write_all(b"kept\n").unwrap();
        assert_eq!(w.inner.out, b"kept\n");
        assert_eq!(COUNTER.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_writer_that_takes_nothing_drops_the_line() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut w = LossyWriter::new(&mut [0u8; 0][..], &COUNTER);
        w.write_all(b"no room\n").unwrap();
        assert_eq!(COUNTER.load(Ordering::Relaxed), 1);
    }

    /// A stderr nobody reads: the first write reports that it started,
    /// then blocks until released.
    struct Stuck {
        started: Option<std::sync::mpsc::Sender<()>>,
        release: Receiver<()>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(started) = self.started.take() {
                started.send(()).unwrap();
                self.release.recv().unwrap();
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log_line(sink: &LineSink, n: usize) {
        let mut line = sink.make_writer();
        writeln!(line, "line {n}").unwrap();
    }

    #[test]
    fn a_stuck_stderr_never_blocks_the_logger_and_overflow_is_counted() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let (started_tx, started) = channel();
        let (release, release_rx) = channel();
        let out = Arc::new(Mutex::new(Vec::new()));
        let stuck = Stuck {
            started: Some(started_tx),
            release: release_rx,
            out: out.clone(),
        };
        let (sink, guard) = spawn_writer(stuck, 4, &COUNTER).unwrap();
        log_line(&sink, 0);
        // The writer thread holds line 0 and is stuck writing it.
        started.recv().unwrap();
        // Four lines fill the queue; six more are dropped, none blocks.
        for n in 1..=10 {
            log_line(&sink, n);
        }
        assert_eq!(COUNTER.load(Ordering::Relaxed), 6);
        assert!(!guard.flush(Duration::from_millis(50)), "still stuck");
        release.send(()).unwrap();
        assert!(guard.flush(Duration::from_secs(60)));
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "line 0\nline 1\nline 2\nline 3\nline 4\n");
    }

    #[test]
    fn lines_are_written_whole_and_in_order() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let (started_tx, started) = channel();
        let (release, release_rx) = channel();
        release.send(()).unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let writer = Stuck {
            started: Some(started_tx),
            release: release_rx,
            out: out.clone(),
        };
        let (sink, guard) = spawn_writer(writer, QUEUE_LINES, &COUNTER).unwrap();
        let mut line = sink.make_writer();
        write!(line, "one ").unwrap();
        write!(line, "event").unwrap();
        writeln!(line).unwrap();
        drop(line);
        log_line(&sink, 2);
        drop(guard);
        started.recv().unwrap();
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "one event\nline 2\n");
        assert_eq!(COUNTER.load(Ordering::Relaxed), 0);
    }
}
