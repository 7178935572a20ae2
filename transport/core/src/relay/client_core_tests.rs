#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use relay_proto::SecretKey;

fn node(n: u8) -> NodeId {
    SecretKey::from_bytes(&[n; 32]).node_id()
}

fn limits() -> RelayLimitsMsg {
    RelayLimitsMsg {
        rate_bytes_per_sec: 1_000,
        burst_bytes: 2_000,
        queue_packets: 8,
        queue_bytes: 10_000,
        max_packet: 1_400,
    }
}

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

#[test]
fn an_offer_registers_at_once_and_repeats_back_off() {
    let (t0, r) = (Instant::now(), node(1));
    let mut c = RelayClientCore::default();
    assert!(c.handle_offer(t0, r, false));
    assert!(c.pending());
    // The relay repeats its offer every 250 ms or so while unconfirmed.
    let mut sent = vec![0u64];
    for ms in (250..=20_000).step_by(250) {
        if c.handle_offer(t0 + MS(ms), r, false) {
            sent.push(ms);
        }
    }
    assert_eq!(sent, vec![0, 1_000, 3_000, 7_000, 15_000]);
    assert!(c.registered().is_empty());
    assert!(c.handle_registered(t0 + S(20), r, limits()));
    assert!(!c.pending());
    assert_eq!(c.registered(), vec![r]);
    assert_eq!(c.limits(&r), Some(limits()));
    // Registered: offers are ignored, unless over a new connection.
    assert!(!c.handle_offer(t0 + S(21), r, false));
    assert!(c.handle_offer(t0 + S(21), r, true));
    assert!(!c.handle_registered(t0 + S(21), r, limits()), "not new");
}

#[test]
fn a_refusing_relay_is_left_alone_for_a_growing_while() {
    let (t0, r) = (Instant::now(), node(1));
    let mut c = RelayClientCore::default();
    assert!(c.handle_offer(t0, r, false));
    assert!(c.handle_refused(t0, r));
    assert!(!c.knows(&r));
    assert!(!c.handle_offer(t0 + S(9), r, false));
    assert!(c.handle_offer(t0 + S(10), r, false));
    // Refused again: twice as long.
    c.handle_refused(t0 + S(10), r);
    assert!(!c.handle_offer(t0 + S(29), r, false));
    assert!(c.handle_offer(t0 + S(30), r, false));
    // A confirmation clears the record.
    c.handle_registered(t0 + S(30), r, limits());
    c.handle_lost(&r);
    assert!(c.handle_offer(t0 + S(31), r, false));
}

#[test]
fn paths_pick_the_first_registered_relay_not_excluded() {
    let t0 = Instant::now();
    let (r1, r2, peer) = (node(1), node(2), node(3));
    let mut c = RelayClientCore::default();
    assert_eq!(c.pick_for_dial(&peer), None);
    c.handle_offer(t0, r1, false);
    assert_eq!(c.pick_for_dial(&peer), None, "pending is not registered");
    c.handle_registered(t0, r2, limits());
    c.handle_registered(t0, r1, limits());
    let first = r1.min(r2);
    let second = r1.max(r2);
    assert_eq!(c.pick_for_dial(&peer), Some(first));
    // Never the peer itself.
    assert_eq!(c.pick_for_dial(&first), Some(second));
}

#[test]
fn a_lost_relay_fails_over_to_another() {
    let t0 = Instant::now();
    let (r1, r2) = (node(1), node(2));
    let mut c = RelayClientCore::default();
    assert_eq!(c.handle_lost(&r1), None, "not a relay of ours");
    c.handle_registered(t0, r1, limits());
    c.handle_registered(t0, r2, limits());
    assert_eq!(c.handle_lost(&r1), Some(Some(r2)));
    assert!(c.adopts(&r1));
    assert!(!c.adopts(&r2));
    assert_eq!(c.handle_lost(&r2), Some(None), "none left: paths wait");
    assert!(c.registered().is_empty());
}

#[test]
fn a_gone_peer_moves_to_an_untried_relay_then_fails() {
    let t0 = Instant::now();
    let (r1, r2, peer, stranger) = (node(1), node(2), node(3), node(4));
    let mut c = RelayClientCore::default();
    c.handle_registered(t0, r1, limits());
    c.handle_registered(t0, r2, limits());
    assert_eq!(c.handle_peer_gone(stranger, &peer, true), None);
    assert_eq!(
        c.handle_peer_gone(r1, &peer, false),
        Some(GoneAction::Report)
    );
    // A dial: each relay that does not know the peer is tried once.
    c.start_dial(peer);
    assert_eq!(
        c.handle_peer_gone(r1, &peer, true),
        Some(GoneAction::MoveTo(r2))
    );
    assert_eq!(
        c.handle_peer_gone(r2, &peer, true),
        Some(GoneAction::FailDial)
    );
    c.end_dial(&peer);
    // A live connection: another relay, else close.
    assert_eq!(
        c.handle_peer_gone(r2, &peer, true),
        Some(GoneAction::MoveTo(r1))
    );
    c.handle_lost(&r1);
    assert_eq!(c.handle_peer_gone(r2, &peer, true), Some(GoneAction::Close));
}
