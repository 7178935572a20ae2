//! `relay-node sub` reads the `channels` frame stream: a live subscriber
//! process gets 20,000 messages from a publisher process in order, none
//! missing, as the JSON objects of `GET /v1/sub`; an unknown channel is
//! the node's error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

mod channels_common;
mod common;
use channels_common::{cli, poll, text, Node, BIN};
use common::TempDir;

const MESSAGES: usize = 20_000;

#[test]
fn cli_sub_receives_many_messages_in_order_over_the_stream() {
    let tmp = TempDir::new("sub-stream");
    let dir = tmp.data();
    assert!(cli(&dir, &["init"]).status.success());
    let _node = Node::start(&dir, &[]);
    let me = text(&cli(&dir, &["id"]).stdout);
    assert!(cli(&dir, &["channel", "create", "bulk"]).status.success());

    let missing = cli(&dir, &["sub", "nope", "--count", "1"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("no-such-channel"),
        "{}",
        text(&missing.stderr)
    );

    let count = MESSAGES.to_string();
    let mut sub = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["sub", "bulk", "--json", "--count", &count])
        .env_remove("RELAY_NODE_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(sub.stdout.take().unwrap());
    let reader = std::thread::spawn(move || out.lines().map(Result::unwrap).collect::<Vec<_>>());
    poll(|| {
        let listed: serde_json::Value =
            serde_json::from_slice(&cli(&dir, &["channel", "list", "--json"]).stdout).ok()?;
        (listed["channels"][0]["stats"]["subscribers"] == 1).then_some(())
    });

    let mut publisher = Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["pub", "bulk", "-"])
        .env_remove("RELAY_NODE_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = std::io::BufWriter::new(publisher.stdin.take().unwrap());
        for i in 0..MESSAGES {
            writeln!(stdin, "m{i}").unwrap();
        }
    }
    let published = publisher.wait_with_output().unwrap();
    assert_eq!(
        text(&published.stdout),
        format!("published {MESSAGES} messages: delivered {MESSAGES}/{MESSAGES}")
    );

    let done = sub.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", text(&done.stderr));
    let lines = reader.join().unwrap();
    assert_eq!(lines.len(), MESSAGES);
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["data", "publisher", "seq", "ts"], "{line}");
        assert_eq!(v["seq"], i as u64 + 1);
        assert_eq!(v["data"], format!("m{i}"));
        assert_eq!(v["publisher"], me.as_str());
        assert!(v["ts"].as_u64().unwrap() > 0);
    }
}
