//! `relay-node ledger --follow --json` against a real node process: it
//! prints what the ledger holds, keeps running, and prints a new entry (a
//! second node's announcement, replicated to the first) as it arrives,
//! once, with a cursor above every earlier one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
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

fn start(dir: &Path) -> NodeProcess {
    NodeProcess::start(
        &relay_node_bin().unwrap(),
        dir,
        &["--listen", "127.0.0.1:0"],
        DEADLINE,
    )
    .unwrap()
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
    let node_a = start(&dir_a);

    let follow = Follow::start(&dir_a);
    // A's own announcement, whether stored before the CLI started or after.
    let mut printed = follow.until(&node_a.node_id, "node-announcement");

    // A second node joins A's mesh and announces itself; A stores the
    // replicated announcement and the CLI, still running, prints it.
    let addr = format!("127.0.0.1:{}", node_a.listen.port());
    let invite = cli(&dir_a, &["invite", "--addr", &addr]);
    assert!(invite.success(), "{invite:?}");
    assert!(cli(&dir_b, &["init", "--join", invite.stdout.trim()]).success());
    let node_b = start(&dir_b);
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
    drop(follow);
    drop(node_b);
}
