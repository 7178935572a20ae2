//! Driving the `lab-stream` helper binary (`tests/src/bin/lab-stream.rs`)
//! inside lab namespaces: a receiver that verifies a numbered word stream
//! and a sender that writes it, both embedding the transport library and
//! reaching each other through a relay. Every line the helper prints is
//! kept; stderr goes to a log file. Processes are killed on drop.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::cmd::{LabError, LabResult};
use super::netns::Netns;

/// A running `lab-stream` process and the lines it has printed.
#[derive(Debug)]
pub struct StreamProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    log: PathBuf,
    /// The helper's own NodeId (from its `ready` line).
    pub id: String,
}

/// What both `lab-stream` roles need: the binary, the relay's join ticket
/// (a file), the address to bind and how long to wait for `ready`.
#[derive(Debug, Clone, Copy)]
pub struct StreamSetup<'a> {
    /// The `lab-stream` binary.
    pub bin: &'a Path,
    /// A file holding the relay's join ticket.
    pub ticket_file: &'a Path,
    /// The UDP address to bind (e.g. `0.0.0.0:7420`).
    pub listen: &'a str,
    /// How long to wait for the `ready` line.
    pub timeout: Duration,
}

impl StreamProc {
    /// Starts `lab-stream recv` in `ns`, stderr to `log`; waits for `ready`.
    pub fn receiver(setup: StreamSetup<'_>, ns: &Netns, log: &Path) -> LabResult<Self> {
        Self::start(setup, ns, &["recv"], log)
    }

    /// Starts `lab-stream send --peer PEER` in `ns` (paced to `rate_kib`
    /// KiB/s when given), stderr to `log`; waits for `ready`. The sender
    /// dials the peer through the relay once ready.
    pub fn sender(
        setup: StreamSetup<'_>,
        ns: &Netns,
        log: &Path,
        peer: &str,
        rate_kib: Option<u64>,
    ) -> LabResult<Self> {
        let rate = rate_kib.map(|r| r.to_string());
        let mut args = vec!["send", "--peer", peer];
        if let Some(rate) = &rate {
            args.extend(["--rate-kib", rate]);
        }
        Self::start(setup, ns, &args, log)
    }

    fn start(setup: StreamSetup<'_>, ns: &Netns, args: &[&str], log: &Path) -> LabResult<Self> {
        let stderr = std::fs::File::create(log)?;
        let mut child = ns
            .command(setup.bin)
            .args(args)
            .arg("--ticket-file")
            .arg(setup.ticket_file)
            .args(["--listen", setup.listen])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| LabError::Helper(format!("spawn {}: {e}", setup.bin.display())))?;
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut proc = Self {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            log: log.to_path_buf(),
            id: String::new(),
        };
        let ready = proc.wait_line(setup.timeout, |l| l.starts_with("ready "))?;
        proc.id = ready.trim_start_matches("ready ").trim().to_string();
        Ok(proc)
    }

    /// Sends one command line (`direct`, `finish MIB`) to the helper.
    pub fn command(&mut self, line: &str) -> LabResult<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| LabError::Helper("lab-stream stdin is closed".into()))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits up to `timeout` for a printed line matching `pred` (earlier
    /// lines count too) and returns it.
    pub fn wait_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> LabResult<String> {
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return Ok(line.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
                Err(_) => {
                    return Err(LabError::Helper(format!(
                        "no matching line from lab-stream within {timeout:?}; lines so far: {:?}\nstderr:\n{}",
                        self.seen,
                        self.log()
                    )))
                }
            }
        }
    }

    /// Waits for a `progress N` line with N >= `words`.
    pub fn wait_progress(&mut self, words: u64, timeout: Duration) -> LabResult<u64> {
        let line = self.wait_line(timeout, |l| progress(l).is_some_and(|n| n >= words))?;
        progress(&line).ok_or_else(|| LabError::Helper(format!("bad line {line:?}")))
    }

    /// Waits for the `summary <json>` line and parses it.
    pub fn summary(&mut self, timeout: Duration) -> LabResult<serde_json::Value> {
        let line = self.wait_line(timeout, |l| l.starts_with("summary "))?;
        serde_json::from_str(line.trim_start_matches("summary "))
            .map_err(|e| LabError::Helper(format!("bad summary {line:?}: {e}")))
    }

    /// Every line printed so far (without waiting for more).
    pub fn lines(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> LabResult<ExitStatus> {
        self.stdin.take();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(LabError::Helper(format!(
                    "lab-stream (pid {}) did not exit within {timeout:?}",
                    self.child.id()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the helper wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// N in a `progress N` line.
fn progress(line: &str) -> Option<u64> {
    line.strip_prefix("progress ")?.trim().parse().ok()
}

impl Drop for StreamProc {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_parse() {
        assert_eq!(progress("progress 131072"), Some(131072));
        assert_eq!(progress("path direct words 5"), None);
    }
}
