//! nRPC in the mesh users build, across NATs: one public relay (`run
//! --relay`) and three nodes set up only with `init --join TICKET` from
//! it: A (port-restricted cone) and B (symmetric) run `run --serve-echo`,
//! C (full cone) calls.
//!
//! - C's `services --json` and `services` list echo on A and on B;
//! - `call echo.echo` works, and so does `--node` to each server; then
//!   `services --json` shows the path C has to each (`direct` or
//!   `relayed`; `unknown` before C connected to it);
//! - A is killed (SIGKILL: it stays registered): idempotent calls keep
//!   succeeding, answered by B (`echo.info` names B); a call pinned to A
//!   with a short `--timeout` fails with `timeout` or `no-route`
//!   (docs/RPC.md, Finding services) instead of hanging;
//! - B stops gracefully (SIGTERM: it withdraws; C stops listing it), so
//!   echo is registered only on dead A: a call with a short `--timeout`
//!   fails with a documented kind (`timeout`, `no-route`, `breaker-open`
//!   or `no-responders`), exit 1; a service nobody serves is
//!   `no-responders`.
//!
//! Runs ticket-only, then with a second public observer (docs/LAB.md,
//! Topology); each case prints `nat-lab rpc (TOPOLOGY): ...` and takes
//! about 8 s. Skipped with `SKIPPED: ...` unless root with `ip` and
//! `nft`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::time::{Duration, Instant};

use relay_tests::lab::mesh::Mesh;
use relay_tests::lab::public::Topology;
use relay_tests::lab::{Lab, LabNode, NatPreset};
use relay_tests::process::poll_until;
use relay_tests::{lab_or_skip, relay_node_bin, CliOutput, TempDir};
use serde_json::Value;

/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);
const PORT: u16 = 7420;
/// The short deadline of calls to a dead server, in ms.
const SHORT_MS: &str = "1500";

/// A and B serve echo; C calls.
const PRESETS: [NatPreset; 3] = [
    NatPreset::PortRestrictedCone,
    NatPreset::Symmetric,
    NatPreset::FullCone,
];

/// The nodes serving echo in `node`'s `services --json`, with their path.
fn echo_nodes(node: &LabNode) -> Vec<(String, String)> {
    let out = node.cli(&["services", "--json"]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    v["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"] == "echo")
        .flat_map(|s| s["nodes"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| {
            Some((
                n["node_id"].as_str()?.to_string(),
                n["path"].as_str()?.to_string(),
            ))
        })
        .collect()
}

fn path_of<'a>(nodes: &'a [(String, String)], id: &str) -> Option<&'a str> {
    nodes.iter().find(|(n, _)| n == id).map(|(_, p)| p.as_str())
}

/// The `kind` of a failed verb's `error: kind: detail`.
fn error_kind(out: &CliOutput) -> &str {
    out.stderr
        .trim()
        .strip_prefix("error: ")
        .and_then(|e| e.split(':').next())
        .unwrap_or("")
}

fn call(node: &LabNode, args: &[&str]) -> CliOutput {
    let mut all = vec!["call"];
    all.extend_from_slice(args);
    node.cli(&all)
}

fn run_case(topology: Topology) {
    let case = topology.name();
    let bin = relay_node_bin().unwrap();
    let lab = Lab::build(topology.public_hosts(), &PRESETS).unwrap();
    let tmp = TempDir::new("rpc").unwrap();
    let echo: &[&str] = &["--serve-echo"];
    let Mesh { public, mut nodes } = Mesh::start(
        &lab,
        &bin,
        tmp.path(),
        topology,
        PORT,
        &[echo, echo, &[]],
        DEADLINE,
    )
    .unwrap();
    let c = nodes.pop().unwrap();
    let mut b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    let (id_a, id_b) = (a.id.clone(), b.id.clone());

    // Both registrations reach C through the ledger.
    let started = Instant::now();
    poll_until(DEADLINE, Duration::from_millis(200), || {
        let nodes = echo_nodes(&c);
        (path_of(&nodes, &id_a).is_some() && path_of(&nodes, &id_b).is_some()).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{case}: C never listed echo on A and B: {:?}\nC log:\n{}",
            c.cli(&["services", "--json"]),
            c.log()
        )
    });
    let listed_in = started.elapsed();
    let table = c.cli(&["services"]);
    assert!(
        table.stdout.contains(&id_a) && table.stdout.contains(&id_b),
        "{case}: {table:?}"
    );

    // C reaches each server by NodeId alone (through the relay first).
    let hello = call(&c, &["echo.echo", "hello"]);
    assert!(hello.success(), "{case}: {hello:?}");
    assert_eq!(hello.stdout, "hello\n", "{case}");
    for (name, id) in [("A", &id_a), ("B", &id_b)] {
        let body = format!("to-{name}");
        let out = call(&c, &["echo.echo", &body, "--node", id]);
        assert!(out.success(), "{case}: call --node {name}: {out:?}");
        assert_eq!(out.stdout, format!("{body}\n"), "{case}");
    }
    // Connected now: the list shows each server's path.
    let served = poll_until(DEADLINE, Duration::from_millis(200), || {
        let nodes = echo_nodes(&c);
        let ok = |id: &str| matches!(path_of(&nodes, id), Some("direct" | "relayed"));
        (ok(&id_a) && ok(&id_b)).then_some(nodes)
    })
    .unwrap_or_else(|| {
        panic!(
            "{case}: no path to A and B in C's services: {:?}",
            c.cli(&["services", "--json"])
        )
    });

    // A dies without withdrawing: calls keep succeeding, through B.
    drop(a);
    for i in 0..6 {
        let body = format!("after-{i}");
        let out = call(
            &c,
            &["echo.echo", &body, "--idempotent", "--timeout", "10000"],
        );
        assert!(out.success(), "{case}: call {i} after A died: {out:?}");
        assert_eq!(out.stdout, format!("{body}\n"), "{case}");
    }
    let info = call(&c, &["echo.info", "--idempotent", "--timeout", "10000"]);
    assert!(info.success(), "{case}: {info:?}");
    let info: Value = serde_json::from_str(&info.stdout).unwrap();
    assert_eq!(info["node"], id_b.as_str(), "{case}: {info}");
    let pinned = call(
        &c,
        &["echo.echo", "x", "--node", &id_a, "--timeout", SHORT_MS],
    );
    assert!(
        !pinned.success() && matches!(error_kind(&pinned), "timeout" | "no-route"),
        "{case}: a call pinned to dead A: {pinned:?}"
    );

    // B withdraws on a graceful stop; echo is left registered on dead A.
    b.process.signal("TERM").unwrap();
    b.process.wait_exit(DEADLINE).unwrap();
    poll_until(DEADLINE, Duration::from_millis(200), || {
        path_of(&echo_nodes(&c), &id_b).is_none().then_some(())
    })
    .unwrap_or_else(|| panic!("{case}: C still lists echo on B after it stopped"));
    let dead = call(&c, &["echo.echo", "x", "--timeout", SHORT_MS]);
    assert_eq!(dead.code, Some(1), "{case}: {dead:?}");
    let kind = error_kind(&dead).to_string();
    assert!(
        matches!(
            kind.as_str(),
            "timeout" | "no-route" | "breaker-open" | "no-responders"
        ),
        "{case}: a call to a dead service: {dead:?}"
    );
    let nobody = call(&c, &["inventory.get", "--timeout", SHORT_MS]);
    assert_eq!(error_kind(&nobody), "no-responders", "{case}: {nobody:?}");

    let line = format!(
        "nat-lab rpc ({case}): echo listed on A ({}, path {}) and B ({}, path {}) at C ({}) after {} ms; A killed: calls answered by B; pinned to dead A: {}; all servers dead: {kind}\n",
        PRESETS[0],
        path_of(&served, &id_a).unwrap_or("-"),
        PRESETS[1],
        path_of(&served, &id_b).unwrap_or("-"),
        PRESETS[2],
        listed_in.as_millis(),
        error_kind(&pinned),
    );
    let _ = std::io::stdout().write_all(line.as_bytes());
    drop(public);
}

#[test]
fn echo_across_nats_ticket_only() {
    lab_or_skip!("nat_lab_rpc::echo_across_nats_ticket_only");
    run_case(Topology::TicketOnly);
}

#[test]
fn echo_across_nats_two_observers() {
    lab_or_skip!("nat_lab_rpc::echo_across_nats_two_observers");
    run_case(Topology::TwoObservers);
}
