//! NAT binding lifetime in the NAT lab: nodes behind port-restricted cone
//! routers whose conntrack forgets idle UDP flows after 3 s
//! (`Site::set_udp_timeout`; the presets filter through conntrack, so that
//! is the binding lifetime) measure it, and keep a direct path alive with
//! keepalives that follow it.
//!
//! The public side is the matrix's: a relay (`run --relay`) and a plain
//! node on another IP, which every site node keeps as a peer.
//!
//! - `netcheck_reports_the_learned_lifetime`: one site node. `netcheck
//!   --json` reaches `binding_lifetime.state == "measured"` with
//!   `lower_s <= 3 < upper_s`, `keepalive_s <= 1.5` (half the timeout),
//!   quinn's keepalive for new connections equal to it, and an observer
//!   that is one of the public nodes; `status --json` says the same.
//! - `direct_path_survives_idle_on_short_bindings`: two site nodes, both
//!   measured, go direct (`ping --until-direct`), then stay idle for 20 s,
//!   more than six binding lifetimes. Both still say `path: "direct"`,
//!   neither counted a relay fallback, and a ping is answered via direct.
//!
//! Skipped with `SKIPPED: ...` unless root with `ip` and `nft`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use relay_tests::lab::node::{init, is_connected_via};
use relay_tests::lab::public;
use relay_tests::lab::{Lab, LabNode, NatPreset};
use relay_tests::process::poll_until;
use relay_tests::{lab_or_skip, relay_node_bin, TempDir};
use serde_json::Value;

/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(90);
const PORT: u16 = 7420;
/// The routers' UDP conntrack timeout: the binding lifetime to learn.
const TIMEOUT_S: u32 = 3;
/// How long the direct path stays idle.
const IDLE: Duration = Duration::from_secs(20);

struct Setup {
    _lab: Lab,
    _tmp: TempDir,
    relay: LabNode,
    observer: LabNode,
    nodes: Vec<LabNode>,
}

/// Two public nodes and one node per site (each behind a port-restricted
/// cone with a short UDP timeout), all connected.
fn setup(sites: usize, bin: &Path) -> Setup {
    let presets = vec![NatPreset::PortRestrictedCone; sites];
    let lab = Lab::build(2, &presets).unwrap();
    for i in 0..sites {
        lab.site(i).unwrap().set_udp_timeout(TIMEOUT_S).unwrap();
    }
    let tmp = TempDir::new("lifetime").unwrap();
    let (relay, ticket) =
        public::start_relay(&lab, bin, &tmp.join("relay"), PORT, DEADLINE).unwrap();
    let (observer, observer_peer) =
        public::start_observer(&lab, bin, &tmp.join("observer"), &ticket, PORT, DEADLINE).unwrap();
    let nodes: Vec<LabNode> = (0..sites)
        .map(|i| {
            let site = lab.site(i).unwrap();
            let dir = tmp.join(&format!("n{i}"));
            init(bin, &dir, Some(&ticket)).unwrap();
            let listen = format!("0.0.0.0:{PORT}");
            LabNode::start(
                bin,
                &site.host,
                &dir,
                &["--listen", &listen, "--peer", &observer_peer],
                DEADLINE,
            )
            .unwrap()
        })
        .collect();
    for node in &nodes {
        for public in [&relay, &observer] {
            node.wait_peer(&public.id, DEADLINE, |p| is_connected_via(p, "direct"))
                .unwrap_or_else(|| panic!("no connection to {}:\n{}", public.id, node.log()));
        }
    }
    Setup {
        _lab: lab,
        _tmp: tmp,
        relay,
        observer,
        nodes,
    }
}

/// Polls `netcheck --json` until the binding lifetime is measured and
/// quinn's keepalive for new connections has followed it.
fn wait_measured(node: &LabNode) -> Value {
    poll_until(DEADLINE, Duration::from_millis(250), || {
        let report = node.netcheck()?;
        let b = &report["binding_lifetime"];
        (b["state"] == "measured" && b["quic_keepalive_s"] == b["keepalive_s"]).then(|| b.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "binding lifetime never measured; netcheck:\n{}\nlog:\n{}",
            node.cli(&["netcheck", "--json"]).stdout,
            node.log()
        )
    })
}

/// The learned lifetime brackets the routers' timeout; the keepalive is
/// at most half of it.
fn assert_brackets(b: &Value, s: &Setup) {
    let timeout = f64::from(TIMEOUT_S);
    let lower = b["lower_s"].as_f64().unwrap();
    let upper = b["upper_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("no upper bound: {b}"));
    assert!(lower <= timeout && upper > timeout, "{b}");
    let keepalive = b["keepalive_s"].as_f64().unwrap();
    assert!(keepalive <= timeout / 2.0, "{b}");
    let observer = b["observer"].as_str().unwrap();
    assert!(
        observer == s.relay.id || observer == s.observer.id,
        "observed by {observer}, not a public node: {b}"
    );
}

#[test]
fn netcheck_reports_the_learned_lifetime() {
    lab_or_skip!("nat_lab_lifetime::netcheck_reports_the_learned_lifetime");
    let bin = relay_node_bin().unwrap();
    let s = setup(1, &bin);
    let node = &s.nodes[0];
    let b = wait_measured(node);
    assert_brackets(&b, &s);
    println!(
        "nat-lab lifetime: timeout {TIMEOUT_S} s -> lower {} s, upper {} s, keepalive {} s",
        b["lower_s"], b["upper_s"], b["keepalive_s"]
    );
    let status = node.status().unwrap();
    let from_status = &status["binding_lifetime"];
    assert_eq!(from_status["state"], "measured", "{status}");
    assert_eq!(from_status["lower_s"], b["lower_s"], "{status}");
    assert_eq!(from_status["upper_s"], b["upper_s"], "{status}");
    // The human forms say it too.
    let text = node.cli(&["netcheck"]).stdout;
    assert!(
        text.contains("lifetime  ") && text.contains("(measured)"),
        "{text}"
    );
    // The public nodes have nothing to measure.
    for public in [&s.relay, &s.observer] {
        let state = poll_until(DEADLINE, Duration::from_millis(250), || {
            let b = public.netcheck()?["binding_lifetime"].clone();
            (b["state"] == "not-needed").then_some(b)
        });
        assert!(
            state.is_some(),
            "{}",
            public.cli(&["netcheck", "--json"]).stdout
        );
    }
}

#[test]
fn direct_path_survives_idle_on_short_bindings() {
    lab_or_skip!("nat_lab_lifetime::direct_path_survives_idle_on_short_bindings");
    let bin = relay_node_bin().unwrap();
    let s = setup(2, &bin);
    let (na, nb) = (&s.nodes[0], &s.nodes[1]);
    for node in [na, nb] {
        let b = wait_measured(node);
        assert_brackets(&b, &s);
    }
    let ping = na.ping_until_direct(&nb.id, 40);
    assert!(
        ping.success(),
        "no direct path: {ping:?}\nA log:\n{}\nB log:\n{}",
        na.log(),
        nb.log()
    );
    for (node, other) in [(na, nb), (nb, na)] {
        node.wait_peer(&other.id, DEADLINE, |p| is_connected_via(p, "direct"))
            .unwrap_or_else(|| panic!("status never said direct:\n{}", node.log()));
    }
    let fallbacks = |n: &LabNode| n.status().unwrap()["traversal"]["relay_fallbacks"].clone();
    let before = [fallbacks(na), fallbacks(nb)];

    // The scenario itself: no traffic between the two for many binding
    // lifetimes (this sleep is what is tested, not a synchronization).
    std::thread::sleep(IDLE);

    for (node, other) in [(na, nb), (nb, na)] {
        let peer = node.peer(&other.id).unwrap();
        assert!(
            is_connected_via(&peer, "direct"),
            "the direct path did not survive {IDLE:?} idle: {peer}\nlog:\n{}",
            node.log()
        );
    }
    assert_eq!(
        [fallbacks(na), fallbacks(nb)],
        before,
        "a relay fallback happened"
    );
    let ping = na.cli(&["ping", &nb.id, "-c", "1"]);
    assert!(ping.success(), "{ping:?}");
    assert!(
        ping.stdout
            .contains(&format!("pong from {} via direct", nb.id)),
        "{ping:?}"
    );
}
