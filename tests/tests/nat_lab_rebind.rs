//! NAT rebinding in the lab: a reliable stream on a direct cone x cone
//! path carries on when a router forgets every mapping mid-transfer
//! (conntrack flushed, cone maps emptied), and loses and duplicates
//! nothing.
//!
//! Set-up as in `nat_lab_continuity`: the real `relay-node run --relay` on
//! a public host, and two `lab-stream` processes, A (sender, the dialing
//! side) behind a full-cone NAT and B (receiver) behind a port-restricted
//! cone NAT. The stream starts relayed and goes direct by itself. Once
//! both sides are direct and B has counted a few MiB, one router rebinds:
//!
//! - **B's** (`stream_survives_a_nat_rebinding`): B's next packets leave
//!   from a new outside port. A recognizes them by connection ID and
//!   follows B to the new address.
//! - **A's** (`stream_survives_a_rebinding_of_the_dialing_side`): A's next
//!   packets leave from a new port, which B's port-restricted NAT drops,
//!   and A's NAT forgot the old one. Keepalives declare the direct path
//!   lost, both sides carry on over the relay, and the next punch finds
//!   A's new address.
//!
//! B then counts a few more MiB, and the side that saw its peer rebind
//! must report it direct at a new address on the rebound site's IP (so the
//! rebinding really happened and was followed). A writes a few more MiB
//! and finishes.
//!
//! Asserted: B received every word exactly once and in order, the same
//! word count A sent; both sides end direct; no Noise handshake after the
//! first connection and the connection's `since` unchanged.
//!
//! Skipped with `SKIPPED: ...` unless root with `ip`, `nft` and
//! `conntrack`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
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
/// The sender's pace, so the run does not eat both cores.
const RATE_KIB: u64 = 2048;
/// MiB B counts after going direct before the rebinding.
const BEFORE_REBIND_MIB: u64 = 2;
/// MiB B counts after the rebinding before A finishes.
const AFTER_REBIND_MIB: u64 = 2;
/// MiB A writes after `finish`.
const FINISH_MIB: u64 = 2;

fn lab_stream_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lab-stream"))
}

fn u(summary: &Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {summary}"))
}

/// Which site's router rebinds mid-transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rebinds {
    /// B's (the dialed, port-restricted side).
    Dialed,
    /// A's (the dialing, full-cone side).
    Dialing,
}

/// The address in a `remote ADDR words N` line.
fn remote(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("remote ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn stream_survives_a_nat_rebinding() {
    lab_or_skip!("nat_lab_rebind::stream_survives_a_nat_rebinding", needs: "conntrack");
    run(Rebinds::Dialed);
}

#[test]
fn stream_survives_a_rebinding_of_the_dialing_side() {
    lab_or_skip!(
        "nat_lab_rebind::stream_survives_a_rebinding_of_the_dialing_side",
        needs: "conntrack"
    );
    run(Rebinds::Dialing);
}

fn run(rebinds: Rebinds) {
    let bin = relay_node_bin().unwrap();
    let lab = Lab::build(1, &[NatPreset::FullCone, NatPreset::PortRestrictedCone]).unwrap();
    let (site_a, site_b) = (lab.site(0).unwrap(), lab.site(1).unwrap());
    let tmp = TempDir::new("rebind").unwrap();

    let (_relay, ticket) =
        public::start_relay(&lab, &bin, &tmp.join("relay"), PORT, DEADLINE).unwrap();
    let ticket_file = tmp.join("ticket");
    std::fs::write(&ticket_file, ticket).unwrap();

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

    // Both go direct by themselves (cone x cone).
    a.wait_line(DEADLINE, |l| l.starts_with("path direct "))
        .unwrap_or_else(|e| panic!("A never went direct: {e}"));
    let b_direct = b
        .wait_line(DEADLINE, |l| l.starts_with("path direct "))
        .unwrap_or_else(|e| panic!("B never went direct: {e}"));
    let at_direct: u64 = b_direct
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let rebind_at = b
        .wait_progress(at_direct + BEFORE_REBIND_MIB * MIB_WORDS, DEADLINE)
        .unwrap();

    // One router forgets its mappings mid-transfer. The other side then
    // sees its peer at a new address.
    let (site, watcher, rebound_ip) = match rebinds {
        Rebinds::Dialed => (site_b, &mut a, site_b.public_addr()),
        Rebinds::Dialing => (site_a, &mut b, site_a.public_addr()),
    };
    let before: Vec<SocketAddr> = watcher.lines().iter().filter_map(|l| remote(l)).collect();
    assert!(!before.is_empty(), "no direct address before the rebinding");
    site.rebind().unwrap();
    b.wait_progress(rebind_at + AFTER_REBIND_MIB * MIB_WORDS, DEADLINE)
        .unwrap_or_else(|e| panic!("the stream stalled after the rebinding: {e}"));
    let watcher = match rebinds {
        Rebinds::Dialed => &mut a,
        Rebinds::Dialing => &mut b,
    };
    // The rebinding really happened, and the peer is direct at its new
    // address (followed, or punched again).
    let moved = watcher
        .wait_line(DEADLINE, |l| {
            remote(l).is_some_and(|r| !before.contains(&r))
        })
        .unwrap_or_else(|e| panic!("never direct at a new address: {e}"));
    let new = remote(&moved).unwrap();
    assert_eq!(new.ip(), IpAddr::V4(rebound_ip), "{moved}");
    a.command(&format!("finish {FINISH_MIB}")).unwrap();

    let sent = a.summary(DEADLINE).unwrap();
    let got = b.summary(DEADLINE).unwrap();
    let record = format!(
        "nat-lab rebind ({rebinds:?} side): fullcone x portrestricted: {} words, rebound at {rebind_at}, {before:?} -> {new}; A paths {}; B paths {}\n",
        u(&got, "words"),
        sent["paths"],
        got["paths"],
    );
    let _ = std::io::Write::write_all(&mut std::io::stdout(), record.as_bytes());

    // Every word exactly once and in order.
    assert_eq!(u(&got, "errors"), 0, "receiver: {got}");
    assert!(got["first_error"].is_null(), "{got}");
    assert_eq!(u(&got, "words"), u(&sent, "words"), "A: {sent}\nB: {got}");
    assert!(u(&got, "words") >= rebind_at + (AFTER_REBIND_MIB + FINISH_MIB) * MIB_WORDS);

    for (side, s) in [("A", &sent), ("B", &got)] {
        assert_eq!(s["final_path"], "direct", "{side}: {s}");
        // The same connection throughout: no new handshake.
        assert_eq!(
            u(s, "handshakes_at_end"),
            u(s, "handshakes_at_connect"),
            "{side}: a new handshake: {s}"
        );
        assert_eq!(s["same_since"], true, "{side}: {s}");
    }

    assert!(a.wait_exit(DEADLINE).unwrap().success(), "{}", a.log());
    assert!(b.wait_exit(DEADLINE).unwrap().success(), "{}", b.log());
}
