//! The channel verbs on one real node: history replay (`--last`,
//! `--from-start`), listing with counters, policy errors, removal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};

mod channels_common;
mod common;
use channels_common::{cli, text, Node, BIN};
use common::TempDir;

#[test]
fn history_listing_errors_and_removal() {
    let tmp = TempDir::new("cli");
    let dir = tmp.data();
    assert!(cli(&dir, &["init"]).status.success());
    let _node = Node::start(&dir, &[]);
    let cli = |args: &[&str]| cli(&dir, args);

    let bad = cli(&["channel", "create", "h", "--history", "5y"]);
    assert!(
        text(&bad.stderr).starts_with("error: invalid-history:"),
        "{}",
        text(&bad.stderr)
    );
    assert!(cli(&["channel", "create", "h", "--history", "3"])
        .status
        .success());
    let exists = cli(&["channel", "create", "h"]);
    assert!(
        text(&exists.stderr).starts_with("error: channel-exists:"),
        "{}",
        text(&exists.stderr)
    );

    let mut publisher = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["pub", "h", "-"])
        .env_remove("RELAY_NODE_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    publisher
        .stdin
        .take()
        .unwrap()
        .write_all(b"m1\nm2\nm3\nm4\nm5\n")
        .unwrap();
    let out = publisher.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "published 5 messages: delivered 0/0");

    let last = cli(&["sub", "h", "--last", "2", "--count", "2"]);
    assert_eq!(text(&last.stdout), "m4\nm5");
    let all = cli(&["sub", "h", "--from-start", "--count", "3", "--json"]);
    let seqs: Vec<u64> = text(&all.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [3, 4, 5]);

    let listed: serde_json::Value =
        serde_json::from_slice(&cli(&["channel", "list", "--json"]).stdout).unwrap();
    let h = &listed["channels"][0];
    assert_eq!(h["name"], "h");
    assert_eq!(h["policy"]["history"], "last 3");
    assert_eq!(h["stats"]["published"], 5);
    assert_eq!(h["stats"]["retained"], 3);
    assert!(text(&cli(&["channel", "list"]).stdout).contains("last 3"));

    assert_eq!(text(&cli(&["channel", "rm", "h"]).stdout), "removed h");
    let gone = cli(&["pub", "h", "x"]);
    assert!(
        text(&gone.stderr).starts_with("error: no-such-channel:"),
        "{}",
        text(&gone.stderr)
    );
    let listed: serde_json::Value =
        serde_json::from_slice(&cli(&["channel", "list", "--json"]).stdout).unwrap();
    assert_eq!(listed["channels"], serde_json::json!([]));
}
