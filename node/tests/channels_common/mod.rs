//! Helpers the channels process tests share: a running node, CLI calls,
//! polling with a generous bound.
#![allow(dead_code)] // not every test binary uses every helper

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_relay-node");
/// Generous bound for anything a process must do; never a timing assertion.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// A running `relay-node run` on loopback, killed on drop.
pub struct Node {
    child: Child,
    /// Its UDP address.
    pub listen: SocketAddr,
}

impl Node {
    /// Starts `run --listen 127.0.0.1:0` with `args` and waits until it
    /// listens.
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        Self::start_at(dir, "127.0.0.1:0", args)
    }

    /// Starts `run --listen LISTEN` with `args` (e.g. a restart on the
    /// address it had) and waits until it listens.
    pub fn start_at(dir: &Path, listen: &str, args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .args(["run", "--listen", listen])
            .args(args)
            .env_remove("RELAY_NODE_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines
            .find(|l| l.as_ref().is_ok_and(|l| l.contains(" listening on ")))
            .unwrap()
            .unwrap();
        // Keep draining stdout so the node never blocks on it.
        std::thread::spawn(move || lines.for_each(drop));
        let listen = line.rsplit(' ').next().unwrap().parse().unwrap();
        Self { child, listen }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a verb against data dir `dir`.
pub fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("RELAY_NODE_DATA_DIR")
        .output()
        .unwrap()
}

/// Output bytes as trimmed text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// Polls `f` every 100 ms until it returns `Some`, for at most [`DEADLINE`].
pub fn poll<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("condition not met within {DEADLINE:?}");
}
