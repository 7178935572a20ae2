//! Long-running CLI verbs (`sub`, `pub -`) against a node's data dir:
//! stdout collected line by line on a thread as it comes (a subscriber
//! that is not read holds its publisher back), stderr collected whole,
//! stdin piped when asked for. Killed and reaped on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running `relay-node --data-dir DIR ARGS...`.
#[derive(Debug)]
pub struct CliChild {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    stdout: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
}

/// How a [`CliChild`] ended.
#[derive(Debug)]
pub struct CliEnd {
    /// Its exit status.
    pub status: ExitStatus,
    /// Every stdout line.
    pub lines: Vec<String>,
    /// All of stderr.
    pub stderr: String,
}

impl CliChild {
    /// Starts the verb; with `stdin` its standard input is a pipe
    /// ([`Self::write_line`], [`Self::close_stdin`]), else empty.
    pub fn spawn(bin: &Path, dir: &Path, args: &[&str], stdin: bool) -> Result<Self, String> {
        let mut child = Command::new(bin)
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .env_remove("RELAY_NODE_DATA_DIR")
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn relay-node {}: {e}", args.join(" ")))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().map(|out| {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            })
        });
        let stderr = child.stderr.take().map(|mut err| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                text
            })
        });
        Ok(Self {
            stdin: child.stdin.take(),
            child,
            lines,
            stdout,
            stderr,
        })
    }

    /// Writes one line to its stdin.
    pub fn write_line(&mut self, line: &str) -> Result<(), String> {
        let pipe = self.stdin.as_mut().ok_or("stdin is not a pipe")?;
        writeln!(pipe, "{line}").map_err(|e| format!("write stdin: {e}"))
    }

    /// Closes its stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// How many stdout lines came so far.
    pub fn line_count(&self) -> usize {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for it to exit (its stdin closed first) and
    /// returns what it printed; kills it when the time is up.
    pub fn wait(mut self, timeout: Duration) -> Result<CliEnd, String> {
        self.close_stdin();
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!(
                        "did not exit within {timeout:?}; {} stdout lines; stderr: {}",
                        self.line_count(),
                        self.join_stderr()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("wait: {e}")),
            }
        };
        Ok(self.collect(status))
    }

    /// Kills it (a verb that would run on, like `sub` without `--count`)
    /// and returns what it printed.
    pub fn stop(mut self) -> Result<CliEnd, String> {
        let _ = self.child.kill();
        let status = self.child.wait().map_err(|e| format!("wait: {e}"))?;
        Ok(self.collect(status))
    }

    fn collect(&mut self, status: ExitStatus) -> CliEnd {
        if let Some(t) = self.stdout.take() {
            let _ = t.join();
        }
        let stderr = self.join_stderr();
        let lines = std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()));
        CliEnd {
            status,
            lines,
            stderr,
        }
    }

    fn join_stderr(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for CliChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
