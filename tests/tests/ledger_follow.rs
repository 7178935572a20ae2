//! `relay-node ledger --follow --json` against a real node process: it
//! prints what the ledger holds, keeps running, and prints a new entry (a
//! second node's announcement, replicated to the first) as it arrives,
//! once, with a cursor above every earlier one. The same node's `--http`
//! endpoint serves the ledger as a page and as server-sent events.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use relay_tests::{relay_node_bin, run_cli, CliOutput, NodeProcess, TempDir};

/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);

fn cli(dir: &Path, args: &[&str]) -> CliOutput {
    run_cli(&relay_node_bin().unwrap(), dir, args).unwrap()
}

fn start(dir: &Path, extra: &[&str]) -> NodeProcess {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    NodeProcess::start(&relay_node_bin().unwrap(), dir, &args, DEADLINE).unwrap()
}

/// A loopback address with a port that was free a moment ago.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Sends a GET and reads until `until` appears in the response (or it
/// ends); returns what was read.
fn http_get(addr: SocketAddr, path: &str, extra: &str, until: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains(until) {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) => panic!(
                "reading {path}: {e}; so far: {}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A running `ledger --follow --json`, killed on drop.
struct Follow {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follow {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(relay_node_bin().unwrap())
            .arg("--data-dir")
            .arg(dir)
            .args(["ledger", "--follow", "--json"])
            .env_remove("RELAY_NODE_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Every entry printed until one from `origin` of `kind`, which is last.
    fn until(&self, origin: &str, kind: &str) -> Vec<serde_json::Value> {
        let end = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {kind} of {origin}; printed: {seen:?}"));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let done = v["origin"] == origin && v["kind"] == kind;
            seen.push(v);
            if done {
                return seen;
            }
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ledger_follow_prints_a_replicated_entry_as_it_arrives() {
    let tmp = TempDir::new("ledger-follow").unwrap();
    let (dir_a, dir_b) = (tmp.join("a"), tmp.join("b"));
    assert!(cli(&dir_a, &["init"]).success());
    let http = free_addr();
    let node_a = start(&dir_a, &["--http", &http.to_string()]);

    let follow = Follow::start(&dir_a);
    // A's own announcement, whether stored before the CLI started or after.
    let mut printed = follow.until(&node_a.node_id, "node-announcement");

    // A second node joins A's mesh and announces itself; A stores the
    // replicated announcement and the CLI, still running, prints it.
    let addr = format!("127.0.0.1:{}", node_a.listen.port());
    let invite = cli(&dir_a, &["invite", "--addr", &addr]);
    assert!(invite.success(), "{invite:?}");
    assert!(cli(&dir_b, &["init", "--join", invite.stdout.trim()]).success());
    let node_b = start(&dir_b, &[]);
    printed.extend(follow.until(&node_b.node_id, "node-announcement"));
    assert!(
        printed
            .iter()
            .all(|e| e["hash"].as_str().is_some_and(|h| h.len() == 64)),
        "{printed:?}"
    );

    // Cursors only go up: nothing printed twice.
    let cursors: Vec<u64> = printed
        .iter()
        .map(|e| e["cursor"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "{cursors:?}; A stderr:\n{}",
        node_a.stderr_log()
    );

    // Over HTTP: a page of B's entries, and the event stream resumed after
    // A's first announcement, which carries B's (cursor as id, entry as
    // data). Announcements may be superseded meanwhile (retention keeps the
    // latest per origin), so only what must hold is checked.
    let a_cursor: u64 = printed[0]["cursor"].as_str().unwrap().parse().unwrap();
    let b_id = node_b.node_id.as_str();
    let page = http_get(
        http,
        &format!("/ledger?origin={b_id}"),
        "Connection: close\r\n",
        &format!("\"origin\":\"{b_id}\""),
    );
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let events = http_get(
        http,
        "/ledger/events?kind=node-announcement",
        &format!("Last-Event-ID: {a_cursor}\r\n"),
        &format!("\"origin\":\"{b_id}\""),
    );
    assert!(events.contains("text/event-stream"), "{events}");
    let ids: Vec<u64> = events
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|id| id.trim().parse().unwrap())
        .collect();
    assert!(!ids.is_empty(), "{events}");
    assert!(ids.iter().all(|&id| id > a_cursor), "{events}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{events}");
    drop(follow);
    drop(node_b);
}
