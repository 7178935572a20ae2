//! Channels through the CLI of lab nodes: tokens from a channel's owner,
//! the mesh's channel list as one node sees it, and the check that a
//! subscriber got one publisher's messages exactly once and in order.
//!
//! The lab's publishers send `m1`, `m2`, ... as messages 1, 2, ... of one
//! publishing session, so message `i` has sequence number `i` and data
//! [`message`]`(i)`.

use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::cli_child::CliChild;
use super::node::LabNode;
use crate::process::poll_until;

/// The data of message `i` (from 1).
pub fn message(i: u64) -> String {
    format!("m{i}")
}

/// `token issue` on `owner` for `subject`: SCOPE on `channel`, for 10 min.
pub fn issue_token(
    owner: &LabNode,
    subject: &str,
    scope: &str,
    channel: &str,
) -> Result<String, String> {
    let args = [
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
    ];
    let out = owner.cli(&args);
    if out.success() {
        Ok(out.stdout.trim().to_string())
    } else {
        Err(format!("token issue: {out:?}"))
    }
}

/// Publishes messages `range` (their [`message`] data) from `node` to
/// `channel` with one `pub -` (`token` if given) and checks that every
/// one was delivered to every target (`delivered N/N`, N = `targets` x
/// the count). Waits at most `timeout`.
pub fn publish(
    bin: &Path,
    node: &LabNode,
    channel: &str,
    token: Option<&str>,
    range: RangeInclusive<u64>,
    targets: u64,
    timeout: Duration,
) -> Result<(), String> {
    let mut args = vec!["pub", channel, "-"];
    if let Some(t) = token {
        args.extend(["--token", t]);
    }
    let count = range.end() + 1 - range.start();
    let mut publisher = CliChild::spawn(bin, &node.dir, &args, true)?;
    for i in range {
        publisher.write_line(&message(i))?;
    }
    let end = publisher.wait(timeout)?;
    let want = format!(
        "published {count} messages: delivered {0}/{0}",
        count * targets
    );
    if end.status.success() && end.lines == [want.as_str()] {
        Ok(())
    } else {
        Err(format!("pub: want {want:?}: {end:?}"))
    }
}

/// `channel list --json` on `node`: the entry for `name`, if listed.
pub fn listed(node: &LabNode, name: &str) -> Option<Value> {
    let out = node.cli(&["channel", "list", "--json"]);
    let list: Value = serde_json::from_str(&out.stdout).ok()?;
    list["channels"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
}

/// Polls `node`'s channel list until `name` is listed and `pred` holds
/// for its entry (at most `timeout`).
pub fn wait_listed(
    node: &LabNode,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Option<Value> {
    poll_until(timeout, Duration::from_millis(100), || {
        listed(node, name).filter(|c| pred(c))
    })
}

/// Checks `sub --json` output: exactly `count` messages, all from
/// `publisher`, message `i` with sequence `i` and data [`message`]`(i)`,
/// no gap notice. The error names the first line that breaks it.
pub fn check_in_order(lines: &[String], publisher: &str, count: u64) -> Result<(), String> {
    for (i, line) in (1u64..).zip(lines) {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("line {i}: {e}: {line}"))?;
        if v.get("gap").is_some() {
            return Err(format!("line {i}: a gap: {line}"));
        }
        if v["seq"] != i || v["data"] != message(i).as_str() || v["publisher"] != publisher {
            return Err(format!(
                "line {i}: want seq {i}, data {} from {publisher}: {line}",
                message(i)
            ));
        }
    }
    if lines.len() as u64 != count {
        return Err(format!("{} messages, want {count}", lines.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, publisher: &str) -> String {
        serde_json::json!({"seq": seq, "data": message(seq), "publisher": publisher, "ts": 1})
            .to_string()
    }

    #[test]
    fn in_order_passes_and_every_fault_fails() {
        let good: Vec<String> = (1..=3).map(|s| line(s, "p")).collect();
        assert_eq!(check_in_order(&good, "p", 3), Ok(()));
        assert!(check_in_order(&good, "p", 4).is_err(), "missing at the end");
        assert!(check_in_order(&good, "q", 3).is_err(), "wrong publisher");
        let dup = vec![line(1, "p"), line(1, "p"), line(2, "p")];
        assert!(check_in_order(&dup, "p", 3).is_err(), "duplicate");
        let hole = vec![line(1, "p"), line(3, "p")];
        assert!(check_in_order(&hole, "p", 2).is_err(), "missing in between");
        let gap = vec![line(1, "p"), r#"{"gap":{"from":2,"to":2}}"#.to_string()];
        assert!(check_in_order(&gap, "p", 2).is_err(), "gap notice");
    }
}
