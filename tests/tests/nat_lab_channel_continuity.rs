//! Channel continuity across relayed -> direct (docs/CHANNELS.md), in the
//! mesh users build: one public relay and three nodes set up only with
//! `init --join TICKET`: A (port-restricted cone) owns a reliable channel,
//! B (symmetric) subscribes, C (full cone) publishes.
//!
//! B's router first drops all UDP between B and A's site
//! (`Site::block`), so B's subscription starts on a relayed path and the
//! first punch between them fails (`why` names the failure; the block's
//! counter proves probes were dropped). C keeps publishing in batches of
//! [`BATCH`] messages (`pub -`, each batch acknowledged by A) while B
//! receives over the relay. Then the block is lifted; the next punch
//! (after the failure backoff, with birthday probing: cone x symmetric)
//! moves the pair to a direct path while C keeps publishing, and C
//! publishes [`AFTER_DIRECT`] more once B's status says direct.
//!
//! Asserted: B's status shows A relayed first and direct later; B received
//! messages both before the switch and after it; every message once, in
//! order, no gap notice; A dropped none. Prints `nat-lab channel
//! continuity (TOPOLOGY): ...` (messages relayed / direct, whether the
//! connection was kept). Runs ticket-only, then with a second public
//! observer; each case takes about 35 s (most of it the punch
//! backoff). Skipped with `SKIPPED: ...` unless root with `ip` and `nft`.
//!
//! This caught a stall (issue 11): B received every message published
//! before its status said direct and none after, on the same connection,
//! while A still acknowledged C's publishes. B's direct path ran on a
//! birthday probe port, whose reader took a GRO-coalesced buffer (A's GSO
//! batch of stream data) for one datagram and truncated it; only small
//! packets got through. When B's main socket won the punch instead, the
//! case passed. See `transport/src/socket/ports.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::time::{Duration, Instant};

use relay_tests::lab::channel_check::{check_in_order, publish, wait_listed};
use relay_tests::lab::cli_child::CliChild;
use relay_tests::lab::mesh::Mesh;
use relay_tests::lab::node::is_connected_via;
use relay_tests::lab::public::Topology;
use relay_tests::lab::{Lab, LabNode, NatPreset};
use relay_tests::process::poll_until;
use relay_tests::{lab_or_skip, relay_node_bin, TempDir};

/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);
const PORT: u16 = 7420;
const CHANNEL: &str = "lab/continuity";
/// Messages per `pub -`.
const BATCH: u64 = 50;
/// The pause between batches, so the publishing spans the switch.
const PACE: Duration = Duration::from_millis(100);
/// Messages published after B's status says direct.
const AFTER_DIRECT: u64 = 500;

/// A (owner), B (subscriber), C (publisher).
const PRESETS: [NatPreset; 3] = [
    NatPreset::PortRestrictedCone,
    NatPreset::Symmetric,
    NatPreset::FullCone,
];

/// C's messages, published in batches; `last` is the last one published.
struct Stream<'a> {
    bin: &'a std::path::Path,
    publisher: &'a LabNode,
    last: u64,
}

impl Stream<'_> {
    fn batch(&mut self, n: u64) {
        let range = self.last + 1..=self.last + n;
        publish(self.bin, self.publisher, CHANNEL, None, range, 1, DEADLINE)
            .unwrap_or_else(|e| panic!("after message {}: {e}", self.last));
        self.last += n;
        std::thread::sleep(PACE);
    }

    /// Publishes batches until `until` returns `Some` (checked before each
    /// batch), at most `DEADLINE`.
    fn until<T>(&mut self, mut until: impl FnMut() -> Option<T>) -> Option<T> {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(v) = until() {
                return Some(v);
            }
            if Instant::now() >= end {
                return None;
            }
            self.batch(BATCH);
        }
    }
}

fn run_case(topology: Topology) {
    let case = topology.name();
    let bin = relay_node_bin().unwrap();
    let lab = Lab::build(topology.public_hosts(), &PRESETS).unwrap();
    let (site_a, site_b) = (lab.site(0).unwrap(), lab.site(1).unwrap());
    let tmp = TempDir::new("chan-continuity").unwrap();
    // No direct path between A and B until B's subscription runs relayed.
    site_b.block(site_a.wan_addr).unwrap();
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

    let t0 = std::time::Instant::now();
    let created = a.cli(&["channel", "create", CHANNEL]);
    assert!(created.success(), "{case}: {created:?}");
    for node in [b, c] {
        wait_listed(node, CHANNEL, DEADLINE, |e| e["owner"] == a.id.as_str())
            .unwrap_or_else(|| panic!("{case}: {CHANNEL} never listed on {}", node.id));
    }
    eprintln!("{case}: listed after {:?}", t0.elapsed());
    let sub = CliChild::spawn(&bin, &b.dir, &["sub", CHANNEL, "--json"], false).unwrap();
    wait_listed(a, CHANNEL, DEADLINE, |e| e["stats"]["subscribers"] == 1).unwrap_or_else(|| {
        panic!(
            "{case}: B's subscription never reached A:\nB log:\n{}",
            b.log()
        )
    });
    eprintln!("{case}: subscribed after {:?}", t0.elapsed());
    let relayed = b
        .wait_peer(&a.id, DEADLINE, |p| p["state"] == "connected")
        .unwrap();
    assert_eq!(relayed["path"], "relayed", "{case}: B to A: {relayed}");

    // Relayed: C publishes while the first punch between A and B fails.
    let mut stream = Stream {
        bin: &bin,
        publisher: c,
        last: 0,
    };
    let why = stream
        .until(|| {
            b.peer(&a.id)
                .and_then(|p| p["why"].as_str().map(String::from))
                .filter(|w| w.starts_with("punch-failed"))
        })
        .unwrap_or_else(|| {
            panic!(
                "{case}: the punch through the block never failed: {:?}\nB log:\n{}",
                b.peer(&a.id),
                b.log()
            )
        });
    stream.batch(BATCH);
    assert!(
        site_b.blocked_drops().unwrap() > 0,
        "{case}: the block dropped no punch"
    );
    let still = b.peer(&a.id).unwrap();
    assert!(
        is_connected_via(&still, "relayed"),
        "{case}: B to A: {still}"
    );
    let received_relayed = sub.line_count();
    eprintln!("{case}: {why} after message {}", stream.last);
    assert!(received_relayed > 0, "{case}: nothing arrived relayed");

    // Lift the block and keep publishing until the pair is direct.
    site_b.unblock().unwrap();
    let direct = stream
        .until(|| b.peer(&a.id).filter(|p| is_connected_via(p, "direct")))
        .unwrap_or_else(|| {
            panic!(
                "{case}: B never went direct to A: {:?}\nB log:\n{}\nA log:\n{}",
                b.peer(&a.id),
                b.log(),
                a.log()
            )
        });
    let direct_at = stream.last;
    eprintln!("{case}: direct after message {direct_at}: {direct}");
    let mut after = 0;
    while after < AFTER_DIRECT {
        stream.batch(BATCH);
        after += BATCH;
    }
    let total = stream.last;
    poll_until(DEADLINE, Duration::from_millis(50), || {
        (sub.line_count() as u64 >= total).then_some(())
    });
    let got = sub.stop().unwrap();
    if let Err(e) = check_in_order(&got.lines, &c.id, total) {
        panic!("{case}: B's messages across relayed -> direct: {e}");
    }
    assert!(got.stderr.is_empty(), "{case}: {}", got.stderr);
    let owned = wait_listed(a, CHANNEL, DEADLINE, |_| true).unwrap();
    assert_eq!(owned["stats"]["dropped"], 0, "{case}: {owned}");
    let kept = relayed["since"] == direct["since"];
    let line = format!(
        "nat-lab channel continuity ({case}): {total} messages in order, none missing; {received_relayed} received relayed before the block was lifted ({why}), direct after message {direct_at}; connection {}\n",
        if kept { "kept" } else { "replaced (links resumed)" },
    );
    let _ = std::io::stdout().write_all(line.as_bytes());
}

#[test]
fn subscription_survives_relayed_to_direct_ticket_only() {
    lab_or_skip!("nat_lab_channel_continuity::subscription_survives_relayed_to_direct_ticket_only");
    run_case(Topology::TicketOnly);
}

#[test]
fn subscription_survives_relayed_to_direct_two_observers() {
    lab_or_skip!(
        "nat_lab_channel_continuity::subscription_survives_relayed_to_direct_two_observers"
    );
    run_case(Topology::TwoObservers);
}
