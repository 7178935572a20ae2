//! The token verbs of the real binary: issue, delegate, inspect and verify
//! round trips; every matrix case the CLI can reach prints `token: KIND`
//! and exits nonzero; `token revoke` through a running node shows up in
//! `relay-node ledger --kind token-revocation` and in `token verify`.
//! Chains the CLI refuses to build (forged, too long) are built with
//! `relay_proto::token` and fed to `token verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use relay_proto::token::{TokenChain, TokenClaims, TokenId};
use relay_proto::SecretKey;
use serde_json::Value;

mod common;
use common::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_relay-node");

fn relay(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("RELAY_NODE_DATA_DIR")
        .output()
        .unwrap()
}

/// Runs and expects success; returns stdout's first line.
fn ok(dir: &Path, args: &[&str]) -> String {
    let o = relay(dir, args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim_end().to_string()
}

/// Runs and expects failure with `token: KIND`.
fn fails(dir: &Path, args: &[&str], kind: &str) {
    let o = relay(dir, args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(
        err.contains(&format!("error: token: {kind}")),
        "{args:?}: expected token: {kind}, got {err}"
    );
}

/// A data dir with a fresh identity; returns (dir, NodeId).
fn node(tmp: &TempDir, name: &str) -> (PathBuf, String) {
    let dir = tmp.0.join(name);
    let id = ok(&dir, &["init"]);
    (dir, id)
}

fn verify_kind(dir: &Path, token: &str, extra: &[&str], kind: &str) {
    let mut args = vec!["token", "verify", token];
    args.extend_from_slice(extra);
    fails(dir, &args, kind);
}

#[test]
fn issue_delegate_inspect_verify_and_the_matrix() {
    let tmp = TempDir::new("token-matrix");
    let (a, _a_id) = node(&tmp, "a");
    let (b, b_id) = node(&tmp, "b");
    let (c, c_id) = node(&tmp, "c");

    let root = ok(
        &a,
        &[
            "token",
            "issue",
            "--subject",
            &b_id,
            "--scope",
            "subscribe,delegate",
            "--channel",
            "a/>",
            "--ttl",
            "1h",
        ],
    );
    assert!(root.starts_with("rnk1"), "{root}");

    // Inspect: text and JSON.
    let text = ok(&a, &["token", "inspect", &root]);
    assert!(
        text.contains("subscribe,delegate") && text.contains("a/>"),
        "{text}"
    );
    let json: Value =
        serde_json::from_str(&ok(&a, &["token", "inspect", &root, "--json"])).unwrap();
    assert_eq!(json["holder"], b_id);
    assert_eq!(json["links"][0]["delegation_depth"], 1);
    assert_eq!(json["links"][0]["scopes"][1], "delegate");
    assert!(json["links"][0]["parent"].is_null());

    // Verify: the chain alone, and for a channel and scope; also from @FILE.
    assert!(ok(&a, &["token", "verify", &root]).starts_with("ok: "));
    let line = ok(
        &a,
        &[
            "token",
            "verify",
            &root,
            "--channel",
            "a/x",
            "--scope",
            "subscribe",
        ],
    );
    assert!(line.contains(&b_id), "{line}");
    let file = tmp.0.join("root.token");
    std::fs::write(&file, format!("{root}\n")).unwrap();
    let at_file = format!("@{}", file.display());
    ok(
        &a,
        &[
            "token",
            "verify",
            &at_file,
            "--channel",
            "a/x",
            "--scope",
            "subscribe",
        ],
    );

    // Delegate B -> C, narrowed to one channel.
    let child = ok(
        &b,
        &[
            "token",
            "delegate",
            &root,
            "--subject",
            &c_id,
            "--scope",
            "subscribe,delegate",
            "--channel",
            "a/b",
            "--ttl",
            "30m",
        ],
    );
    let json: Value =
        serde_json::from_str(&ok(&c, &["token", "inspect", &child, "--json"])).unwrap();
    assert_eq!(json["links"].as_array().unwrap().len(), 2);
    assert_eq!(json["links"][1]["parent"], json["links"][0]["id"]);
    assert_eq!(json["holder"], c_id);
    ok(
        &c,
        &[
            "token",
            "verify",
            &child,
            "--channel",
            "a/b",
            "--scope",
            "subscribe",
        ],
    );

    // The matrix.
    let sub = ["--channel", "a/b", "--scope", "subscribe"];
    let far = (u64::MAX / 2).to_string();
    verify_kind(&c, &child, &[&sub[..], &["--at", &far]].concat(), "expired");
    verify_kind(
        &c,
        &child,
        &[&sub[..], &["--at", "0"]].concat(),
        "not-yet-valid",
    );
    verify_kind(
        &c,
        &child,
        &["--channel", "a/c", "--scope", "subscribe"],
        "channel-mismatch",
    );
    verify_kind(
        &c,
        &child,
        &["--channel", "a/b", "--scope", "publish"],
        "scope",
    );
    verify_kind(&c, &root, &["--holder", &c_id], "wrong-subject");
    verify_kind(&c, &root, &["--owner", &c_id], "invalid-signature");
    // Over-delegated: C's link grants delegate, but at depth 0.
    let args = [
        "token",
        "delegate",
        &child,
        "--subject",
        &b_id,
        "--scope",
        "subscribe",
    ];
    fails(&c, &args, "delegation-exhausted");
    // Widened delegations are refused at issue time.
    let args = [
        "token",
        "delegate",
        &root,
        "--subject",
        &c_id,
        "--scope",
        "publish",
    ];
    fails(&b, &args, "scope");
    let widen = [
        "token",
        "delegate",
        &root,
        "--subject",
        &c_id,
        "--scope",
        "subscribe",
    ];
    fails(
        &b,
        &[&widen[..], &["--channel", ">"]].concat(),
        "channel-mismatch",
    );
    fails(&b, &[&widen[..], &["--ttl", "2h"]].concat(), "expired");
    fails(
        &b,
        &[&widen[..], &["--depth", "1"]].concat(),
        "delegation-exhausted",
    );
    // Only the subject may delegate.
    fails(&a, &widen, "wrong-subject");
    // TTL <= 0, and a bad scope or text.
    for ttl in ["0s", "-5m"] {
        let args = [
            "token",
            "issue",
            "--subject",
            &b_id,
            "--scope",
            "publish",
            "--channel",
            "x",
            "--ttl",
            ttl,
        ];
        fails(&a, &args, "expired");
    }
    let args = [
        "token",
        "issue",
        "--subject",
        &b_id,
        "--scope",
        "read",
        "--channel",
        "x",
        "--ttl",
        "1h",
    ];
    fails(&a, &args, "malformed");
    fails(
        &a,
        &["token", "inspect", &root[..root.len() - 3]],
        "malformed",
    );
    fails(&a, &["token", "inspect", &format!("{root}x")], "malformed");

    // Forged: a flipped signature bit.
    let chain: TokenChain = root.parse().unwrap();
    let mut links = chain.links().to_vec();
    links[0].signature[0] ^= 1;
    let forged = TokenChain::new(links).unwrap().to_text();
    verify_kind(&a, &forged, &[], "invalid-signature");

    // Too long: nine links (the CLI refuses to build them; the parser too).
    let keys: Vec<SecretKey> = (1..=10).map(|n| SecretKey::from_bytes(&[n; 32])).collect();
    let mut links = Vec::new();
    let mut parent = TokenId::NONE;
    for i in 0..9 {
        let claims = TokenClaims {
            issuer: keys[i].node_id(),
            subject: keys[i + 1].node_id(),
            scopes: "subscribe,delegate".parse().unwrap(),
            channel: ">".parse().unwrap(),
            not_before: 0,
            expires: u64::MAX,
            delegation_depth: 7u8.saturating_sub(i as u8),
            id: TokenId::random(),
            parent,
        };
        parent = claims.id;
        links.push(claims.sign(&keys[i]).unwrap());
    }
    let eight = TokenChain::new(links[..8].to_vec()).unwrap();
    ok(&a, &["token", "verify", &eight.to_text()]);
    let mut bytes = eight.encode();
    bytes[1] = 9;
    let ninth = TokenChain::new(links[8..].to_vec()).unwrap().encode();
    bytes.extend_from_slice(&ninth[2..]);
    let nine = format!("rnk1{}", relay_proto::base32_encode(&bytes));
    verify_kind(&a, &nine, &[], "chain-too-long");
}

/// A running `relay-node run`, killed on drop.
struct Running(Child);

impl Running {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--no-port-map",
                "--no-traversal",
            ])
            .env_remove("RELAY_NODE_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The first stdout line says it is listening (the API is up by then).
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening"), "{line:?}");
        Self(child)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn revoke_through_a_running_node() {
    let tmp = TempDir::new("token-revoke");
    let (a, _) = node(&tmp, "a");
    let (b, b_id) = node(&tmp, "b");
    let (_c, c_id) = node(&tmp, "c");
    let issue = [
        "token",
        "issue",
        "--subject",
        &b_id,
        "--scope",
        "subscribe,delegate",
        "--channel",
        "a/>",
        "--ttl",
        "1h",
    ];
    let root = ok(&a, &issue);
    let child = ok(
        &b,
        &[
            "token",
            "delegate",
            &root,
            "--subject",
            &c_id,
            "--scope",
            "subscribe",
        ],
    );
    let root_id = serde_json::from_str::<Value>(&ok(&a, &["token", "inspect", &root, "--json"]))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Without a running node, revoke fails with not-running.
    let o = relay(&a, &["token", "revoke", &root]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not-running"));

    let _node = Running::start(&a);
    let sub = ["--channel", "a/x", "--scope", "subscribe"];
    ok(&a, &[&["token", "verify", &child][..], &sub].concat());
    // A node that issued no link may not revoke by token text.
    let stranger = ok(
        &b,
        &[
            "token",
            "issue",
            "--subject",
            &c_id,
            "--scope",
            "publish",
            "--channel",
            "z",
            "--ttl",
            "1h",
        ],
    );
    fails(&a, &["token", "revoke", &stranger], "wrong-subject");

    let line = ok(&a, &["token", "revoke", &root, "--reason", "test"]);
    assert!(line.starts_with(&format!("revoked {root_id}")), "{line}");
    let listing = ok(&a, &["ledger", "--kind", "token-revocation", "--json"]);
    let entry: Value = serde_json::from_str(listing.lines().last().unwrap()).unwrap();
    assert_eq!(entry["kind"], "token-revocation");
    assert!(entry["body"]["token_id"]
        .as_str()
        .unwrap()
        .starts_with(&root_id));
    assert_eq!(entry["body"]["reason"], "test");
    // The revoked parent ends the delegated chain too.
    verify_kind(&a, &child, &sub, "revoked");
    verify_kind(&a, &root, &[], "revoked");

    // By id, with how long to keep it.
    let other = ok(&a, &issue);
    let other_id = serde_json::from_str::<Value>(&ok(&a, &["token", "inspect", &other, "--json"]))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&a, &["token", "revoke", "--id", &other_id, "--keep", "2h"]);
    verify_kind(&a, &other, &[], "revoked");
    let o = relay(&a, &["token", "revoke", "--id", "xyz"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("token: malformed"));
}
