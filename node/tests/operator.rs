//! The operator surface against real `relay-node` processes on loopback:
//! `run --http` (its startup line, /metrics, /status, /healthz, read-only),
//! `status --json` additions, `netcheck --json` and `ping --until-direct`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_relay-node");
/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);

mod common;
use common::TempDir;

/// A running `relay-node run`, killed on drop.
struct Node {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
    listen: SocketAddr,
}

impl Node {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let stderr = dir.with_extension("stderr.log");
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .arg("run")
            .args(["--listen", "127.0.0.1:0"])
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
        let mut node = Self {
            child,
            lines,
            stderr,
            listen: "0.0.0.0:0".parse().unwrap(),
        };
        let line = node.line_with(" listening on ");
        node.listen = line.rsplit(' ').next().unwrap().parse().unwrap();
        node
    }

    /// The next stdout line containing `needle`.
    fn line_with(&self, needle: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no line with {needle:?}; stderr:\n{}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                ),
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// One HTTP exchange over a plain TcpStream; returns (status, body).
fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    let out = text(&out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
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

fn sees_direct(status: &serde_json::Value, peer: &str) -> bool {
    status["peers"].as_array().is_some_and(|peers| {
        peers
            .iter()
            .any(|p| p["node_id"] == peer && p["state"] == "connected" && p["path"] == "direct")
    })
}

#[test]
fn http_metrics_status_netcheck_and_until_direct() {
    let tmp = TempDir::new("http");
    let dir_a = tmp.0.join("a");
    let dir_b = tmp.0.join("b");
    let init = cli(&dir_a, &["init"]);
    assert!(init.status.success());
    let id_a = text(&init.stdout).trim().to_string();
    let node_a = Node::start(&dir_a, &["--http", "127.0.0.1:0"]);
    let http_line = node_a.line_with("http listening on ");
    assert!(http_line.starts_with("http listening on 127.0.0.1:"));
    let http_addr: SocketAddr = http_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_ne!(http_addr.port(), 0);

    let ticket = cli(&dir_a, &["invite", "--addr", &node_a.listen.to_string()]);
    let ticket = text(&ticket.stdout).trim().to_string();
    let init_b = cli(&dir_b, &["init", "--join", &ticket]);
    assert!(init_b.status.success());
    let id_b = text(&init_b.stdout).trim().to_string();
    let _node_b = Node::start(&dir_b, &[]);

    // /status is the JSON of `status --json`; wait for B to connect.
    let status = poll(|| {
        let (code, body) = get(http_addr, "/status");
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        sees_direct(&v, &id_b).then_some(v)
    })
    .expect("A never saw B over HTTP");
    assert_eq!(status["node_id"], id_a.as_str());
    // One observer on loopback: "unknown" until the mapping check with B
    // (docs/TRAVERSAL.md) classifies this node, then "open".
    let nat = status["nat"]["type"].as_str().unwrap_or_default();
    assert!(matches!(nat, "unknown" | "open"), "{nat}");
    assert_eq!(status["traversal"]["punches_attempted"], 0);
    assert!(status["traversal"]["last_error"].is_null());
    assert!(status["peers"][0]["why"].is_null());
    let cli_status: serde_json::Value =
        serde_json::from_slice(&cli(&dir_a, &["status", "--json"]).stdout).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&status), keys(&cli_status));

    // /metrics in the text format, built from the same snapshot.
    let (code, metrics) = get(http_addr, "/metrics");
    assert_eq!(code, 200);
    for line in [
        "# TYPE relay_node_peers gauge",
        "relay_node_peers{state=\"connected\"} 1",
        "relay_node_peer_paths{path=\"direct\"} 1",
        "# TYPE relay_node_handshakes_total counter",
        "# TYPE relay_node_punches_attempted_total counter",
        "relay_node_relay_enabled 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    assert!(metrics.contains(&format!(
        "relay_node_peer_rtt_seconds{{peer=\"{id_b}\",path=\"direct\"}} "
    )));
    let handshakes: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("relay_node_handshakes_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(handshakes >= 1.0);

    // Health, read-only, unknown paths.
    assert_eq!(get(http_addr, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(http_addr, "/nope").0, 404);
    assert_eq!(
        http(
            http_addr,
            "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        )
        .0,
        405
    );
    assert_eq!(http(http_addr, "nonsense\r\n\r\n").0, 400);

    // ping --until-direct exits 0 at the first (direct) pong.
    let ping = cli(&dir_a, &["ping", &id_b, "--until-direct", "-i", "50"]);
    assert!(ping.status.success(), "{ping:?}");
    let out = text(&ping.stdout);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with(&format!("pong from {id_b} via direct ")),
        "{out}"
    );

    // ... and fails with a kind when no direct path comes.
    let stranger = relay_proto::SecretKey::generate().node_id().to_string();
    let lost = cli(
        &dir_a,
        &[
            "ping",
            &stranger,
            "--until-direct",
            "--timeout",
            "1",
            "-i",
            "100",
            "-W",
            "200",
        ],
    );
    assert!(!lost.status.success());
    let err = text(&lost.stderr);
    assert!(err.contains("error: not-connected: "), "{err}");
    assert!(
        err.contains(&format!("no direct path to {stranger} within 1 s")),
        "{err}"
    );

    // netcheck: B reports the address A sees it at (A tells B over the
    // control channel).
    let report = poll(|| {
        let out = cli(&dir_b, &["netcheck", "--json"]);
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let seen = v["observations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["observer"] == id_a.as_str());
        seen.then_some(v)
    })
    .expect("B never got an observed address from A");
    let nat = report["nat"]["type"].as_str().unwrap_or_default();
    assert!(matches!(nat, "unknown" | "open"), "{nat}");
    let obs = &report["observations"][0];
    assert_eq!(obs["observer_addr"], node_a.listen.to_string().as_str());
    let reflex: SocketAddr = obs["reflex_addr"].as_str().unwrap().parse().unwrap();
    assert!(reflex.ip().is_loopback());
    assert_eq!(report["nat"]["reflex_addr"], obs["reflex_addr"]);
    assert!(report["relays"].as_array().unwrap().is_empty());
    let table = cli(&dir_b, &["netcheck"]);
    let table = text(&table.stdout);
    assert!(
        table.contains("nat       unknown") || table.contains("nat       open"),
        "{table}"
    );
}

#[test]
fn http_refuses_non_loopback_without_a_token() {
    let tmp = TempDir::new("remote");
    let dir = tmp.0.join("n");
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["run", "--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"])
        .env_remove("RELAY_NODE_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("error: http-not-loopback: 0.0.0.0:0 "),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "0.0.0.0:0",
            "--http-allow-remote",
        ])
        .env_remove("RELAY_NODE_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(text(&out.stderr).contains("error: http-token-required: "));
}
