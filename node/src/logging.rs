//! Log setup: `tracing` to stderr, filtered by `RUST_LOG` (default `info`).
//! Colors only when stderr is a terminal.
//!
//! Logging never panics and never fails a task: lines go through
//! [`LossyStderr`], which drops a line it cannot write (stderr closed, a
//! broken pipe, a full non-blocking pipe) and counts it
//! ([`dropped_lines`], exported as `relay_node_log_lines_dropped_total`).
//! Plain `eprintln!` would panic on such an error, and the fmt layer's own
//! error report is an `eprintln!` too, so that report is turned off.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Log lines dropped because stderr could not take them.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// How many log lines were dropped since the process started.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Installs the global subscriber; a second call is a no-op.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LossyStderr::new(&DROPPED))
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false)
        .try_init();
}

/// Writes one line to stderr, ignoring any error (a closed stderr must not
/// panic the process the way `eprintln!` does). For the few lines printed
/// outside `tracing`.
pub fn stderr_line(line: &str) {
    let mut writer = LossyStderr::new(&DROPPED).make_writer();
    let _ = writeln!(writer, "{line}");
}

/// A [`MakeWriter`] for stderr whose writers never return an error: a
/// line that cannot be written is dropped and counted once in `counter`.
#[derive(Debug, Clone, Copy)]
pub struct LossyStderr {
    counter: &'static AtomicU64,
}

impl LossyStderr {
    /// Counts dropped lines in `counter`.
    pub fn new(counter: &'static AtomicU64) -> Self {
        Self { counter }
    }
}

impl<'a> MakeWriter<'a> for LossyStderr {
    type Writer = LossyWriter<std::io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        LossyWriter::new(std::io::stderr(), self.counter)
    }
}

/// One line's writer (the fmt layer makes one per event and writes the
/// whole line with one `write_all`). After the first error the rest of the
/// line is discarded; the line counts as dropped once.
#[derive(Debug)]
pub struct LossyWriter<W: Write> {
    inner: W,
    counter: &'static AtomicU64,
    failed: bool,
}

impl<W: Write> LossyWriter<W> {
    /// Wraps `inner`, counting a dropped line in `counter`.
    pub fn new(inner: W, counter: &'static AtomicU64) -> Self {
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
}
