//! A reliable subscription survives its owner's restart: the owner C goes
//! down and comes back on the same address; B's subscription and A's
//! publishing session wait, reconnect and resume by sequence: B gets every
//! message A published, in order, none missing and none twice. C is not
//! B's bootstrap peer (A is), so nothing but B's channels driver redials
//! C for B.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

mod channels_common;
mod common;
use channels_common::{cli, poll, text, Node, BIN};
use common::TempDir;

/// Messages before the restart, and as many after.
const HALF: usize = 500;
/// How long the subscriber may take to get every message.
const DEADLINE: Duration = Duration::from_secs(120);

/// `child`'s exit status, or `None` if it is still running after `limit`
/// (checked every 50 ms: a process has no exit event to wait on with a
/// deadline in std).
fn wait_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn subscribers(owner: &Path) -> Option<u64> {
    let listed: serde_json::Value =
        serde_json::from_slice(&cli(owner, &["channel", "list", "--json"]).stdout).ok()?;
    listed["channels"][0]["stats"]["subscribers"].as_u64()
}

fn publish(dir: &Path, from: usize) {
    let mut publisher = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(["pub", "r", "-"])
        .env_remove("RELAY_NODE_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = publisher.stdin.take().unwrap();
        for i in from..from + HALF {
            writeln!(stdin, "m{i}").unwrap();
        }
    }
    let out = publisher.wait_with_output().unwrap();
    assert_eq!(
        text(&out.stdout),
        format!("published {HALF} messages: delivered {HALF}/{HALF}"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn subscription_resumes_by_sequence_after_the_owner_restarts() {
    let tmp = TempDir::new("redial");
    let dirs: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| tmp.0.join(n)).collect();
    let (a, b, c) = (&dirs[0], &dirs[1], &dirs[2]);
    let id_a = text(&cli(a, &["init"]).stdout);
    let node_a = Node::start(a, &[]);
    let ticket = text(&cli(a, &["invite", "--addr", &node_a.listen.to_string()]).stdout);
    assert!(cli(b, &["init", "--join", &ticket]).status.success());
    assert!(cli(c, &["init", "--join", &ticket]).status.success());
    let _node_b = Node::start(b, &[]);
    let node_c = Node::start(c, &[]);
    let listen = node_c.listen.to_string();
    assert!(cli(c, &["channel", "create", "r"]).status.success());
    let known = |dir: &Path| {
        let l = text(&cli(dir, &["channel", "list", "--json"]).stdout);
        l.contains("\"r\"").then_some(())
    };
    poll(|| known(a));
    poll(|| known(b));

    let count = (2 * HALF).to_string();
    let mut sub = Command::new(BIN)
        .arg("--data-dir")
        .arg(b)
        .args(["sub", "r", "--json", "--count", &count])
        .env_remove("RELAY_NODE_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(sub.stdout.take().unwrap());
    let reader = std::thread::spawn(move || out.lines().map(Result::unwrap).collect::<Vec<_>>());
    poll(|| (subscribers(c)? == 1).then_some(()));
    publish(a, 0);

    // The owner goes down and comes back on the same address.
    drop(node_c);
    let _node_c = Node::start_at(c, &listen, &[]);
    poll(|| (subscribers(c)? == 1).then_some(()));
    publish(a, HALF);

    // A subscription that never resumes fails here, with what it got,
    // instead of holding the run.
    let status = wait_within(&mut sub, DEADLINE);
    let Some(status) = status else {
        let _ = sub.kill();
        let _ = sub.wait();
        let got = reader.join().unwrap().len();
        let owner = text(&cli(c, &["channel", "list", "--json"]).stdout);
        panic!(
            "the subscription got {got} of {} messages in {DEADLINE:?}; the owner: {owner}",
            2 * HALF
        );
    };
    let mut stderr = String::new();
    if let Some(mut e) = sub.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(status.success(), "{stderr}");
    let lines = reader.join().unwrap();
    assert_eq!(lines.len(), 2 * HALF);
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["seq"], i as u64 + 1, "{line}");
        assert_eq!(v["data"], format!("m{i}"));
        assert_eq!(v["publisher"], id_a.as_str());
    }
}
