//! The traversal matrix in the NAT lab: two nodes behind NAT presets that
//! share a public relay node (`run --relay`) and know nothing of each
//! other but their NodeIds.
//!
//! - Where RFC 4787 says a punch can work (open, full cone and
//!   port-restricted cone in any combination), `ping NODEID --until-direct`
//!   must reach a direct path; both sides' `status --json` must say
//!   `path: "direct"`, and the time to direct is recorded.
//! - Symmetric x symmetric and symmetric x port-restricted stay relayed with
//!   traffic flowing: pongs come back and status says `path: "relayed"`
//!   with `via` = the relay's NodeId and a `why`.
//!
//! Every case runs with the crate's tests (about 5 s each); each is
//! skipped with `SKIPPED: ...` unless root with `ip` and `nft`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use relay_tests::lab::node::{init, is_connected_via};
use relay_tests::lab::{Lab, LabNode, NatPreset};
use relay_tests::{lab_or_skip, relay_node_bin, TempDir};

/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);
const PORT: u16 = 7420;

/// What RFC 4787 predicts for a pair (without port mapping, which the
/// hard-NAT issue adds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Direct,
    Relayed,
}

/// Prints a matrix row past the test harness's capture, so the table of
/// outcomes and times shows in every run.
fn record(a: NatPreset, b: NatPreset, outcome: &str) {
    let line = format!("nat-lab matrix: {a} x {b}: {outcome}\n");
    let _ = std::io::stdout().write_all(line.as_bytes());
}

fn run_case(a: NatPreset, b: NatPreset, expect: Expect) {
    let bin = relay_node_bin().unwrap();
    let lab = Lab::build(1, &[a, b]).unwrap();
    let relay_host = lab.public(0).unwrap();
    let tmp = TempDir::new("matrix").unwrap();

    let relay_addr = SocketAddr::new(IpAddr::V4(relay_host.addr), PORT).to_string();
    let relay_dir = tmp.join("relay");
    init(&bin, &relay_dir, None).unwrap();
    let relay = LabNode::start(
        &bin,
        &relay_host.ns,
        &relay_dir,
        &["--relay", "--listen", &relay_addr],
        DEADLINE,
    )
    .unwrap();
    let ticket = relay.invite(&relay_addr).unwrap();

    // Both nodes join through the relay's ticket and dial only the relay.
    let nodes: Vec<LabNode> = [0, 1]
        .iter()
        .map(|&i| {
            let site = lab.site(i).unwrap();
            let dir = tmp.join(&format!("n{i}"));
            init(&bin, &dir, Some(&ticket)).unwrap();
            LabNode::start(
                &bin,
                &site.host,
                &dir,
                &["--listen", &format!("0.0.0.0:{PORT}")],
                DEADLINE,
            )
            .unwrap()
        })
        .collect();
    for node in &nodes {
        node.wait_peer(&relay.id, DEADLINE, |p| is_connected_via(p, "direct"))
            .unwrap_or_else(|| panic!("{a} x {b}: no connection to the relay:\n{}", node.log()));
    }
    let (na, nb) = (&nodes[0], &nodes[1]);

    match expect {
        Expect::Direct => {
            // Reach B by NodeId alone: relayed first, then direct.
            let started = Instant::now();
            let ping = na.cli(&["ping", &nb.id, "--until-direct", "-i", "100"]);
            let took = started.elapsed();
            assert!(
                ping.success(),
                "{a} x {b}: no direct path: {ping:?}\nA log:\n{}\nB log:\n{}",
                na.log(),
                nb.log()
            );
            let last = ping.stdout.lines().last().unwrap_or_default();
            assert!(
                last.starts_with(&format!("pong from {} via direct ", nb.id)),
                "{a} x {b}: last pong not direct: {ping:?}"
            );
            for (node, other) in [(na, nb), (nb, na)] {
                let peer = node
                    .wait_peer(&other.id, DEADLINE, |p| is_connected_via(p, "direct"))
                    .unwrap_or_else(|| panic!("{a} x {b}: status never said direct"));
                assert!(peer["via"].is_null(), "{a} x {b}: {peer}");
            }
            record(a, b, &format!("direct in {} ms", took.as_millis()));
        }
        Expect::Relayed => {
            let ping = na.cli(&["ping", &nb.id, "-c", "3", "-i", "100"]);
            assert!(ping.success(), "{a} x {b}: no relayed traffic: {ping:?}");
            let pongs: Vec<&str> = ping.stdout.lines().collect();
            assert_eq!(pongs.len(), 3, "{a} x {b}: {ping:?}");
            for line in pongs {
                assert!(
                    line.starts_with(&format!("pong from {} via relayed", nb.id)),
                    "{a} x {b}: {line}"
                );
            }
            let mut whys = Vec::new();
            for (node, other) in [(na, nb), (nb, na)] {
                let peer = node
                    .wait_peer(&other.id, DEADLINE, |p| is_connected_via(p, "relayed"))
                    .unwrap_or_else(|| panic!("{a} x {b}: status never said relayed"));
                whys.push(peer["why"].as_str().unwrap_or_default().to_string());
                assert_eq!(peer["via"], relay.id.as_str(), "{a} x {b}: {peer}");
                assert!(
                    peer["why"].as_str().is_some_and(|w| !w.is_empty()),
                    "{a} x {b}: relayed without a why: {peer}"
                );
            }
            // A direct path must not appear where none is possible.
            let until = na.cli(&["ping", &nb.id, "--until-direct", "-W", "3000"]);
            assert!(!until.success(), "{a} x {b}: went direct: {until:?}");
            assert!(
                until.stderr.starts_with("error: "),
                "{a} x {b}: no `kind: detail`: {until:?}"
            );
            record(
                a,
                b,
                &format!("relayed (as predicted); why: {}", whys.join(" / ")),
            );
        }
    }
}

macro_rules! matrix_case {
    ($name:ident, $a:ident, $b:ident, $expect:ident) => {
        #[test]
        fn $name() {
            lab_or_skip!(concat!("nat_lab_matrix::", stringify!($name)));
            run_case(NatPreset::$a, NatPreset::$b, Expect::$expect);
        }
    };
}

matrix_case!(open_x_open, Open, Open, Direct);
matrix_case!(open_x_full_cone, Open, FullCone, Direct);
matrix_case!(open_x_port_restricted, Open, PortRestrictedCone, Direct);
matrix_case!(full_cone_x_full_cone, FullCone, FullCone, Direct);
matrix_case!(
    full_cone_x_port_restricted,
    FullCone,
    PortRestrictedCone,
    Direct
);
matrix_case!(
    port_restricted_x_port_restricted,
    PortRestrictedCone,
    PortRestrictedCone,
    Direct
);
matrix_case!(symmetric_x_symmetric, Symmetric, Symmetric, Relayed);
matrix_case!(
    symmetric_x_port_restricted,
    Symmetric,
    PortRestrictedCone,
    Relayed
);
