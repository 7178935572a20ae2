//! Continuity in the NAT lab: a reliable stream keeps running while its
//! path upgrades from relayed to direct, and loses and duplicates nothing.
//!
//! The relay is the real `relay-node run --relay`; the two endpoints are
//! `lab-stream` processes (the transport library embedded in a small
//! program), A behind a full-cone NAT and B behind a port-restricted cone
//! NAT. They know only the relay: A reaches B by NodeId through it
//! (`connect_relayed`) and streams numbered u64 words; B checks each
//! arrives exactly once and in order.
//!
//! So that the stream surely starts on the relay (a cone x cone punch would
//! otherwise win within a few round trips), A's router first drops all UDP
//! between the two sites: the first punch fails ("punch-failed: timeout")
//! while the words flow relayed. Then the block is lifted and A asks for a
//! direct path again (`Transport::request_direct`); the live connection
//! moves to the punched path mid-stream, and A writes a few more MiB over
//! it before finishing. Asserted: both sides saw the path go relayed ->
//! direct with words carried on each; B received every word once and in
//! order; the Noise handshake counters did not move after the first
//! connection to the peer and the connection's `since` stayed the same.
//!
//! Skipped with `SKIPPED: ...` unless root with `ip` and `nft`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use relay_tests::lab::public;
use relay_tests::lab::{Lab, NatPreset, StreamProc, StreamSetup};
use relay_tests::{lab_or_skip, relay_node_bin, TempDir};
use serde_json::Value;

/// Generous bound for anything a process must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);
const PORT: u16 = 7420;
const MIB_WORDS: u64 = (1 << 20) / 8;
/// The sender's pace, so the relayed phase does not eat both cores.
const RATE_KIB: u64 = 2048;
/// MiB written after both sides are direct.
const AFTER_DIRECT_MIB: u64 = 4;

fn lab_stream_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lab-stream"))
}

fn paths(summary: &Value) -> Vec<&str> {
    summary["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect()
}

fn u(summary: &Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {summary}"))
}

#[test]
fn stream_survives_relayed_to_direct_upgrade() {
    lab_or_skip!("nat_lab_continuity::stream_survives_relayed_to_direct_upgrade");
    let bin = relay_node_bin().unwrap();
    let lab = Lab::build(1, &[NatPreset::FullCone, NatPreset::PortRestrictedCone]).unwrap();
    let (site_a, site_b) = (lab.site(0).unwrap(), lab.site(1).unwrap());
    let tmp = TempDir::new("continuity").unwrap();

    let (_relay, ticket) =
        public::start_relay(&lab, &bin, &tmp.join("relay"), PORT, DEADLINE).unwrap();
    let ticket_file = tmp.join("ticket");
    std::fs::write(&ticket_file, ticket).unwrap();

    // No direct path between the sites until the stream runs relayed.
    site_a.block(site_b.wan_addr).unwrap();

    let listen = format!("0.0.0.0:{PORT}");
    let setup = StreamSetup {
        bin: lab_stream_bin(),
        ticket_file: &ticket_file,
        listen: &listen,
        timeout: DEADLINE,
    };
    let mut b = StreamProc::receiver(setup, &site_b.host, &tmp.join("b.stderr.log")).unwrap();
    let mut a = StreamProc::sender(
        setup,
        &site_a.host,
        &tmp.join("a.stderr.log"),
        &b.id,
        Some(RATE_KIB),
    )
    .unwrap();
    // The first `path` line is the path right after `connect_relayed`.
    let first = a.wait_line(DEADLINE, |l| l.starts_with("path ")).unwrap();
    assert_eq!(first, "path relayed words 0", "A did not start relayed");

    // The words flow over the relay while the first punch fails.
    b.wait_progress(MIB_WORDS, DEADLINE).unwrap();
    a.wait_line(DEADLINE, |l| l == "why punch-failed: timeout")
        .unwrap();
    assert!(
        site_a.blocked_drops().unwrap() > 0,
        "the block dropped no punch"
    );
    assert!(
        !a.lines().iter().any(|l| l.starts_with("path direct")),
        "went direct through the block: {:?}",
        a.lines()
    );

    // Lift the block and ask again: the live connection goes direct.
    site_a.unblock().unwrap();
    a.command("direct").unwrap();
    let a_direct = a
        .wait_line(DEADLINE, |l| l.starts_with("path direct "))
        .unwrap_or_else(|e| panic!("A never went direct: {e}"));
    let b_direct = b
        .wait_line(DEADLINE, |l| l.starts_with("path direct "))
        .unwrap_or_else(|e| panic!("B never went direct: {e}"));
    // Words written after B saw the switch surely travel direct.
    a.command(&format!("finish {AFTER_DIRECT_MIB}")).unwrap();

    let sent = a.summary(DEADLINE).unwrap();
    let got = b.summary(DEADLINE).unwrap();
    let record = format!(
        "nat-lab continuity: fullcone x portrestricted: {} words ({} MiB), {} relayed / {} direct at B; A: {a_direct}; B: {b_direct}\n",
        u(&got, "words"),
        u(&got, "words") / MIB_WORDS,
        u(&got, "relayed_words"),
        u(&got, "direct_words"),
    );
    let _ = std::io::Write::write_all(&mut std::io::stdout(), record.as_bytes());

    // Every word exactly once and in order.
    assert_eq!(u(&got, "errors"), 0, "receiver: {got}");
    assert!(got["first_error"].is_null(), "{got}");
    assert_eq!(u(&got, "words"), u(&sent, "words"), "A: {sent}\nB: {got}");
    assert!(u(&got, "words") >= MIB_WORDS * (1 + AFTER_DIRECT_MIB));

    for (side, s) in [("A", &sent), ("B", &got)] {
        // The path went relayed -> direct during the transfer, once.
        assert_eq!(paths(s), ["relayed", "direct"], "{side}: {s}");
        assert_eq!(s["final_path"], "direct", "{side}: {s}");
        assert!(u(s, "relayed_words") > 0, "{side}: nothing relayed: {s}");
        assert!(u(s, "direct_words") > 0, "{side}: nothing direct: {s}");
        assert!(u(s, "path_changes") >= 1, "{side}: {s}");
        // The same connection throughout: no new handshake.
        assert_eq!(
            u(s, "handshakes_at_end"),
            u(s, "handshakes_at_connect"),
            "{side}: a new handshake: {s}"
        );
        assert_eq!(s["same_since"], true, "{side}: {s}");
    }
    assert!(u(&sent, "direct_words") >= AFTER_DIRECT_MIB * MIB_WORDS);

    assert!(a.wait_exit(DEADLINE).unwrap().success(), "{}", a.log());
    assert!(b.wait_exit(DEADLINE).unwrap().success(), "{}", b.log());
}
