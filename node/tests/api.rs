//! The local API of real `relay-node` processes: every route over
//! `DIR/api.sock`, the CLI with 500 idle or slow connections open, a
//! foreign uid refused, and SIGTERM with a stream open.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_relay-node");
/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);

mod common;
use common::TempDir;

/// A running `relay-node run`, killed on drop.
struct Node {
    child: Child,
    lines: mpsc::Receiver<String>,
    dir: PathBuf,
    stderr: PathBuf,
    listen: String,
    node_id: String,
}

impl Node {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let stderr = dir.with_extension("stderr.log");
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .arg("run")
            .args(["--listen", "127.0.0.1:0", "--no-port-map"])
            .args(args)
            .env_remove("RELAY_NODE_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = lines
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("no listening line; stderr:\n{}", read(&stderr)));
        // "relay-node <id> listening on <addr>"
        let words: Vec<&str> = line.split(' ').collect();
        Self {
            child,
            lines,
            dir: dir.to_path_buf(),
            stderr,
            listen: words[4].to_string(),
            node_id: words[1].to_string(),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("api.sock")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("RELAY_NODE_DATA_DIR")
        .output()
        .unwrap()
}

/// One request on its own connection: (status, JSON body).
fn request(socket: &Path, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: relay-node\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Reads from `stream` until `needle` appears; returns what was read.
fn read_until(stream: &mut UnixStream, needle: &str) -> String {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "stream ended before {needle:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn open_events(socket: &Path) -> UnixStream {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: relay-node\r\n\r\n")
        .unwrap();
    read_until(&mut stream, "application/x-ndjson");
    stream
}

#[test]
fn every_route_against_two_nodes() {
    let tmp = TempDir::new("routes");
    let dir_a = tmp.0.join("a");
    let dir_b = tmp.0.join("b");
    assert!(cli(&dir_a, &["init"]).status.success());
    let ticket = cli(&dir_a, &["invite", "--addr", "127.0.0.1:1"]);
    let ticket = String::from_utf8(ticket.stdout).unwrap();
    assert!(cli(&dir_b, &["init", "--join", ticket.trim()])
        .status
        .success());

    let a = Node::start(&dir_a, &["--http", "127.0.0.1:0"]);
    let http_line = a.lines.recv_timeout(DEADLINE).unwrap();
    let http_addr = http_line.rsplit(' ').next().unwrap().to_string();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(a.socket()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Events on A, opened before B exists.
    let mut events = open_events(&a.socket());

    let b = Node::start(&dir_b, &["--peer", &format!("{}@{}", a.node_id, a.listen)]);
    let seen = read_until(&mut events, &b.node_id);
    assert!(seen.contains(r#""type":"connected""#), "{seen}");

    // Health: B signs our nonce.
    let (status, v) = request(&b.socket(), "GET", "/v1/health?nonce=0123456789abcdef", "");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["node_id"], b.node_id.as_str());
    assert_eq!(v["nonce"], "0123456789abcdef");
    assert_eq!(v["signature"].as_str().unwrap().len(), 128);
    let proof: relay_node::api::health::HealthProof = serde_json::from_value(v).unwrap();
    let expected: relay_proto::NodeId = b.node_id.parse().unwrap();
    relay_node::api::health::verify(
        &proof,
        &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
        Some(&expected),
    )
    .unwrap();

    // Ping B -> A.
    let body = format!(r#"{{"node_id":"{}","timeout_ms":10000}}"#, a.node_id);
    let (status, v) = request(&b.socket(), "POST", "/v1/ping", &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["node_id"], a.node_id.as_str());
    assert_eq!(v["path"], "direct");
    assert!(v["rtt_ms"].as_f64().unwrap() > 0.0);
    let (status, v) = request(&b.socket(), "POST", "/v1/ping", r#"{"node_id":"nope"}"#);
    assert_eq!(
        (status, v["error"]["kind"].as_str()),
        (400, Some("invalid-node-id"))
    );
    let (status, v) = request(&b.socket(), "POST", "/v1/ping", "{");
    assert_eq!(
        (status, v["error"]["kind"].as_str()),
        (400, Some("bad-request"))
    );
    let me = format!(r#"{{"node_id":"{}"}}"#, b.node_id);
    let (status, v) = request(&b.socket(), "POST", "/v1/ping", &me);
    assert_eq!(
        (status, v["error"]["kind"].as_str()),
        (400, Some("invalid-peer"))
    );

    // Status: A answered the ping and shows B; the ping subsystem's section.
    let (status, v) = request(&a.socket(), "GET", "/v1/status", "");
    assert_eq!(status, 200);
    assert_eq!(v["node_id"], a.node_id.as_str());
    assert!(
        v["subsystems"]["ping"]["served"].as_u64().unwrap() >= 1,
        "{v}"
    );
    let (_, v) = request(&b.socket(), "GET", "/v1/status", "");
    assert_eq!(v["subsystems"]["ping"]["sent"].as_u64().unwrap(), 2, "{v}");
    assert_eq!(
        v["subsystems"]["ping"]["failed"].as_u64().unwrap(),
        1,
        "{v}"
    );

    // The subsystems' and the local API's metrics.
    let mut tcp = std::net::TcpStream::connect(&http_addr).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut metrics = String::new();
    tcp.read_to_string(&mut metrics).unwrap();
    for name in [
        "relay_node_ping_served_total 1",
        "relay_node_ping_sent_total 0",
        "relay_node_api_requests_total",
        "relay_node_api_refused_total 0",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }

    // Netcheck.
    let (status, v) = request(&a.socket(), "GET", "/v1/netcheck", "");
    assert_eq!(status, 200);
    assert_eq!(v["node_id"], a.node_id.as_str());
    assert!(v["nat"].is_object());

    // The frame stream: upgrade, then echo.
    let mut stream = UnixStream::connect(a.socket()).unwrap();
    stream
        .write_all(
            b"GET /v1/stream/echo HTTP/1.1\r\nHost: relay-node\r\nConnection: Upgrade\r\nUpgrade: relay-node-frames/1\r\n\r\n",
        )
        .unwrap();
    let head = read_until(&mut stream, "\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    stream
        .write_all(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'])
        .unwrap();
    let mut echo = [0u8; 9];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, &[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);

    // B stops (closing its connections): A's events say so.
    let pid = b.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let seen = read_until(&mut events, r#""type":"disconnected""#);
    assert!(seen.contains("disconnected"));
    drop(a);
}

#[test]
fn status_answers_with_500_idle_or_slow_connections_open() {
    let tmp = TempDir::new("idle");
    let dir = tmp.0.join("n");
    let node = Node::start(&dir, &[]);
    let mut held = Vec::new();
    for i in 0..500 {
        let mut stream = UnixStream::connect(node.socket()).unwrap();
        if i % 2 == 1 {
            stream.write_all(b"GET /v1/status HTTP/1.1\r\nHo").unwrap();
        }
        held.push(stream);
    }
    // 256 connections at most are kept; every one waits for its head. A
    // new request makes room at once; without that it would wait for the
    // 5 s head timeout, so these bounds can fail.
    let start = Instant::now();
    let (status, v) = request(&node.socket(), "GET", "/v1/status", "");
    let raw = start.elapsed();
    assert_eq!(status, 200);
    assert_eq!(v["node_id"], node.node_id.as_str());
    assert!(raw < Duration::from_secs(1), "raw status took {raw:?}");
    let start = Instant::now();
    let out = cli(&dir, &["status"]);
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&node.node_id));
    assert!(
        took < Duration::from_secs(1),
        "`relay-node status` took {took:?}"
    );
    drop(held);
    drop(node);
}

#[test]
fn a_foreign_uid_is_refused() {
    if !Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    {
        println!("SKIPPED: not root, cannot connect as another uid");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let tmp = TempDir::new("uid");
    std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.0.join("n");
    let node = Node::start(&dir, &[]);
    // Open the file-system gates so only the credential check stands.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(node.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .arg("status")
        .env_remove("RELAY_NODE_DATA_DIR")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("error: forbidden: uid 65534 may not use this node's local API"),
        "{err}"
    );
    // We are still served.
    let (status, _) = request(&node.socket(), "GET", "/v1/status", "");
    assert_eq!(status, 200);
    // The node logs the refusal as it closes the connection, which can be
    // just after the client has its answer: the log is read until the
    // line is there.
    let until = Instant::now() + DEADLINE;
    while !read(&node.stderr).contains("foreign uid refused") {
        assert!(
            Instant::now() < until,
            "no refusal logged:\n{}",
            read(&node.stderr)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(node);
}

#[test]
fn sigterm_with_a_stream_open_exits_cleanly() {
    let tmp = TempDir::new("term");
    let dir = tmp.0.join("n");
    let mut node = Node::start(&dir, &[]);
    let mut events = open_events(&node.socket());
    let start = Instant::now();
    let pid = node.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // The stream ends (the node closes it) and the node exits 0.
    events.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut rest = Vec::new();
    let _ = events.read_to_end(&mut rest);
    let status = node.child.wait().unwrap();
    assert!(status.success(), "exit {status}: {}", read(&node.stderr));
    // Shutdown is bounded (5 s), well inside this.
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(!node.socket().exists());
}
