//! Black-box tests of the `relay-node` binary for the verbs that need no
//! running transport: init, id, invite --addr, and error reporting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use relay_proto::Ticket;

const BIN: &str = env!("CARGO_BIN_EXE_relay-node");

/// A temp data-dir parent, removed on drop.
mod common;
use common::TempDir;

fn relay(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("RELAY_NODE_DATA_DIR")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Asserts a clean failure: nonzero exit, `error: <kind>: ` on stderr, no panic.
fn assert_fails_with(o: &Output, kind: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, stderr: {err}");
    assert!(
        err.contains(&format!("error: {kind}: ")),
        "expected kind {kind}, got: {err}"
    );
    assert!(!err.contains("panicked"), "panic text in: {err}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_private_files_and_id_matches() {
    let tmp = TempDir::new("init");
    let out = relay(&tmp.data(), &["init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert_eq!(id.len(), 52);
    assert_eq!(mode(&tmp.data()), 0o700);
    assert_eq!(mode(&tmp.data().join("identity.key")), 0o600);
    assert_eq!(mode(&tmp.data().join("network.key")), 0o600);

    let out = relay(&tmp.data(), &["id"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), id);

    // The environment variable names the data dir too.
    let out = Command::new(BIN)
        .arg("id")
        .env("RELAY_NODE_DATA_DIR", tmp.data())
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), id);
}

#[test]
fn init_refuses_to_overwrite() {
    let tmp = TempDir::new("overwrite");
    let first = relay(&tmp.data(), &["init"]);
    assert!(first.status.success());
    let key_before = std::fs::read(tmp.data().join("identity.key")).unwrap();
    let net_before = std::fs::read(tmp.data().join("network.key")).unwrap();
    let second = relay(&tmp.data(), &["init"]);
    assert_fails_with(&second, "exists");
    assert_eq!(
        std::fs::read(tmp.data().join("identity.key")).unwrap(),
        key_before
    );
    assert_eq!(
        std::fs::read(tmp.data().join("network.key")).unwrap(),
        net_before
    );
}

#[test]
fn invite_and_join_share_the_network_key() {
    let tmp = TempDir::new("join");
    let a = tmp.0.join("a");
    let b = tmp.0.join("b");
    let id_a = stdout(&relay(&a, &["init"])).trim().to_string();

    let out = relay(
        &a,
        &["invite", "--addr", "127.0.0.1:7420", "--addr", "[::1]:7420"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out).trim().to_string();
    let ticket = Ticket::decode(&text).unwrap();
    assert_eq!(ticket.node_id.to_string(), id_a);
    assert_eq!(ticket.addrs.len(), 2);

    let out = relay(&b, &["init", "--join", &text]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(stdout(&out).trim(), id_a);
    assert_eq!(
        std::fs::read(a.join("network.key")).unwrap(),
        std::fs::read(b.join("network.key")).unwrap()
    );
    let boot: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("bootstrap.json")).unwrap()).unwrap();
    assert_eq!(boot["peers"][0]["node_id"], id_a.as_str());
    assert_eq!(boot["peers"][0]["addrs"][0], "127.0.0.1:7420");
    assert_eq!(mode(&b.join("bootstrap.json")), 0o600);
}

#[test]
fn invite_without_running_node_or_addr_fails() {
    let tmp = TempDir::new("invite");
    relay(&tmp.data(), &["init"]);
    assert_fails_with(&relay(&tmp.data(), &["invite"]), "no-addresses");
    assert_fails_with(
        &relay(&tmp.data(), &["invite", "--addr", "nonsense"]),
        "invalid-address",
    );
}

#[test]
fn invite_help_warns_ticket_is_secret() {
    let out = Command::new(BIN)
        .args(["invite", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).contains("SECRET"));
}

#[test]
fn bad_input_is_a_typed_error() {
    let tmp = TempDir::new("bad");
    let data = tmp.data();
    assert_fails_with(
        &relay(&data, &["init", "--join", "rnt1garbage"]),
        "invalid-ticket",
    );
    assert_fails_with(
        &relay(&data, &["init", "--join", "hello"]),
        "invalid-ticket",
    );
    // Nothing was created by the failed joins.
    assert!(!data.join("identity.key").exists());

    assert_fails_with(&relay(&data, &["ping", "not-a-node-id"]), "invalid-node-id");
    assert_fails_with(&relay(&data, &["run", "--peer", "junk"]), "invalid-peer");
    assert_fails_with(
        &relay(&data, &["run", "--listen", "nowhere"]),
        "invalid-address",
    );

    let out = relay(&data, &["--no-such-flag"]);
    assert_fails_with(&out, "usage");
    assert_eq!(out.status.code(), Some(2));
    let id = "a".repeat(52);
    assert_fails_with(&relay(&data, &["ping", &id, "-c", "0"]), "usage");
    assert_fails_with(&relay(&data, &["ping", &id, "-c", "-1"]), "usage");
}

#[test]
fn missing_and_corrupt_identity_are_typed() {
    let tmp = TempDir::new("corrupt");
    let data = tmp.data();
    assert_fails_with(&relay(&data, &["id"]), "no-identity");

    relay(&data, &["init"]);
    let key = data.join("identity.key");
    std::fs::write(&key, b"this is not a key\n").unwrap();
    assert_fails_with(&relay(&data, &["id"]), "corrupt-key");
    std::fs::write(&key, [0xffu8, 0x00, 0x12]).unwrap();
    assert_fails_with(&relay(&data, &["id"]), "corrupt-key");
    // `run` refuses a corrupt identity before binding anything.
    assert_fails_with(
        &relay(&data, &["run", "--listen", "127.0.0.1:0"]),
        "corrupt-key",
    );
}

#[test]
fn group_readable_identity_is_refused() {
    let tmp = TempDir::new("perm");
    let data = tmp.data();
    relay(&data, &["init"]);
    let key = data.join("identity.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = relay(&data, &["id"]);
    assert_fails_with(&out, "insecure-permissions");
    assert!(stderr(&out).contains("chmod 600"));
}

#[test]
fn status_and_ping_without_node_are_not_running() {
    let tmp = TempDir::new("notrunning");
    let data = tmp.data();
    let out = relay(&data, &["status"]);
    assert_fails_with(&out, "not-running");
    assert!(stderr(&out).contains("start it with relay-node run"));
    let id = stdout(&relay(&data, &["init"])).trim().to_string();
    assert_fails_with(&relay(&data, &["status", "--json"]), "not-running");
    assert_fails_with(&relay(&data, &["ping", &id]), "not-running");
}

/// The files `run` may leave in a data dir it was refused on: none but the
/// ones that were there before.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn run_checks_its_flags_before_any_side_effect() {
    let tmp = TempDir::new("preflight");
    let data = tmp.data();
    // A UDP port in use: a `run` that got as far as binding would fail with
    // `bind` instead of the flag's kind.
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let listen = busy.local_addr().unwrap().to_string();
    let token = tmp.0.join("token");
    std::fs::write(&token, "0123456789abcdef0123").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let token = token.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--http", "0.0.0.0:0"], "http-not-loopback"),
        (
            &["--http", "0.0.0.0:0", "--http-allow-remote"],
            "http-token-required",
        ),
        (
            &["--http", "127.0.0.1:0", "--http-token-file", token],
            "http-token",
        ),
        (
            &[
                "--http",
                "127.0.0.1:0",
                "--http-token-file",
                "/nonexistent/token",
            ],
            "http-token",
        ),
    ];
    for (flags, kind) in cases {
        let mut args = vec!["run", "--listen", &listen];
        args.extend_from_slice(flags);
        // On a fresh data dir: nothing is created, no identity made.
        assert_fails_with(&relay(&data, &args), kind);
        assert!(!data.exists(), "{flags:?} created the data dir");
    }

    // On an existing one: nothing is added (no run.lock, no socket).
    relay(&data, &["init"]);
    let before = entries(&data);
    let key_before = std::fs::read(data.join("identity.key")).unwrap();
    for (flags, kind) in cases {
        let mut args = vec!["run", "--listen", &listen];
        args.extend_from_slice(flags);
        assert_fails_with(&relay(&data, &args), kind);
        assert_eq!(entries(&data), before, "{flags:?} left files behind");
    }
    assert_eq!(
        std::fs::read(data.join("identity.key")).unwrap(),
        key_before
    );
}

#[test]
fn run_without_a_network_key_leaves_nothing_behind() {
    let tmp = TempDir::new("nokey");
    let data = tmp.data();
    relay(&data, &["init"]);
    std::fs::remove_file(data.join("network.key")).unwrap();
    let before = entries(&data);
    let out = relay(&data, &["run", "--listen", "127.0.0.1:0"]);
    assert_fails_with(&out, "no-network-key");
    assert_eq!(entries(&data), before);
    assert!(!data.join("run.lock").exists());

    // A corrupt bootstrap file is refused the same way.
    relay(&tmp.0.join("other"), &["init"]);
    std::fs::copy(tmp.0.join("other/network.key"), data.join("network.key")).unwrap();
    std::fs::write(data.join("bootstrap.json"), "{not json").unwrap();
    let before = entries(&data);
    let out = relay(&data, &["run", "--listen", "127.0.0.1:0"]);
    assert_fails_with(&out, "corrupt-config");
    assert_eq!(entries(&data), before);
}
