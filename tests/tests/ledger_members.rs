//! Three `relay-node` processes on loopback: B and C each join with a
//! ticket from A only; C learns B (its address, its announcement) through
//! the replicated ledger, and the ledger verbs show it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use relay_tests::process::poll_until;
use relay_tests::{relay_node_bin, run_cli, CliOutput, NodeProcess, TempDir};

/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

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

fn json(dir: &Path, args: &[&str]) -> Option<serde_json::Value> {
    let out = cli(dir, args);
    out.success()
        .then(|| serde_json::from_str(&out.stdout).ok())
        .flatten()
}

/// Joins `dir` to A's mesh with a fresh ticket naming A's address.
fn join(a_dir: &Path, a: &NodeProcess, dir: &Path) -> String {
    let addr = format!("127.0.0.1:{}", a.listen.port());
    let invite = cli(a_dir, &["invite", "--addr", &addr]);
    assert!(invite.success(), "{invite:?}");
    let init = cli(dir, &["init", "--join", invite.stdout.trim()]);
    assert!(init.success(), "{init:?}");
    init.stdout.trim().to_string()
}

#[test]
fn a_member_learns_another_through_the_ledger() {
    let tmp = TempDir::new("ledger-members").unwrap();
    let (dir_a, dir_b, dir_c) = (tmp.join("a"), tmp.join("b"), tmp.join("c"));
    let init_a = cli(&dir_a, &["init"]);
    assert!(init_a.success(), "{init_a:?}");
    let node_a = start(&dir_a);

    let id_b = join(&dir_a, &node_a, &dir_b);
    let node_b = start(&dir_b);
    let b_addr = node_b.listen.to_string();

    // B has announced itself to A.
    let at_a = poll_until(DEADLINE, POLL, || {
        json(&dir_a, &["members", "--json"]).filter(|m| {
            m["members"]
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x["node_id"] == id_b.as_str()))
        })
    });
    assert!(
        at_a.is_some(),
        "A never listed B; A stderr:\n{}\nB stderr:\n{}",
        node_a.stderr_log(),
        node_b.stderr_log()
    );

    let id_c = join(&dir_a, &node_a, &dir_c);
    let node_c = start(&dir_c);
    assert_ne!(id_b, id_c);

    // C was told only of A; it learns B, with B's address.
    let member = poll_until(DEADLINE, POLL, || {
        let m = json(&dir_c, &["members", "--json"])?;
        m["members"]
            .as_array()?
            .iter()
            .find(|x| x["node_id"] == id_b.as_str())
            .cloned()
    });
    let member = member.unwrap_or_else(|| {
        panic!(
            "C never listed B; C stderr:\n{}\nA stderr:\n{}",
            node_c.stderr_log(),
            node_a.stderr_log()
        )
    });
    let addrs: Vec<&str> = member["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(addrs.contains(&b_addr.as_str()), "{member}");
    assert!(member["last_seen"].is_string(), "{member}");

    // C's ledger holds B's announcement (one JSON object per line).
    let out = cli(&dir_c, &["ledger", "--origin", &id_b, "--json"]);
    assert!(out.success(), "{out:?}");
    let entries: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ann = entries
        .iter()
        .find(|e| e["kind"] == "node-announcement")
        .unwrap_or_else(|| panic!("no announcement of B at C: {out:?}"));
    assert_eq!(ann["origin"], id_b.as_str());
    assert!(ann["seq"].as_u64().unwrap() >= 1);
    assert_eq!(ann["hash"].as_str().unwrap().len(), 64);
    assert!(ann["body"]["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == b_addr.as_str()));
    assert!(ann["cursor"].is_string());

    // The table forms and verify.
    let table = cli(&dir_c, &["members"]);
    assert!(table.success(), "{table:?}");
    assert!(table.stdout.starts_with("NODE_ID"), "{table:?}");
    assert!(table.stdout.contains(&id_b), "{table:?}");
    let listing = cli(&dir_c, &["ledger", "--kind", "node-announcement"]);
    assert!(listing.success(), "{listing:?}");
    assert!(listing.stdout.contains(&id_b[..10]), "{listing:?}");
    let verify = cli(&dir_c, &["ledger", "verify"]);
    assert!(verify.success(), "{verify:?}");
    assert!(verify.stdout.starts_with("ok: "), "{verify:?}");

    // Bad values get kinds, not panics.
    let bad = cli(&dir_c, &["ledger", "--kind", "nope"]);
    assert!(!bad.success());
    assert!(bad.stderr.contains("invalid-kind: "), "{bad:?}");
    let bad = cli(&dir_c, &["ledger", "--after", "x1"]);
    assert!(bad.stderr.contains("invalid-cursor: "), "{bad:?}");

    // C's status has a ledger section.
    let status = json(&dir_c, &["status", "--json"]).unwrap();
    let section = &status["subsystems"]["ledger"];
    assert!(section["origins"].as_u64().unwrap() >= 2, "{status}");
    assert_eq!(section["forks"], 0);
    // Every member's feed carries its proof: nothing was refused.
    assert_eq!(section["rejected"]["not_member"], 0, "{status}");
    // Per connected peer, the replication lag from the exchanged vectors
    // (refreshed every 2 s).
    let id_a = node_a.node_id.clone();
    let lag = poll_until(DEADLINE, POLL, || {
        let s = json(&dir_c, &["status", "--json"])?;
        let lag = s["subsystems"]["ledger"]["peers"][id_a.as_str()]["replication_lag"].clone();
        lag.is_object().then_some(lag)
    });
    let lag = lag.unwrap_or_else(|| panic!("no replication_lag for A at C"));
    assert!(
        lag["peer_lacks"].is_u64() && lag["we_lack"].is_u64(),
        "{lag}"
    );
}

#[test]
fn a_corrupt_ledger_stops_run_with_the_recovery_text() {
    let tmp = TempDir::new("ledger-corrupt").unwrap();
    let dir = tmp.join("a");
    let init = cli(&dir, &["init"]);
    assert!(init.success(), "{init:?}");
    std::fs::write(dir.join("ledger.redb"), vec![0x5a; 8192]).unwrap();
    let out = cli(&dir, &["run", "--listen", "127.0.0.1:0"]);
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("ledger-corrupt: "), "{out:?}");
    assert!(out.stderr.contains("move the file aside"), "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    // Nothing was overwritten.
    assert_eq!(
        std::fs::read(dir.join("ledger.redb")).unwrap(),
        vec![0x5a; 8192]
    );
}
