//! Channels end to end, three real `relay-node` processes on loopback,
//! through the CLI: A owns a token-gated channel; B's subscription without
//! a token is denied; with a token from A, B receives 10,000 messages from
//! C (which holds a publish token from A) in order, none missing; after
//! `token revoke`, B's subscription ends with `token: revoked` within 2 s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MESSAGES: usize = 10_000;

mod channels_common;
mod common;
use channels_common::{cli, poll, text, Node, BIN};
use common::TempDir;

/// A token from the owner of `owner_dir` for `subject` (`token issue`).
fn token(owner_dir: &Path, subject: &str, scope: &str, channel: &str) -> String {
    let out = cli(
        owner_dir,
        &[
            "token",
            "issue",
            "--subject",
            subject,
            "--scope",
            scope,
            "--channel",
            channel,
            "--ttl",
            "10m",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn list(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&cli(dir, &["channel", "list", "--json"]).stdout).unwrap_or_default()
}

fn channel<'a>(list: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    list["channels"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

#[test]
fn three_nodes_token_gated_channel_in_order_none_missing() {
    let tmp = TempDir::new("chan");
    let dirs: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| tmp.0.join(n)).collect();
    let (a, b, c) = (&dirs[0], &dirs[1], &dirs[2]);
    assert!(cli(a, &["init"]).status.success());
    let node_a = Node::start(a, &[]);
    let ticket = text(&cli(a, &["invite", "--addr", &node_a.listen.to_string()]).stdout);
    let id_b = text(&cli(b, &["init", "--join", &ticket]).stdout);
    let id_c = text(&cli(c, &["init", "--join", &ticket]).stdout);
    let _node_b = Node::start(b, &[]);
    let _node_c = Node::start(c, &[]);

    let created = cli(a, &["channel", "create", "news", "--require-token"]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert!(cli(a, &["channel", "create", "news"]).status.code() != Some(0));
    // B and C learn the registration from the ledger.
    for dir in [b, c] {
        poll(|| channel(&list(dir), "news").map(|_| ()));
    }
    let listed = list(b);
    let news = channel(&listed, "news").unwrap();
    assert_eq!(news["policy"]["require_token"], true);
    assert_eq!(news["owned"], false);

    // No token: denied with the token kind.
    let denied = cli(b, &["sub", "news", "--count", "1"]);
    assert!(!denied.status.success());
    assert!(
        text(&denied.stderr).contains("token: required"),
        "{}",
        text(&denied.stderr)
    );

    let sub_token = token(a, &id_b, "subscribe", "news");
    let pub_token = token(a, &id_c, "publish", "news");
    // A subscribe token does not publish.
    let wrong = cli(c, &["pub", "news", "x", "--token", &sub_token]);
    assert!(
        text(&wrong.stderr).contains("token: wrong-subject"),
        "{}",
        text(&wrong.stderr)
    );

    let token_file = tmp.0.join("sub.token");
    std::fs::write(&token_file, &sub_token).unwrap();
    let count = MESSAGES.to_string();
    let mut sub = Command::new(BIN)
        .arg("--data-dir")
        .arg(b)
        .args(["sub", "news", "--json", "--count", &count, "--token"])
        .arg(format!("@{}", token_file.display()))
        .env_remove("RELAY_NODE_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read as it comes: a subscriber that stops reading holds the
    // publisher back (block backpressure).
    let sub_out = BufReader::new(sub.stdout.take().unwrap());
    let reader =
        std::thread::spawn(move || sub_out.lines().map(Result::unwrap).collect::<Vec<_>>());
    poll(|| {
        let l = list(a);
        (channel(&l, "news")?["stats"]["subscribers"] == 1).then_some(())
    });

    let mut publisher = Command::new(BIN)
        .arg("--data-dir")
        .arg(c)
        .args(["pub", "news", "-", "--token", &pub_token])
        .env_remove("RELAY_NODE_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = publisher.stdin.take().unwrap();
        for i in 0..MESSAGES {
            writeln!(stdin, "m{i}").unwrap();
        }
    }
    let published = publisher.wait_with_output().unwrap();
    assert!(published.status.success());
    assert_eq!(
        text(&published.stdout),
        format!("published {MESSAGES} messages: delivered {MESSAGES}/{MESSAGES}")
    );

    let got = sub.wait_with_output().unwrap();
    assert!(got.status.success(), "{}", text(&got.stderr));
    let lines: Vec<serde_json::Value> = reader
        .join()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), MESSAGES);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], i as u64 + 1);
        assert_eq!(l["data"], format!("m{i}"));
        assert_eq!(l["publisher"], id_c.as_str());
    }

    // A live subscription, then the token is revoked.
    let mut live = Command::new(BIN)
        .arg("--data-dir")
        .arg(b)
        .args(["sub", "news", "--token", &sub_token])
        .env_remove("RELAY_NODE_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    poll(|| {
        let l = list(a);
        (channel(&l, "news")?["stats"]["subscribers"] == 1).then_some(())
    });
    // A fresh token on the live subscription: revoking the old one no
    // longer ends it (C's next message still reaches it) ...
    let fresh = token(a, &id_b, "subscribe", "news");
    let refreshed = cli(b, &["channel", "refresh", "news", "--token", &fresh]);
    assert_eq!(
        text(&refreshed.stdout),
        "refreshed 1 subscription(s) to news"
    );
    // B's frames to A travel in order on one stream: once A answered this
    // publish attempt (B may not publish), it has taken the refresh.
    let sync = cli(b, &["pub", "news", "x", "--token", &fresh]);
    assert!(
        text(&sync.stderr).contains("token: scope"),
        "{}",
        text(&sync.stderr)
    );
    let old = cli(a, &["token", "revoke", &sub_token]);
    assert!(old.status.success(), "{}", text(&old.stderr));
    let one = cli(c, &["pub", "news", "still-here", "--token", &pub_token]);
    assert_eq!(text(&one.stdout), "delivered 1/1", "{}", text(&one.stderr));
    assert!(live.try_wait().unwrap().is_none());
    // ... revoking the fresh one does.
    let revoke = cli(a, &["token", "revoke", &fresh]);
    assert!(revoke.status.success(), "{}", text(&revoke.stderr));
    let revoked = Instant::now();
    let ended = poll(|| live.try_wait().unwrap());
    let took = revoked.elapsed();
    assert!(!ended.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut live.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("token: revoked"), "{err}");
    assert!(
        took < Duration::from_secs(2),
        "ended {took:?} after the revocation"
    );
    // And it cannot subscribe again.
    let again = cli(b, &["sub", "news", "--count", "1", "--token", &sub_token]);
    assert!(
        text(&again.stderr).contains("token: revoked"),
        "{}",
        text(&again.stderr)
    );
}
