//! Two `relay-node` processes on loopback: join by ticket, connect directly,
//! ping, and the process-level guarantees (single instance per data dir,
//! clean SIGTERM, recovery from a stale lock after SIGKILL).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use relay_tests::process::poll_until;
use relay_tests::{relay_node_bin, run_cli, CliOutput, NodeProcess, TempDir};

/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

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

fn status(dir: &Path) -> Option<serde_json::Value> {
    let out = cli(dir, &["status", "--json"]);
    out.success()
        .then(|| serde_json::from_str(&out.stdout).ok())
        .flatten()
}

/// Whether `status` lists `peer` as connected over a direct path.
fn sees_direct(status: &serde_json::Value, peer: &str) -> bool {
    status["peers"].as_array().is_some_and(|peers| {
        peers
            .iter()
            .any(|p| p["node_id"] == peer && p["state"] == "connected" && p["path"] == "direct")
    })
}

fn assert_fails(out: &CliOutput, prefix: &str) {
    assert!(!out.success(), "expected failure: {out:?}");
    assert!(
        out.stderr.contains(prefix),
        "expected {prefix:?} in {out:?}"
    );
    assert!(!out.stderr.contains("panicked"), "{out:?}");
}

#[test]
fn two_nodes_join_connect_and_ping() {
    let tmp = TempDir::new("two").unwrap();
    let dir_a = tmp.join("a");
    let dir_b = tmp.join("b");

    let init_a = cli(&dir_a, &["init"]);
    assert!(init_a.success(), "{init_a:?}");
    let id_a = init_a.stdout.trim().to_string();

    let mut node_a = start(&dir_a);
    assert_eq!(node_a.node_id, id_a);
    assert!(node_a.listen.ip().is_loopback());
    assert_ne!(node_a.listen.port(), 0);

    // One node per data dir: a second `run` names the holder's pid.
    let second = cli(&dir_a, &["run", "--listen", "127.0.0.1:0"]);
    assert_fails(
        &second,
        &format!(
            "lock: another relay-node is running with data dir {} (pid {})",
            dir_a.display(),
            node_a.pid()
        ),
    );

    // Without --addr, invite asks the running node for its bound address.
    let auto = cli(&dir_a, &["invite"]);
    assert!(auto.success(), "{auto:?}");
    let auto_ticket = relay_proto::Ticket::decode(auto.stdout.trim()).unwrap();
    assert_eq!(auto_ticket.addrs, vec![node_a.listen]);

    let addr = format!("127.0.0.1:{}", node_a.listen.port());
    let invite = cli(&dir_a, &["invite", "--addr", &addr]);
    assert!(invite.success(), "{invite:?}");
    let ticket = invite.stdout.trim().to_string();

    let init_b = cli(&dir_b, &["init", "--join", &ticket]);
    assert!(init_b.success(), "{init_b:?}");
    let id_b = init_b.stdout.trim().to_string();
    let mut node_b = start(&dir_b);
    assert_eq!(node_b.node_id, id_b);

    // B dials A from its bootstrap peer; both must see a direct connection.
    let b_status = poll_until(DEADLINE, POLL, || {
        status(&dir_b).filter(|s| sees_direct(s, &id_a))
    });
    assert!(
        b_status.is_some(),
        "B never saw A connected; A stderr:\n{}\nB stderr:\n{}",
        node_a.stderr_log(),
        node_b.stderr_log()
    );
    let a_status = poll_until(DEADLINE, POLL, || {
        status(&dir_a).filter(|s| sees_direct(s, &id_b))
    });
    assert!(a_status.is_some(), "A never saw B connected");
    let b_status = b_status.unwrap();
    assert_eq!(b_status["node_id"], id_b.as_str());
    let peer = &b_status["peers"][0];
    assert_eq!(peer["remote_addr"], addr.as_str());
    assert_eq!(peer["outbound"], true);

    // The table form lists the peer too.
    let table = cli(&dir_b, &["status"]);
    assert!(table.success(), "{table:?}");
    assert!(table.stdout.contains(&id_a) && table.stdout.contains("connected"));

    let ping = cli(&dir_b, &["ping", &id_a, "-c", "3", "-i", "50"]);
    assert!(ping.success(), "{ping:?}");
    let pongs: Vec<&str> = ping.stdout.lines().collect();
    assert_eq!(pongs.len(), 3, "{ping:?}");
    for line in pongs {
        assert!(
            line.starts_with(&format!("pong from {id_a} via direct {addr} in ")),
            "{line}"
        );
        assert!(line.ends_with(" ms"), "{line}");
    }

    // Pinging a node nobody knows fails with a kind.
    let stranger = relay_proto::SecretKey::generate().node_id().to_string();
    let lost = cli(&dir_b, &["ping", &stranger, "-c", "1"]);
    assert_fails(&lost, "error: not-connected: ");

    // SIGTERM: clean exit 0, API socket removed, status says not-running.
    node_a.signal("TERM").unwrap();
    let exit = node_a.wait_exit(DEADLINE).unwrap();
    assert!(
        exit.success(),
        "A exited with {exit}: {}",
        node_a.stderr_log()
    );
    assert!(!dir_a.join("api.sock").exists());
    assert_fails(&cli(&dir_a, &["status"]), "error: not-running: ");

    // SIGKILL leaves a stale lock file and socket; the next run recovers.
    node_b.signal("KILL").unwrap();
    node_b.wait_exit(DEADLINE).unwrap();
    assert!(dir_b.join("api.sock").exists());
    let mut node_b = start(&dir_b);
    assert_eq!(node_b.node_id, id_b);
    let again = status(&dir_b).expect("restarted node answers status");
    assert_eq!(again["node_id"], id_b.as_str());
    node_b.signal("TERM").unwrap();
    assert!(node_b.wait_exit(DEADLINE).unwrap().success());
}

#[test]
fn run_initializes_a_missing_identity() {
    let tmp = TempDir::new("fresh").unwrap();
    let dir = tmp.join("n");
    let mut node = start(&dir);
    assert!(node.stderr_log().contains("created a new one"));
    let id = cli(&dir, &["id"]);
    assert_eq!(id.stdout.trim(), node.node_id);
    let s = status(&dir).expect("status");
    assert_eq!(s["listen"][0], node.listen.to_string().as_str());
    assert_eq!(s["peers"].as_array().map(Vec::len), Some(0));
    node.signal("TERM").unwrap();
    assert!(node.wait_exit(DEADLINE).unwrap().success());
}
