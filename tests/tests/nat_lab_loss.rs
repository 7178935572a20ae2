//! Loss in the NAT lab: a cone x cone pair still goes direct when both
//! routers drop 5% of UDP on their WAN links, each direction (an nftables
//! random-drop rule, `Site::set_loss`; this kernel has no netem). The
//! traversal control messages (reach request, introductions) cross both
//! lossy links and rely on the reliable control channel.
//!
//! Two `relay-node`s behind port-restricted cone NATs share a public relay
//! node and know each other only by NodeId. With the loss in place, A runs
//! `ping B --until-direct`: it must end on a direct pong, and both sides'
//! `status --json` must say `path: "direct"` with no `via`. Then 300 pings
//! run over the lossy direct path, after which both sides must still be
//! direct, and the loss rules must have dropped packets (so the case really
//! ran lossy).
//!
//! Skipped with `SKIPPED: ...` unless root with `ip` and `nft`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::time::{Duration, Instant};

use relay_tests::lab::nat::loss_drops;
use relay_tests::lab::node::{init, is_connected_via};
use relay_tests::lab::public;
use relay_tests::lab::{Lab, LabNode, NatPreset};
use relay_tests::{lab_or_skip, relay_node_bin, TempDir};

/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);
const PORT: u16 = 7420;
const LOSS_PERCENT: u8 = 5;

#[test]
fn cone_x_cone_goes_direct_with_5_percent_loss() {
    lab_or_skip!("nat_lab_loss::cone_x_cone_goes_direct_with_5_percent_loss");
    let (a, b) = (NatPreset::PortRestrictedCone, NatPreset::PortRestrictedCone);
    let case = format!("{a} x {b} with {LOSS_PERCENT}% loss");
    let bin = relay_node_bin().unwrap();
    let lab = Lab::build(1, &[a, b]).unwrap();
    let tmp = TempDir::new("loss").unwrap();

    let (relay, ticket) =
        public::start_relay(&lab, &bin, &tmp.join("relay"), PORT, DEADLINE).unwrap();

    let sites = [lab.site(0).unwrap(), lab.site(1).unwrap()];
    for site in &sites {
        site.set_loss(LOSS_PERCENT).unwrap();
    }
    let nodes: Vec<LabNode> = sites
        .iter()
        .enumerate()
        .map(|(i, site)| {
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
            .unwrap_or_else(|| panic!("{case}: no connection to the relay:\n{}", node.log()));
    }
    let (na, nb) = (&nodes[0], &nodes[1]);

    let started = Instant::now();
    let ping = na.cli(&["ping", &nb.id, "--until-direct", "-i", "100"]);
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
    // Keep the direct path busy so the loss surely hits it (pongs may be
    // lost; what counts is that the pair stays direct).
    let _ = na.cli(&["ping", &nb.id, "-c", "300", "-i", "10"]);
    for (node, other) in [(na, nb), (nb, na)] {
        let peer = node
            .wait_peer(&other.id, DEADLINE, |p| is_connected_via(p, "direct"))
            .unwrap_or_else(|| panic!("{case}: no longer direct under loss"));
        assert!(peer["via"].is_null(), "{case}: {peer}");
    }
    let dropped: u64 = sites.iter().map(|s| loss_drops(&s.router).unwrap()).sum();
    assert!(dropped > 0, "{case}: the loss rules dropped nothing");
    let line = format!(
        "nat-lab loss: {case}: direct in {} ms, {dropped} packets dropped\n",
        took.as_millis()
    );
    let _ = std::io::stdout().write_all(line.as_bytes());
}
