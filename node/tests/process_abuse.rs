//! The node process under abuse, against real `relay-node` processes on
//! loopback: a closed stderr (`relay-node run 2>&1 | head -4`) or one
//! nobody reads must not take the node down or stall it, and the
//! single-instance guarantee must hold when files in the data dir are
//! removed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_relay-node");
/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);

mod common;
use common::TempDir;

/// A child process, killed on drop.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("process {} did not exit", self.pid());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(dir)
        .env_remove("RELAY_NODE_DATA_DIR")
        .stdin(Stdio::null());
    cmd
}

fn cli(dir: &Path, args: &[&str]) -> Output {
    command(dir).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The address at the end of the first line containing `needle`.
fn addr_after(lines: &[String], needle: &str) -> SocketAddr {
    let line = lines.iter().find(|l| l.contains(needle)).unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Starts `run` with stdout and stderr on one pipe (`2>&1`), reads until
/// both startup lines went by, then closes the pipe's read end (`| head`).
/// Returns the process and the lines read.
fn start_then_close_output(dir: &Path, args: &[&str]) -> (Proc, Vec<String>) {
    let (reader, writer) = std::io::pipe().unwrap();
    let child = command(dir)
        .args(["run", "--listen", "127.0.0.1:0", "--no-port-map"])
        .args(args)
        .env("RUST_LOG", "debug")
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .unwrap();
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            let done = line.starts_with("http listening on ");
            lines.push(line);
            if done {
                break;
            }
        }
        // Dropping the reader here closes the pipe: every later write by the
        // node gets EPIPE.
        let _ = tx.send(lines);
    });
    let lines = rx.recv_timeout(DEADLINE).unwrap();
    assert!(
        lines.iter().any(|l| l.starts_with("http listening on ")),
        "the node stopped before its startup lines: {lines:?}"
    );
    (proc, lines)
}

/// Starts `run` normally, stderr to a file; waits for its listen line.
fn start(dir: &Path) -> (Proc, SocketAddr) {
    let log = dir.with_extension("stderr.log");
    let mut child = command(dir)
        .args(["run", "--listen", "127.0.0.1:0", "--no-port-map"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(" listening on ") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx.recv_timeout(DEADLINE).unwrap_or_else(|_| {
        panic!(
            "no listen line; stderr:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    (proc, addr_after(&[line], " listening on "))
}

/// Polls `f` every 100 ms until it returns `Some`, for at most [`DEADLINE`].
fn poll<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn sees_direct(dir: &Path, peer: &str) -> bool {
    let out = cli(dir, &["status", "--json"]);
    let Ok(status) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return false;
    };
    status["peers"].as_array().is_some_and(|peers| {
        peers
            .iter()
            .any(|p| p["node_id"] == peer && p["state"] == "connected" && p["path"] == "direct")
    })
}

fn metrics(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    text(&out)
}

/// Runs a `run` that must be refused; a node that starts instead is killed
/// after [`DEADLINE`] and fails the test.
fn refused_run(dir: &Path) -> Output {
    let log = dir.with_extension("refused.log");
    let child = command(dir)
        .args(["run", "--listen", "127.0.0.1:0", "--no-port-map"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < end,
            "a second node started on {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: Vec::new(),
        stderr: std::fs::read(&log).unwrap(),
    }
}

fn assert_fails_with(o: &Output, kind: &str) {
    let err = text(&o.stderr);
    assert!(!o.status.success(), "expected failure, stderr: {err}");
    assert!(
        err.contains(&format!("error: {kind}: ")),
        "expected kind {kind}, got: {err}"
    );
    assert!(!err.contains("panicked"), "panic text in: {err}");
}

#[test]
fn a_closed_stderr_does_not_stop_the_node() {
    let tmp = TempDir::new("stderr");
    let dir_a = tmp.0.join("a");
    let dir_b = tmp.0.join("b");
    let id_a = text(&cli(&dir_a, &["init"]).stdout).trim().to_string();
    let (mut node_a, lines) = start_then_close_output(&dir_a, &["--http", "127.0.0.1:0"]);
    let listen_a = addr_after(&lines, " listening on ");
    let http_a = addr_after(&lines, "http listening on ");

    let ticket = cli(&dir_a, &["invite", "--addr", &listen_a.to_string()]);
    let ticket = text(&ticket.stdout).trim().to_string();
    let init_b = cli(&dir_b, &["init", "--join", &ticket]);
    assert!(init_b.status.success(), "{}", text(&init_b.stderr));
    let id_b = text(&init_b.stdout).trim().to_string();
    let (_node_b, _) = start(&dir_b);

    // B's connection makes A log (at debug, plenty) into the broken pipe.
    assert!(
        poll(|| sees_direct(&dir_a, &id_b).then_some(())).is_some(),
        "A never saw B connected"
    );
    assert!(poll(|| sees_direct(&dir_b, &id_a).then_some(())).is_some());
    for (dir, peer) in [(&dir_b, &id_a), (&dir_a, &id_b), (&dir_b, &id_a)] {
        let ping = cli(dir, &["ping", peer, "-c", "2", "-i", "50"]);
        assert!(ping.status.success(), "{}", text(&ping.stderr));
        assert_eq!(text(&ping.stdout).lines().count(), 2);
    }

    // The lost lines were counted.
    let exposition = metrics(http_a);
    let dropped: f64 = exposition
        .lines()
        .find_map(|l| l.strip_prefix("relay_node_log_lines_dropped_total "))
        .unwrap_or_else(|| panic!("no dropped-lines metric in:\n{exposition}"))
        .parse()
        .unwrap();
    assert!(dropped > 0.0, "{dropped}");

    node_a.signal("TERM");
    let exit = node_a.wait_exit();
    assert_eq!(exit.code(), Some(0), "{exit}");
    assert!(!dir_a.join("run.lock").exists());
}

#[test]
fn a_stderr_nobody_reads_does_not_stall_the_node() {
    let tmp = TempDir::new("stall");
    let dir_a = tmp.0.join("a");
    let dir_b = tmp.0.join("b");
    let id_a = text(&cli(&dir_a, &["init"]).stdout).trim().to_string();
    // stderr is a pipe we hold open and never read: once its buffer is
    // full, every write to it blocks.
    let (_unread, writer) = std::io::pipe().unwrap();
    let mut child = command(&dir_a)
        .args(["run", "--listen", "127.0.0.1:0", "--no-port-map"])
        .args(["--http", "127.0.0.1:0"])
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(writer)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut node_a = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let done = line.starts_with("http listening on ");
            lines.push(line);
            if done {
                let _ = tx.send(lines);
                break;
            }
        }
    });
    let lines = rx.recv_timeout(DEADLINE).unwrap();
    let listen_a = addr_after(&lines, " listening on ");
    let http_a = addr_after(&lines, "http listening on ");

    let ticket = cli(&dir_a, &["invite", "--addr", &listen_a.to_string()]);
    let ticket = text(&ticket.stdout).trim().to_string();
    let init_b = cli(&dir_b, &["init", "--join", &ticket]);
    assert!(init_b.status.success(), "{}", text(&init_b.stderr));
    let id_b = text(&init_b.stdout).trim().to_string();
    let (_node_b, _) = start(&dir_b);

    // Traffic makes A log (at trace, plenty) until the pipe and then the
    // log queue are full and lines are dropped.
    let dropped = poll(|| {
        let _ = cli(&dir_b, &["ping", &id_a, "-c", "5", "-i", "10"]);
        let exposition = metrics(http_a);
        exposition
            .lines()
            .find_map(|l| l.strip_prefix("relay_node_log_lines_dropped_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| *v > 0.0)
    });
    assert!(dropped.is_some(), "A never dropped a log line");

    // A still serves its peer and its operator.
    assert!(poll(|| sees_direct(&dir_a, &id_b).then_some(())).is_some());
    for (dir, peer) in [(&dir_b, &id_a), (&dir_a, &id_b)] {
        let ping = cli(dir, &["ping", peer, "-c", "2", "-i", "50"]);
        assert!(ping.status.success(), "{}", text(&ping.stderr));
    }
    node_a.signal("TERM");
    assert_eq!(node_a.wait_exit().code(), Some(0));
}

#[test]
fn removing_files_from_the_data_dir_does_not_admit_a_second_node() {
    let tmp = TempDir::new("lock");
    let dir = tmp.0.join("n");
    let id = text(&cli(&dir, &["init"]).stdout).trim().to_string();
    let (mut first, _) = start(&dir);
    let lock = std::fs::read_to_string(dir.join("run.lock")).unwrap();
    assert_eq!(lock.trim(), first.pid().to_string());

    std::fs::remove_file(dir.join("run.lock")).unwrap();
    let second = refused_run(&dir);
    assert_fails_with(&second, "lock");
    assert_eq!(second.status.code(), Some(1));
    // Its socket gone as well, the first node still holds the directory.
    std::fs::remove_file(dir.join("api.sock")).unwrap();
    let third = refused_run(&dir);
    assert_fails_with(&third, "lock");

    // The refused starts disturbed nothing: the first node is the only
    // one, still running.
    assert!(first.0.try_wait().unwrap().is_none());
    first.signal("TERM");
    assert!(first.wait_exit().success());
    // Free again: a new node starts.
    let (mut again, _) = start(&dir);
    let status = cli(&dir, &["status", "--json"]);
    assert!(
        text(&status.stdout).contains(&id),
        "{}",
        text(&status.stderr)
    );
    again.signal("TERM");
    assert!(again.wait_exit().success());
}

#[test]
fn a_live_socket_without_a_lock_holds_the_data_dir() {
    let tmp = TempDir::new("socket");
    let dir = tmp.0.join("n");
    assert!(cli(&dir, &["init"]).status.success());
    // Another process answers on the API socket (as a node whose lock was
    // lost would); `run` must not start beside it.
    let listener = std::os::unix::net::UnixListener::bind(dir.join("api.sock")).unwrap();
    let out = refused_run(&dir);
    assert_fails_with(&out, "lock");
    assert!(
        text(&out.stderr).contains("api.sock"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !dir.join("run.lock").exists(),
        "a refused run left run.lock"
    );
    assert!(!dir.join("control.sock").exists());
    // Once nobody answers, the stale socket file does not block.
    drop(listener);
    let (mut node, _) = start(&dir);
    node.signal("TERM");
    assert!(node.wait_exit().success());
}
