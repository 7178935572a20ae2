//! Channels in the mesh users build, across NATs: one public relay
//! (`run --relay`) and three nodes, each set up only with `init --join
//! TICKET` from it: A behind a port-restricted cone, B behind a symmetric
//! NAT, C behind a full cone.
//!
//! A creates a reliable channel that requires a token; B and C find it in
//! the ledger (`channel list`); B is denied without a token
//! (`token: required`), then subscribes with a subscribe token issued by
//! A; C publishes 2000 messages with a publish token issued by A (`pub -`
//! reports `delivered 2000/2000`); B receives all of them, in order, none
//! missing, none duplicated, no gap notice; A counted 2000 published and
//! none dropped.
//!
//! The same checks run in the friendlier topology with a second public
//! observer (docs/LAB.md, Topology). Each case prints `nat-lab channels
//! (TOPOLOGY): ...` with the time the 2000 messages took and the paths;
//! each takes about 4 s. Skipped with `SKIPPED: ...` unless root with
//! `ip` and `nft`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::time::{Duration, Instant};

use relay_tests::lab::channel_check::{check_in_order, issue_token, publish, wait_listed};
use relay_tests::lab::cli_child::CliChild;
use relay_tests::lab::mesh::Mesh;
use relay_tests::lab::public::Topology;
use relay_tests::lab::{Lab, LabNode, NatPreset};
use relay_tests::{lab_or_skip, relay_node_bin, TempDir};

/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);
const PORT: u16 = 7420;
const CHANNEL: &str = "lab/readings";
const MESSAGES: u64 = 2000;

/// A (owner), B (subscriber), C (publisher).
const PRESETS: [NatPreset; 3] = [
    NatPreset::PortRestrictedCone,
    NatPreset::Symmetric,
    NatPreset::FullCone,
];

/// `node`'s path to `peer` in `status --json` ("direct", "relayed", or
/// "-" when not connected).
fn path_to(node: &LabNode, peer: &LabNode) -> String {
    node.peer(&peer.id)
        .and_then(|p| p["path"].as_str().map(String::from))
        .unwrap_or_else(|| "-".into())
}

fn run_case(topology: Topology) {
    let case = topology.name();
    let bin = relay_node_bin().unwrap();
    let lab = Lab::build(topology.public_hosts(), &PRESETS).unwrap();
    let tmp = TempDir::new("channels").unwrap();
    let mesh = Mesh::start(
        &lab,
        &bin,
        tmp.path(),
        topology,
        PORT,
        &[&[], &[], &[]],
        DEADLINE,
    )
    .unwrap();
    let [a, b, c] = &mesh.nodes[..] else {
        unreachable!()
    };

    let created = a.cli(&["channel", "create", CHANNEL, "--require-token"]);
    assert!(created.success(), "{case}: {created:?}");
    // Everyone finds it in the ledger: owner A, a token required.
    for node in [b, c] {
        wait_listed(node, CHANNEL, DEADLINE, |e| {
            e["owner"] == a.id.as_str() && e["owned"] == false
        })
        .unwrap_or_else(|| {
            panic!(
                "{case}: {CHANNEL} never listed on {}: {:?}",
                node.id,
                node.cli(&["channel", "list", "--json"])
            )
        });
    }
    let listed = c.cli(&["channel", "list"]);
    assert!(
        listed.stdout.contains(CHANNEL) && listed.stdout.contains(&a.id[..16]),
        "{case}: {listed:?}"
    );
    let entry = wait_listed(c, CHANNEL, DEADLINE, |_| true).unwrap();
    assert_eq!(entry["policy"]["require_token"], true, "{case}: {entry}");
    assert_eq!(entry["policy"]["reliable"], true, "{case}: {entry}");

    // No token: denied by the owner, across the NATs, with the token kind.
    let denied = b.cli(&["sub", CHANNEL, "--count", "1"]);
    assert!(
        !denied.success() && denied.stderr.contains("token: required"),
        "{case}: {denied:?}"
    );

    let sub_token = issue_token(a, &b.id, "subscribe", CHANNEL).unwrap();
    let pub_token = issue_token(a, &c.id, "publish", CHANNEL).unwrap();
    let count = MESSAGES.to_string();
    let sub = CliChild::spawn(
        &bin,
        &b.dir,
        &[
            "sub", CHANNEL, "--json", "--count", &count, "--token", &sub_token,
        ],
        false,
    )
    .unwrap();
    wait_listed(a, CHANNEL, DEADLINE, |e| e["stats"]["subscribers"] == 1).unwrap_or_else(|| {
        panic!(
            "{case}: B's subscription never reached A:\nB log:\n{}",
            b.log()
        )
    });

    let started = Instant::now();
    publish(
        &bin,
        c,
        CHANNEL,
        Some(&pub_token),
        1..=MESSAGES,
        1,
        DEADLINE,
    )
    .unwrap_or_else(|e| panic!("{case}: {e}"));
    let got = sub.wait(DEADLINE).unwrap();
    let took = started.elapsed();
    assert!(got.status.success(), "{case}: {}", got.stderr);
    if let Err(e) = check_in_order(&got.lines, &c.id, MESSAGES) {
        panic!("{case}: B's messages: {e}");
    }
    assert!(got.stderr.is_empty(), "{case}: {}", got.stderr);
    let owned = wait_listed(a, CHANNEL, DEADLINE, |_| true).unwrap();
    assert_eq!(owned["stats"]["published"], MESSAGES, "{case}: {owned}");
    assert_eq!(owned["stats"]["dropped"], 0, "{case}: {owned}");

    let line = format!(
        "nat-lab channels ({case}): {MESSAGES} messages C ({}) -> A ({}) -> B ({}) in order, none missing, in {} ms; paths B-A {}, C-A {}\n",
        PRESETS[2],
        PRESETS[0],
        PRESETS[1],
        took.as_millis(),
        path_to(b, a),
        path_to(c, a),
    );
    let _ = std::io::stdout().write_all(line.as_bytes());
}

#[test]
fn token_gated_channel_ticket_only() {
    lab_or_skip!("nat_lab_channels::token_gated_channel_ticket_only");
    run_case(Topology::TicketOnly);
}

#[test]
fn token_gated_channel_two_observers() {
    lab_or_skip!("nat_lab_channels::token_gated_channel_two_observers");
    run_case(Topology::TwoObservers);
}
