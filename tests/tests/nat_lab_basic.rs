//! Real `relay-node` processes through the NAT lab: a public node in the
//! relay namespace and one node behind each NAT preset that dials it. Every
//! NATed node connects directly, the public node sees it at its NAT's
//! public address, and `ping` works both ways over the connection the
//! NATed node opened. Skipped with `SKIPPED: ...` unless root with `ip` and
//! `nft`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use relay_tests::lab::node::{init, is_connected_via};
use relay_tests::lab::{Lab, LabNode, NatPreset};
use relay_tests::{lab_or_skip, relay_node_bin, TempDir};

/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);
const PORT: u16 = 7420;

fn dial_public_node_from_behind(preset: NatPreset) {
    let bin = relay_node_bin().unwrap();
    let lab = Lab::build(1, &[preset]).unwrap();
    let relay_host = lab.public(0).unwrap();
    let site = lab.site(0).unwrap();
    let tmp = TempDir::new("lab").unwrap();

    let public_addr = SocketAddr::new(IpAddr::V4(relay_host.addr), PORT).to_string();
    let public_dir = tmp.join("public");
    init(&bin, &public_dir, None).unwrap();
    let public = LabNode::start(
        &bin,
        &relay_host.ns,
        &public_dir,
        &["--listen", &public_addr],
        DEADLINE,
    )
    .unwrap();
    assert_eq!(public.process.listen.to_string(), public_addr);
    let ticket = public.invite(&public_addr).unwrap();

    let natted_dir = tmp.join("natted");
    init(&bin, &natted_dir, Some(&ticket)).unwrap();
    let peer_arg = format!("{}@{public_addr}", public.id);
    let natted = LabNode::start(
        &bin,
        &site.host,
        &natted_dir,
        &["--listen", &format!("0.0.0.0:{PORT}"), "--peer", &peer_arg],
        DEADLINE,
    )
    .unwrap();

    let seen_by_natted = natted
        .wait_peer(&public.id, DEADLINE, |p| is_connected_via(p, "direct"))
        .unwrap_or_else(|| {
            panic!(
                "{preset}: NATed node never connected; its log:\n{}\npublic log:\n{}",
                natted.log(),
                public.log()
            )
        });
    assert_eq!(seen_by_natted["remote_addr"], public_addr.as_str());
    assert_eq!(seen_by_natted["outbound"], true);

    let seen_by_public = public
        .wait_peer(&natted.id, DEADLINE, |p| is_connected_via(p, "direct"))
        .unwrap_or_else(|| panic!("{preset}: public node never saw the NATed node"));
    let natted_public: SocketAddr = seen_by_public["remote_addr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The public node sees the NAT's outside address, not the LAN one.
    assert_eq!(
        natted_public.ip(),
        IpAddr::V4(site.public_addr()),
        "{preset}"
    );
    if !preset.translates() {
        assert_eq!(natted_public.port(), PORT);
    }
    assert_eq!(seen_by_public["outbound"], false);

    // Ping both ways over the connection the NATed node opened.
    for (from, to, via) in [
        (&natted, &public, public_addr.clone()),
        (&public, &natted, natted_public.to_string()),
    ] {
        let ping = from.cli(&["ping", &to.id, "-c", "3", "-i", "50"]);
        assert!(ping.success(), "{preset}: {ping:?}");
        let pongs: Vec<&str> = ping.stdout.lines().collect();
        assert_eq!(pongs.len(), 3, "{preset}: {ping:?}");
        for line in pongs {
            assert!(
                line.starts_with(&format!("pong from {} via direct {via} in ", to.id)),
                "{preset}: {line}"
            );
        }
    }
}

#[test]
fn open_node_dials_public_node() {
    lab_or_skip!("nat_lab_basic::open_node_dials_public_node");
    dial_public_node_from_behind(NatPreset::Open);
}

#[test]
fn full_cone_node_dials_public_node() {
    lab_or_skip!("nat_lab_basic::full_cone_node_dials_public_node");
    dial_public_node_from_behind(NatPreset::FullCone);
}

#[test]
fn port_restricted_node_dials_public_node() {
    lab_or_skip!("nat_lab_basic::port_restricted_node_dials_public_node");
    dial_public_node_from_behind(NatPreset::PortRestrictedCone);
}

#[test]
fn symmetric_node_dials_public_node() {
    lab_or_skip!("nat_lab_basic::symmetric_node_dials_public_node");
    dial_public_node_from_behind(NatPreset::Symmetric);
}
