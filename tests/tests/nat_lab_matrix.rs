//! The traversal matrix in the NAT lab: two nodes behind NAT presets that
//! share a public relay node (`run --relay`) and know nothing of each
//! other but their NodeIds. Every case runs in both topologies
//! (`relay_tests::lab::public::Topology`):
//!
//! - **ticket-only**, the mesh users build from the README: the relay is
//!   the only public node, and both nodes join with `init --join TICKET`
//!   and nothing else (no `--peer`). Each classifies its NAT from the
//!   relay's two ports (the mapping check, docs/TRAVERSAL.md);
//! - **two observers**: a second public node on another IP (a plain node,
//!   no relaying) is also a peer of both (`--peer`), so each has
//!   observers on two IPs.
//!
//! In both:
//!
//! - Each node classifies its NAT as its preset predicts (`status --json`
//!   `nat.type`: open -> "open", full cone, port-restricted and
//!   carrier-grade -> "cone", symmetric -> "symmetric"), and
//!   `netcheck --json` lists its observers (two IPs with two observers).
//! - Where a punch can work (open, full cone, port-restricted cone and
//!   carrier-grade in any combination; full cone x symmetric through
//!   peer-reflexive candidates; port-restricted or carrier-grade x
//!   symmetric, in both orders, through birthday-paradox probing),
//!   `ping NODEID --until-direct` must reach a direct path; both
//!   sides' `status --json` must say `path: "direct"`, and the time to
//!   direct is recorded, with the birthday packets both sides spent
//!   (`traversal.birthday` in `status --json`).
//! - Symmetric x symmetric stays relayed with traffic flowing: pongs come
//!   back and status says `path: "relayed"` with `via` = the relay's
//!   NodeId and a `why` naming the NAT pair ("symmetric x symmetric"); no
//!   birthday probing runs.
//! - With `--no-birthday`, port-restricted x symmetric stays relayed
//!   ("cone x symmetric" / "symmetric x cone").
//!
//! Every case runs with the crate's tests, once per topology (about 3 s
//! for a direct pair, up to about 8 s with birthday probing, 20 s for a
//! relayed one, which waits for its punch to fail and then for
//! `--until-direct` to give up); each is skipped with `SKIPPED: ...`
//! unless root with `ip` and `nft`.
//! `RELAY_NODE_LAB_REPEAT=N` runs every case N times.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use relay_tests::lab::node::{init, is_connected_via};
use relay_tests::lab::public::{PublicSide, Topology};
use relay_tests::lab::{Lab, LabNode, NatPreset};
use relay_tests::process::poll_until;
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
fn record(topology: Topology, a: NatPreset, b: NatPreset, outcome: &str) {
    let line = format!(
        "nat-lab matrix ({}): {a} x {b}: {outcome}\n",
        topology.name()
    );
    let _ = std::io::stdout().write_all(line.as_bytes());
}

/// Waits until `node` classifies its NAT as `preset` predicts, and checks
/// that `netcheck --json` agrees and lists its observers: the relay alone
/// ticket-only, observers on two IPs otherwise.
fn assert_classified(node: &LabNode, preset: NatPreset, topology: Topology, case: &str) {
    let want = preset.expected_nat_type();
    let nat = node.wait_nat_type(want, DEADLINE).unwrap_or_else(|| {
        panic!(
            "{case}: {preset} node never classified its NAT as {want}; status:\n{}\nnetcheck:\n{}\nlog:\n{}",
            node.cli(&["status", "--json"]).stdout,
            node.cli(&["netcheck", "--json"]).stdout,
            node.log()
        )
    });
    assert!(nat["reflex_addr"].is_string(), "{case}: {nat}");
    let netcheck = node.netcheck().expect("netcheck --json");
    assert_eq!(netcheck["nat"]["type"], want, "{case}: {netcheck}");
    let observations = netcheck["observations"].as_array().unwrap();
    let observer_ips: BTreeSet<IpAddr> = observations
        .iter()
        .filter_map(|o| o["observer_addr"].as_str())
        .filter_map(|a| a.parse::<SocketAddr>().ok())
        .map(|a| a.ip())
        .collect();
    let want_ips = topology.public_hosts();
    assert!(
        observations.len() >= want_ips && observer_ips.len() >= want_ips,
        "{case}: netcheck lists fewer than {want_ips} observers on different IPs: {netcheck}"
    );
}

/// Whether only birthday-paradox probing gets this pair direct.
fn needs_birthday(a: NatPreset, b: NatPreset) -> bool {
    use NatPreset::*;
    matches!(
        (a, b),
        (Symmetric, PortRestrictedCone | CarrierGrade)
            | (PortRestrictedCone | CarrierGrade, Symmetric)
    )
}

/// `traversal.birthday` of `node`'s `status --json`.
fn birthday_of(node: &LabNode) -> serde_json::Value {
    node.status()
        .map(|s| s["traversal"]["birthday"].clone())
        .unwrap_or_default()
}

/// How often each case runs (`RELAY_NODE_LAB_REPEAT`, default 1).
fn repeat() -> usize {
    std::env::var("RELAY_NODE_LAB_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// Runs the case in both topologies (the users' mesh first), each
/// `RELAY_NODE_LAB_REPEAT` times.
fn run_case(a: NatPreset, b: NatPreset, expect: Expect, birthday: bool) {
    for topology in Topology::ALL {
        for _ in 0..repeat() {
            run_once(topology, a, b, expect, birthday);
        }
    }
}

fn run_once(topology: Topology, a: NatPreset, b: NatPreset, expect: Expect, birthday: bool) {
    let case = if birthday {
        format!("{a} x {b}, {}", topology.name())
    } else {
        format!("{a} x {b} (--no-birthday), {}", topology.name())
    };
    let bin = relay_node_bin().unwrap();
    let lab = Lab::build(topology.public_hosts(), &[a, b]).unwrap();
    let tmp = TempDir::new("matrix").unwrap();
    let public = PublicSide::start(&lab, &bin, tmp.path(), topology, PORT, DEADLINE).unwrap();
    let relay = &public.relay;

    // Both nodes join through the relay's ticket (and, with two
    // observers, also keep the observer as a peer); they know each other
    // only by NodeId.
    let nodes: Vec<LabNode> = [0, 1]
        .iter()
        .map(|&i| {
            let site = lab.site(i).unwrap();
            let dir = tmp.join(&format!("n{i}"));
            init(&bin, &dir, Some(&public.ticket)).unwrap();
            let mut args = vec!["--listen".to_string(), format!("0.0.0.0:{PORT}")];
            args.extend(public.site_args());
            if !birthday {
                args.push("--no-birthday".to_string());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            LabNode::start(&bin, &site.host, &dir, &args, DEADLINE).unwrap()
        })
        .collect();
    for node in &nodes {
        for public in public.nodes() {
            node.wait_peer(&public.id, DEADLINE, |p| is_connected_via(p, "direct"))
                .unwrap_or_else(|| {
                    panic!("{case}: no connection to {}:\n{}", public.id, node.log())
                });
        }
    }
    let (na, nb) = (&nodes[0], &nodes[1]);
    // Classification comes first: an introduction carries each side's NAT
    // type, and a failed punch's `why` names the pair.
    assert_classified(na, a, topology, &case);
    assert_classified(nb, b, topology, &case);

    match expect {
        Expect::Direct => {
            // Reach B by NodeId alone: relayed first, then direct.
            let started = Instant::now();
            let ping = na.ping_until_direct(&nb.id, 40);
            let took = started.elapsed();
            assert!(
                ping.success(),
                "{case}: no direct path: {ping:?}\nA log:\n{}\nB log:\n{}",
                na.log(),
                nb.log()
            );
            let last = ping.stdout.lines().last().unwrap_or_default();
            assert!(
                last.starts_with(&format!("pong from {} via direct ", nb.id)),
                "{case}: last pong not direct: {ping:?}"
            );
            for (node, other) in [(na, nb), (nb, na)] {
                let peer = node
                    .wait_peer(&other.id, DEADLINE, |p| is_connected_via(p, "direct"))
                    .unwrap_or_else(|| panic!("{case}: status never said direct"));
                assert!(peer["via"].is_null(), "{case}: {peer}");
            }
            // Birthday probing ran on both sides exactly where it was
            // needed, and what it spent is recorded. A side can show the
            // direct path (its peer switched first and the packets arrive
            // there) a moment before its own run nominates and counts the
            // success, so that count is waited for.
            let spent: Vec<serde_json::Value> = if needs_birthday(a, b) {
                poll_until(DEADLINE, Duration::from_millis(100), || {
                    let spent: Vec<serde_json::Value> =
                        [na, nb].iter().map(|n| birthday_of(n)).collect();
                    spent
                        .iter()
                        .all(|b| b["successes"].as_u64() >= Some(1))
                        .then_some(spent)
                })
                .unwrap_or_else(|| {
                    let spent: Vec<serde_json::Value> =
                        [na, nb].iter().map(|n| birthday_of(n)).collect();
                    panic!("{case}: a side never counted a birthday success: {spent:?}")
                })
            } else {
                [na, nb].iter().map(|n| birthday_of(n)).collect()
            };
            let packets: u64 = spent.iter().filter_map(|b| b["packets"].as_u64()).sum();
            if !needs_birthday(a, b) {
                assert_eq!(packets, 0, "{case}: birthday probing ran: {spent:?}");
            }
            record(
                topology,
                a,
                b,
                &format!(
                    "direct in {} ms; birthday packets {} ({} + {})",
                    took.as_millis(),
                    packets,
                    spent[0]["packets"],
                    spent[1]["packets"]
                ),
            );
        }
        Expect::Relayed => {
            let ping = na.cli(&["ping", &nb.id, "-c", "3", "-i", "100"]);
            assert!(ping.success(), "{case}: no relayed traffic: {ping:?}");
            let pongs: Vec<&str> = ping.stdout.lines().collect();
            assert_eq!(pongs.len(), 3, "{case}: {ping:?}");
            for line in pongs {
                assert!(
                    line.starts_with(&format!("pong from {} via relayed", nb.id)),
                    "{case}: {line}"
                );
            }
            // Once the punch has failed, each side's `why` names the NAT
            // pair from its own point of view ("symmetric x cone" on the
            // symmetric side, "cone x symmetric" on the other).
            let mut whys = Vec::new();
            for (node, other, ours, theirs) in [(na, nb, a, b), (nb, na, b, a)] {
                let want = format!(
                    "{} x {}",
                    ours.expected_nat_type(),
                    theirs.expected_nat_type()
                );
                let peer = node
                    .wait_peer(&other.id, DEADLINE, |p| {
                        is_connected_via(p, "relayed") && p["why"] == want.as_str()
                    })
                    .unwrap_or_else(|| {
                        panic!(
                            "{case}: status never said relayed with why {want:?}; last entry: {:?}\nlog:\n{}",
                            node.peer(&other.id),
                            node.log()
                        )
                    });
                assert_eq!(peer["via"], relay.id.as_str(), "{case}: {peer}");
                whys.push(want);
            }
            if a == NatPreset::Symmetric && b == NatPreset::Symmetric {
                // No fixed port on either side to aim at: no birthday run.
                for node in [na, nb] {
                    assert_eq!(birthday_of(node)["runs"], 0, "{case}");
                }
            }
            // A direct path must not appear where none is possible.
            let until = na.cli(&["ping", &nb.id, "--until-direct", "-W", "3000"]);
            assert!(!until.success(), "{case}: went direct: {until:?}");
            assert!(
                until.stderr.starts_with("error: "),
                "{case}: no `kind: detail`: {until:?}"
            );
            record(
                topology,
                a,
                b,
                &format!("relayed (as predicted); why: {}", whys.join(" / ")),
            );
        }
    }
}

macro_rules! matrix_case {
    ($name:ident, $a:ident, $b:ident, $expect:ident) => {
        matrix_case!($name, $a, $b, $expect, true);
    };
    ($name:ident, $a:ident, $b:ident, $expect:ident, $birthday:expr) => {
        #[test]
        fn $name() {
            lab_or_skip!(concat!("nat_lab_matrix::", stringify!($name)));
            run_case(NatPreset::$a, NatPreset::$b, Expect::$expect, $birthday);
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
matrix_case!(full_cone_x_symmetric, FullCone, Symmetric, Direct);
matrix_case!(
    port_restricted_x_symmetric,
    PortRestrictedCone,
    Symmetric,
    Direct
);
matrix_case!(
    symmetric_x_port_restricted,
    Symmetric,
    PortRestrictedCone,
    Direct
);
matrix_case!(symmetric_x_symmetric, Symmetric, Symmetric, Relayed);
// NAT stacked on NAT: a port-restricted home router behind a
// port-restricted carrier-grade NAT maps endpoint-independently end to end.
matrix_case!(
    carrier_grade_x_port_restricted,
    CarrierGrade,
    PortRestrictedCone,
    Direct
);
matrix_case!(
    carrier_grade_x_carrier_grade,
    CarrierGrade,
    CarrierGrade,
    Direct
);
matrix_case!(carrier_grade_x_symmetric, CarrierGrade, Symmetric, Direct);
matrix_case!(symmetric_x_carrier_grade, Symmetric, CarrierGrade, Direct);
matrix_case!(
    port_restricted_x_symmetric_no_birthday,
    PortRestrictedCone,
    Symmetric,
    Relayed,
    false
);
