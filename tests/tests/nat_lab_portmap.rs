//! Port mapping in the NAT lab, against Debian's miniupnpd running in the
//! NAT router (see `relay_tests::lab::miniupnpd` for how the router is
//! prepared).
//!
//! - `symmetric_made_reachable_by_port_mapping`: a node behind a
//!   *symmetric* NAT maps its port with miniupnpd (PCP, the first protocol
//!   tried); its `status` and `netcheck` show the protocol and mapped
//!   address. A node behind a port-restricted cone, with no gateway to map
//!   on, reports `port-map-unavailable` and carries on. Without the
//!   mapping this pair stays relayed (`nat_lab_matrix`); with it, the cone
//!   side goes direct to the mapped address. When the mapped node shuts
//!   down, its mapping is gone from the router.
//! - `each_protocol_maps_and_releases`: PCP, NAT-PMP and UPnP-IGD each on
//!   their own (`run --port-map-protocols`) get a mapping that shows in
//!   miniupnpd's rules, and each releases it on SIGTERM.
//!
//! Skipped with `SKIPPED: ...` unless root with `ip`, `nft` and
//! `miniupnpd`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use relay_tests::lab::miniupnpd::{make_mappable, Miniupnpd, MAPPABLE_WAN};
use relay_tests::lab::node::{init, is_connected_via};
use relay_tests::lab::public;
use relay_tests::lab::{Lab, LabNode, NatPreset};
use relay_tests::process::poll_until;
use relay_tests::{lab_or_skip, relay_node_bin, TempDir};

/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
const PORT: u16 = 7420;

fn record(line: &str) {
    let _ = std::io::stdout().write_all(format!("nat-lab portmap: {line}\n").as_bytes());
}

fn mapped_addr() -> String {
    SocketAddr::new(IpAddr::V4(MAPPABLE_WAN), PORT).to_string()
}

/// `VERB --json` of `node`, parsed.
fn json(node: &LabNode, verb: &str) -> Option<serde_json::Value> {
    let out = node.cli(&[verb, "--json"]);
    out.success()
        .then(|| serde_json::from_str(&out.stdout).ok())
        .flatten()
}

/// Polls `status --json` until its `port_map` satisfies `pred`.
fn wait_port_map(
    node: &LabNode,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    poll_until(DEADLINE, POLL, || {
        json(node, "status")
            .map(|s| s["port_map"].clone())
            .filter(|p| pred(p))
    })
}

fn no_error_lines(node: &LabNode, name: &str) {
    let log = node.log();
    assert!(
        !log.lines().any(|l| l.contains(" ERROR ")),
        "{name} logged at error level:\n{log}"
    );
}

#[test]
fn symmetric_made_reachable_by_port_mapping() {
    lab_or_skip!(
        "nat_lab_portmap::symmetric_made_reachable_by_port_mapping",
        needs: "miniupnpd"
    );
    let bin = relay_node_bin().unwrap();
    let lab = Lab::build(1, &[NatPreset::Symmetric, NatPreset::PortRestrictedCone]).unwrap();
    let tmp = TempDir::new("portmap").unwrap();
    let mapped_site = lab.site(0).unwrap();
    make_mappable(&lab, mapped_site).unwrap();
    let upnpd = Miniupnpd::start(mapped_site, &tmp.join("miniupnpd"), DEADLINE).unwrap();

    let (relay, ticket) =
        public::start_relay(&lab, &bin, &tmp.join("relay"), PORT, DEADLINE).unwrap();
    let mut nodes: Vec<LabNode> = [0, 1]
        .iter()
        .map(|&i| {
            let dir = tmp.join(&format!("n{i}"));
            init(&bin, &dir, Some(&ticket)).unwrap();
            // No birthday probing: A (symmetric) x B (port-restricted)
            // could also go direct through it, at another port; the
            // mapped address must be the only way in.
            LabNode::start(
                &bin,
                &lab.site(i).unwrap().host,
                &dir,
                &["--listen", &format!("0.0.0.0:{PORT}"), "--no-birthday"],
                DEADLINE,
            )
            .unwrap()
        })
        .collect();
    for node in &nodes {
        node.wait_peer(&relay.id, DEADLINE, |p| is_connected_via(p, "direct"))
            .unwrap_or_else(|| panic!("no connection to the relay:\n{}", node.log()));
    }
    let (a, b) = (&nodes[0], &nodes[1]);

    // A (symmetric NAT + miniupnpd) holds a PCP mapping of its port.
    let pm = wait_port_map(a, |p| p["state"] == "mapped").unwrap_or_else(|| {
        panic!(
            "A never mapped: {:?}\nA log:\n{}\nminiupnpd:\n{}",
            json(a, "status").map(|s| s["port_map"].clone()),
            a.log(),
            upnpd.log()
        )
    });
    assert_eq!(pm["protocol"], "pcp", "{pm}");
    assert_eq!(pm["external_addr"], mapped_addr().as_str(), "{pm}");
    assert!(pm["expires_in_s"].as_u64().unwrap() > 3000, "{pm}");
    assert!(pm["error"].is_null(), "{pm}");
    let netcheck = json(a, "netcheck").unwrap();
    assert_eq!(netcheck["port_map"]["protocol"], "pcp");
    assert_eq!(
        netcheck["port_map"]["external_addr"],
        mapped_addr().as_str()
    );
    let text = a.cli(&["netcheck"]).stdout;
    assert!(
        text.contains(&format!("port map  pcp {}", mapped_addr())),
        "{text}"
    );
    assert!(upnpd.redirects().contains(&format!("dport {PORT}")));
    record(&format!("symmetric node mapped {} with pcp", mapped_addr()));

    // B (port-restricted cone, no gateway service): unavailable, carries on.
    let pm = wait_port_map(b, |p| p["state"] == "unavailable").unwrap();
    assert!(pm["protocol"].is_null(), "{pm}");
    let error = pm["error"].as_str().unwrap();
    assert!(error.starts_with("port-map-unavailable: "), "{error}");
    let netcheck = json(b, "netcheck").unwrap();
    assert!(netcheck["port_map"]["error"]
        .as_str()
        .unwrap()
        .starts_with("port-map-unavailable: "));
    record(&format!("port-restricted node: {error}"));

    // B reaches A by NodeId: relayed first, then direct to the mapping.
    let started = Instant::now();
    // Two punch rounds fit: a first one can start before the introducer
    // has A's mapped candidate; the retry (15 s later) has it.
    let ping = b.cli(&[
        "ping",
        &a.id,
        "--until-direct",
        "-i",
        "100",
        "--timeout",
        "40",
    ]);
    let took = started.elapsed();
    assert!(
        ping.success(),
        "no direct path: {ping:?}\nA log:\n{}\nB log:\n{}",
        a.log(),
        b.log()
    );
    let a_at_b = b
        .wait_peer(&a.id, DEADLINE, |p| is_connected_via(p, "direct"))
        .unwrap();
    assert_eq!(
        a_at_b["remote_addr"],
        mapped_addr().as_str(),
        "B is direct to A, but not at the mapped address: {a_at_b}"
    );
    let b_at_a = a
        .wait_peer(&b.id, DEADLINE, |p| is_connected_via(p, "direct"))
        .unwrap();
    assert!(b_at_a["via"].is_null(), "{b_at_a}");
    record(&format!(
        "symmetric (mapped) x port-restricted: direct in {} ms via {}",
        took.as_millis(),
        mapped_addr()
    ));
    no_error_lines(a, "A");
    no_error_lines(b, "B");

    // A shuts down: the mapping is released on the router.
    let node_a = nodes.remove(0);
    let mut process = node_a.process;
    process.signal("TERM").unwrap();
    process.wait_exit(DEADLINE).unwrap();
    assert!(
        !upnpd.redirects().contains(&format!("dport {PORT}")),
        "mapping still on the router after shutdown:\n{}\nminiupnpd:\n{}",
        upnpd.redirects(),
        upnpd.log()
    );
}

#[test]
fn each_protocol_maps_and_releases() {
    lab_or_skip!(
        "nat_lab_portmap::each_protocol_maps_and_releases",
        needs: "miniupnpd"
    );
    let bin = relay_node_bin().unwrap();
    let lab = Lab::build(0, &[NatPreset::Symmetric]).unwrap();
    let tmp = TempDir::new("portmap-each").unwrap();
    let site = lab.site(0).unwrap();
    make_mappable(&lab, site).unwrap();
    let upnpd = Miniupnpd::start(site, &tmp.join("miniupnpd"), DEADLINE).unwrap();
    let dir = tmp.join("node");
    init(&bin, &dir, None).unwrap();
    for protocol in ["pcp", "nat-pmp", "upnp-igd"] {
        let node = LabNode::start(
            &bin,
            &site.host,
            &dir,
            &[
                "--listen",
                &format!("0.0.0.0:{PORT}"),
                "--port-map-protocols",
                protocol,
            ],
            DEADLINE,
        )
        .unwrap();
        let pm = wait_port_map(&node, |p| p["state"] != "discovering").unwrap();
        assert_eq!(
            pm["state"],
            "mapped",
            "{protocol}: {pm}\nnode:\n{}\nminiupnpd:\n{}",
            node.log(),
            upnpd.log()
        );
        assert_eq!(pm["protocol"], protocol, "{pm}");
        assert_eq!(pm["external_addr"], mapped_addr().as_str(), "{pm}");
        assert!(
            upnpd.redirects().contains(&format!("dport {PORT}")),
            "{protocol}: no rule on the router:\n{}",
            upnpd.redirects()
        );
        no_error_lines(&node, protocol);
        let mut process = node.process;
        process.signal("TERM").unwrap();
        process.wait_exit(DEADLINE).unwrap();
        assert!(
            !upnpd.redirects().contains(&format!("dport {PORT}")),
            "{protocol}: mapping still on the router after shutdown:\n{}",
            upnpd.redirects()
        );
        record(&format!(
            "{protocol}: mapped {} and released on shutdown",
            mapped_addr()
        ));
    }
}
