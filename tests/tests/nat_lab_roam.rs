//! Address changes in the NAT lab: a node whose host moves to another site
//! mid-run notices, falls back to the relay, re-learns its NAT and goes
//! direct again at its new address, on the same connection.
//!
//! Set-up as in `nat_lab_matrix`: `relay-node run --relay` on p0, a second
//! public node on p1 (the second observer), A behind a full-cone NAT
//! (site 0), B behind a port-restricted cone (site 1), and a spare
//! port-restricted router (site 2) whose own host stays idle. A pings B by
//! NodeId until direct. Then pings run while A's host moves behind the
//! spare router (`Lab::move_host`: new LAN address, new default route, new
//! public IP). B's NAT drops A's packets from the new address, so the old
//! direct path is dead both ways.
//!
//! Asserted: every ping across the move is answered (relayed while the
//! pair re-punches); A's `status --json` shows the new router's WAN IP as
//! its reflexive address, NAT type `cone`, and `traversal.address_changes`
//! 1 (B's 0); `netcheck --json` lists observations at the new address
//! only; A logs `our address changed: <old> -> <new>`; the pair is direct
//! again, B reaching A at the new router's WAN IP; on both sides the peer
//! connection's `since` is unchanged and there was no disconnection
//! (the same connection, no new handshake). Prints `nat-lab roam: ...`.
//!
//! Skipped with `SKIPPED: ...` unless root with `ip` and `nft`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use relay_tests::lab::node::{init, is_connected_via};
use relay_tests::lab::public;
use relay_tests::lab::{Lab, LabNode, NatPreset};
use relay_tests::process::poll_until;
use relay_tests::{lab_or_skip, relay_node_bin, TempDir};
use serde_json::Value;

/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);
const PORT: u16 = 7420;
/// Pings running across the move, and their spacing.
const PINGS: &str = "40";
const PING_INTERVAL_MS: &str = "250";

fn say(line: &str) {
    let _ = std::io::stdout().write_all(format!("{line}\n").as_bytes());
}

fn since(node: &LabNode, peer: &str) -> Value {
    let entry = node.peer(peer).unwrap_or_default();
    assert!(!entry["since_unix"].is_null(), "{entry}");
    entry["since_unix"].clone()
}

/// How many connections to `peer` (by its short id) `node` has logged:
/// each handshake that ends up registered logs one "connected" line.
fn connections(node: &LabNode, peer: &str) -> usize {
    let short = format!("peer={}", &peer[..10]);
    node.log()
        .lines()
        .filter(|l| l.contains(&short) && l.contains(" connected"))
        .count()
}

fn ip_of(addr: &Value) -> Option<IpAddr> {
    addr.as_str()?.parse::<SocketAddr>().ok().map(|a| a.ip())
}

#[test]
fn a_node_that_moves_goes_relayed_then_direct_again() {
    lab_or_skip!("nat_lab_roam::a_node_that_moves_goes_relayed_then_direct_again");
    let bin = relay_node_bin().unwrap();
    let mut lab = Lab::build(
        2,
        &[
            NatPreset::FullCone,
            NatPreset::PortRestrictedCone,
            NatPreset::PortRestrictedCone,
        ],
    )
    .unwrap();
    let tmp = TempDir::new("roam").unwrap();

    let (relay, ticket) =
        public::start_relay(&lab, &bin, &tmp.join("relay"), PORT, DEADLINE).unwrap();
    let (observer, observer_peer) =
        public::start_observer(&lab, &bin, &tmp.join("observer"), &ticket, PORT, DEADLINE).unwrap();

    let listen = format!("0.0.0.0:{PORT}");
    let nodes: Vec<LabNode> = [0, 1]
        .iter()
        .map(|&i| {
            let site = lab.site(i).unwrap();
            let dir = tmp.join(&format!("n{i}"));
            init(&bin, &dir, Some(&ticket)).unwrap();
            let args = ["--listen", &listen, "--peer", &observer_peer];
            LabNode::start(&bin, &site.host, &dir, &args, DEADLINE).unwrap()
        })
        .collect();
    let (na, nb) = (&nodes[0], &nodes[1]);
    for node in &nodes {
        for public in [&relay, &observer] {
            node.wait_peer(&public.id, DEADLINE, |p| is_connected_via(p, "direct"))
                .unwrap_or_else(|| panic!("no connection to {}:\n{}", public.id, node.log()));
        }
        node.wait_nat_type("cone", DEADLINE)
            .unwrap_or_else(|| panic!("never classified:\n{}", node.log()));
    }
    let old_wan = lab.site(0).unwrap().wan_addr;
    let new_wan = lab.site(2).unwrap().wan_addr;

    // Direct first.
    let ping = na.cli(&["ping", &nb.id, "--until-direct", "-i", "100"]);
    assert!(ping.success(), "no direct path: {ping:?}\n{}", na.log());
    for (node, other) in [(na, nb), (nb, na)] {
        node.wait_peer(&other.id, DEADLINE, |p| is_connected_via(p, "direct"))
            .unwrap_or_else(|| panic!("status never said direct:\n{}", node.log()));
    }
    let b_sees_a = nb.peer(&na.id).unwrap();
    assert_eq!(ip_of(&b_sees_a["remote_addr"]), Some(IpAddr::V4(old_wan)));
    let (since_a, since_b) = (since(na, &nb.id), since(nb, &na.id));
    let (connects_a, connects_b) = (connections(na, &nb.id), connections(nb, &na.id));
    let old_host = lab.site(0).unwrap().host_addr;
    let a_to_b = na.peer(&nb.id).unwrap()["remote_addr"].clone();
    let changes_before = na.peer(&nb.id).unwrap()["path_changes"].as_u64().unwrap();
    let fallbacks_before = na.status().unwrap()["traversal"]["relay_fallbacks"]
        .as_u64()
        .unwrap();

    // Pings across the move: every one must be answered.
    let pinger = {
        let (bin, dir, b) = (bin.clone(), na.dir.clone(), nb.id.clone());
        std::thread::spawn(move || {
            relay_tests::process::run_cli(
                &bin,
                &dir,
                &[
                    "ping",
                    &b,
                    "-c",
                    PINGS,
                    "-i",
                    PING_INTERVAL_MS,
                    "-W",
                    "20000",
                ],
            )
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let moved_at = Instant::now();
    let moved = lab.move_host(0, 2).unwrap();
    say(&format!(
        "nat-lab roam: A moved from {old_wan} to {} (host {})",
        moved.wan_addr, moved.host_addr
    ));

    // A notices and re-learns its reflexive address at the new router.
    let nat = poll_until(DEADLINE, Duration::from_millis(200), || {
        na.status().map(|s| s["nat"].clone()).filter(|n| {
            n["type"] == "cone" && ip_of(&n["reflex_addr"]) == Some(IpAddr::V4(new_wan))
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "A never re-learned its address: {}\n{}",
            na.cli(&["status", "--json"]).stdout,
            na.log()
        )
    });
    let relearned = moved_at.elapsed();

    let pings = pinger.join().unwrap().unwrap();
    assert!(
        pings.success(),
        "a ping across the move failed: {pings:?}\nA log:\n{}\nB log:\n{}",
        na.log(),
        nb.log()
    );
    let pongs: Vec<&str> = pings
        .stdout
        .lines()
        .filter(|l| l.starts_with("pong"))
        .collect();
    assert_eq!(pongs.len().to_string(), PINGS, "{pings:?}");

    // Direct again, at the new address, on the same connection.
    let ping = na.ping_until_direct(&nb.id, 60);
    assert!(
        ping.success(),
        "not direct again: {ping:?}\nA log:\n{}\nB log:\n{}",
        na.log(),
        nb.log()
    );
    let direct_again = moved_at.elapsed();
    let b_sees_a = nb
        .wait_peer(&na.id, DEADLINE, |p| {
            is_connected_via(p, "direct") && ip_of(&p["remote_addr"]) == Some(IpAddr::V4(new_wan))
        })
        .unwrap_or_else(|| {
            panic!(
                "B never direct to A's new address: {}\n{}",
                nb.cli(&["status", "--json"]).stdout,
                nb.log()
            )
        });
    let a_sees_b = na
        .wait_peer(&nb.id, DEADLINE, |p| is_connected_via(p, "direct"))
        .unwrap();
    assert_eq!(a_sees_b["remote_addr"], a_to_b, "B did not move");
    // Through the relay in between: direct -> relayed -> direct at least.
    let changes = a_sees_b["path_changes"].as_u64().unwrap();
    assert!(changes >= changes_before + 2, "{a_sees_b}");
    assert_eq!(
        since(na, &nb.id),
        since_a,
        "A's connection to B was replaced"
    );
    assert_eq!(
        since(nb, &na.id),
        since_b,
        "B's connection to A was replaced"
    );
    for (node, other, before) in [(na, nb, connects_a), (nb, na, connects_b)] {
        assert_eq!(
            connections(node, &other.id),
            before,
            "a new connection (handshake) was logged:\n{}",
            node.log()
        );
    }

    // Counters, netcheck and the log line.
    let status_a = na.status().unwrap();
    assert_eq!(status_a["traversal"]["address_changes"], 1, "{status_a}");
    let fallbacks = status_a["traversal"]["relay_fallbacks"].as_u64().unwrap();
    assert!(fallbacks > fallbacks_before, "{status_a}");
    let status_b = nb.status().unwrap();
    assert_eq!(status_b["traversal"]["address_changes"], 0, "{status_b}");
    let netcheck = na.netcheck().unwrap();
    assert_eq!(
        netcheck["nat"]["reflex_addr"], nat["reflex_addr"],
        "{netcheck}"
    );
    let observations = netcheck["observations"].as_array().unwrap();
    assert!(!observations.is_empty(), "{netcheck}");
    for o in observations {
        assert_eq!(
            ip_of(&o["reflex_addr"]),
            Some(IpAddr::V4(new_wan)),
            "{netcheck}"
        );
    }
    let log = na.log();
    // Whichever signal confirmed the move first: A's own address, or the
    // observers seeing it at the new router.
    let local = format!(
        "our address changed: {old_host} -> {} (local)",
        moved.host_addr
    );
    let reflexive = format!("our address changed: {old_wan} -> {new_wan} (reflexive)");
    assert!(
        log.contains(&local) || log.contains(&reflexive),
        "neither `{local}` nor `{reflexive}` in A's log:\n{log}"
    );
    let how = if log.contains(&local) {
        "local"
    } else {
        "reflexive"
    };
    say(&format!(
        "nat-lab roam: noticed ({how}); reflexive address {} after {} ms; direct again (checked once the pings ended, {} ms after the move), B reaches A at {}; {} pongs, none lost; path changes {} -> {changes}",
        nat["reflex_addr"],
        relearned.as_millis(),
        direct_again.as_millis(),
        b_sees_a["remote_addr"],
        pongs.len(),
        changes_before
    ));
}
