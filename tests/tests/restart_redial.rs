//! A node that dials nobody (here B, the public node that A joined by
//! ticket, as a public relay's clients join it) crashes with `kill -9`
//! and restarts on the same port. A still holds its connection to the
//! dead process and would only learn of the crash at its next keep-alive
//! (5 s by default), when B's stateless reset answers it. B remembers the
//! peers it was connected to (`DIR/recent_peers.json`) and dials them on
//! start; its new connection makes A probe the stale one at once, and the
//! pair is connected again well within 2 s of the restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use relay_tests::process::poll_until;
use relay_tests::{relay_node_bin, run_cli, CliOutput, NodeProcess, TempDir};

/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
/// The goal: reconnected within this of the restart.
const GOAL: Duration = Duration::from_secs(2);

fn cli(dir: &Path, args: &[&str]) -> CliOutput {
    run_cli(&relay_node_bin().unwrap(), dir, args).unwrap()
}

fn start(dir: &Path, listen: &str) -> NodeProcess {
    NodeProcess::start(
        &relay_node_bin().unwrap(),
        dir,
        &["--listen", listen],
        DEADLINE,
    )
    .unwrap()
}

/// How many connections to `peer` (by its short id) `node` has logged.
fn connections(node: &NodeProcess, peer: &str) -> usize {
    let short = &peer[..10];
    node.stderr_log()
        .lines()
        .filter(|l| l.contains(" connected ") && l.contains(&format!("peer={short} ")))
        .count()
}

#[test]
fn restarted_node_that_dials_nobody_is_reconnected_within_2_s() {
    let tmp = TempDir::new("restart-redial").unwrap();
    let (dir_a, dir_b) = (tmp.join("a"), tmp.join("b"));
    assert!(cli(&dir_b, &["init"]).success());
    let mut node_b = start(&dir_b, "127.0.0.1:0");
    let id_b = node_b.node_id.clone();
    let b_listen = format!("127.0.0.1:{}", node_b.listen.port());
    let invite = cli(&dir_b, &["invite", "--addr", &b_listen]);
    assert!(invite.success(), "{invite:?}");
    let init_a = cli(&dir_a, &["init", "--join", invite.stdout.trim()]);
    assert!(init_a.success(), "{init_a:?}");
    let id_a = init_a.stdout.trim().to_string();
    let node_a = start(&dir_a, "127.0.0.1:0");

    // A dialed B; B remembers A once it has saved its recent peers.
    let saved = poll_until(DEADLINE, POLL, || {
        std::fs::read_to_string(dir_b.join("recent_peers.json"))
            .ok()
            .filter(|text| text.contains(&id_a))
    });
    assert!(
        saved.is_some(),
        "B never saved A as a recent peer; A:\n{}\nB:\n{}",
        node_a.stderr_log(),
        node_b.stderr_log()
    );
    assert!(connections(&node_a, &id_b) >= 1);
    let before = connections(&node_a, &id_b);

    // B crashes and comes back on the same port, dialing nobody by
    // configuration.
    node_b.signal("KILL").unwrap();
    node_b.wait_exit(DEADLINE).unwrap();
    let node_b = start(&dir_b, &b_listen);
    let restarted = Instant::now();
    assert_eq!(node_b.node_id, id_b);
    let reconnected = poll_until(DEADLINE, Duration::from_millis(10), || {
        (connections(&node_a, &id_b) > before).then(Instant::now)
    });
    let took = reconnected
        .unwrap_or_else(|| {
            panic!(
                "A never reconnected to B; A:\n{}\nB:\n{}",
                node_a.stderr_log(),
                node_b.stderr_log()
            )
        })
        .duration_since(restarted);
    println!("restart-redial: A reconnected {took:?} after B's restart");
    let b_log = node_b.stderr_log();
    assert!(
        b_log.contains("dialing peers we were connected to before peers=1"),
        "the restarted B did not dial A:\n{b_log}"
    );
    assert!(
        took < GOAL,
        "A reconnected only {took:?} after B's restart; A:\n{}\nB:\n{b_log}",
        node_a.stderr_log()
    );
}
