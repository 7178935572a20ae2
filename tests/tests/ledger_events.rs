//! Event entries from real processes: R relays, A and B join with R's
//! ticket and run traversal. A pings B by NodeId: the connection starts on
//! a relayed path through R and traversal moves it to a direct one, so A
//! records a `traversal-outcome` (`direct`, with the time it took), and R
//! and B get A's entry through the ledger.
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

fn start(dir: &Path, extra: &[&str]) -> NodeProcess {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    NodeProcess::start(&relay_node_bin().unwrap(), dir, &args, DEADLINE).unwrap()
}

/// The entries of `origin` and `kind` that `dir`'s ledger holds.
fn entries(dir: &Path, origin: &str, kind: &str) -> Vec<serde_json::Value> {
    let out = cli(
        dir,
        &["ledger", "--origin", origin, "--kind", kind, "--json"],
    );
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_traversal_outcome_is_recorded_and_replicated() {
    let tmp = TempDir::new("ledger-events").unwrap();
    let (dir_r, dir_a, dir_b) = (tmp.join("r"), tmp.join("a"), tmp.join("b"));
    let init = cli(&dir_r, &["init"]);
    assert!(init.success(), "{init:?}");
    let node_r = start(&dir_r, &["--relay"]);
    let addr_r = format!("127.0.0.1:{}", node_r.listen.port());
    let ticket = cli(&dir_r, &["invite", "--addr", &addr_r]);
    assert!(ticket.success(), "{ticket:?}");
    for dir in [&dir_a, &dir_b] {
        let init = cli(dir, &["init", "--join", ticket.stdout.trim()]);
        assert!(init.success(), "{init:?}");
    }
    let node_a = start(&dir_a, &["--no-port-map"]);
    let node_b = start(&dir_b, &["--no-port-map"]);
    let (id_a, id_b) = (node_a.node_id.clone(), node_b.node_id.clone());

    // Both are R's relay clients before A dials B, so the dial goes
    // through R first.
    let served = poll_until(DEADLINE, POLL, || {
        let out = cli(&dir_r, &["status", "--json"]);
        let s: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        (s["relay"]["clients"] == 2).then_some(())
    });
    assert!(served.is_some(), "R never had two clients");
    let ping = poll_until(DEADLINE, POLL, || {
        let out = cli(&dir_a, &["ping", &id_b, "-c", "1"]);
        out.success().then_some(out)
    });
    assert!(ping.is_some(), "A never reached B");

    let outcome = poll_until(DEADLINE, POLL, || {
        entries(&dir_b, &id_a, "traversal-outcome")
            .into_iter()
            .find(|e| e["body"]["peer"] == id_b.as_str())
    });
    let outcome = outcome.unwrap_or_else(|| {
        panic!(
            "B never held A's traversal-outcome for B; A:\n{}",
            node_a.stderr_log()
        )
    });
    let body = &outcome["body"];
    assert_eq!(body["outcome"], "direct", "{outcome}");
    assert!(body["time_to_direct_ms"].is_u64(), "{outcome}");
    assert_eq!(body["why"], "", "{outcome}");
    // The same entry at A, signed by A.
    let at_a = entries(&dir_a, &id_a, "traversal-outcome");
    assert!(
        at_a.iter().any(|e| e["hash"] == outcome["hash"]),
        "{at_a:?}"
    );
}
