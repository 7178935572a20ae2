//! Running `relay-node`: one-shot CLI verbs ([`run_cli`]) and long-running
//! nodes ([`NodeProcess`]) that are killed when dropped, so a failing test
//! never leaks processes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The captured result of one CLI verb.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// Whether the verb exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `relay-node --data-dir DIR ARGS...` to completion.
pub fn run_cli(bin: &Path, data_dir: &Path, args: &[&str]) -> std::io::Result<CliOutput> {
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("RELAY_NODE_DATA_DIR")
        .stdin(Stdio::null())
        .output()?;
    Ok(CliOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A `relay-node run` process. Killed (SIGKILL) and reaped on drop unless it
/// already exited.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr_path: PathBuf,
    /// The NodeId from the startup line.
    pub node_id: String,
    /// The listen address from the startup line.
    pub listen: SocketAddr,
}

impl NodeProcess {
    /// Starts `relay-node --data-dir DIR run ARGS...` and waits (up to
    /// `timeout`) for its `relay-node <id> listening on <addr>` line. Stderr
    /// goes to `DIR.stderr.log` beside the data dir.
    pub fn start(
        bin: &Path,
        data_dir: &Path,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Self, String> {
        Self::start_command(Command::new(bin), data_dir, args, timeout)
    }

    /// Like [`NodeProcess::start`], inside network namespace `netns` (run
    /// through `ip netns exec`, which execs the binary in place, so the
    /// child is the node itself). The data dir and its API socket stay
    /// on the shared filesystem, so CLI verbs work from any namespace.
    pub fn start_in_netns(
        netns: &str,
        bin: &Path,
        data_dir: &Path,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns]).arg(bin);
        Self::start_command(cmd, data_dir, args, timeout)
    }

    /// Starts `<cmd> --data-dir DIR run ARGS...` (see [`NodeProcess::start`]).
    fn start_command(
        mut cmd: Command,
        data_dir: &Path,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Self, String> {
        let stderr_path = data_dir.with_extension("stderr.log");
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| format!("create {}: {e}", stderr_path.display()))?;
        let mut child = cmd
            .arg("--data-dir")
            .arg(data_dir)
            .arg("run")
            .args(args)
            .env_remove("RELAY_NODE_DATA_DIR")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| format!("spawn relay-node: {e}"))?;
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
        let mut node = Self {
            child,
            lines,
            stderr_path,
            node_id: String::new(),
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = node.lines.recv_timeout(left).map_err(|_| {
                format!(
                    "no startup line from relay-node run; stderr:\n{}",
                    node.stderr_log()
                )
            })?;
            if let Some((id, addr)) = parse_startup_line(&line) {
                node.node_id = id;
                node.listen = addr;
                return Ok(node);
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the node wrote to stderr so far.
    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends `signal` (e.g. "TERM", "KILL") with the `kill` command.
    pub fn signal(&self, signal: &str) -> Result<(), String> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .map_err(|e| format!("kill: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} {} failed: {status}", self.pid()))
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    return Err(format!(
                        "relay-node (pid {}) did not exit in time",
                        self.pid()
                    ))
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("wait: {e}")),
            }
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parses `relay-node <node_id> listening on <addr>`.
pub fn parse_startup_line(line: &str) -> Option<(String, SocketAddr)> {
    let rest = line.strip_prefix("relay-node ")?;
    let (id, addr) = rest.split_once(" listening on ")?;
    Some((id.to_string(), addr.trim().parse().ok()?))
}

/// Calls `check` until it returns `Some`, pausing `every` between tries,
/// for at most `timeout`. For polling external processes only.
pub fn poll_until<T>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_line() {
        let (id, addr) = parse_startup_line("relay-node abc listening on 127.0.0.1:5").unwrap();
        assert_eq!((id.as_str(), addr.port()), ("abc", 5));
        assert!(parse_startup_line("something else").is_none());
    }
}
