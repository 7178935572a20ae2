#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use relay_proto::SecretKey;

fn node(n: u8) -> NodeId {
    SecretKey::from_bytes(&[n; 32]).node_id()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 9], port))
}

const S: fn(u64) -> Duration = Duration::from_secs;

/// Every attempt due at `now`, with `ready` for every peer.
fn attempts(p: &mut PeerPolicy, now: Instant, ready: Readiness) -> Vec<Attempt> {
    std::iter::from_fn(|| p.poll_attempt(now, |_| ready)).collect()
}

#[test]
fn the_dialer_asks_at_once_the_acceptor_later() {
    let (t0, relay) = (Instant::now(), node(9));
    let mut p = PeerPolicy::default();
    p.handle_connected(t0, node(1), true, true, true);
    p.handle_connected(t0, node(2), true, false, true);
    assert_eq!(
        attempts(&mut p, t0, Readiness::Via(relay)),
        vec![Attempt {
            peer: node(1),
            relay
        }]
    );
    assert_eq!(p.poll_timeout(), Some(t0 + S(2)));
    assert!(attempts(
        &mut p,
        t0 + Duration::from_millis(1999),
        Readiness::Via(relay)
    )
    .is_empty());
    let due = attempts(&mut p, t0 + S(2), Readiness::Via(relay));
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].peer, node(2));
    // Nothing further planned until an outcome arrives.
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn direct_connections_plan_nothing() {
    let t0 = Instant::now();
    let mut p = PeerPolicy::default();
    p.handle_connected(t0, node(1), false, true, true);
    assert_eq!(p.poll_timeout(), None);
    assert!(attempts(&mut p, t0 + S(60), Readiness::Via(node(9))).is_empty());
}

#[test]
fn failed_punches_back_off_doubling_to_the_cap() {
    let t0 = Instant::now();
    let peer = node(1);
    let mut p = PeerPolicy::default();
    p.handle_connected(t0, peer, true, true, true);
    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 0..7 {
        assert_eq!(attempts(&mut p, now, Readiness::Via(node(9))).len(), 1);
        p.handle_punch_failed(now, &peer);
        let next = p.next_try(&peer).unwrap();
        delays.push((next - now).as_secs());
        now = next;
    }
    assert_eq!(delays, vec![15, 30, 60, 120, 240, 300, 300]);
    // An explicit request starts over, at once.
    p.handle_request(now, peer);
    assert_eq!(attempts(&mut p, now, Readiness::Via(node(9))).len(), 1);
    p.handle_punch_failed(now, &peer);
    assert_eq!(p.next_try(&peer), Some(now + S(15)));
}

#[test]
fn a_refused_attempt_backs_off_too() {
    let t0 = Instant::now();
    let mut p = PeerPolicy::default();
    p.handle_connected(t0, node(1), true, true, true);
    assert_eq!(attempts(&mut p, t0, Readiness::Via(node(9))).len(), 1);
    p.handle_attempt_refused(t0, &node(1));
    assert_eq!(p.next_try(&node(1)), Some(t0 + S(15)));
}

#[test]
fn busy_peers_are_checked_again_and_unrelayed_ones_dropped() {
    let t0 = Instant::now();
    let mut p = PeerPolicy::default();
    p.handle_connected(t0, node(1), true, true, true);
    p.handle_connected(t0, node(2), true, true, true);
    let ready = |peer: &NodeId| {
        if *peer == node(1) {
            Readiness::Busy
        } else {
            Readiness::NotRelayed
        }
    };
    assert_eq!(p.poll_attempt(t0, ready), None);
    assert_eq!(p.next_try(&node(1)), Some(t0 + S(1)));
    assert_eq!(p.next_try(&node(2)), None);
    // Busy no longer: it goes at the recheck.
    let a = p.poll_attempt(t0 + S(1), |_| Readiness::Via(node(9)));
    assert_eq!(a.map(|a| a.peer), Some(node(1)));
}

#[test]
fn a_punched_path_is_taken_only_from_a_relay_or_an_earlier_punch() {
    let (relay, peer) = (node(9), node(1));
    let t0 = Instant::now();
    let mut p = PeerPolicy::default();
    p.handle_connected(t0, peer, true, true, true);
    assert_eq!(
        p.handle_direct_found(&peer, addr(1), PeerPath::Relayed(relay)),
        DirectMove::Move
    );
    p.handle_moved_direct(&peer, addr(1));
    assert_eq!(
        p.handle_direct_found(&peer, addr(1), PeerPath::Direct(addr(1))),
        DirectMove::Stay
    );
    // The peer moved: a new punch replaces our earlier one.
    assert_eq!(
        p.handle_direct_found(&peer, addr(2), PeerPath::Direct(addr(1))),
        DirectMove::Move
    );
    // Dialed by address: that path stays.
    let other = node(2);
    p.handle_connected(t0, other, false, true, true);
    assert_eq!(
        p.handle_direct_found(&other, addr(3), PeerPath::Direct(addr(4))),
        DirectMove::Forget
    );
    assert_eq!(
        p.handle_direct_found(&other, addr(3), PeerPath::None),
        DirectMove::Forget
    );
}

#[test]
fn a_lost_path_falls_back_to_its_relay_then_any_other() {
    let (r1, r2, peer) = (node(8), node(9), node(1));
    let t0 = Instant::now();
    let mut p = PeerPolicy::default();
    p.handle_connected(t0, peer, true, true, true);
    p.handle_direct_found(&peer, addr(1), PeerPath::Relayed(r2));
    p.handle_moved_direct(&peer, addr(1));
    let direct = PeerPath::Direct(addr(1));
    assert_eq!(
        p.handle_direct_lost(&peer, addr(1), direct, &[r1, r2]),
        FallBack::Via(r2)
    );
    // Its relay is gone: the first other one, never the peer itself.
    assert_eq!(
        p.handle_direct_lost(&peer, addr(1), direct, &[peer, r1]),
        FallBack::Via(r1)
    );
    assert_eq!(
        p.handle_direct_lost(&peer, addr(1), direct, &[peer]),
        FallBack::NoRelay
    );
    // Moved elsewhere meanwhile: not ours to move.
    assert_eq!(
        p.handle_direct_lost(&peer, addr(1), PeerPath::Relayed(r1), &[r1]),
        FallBack::NotOnPath
    );
}

#[test]
fn after_a_fallback_the_next_punch_comes_soon() {
    let (relay, peer) = (node(9), node(1));
    let t0 = Instant::now();
    let mut p = PeerPolicy::default();
    p.handle_connected(t0, peer, true, true, true);
    attempts(&mut p, t0, Readiness::Via(relay));
    p.handle_punch_failed(t0, &peer);
    p.handle_punch_failed(t0, &peer);
    p.handle_direct_found(&peer, addr(1), PeerPath::Relayed(relay));
    assert_eq!(p.next_try(&peer), None);
    let lost = t0 + S(100);
    p.handle_fell_back(lost, &peer);
    // The path-changed event that follows keeps that plan.
    p.handle_connected(lost, peer, true, true, false);
    assert_eq!(p.next_try(&peer), Some(lost + S(2)));
    attempts(&mut p, lost + S(2), Readiness::Via(relay));
    p.handle_punch_failed(lost + S(2), &peer);
    assert_eq!(p.next_try(&peer), Some(lost + S(17)), "backoff restarted");
}

#[test]
fn relayed_packets_while_direct_raise_suspicion_once_per_increase() {
    let peer = node(1);
    let mut p = PeerPolicy::default();
    p.handle_connected(Instant::now(), peer, false, true, true);
    let relayed = |n| Traffic {
        direct_rx: None,
        relayed_while_direct: Some(n),
    };
    p.handle_traffic(&peer, relayed(0));
    assert_eq!(p.poll_action(), None);
    p.handle_traffic(&peer, relayed(3));
    assert_eq!(p.poll_action(), Some(PolicyAction::SuspectDirect { peer }));
    p.handle_traffic(&peer, relayed(3));
    assert_eq!(p.poll_action(), None);
    p.handle_traffic(&peer, relayed(4));
    assert_eq!(p.poll_action(), Some(PolicyAction::SuspectDirect { peer }));
}

#[test]
fn direct_traffic_reports_activity() {
    let peer = node(1);
    let mut p = PeerPolicy::default();
    p.handle_connected(Instant::now(), peer, false, true, true);
    let rx = |n| Traffic {
        direct_rx: Some(n),
        relayed_while_direct: None,
    };
    p.handle_traffic(&peer, rx(5));
    assert_eq!(p.poll_action(), Some(PolicyAction::PathActive { peer }));
    p.handle_traffic(&peer, rx(5));
    assert_eq!(p.poll_action(), None);
    // Unknown peers are ignored.
    p.handle_traffic(&node(2), rx(9));
    assert_eq!(p.poll_action(), None);
}

#[test]
fn a_disconnected_peer_is_forgotten() {
    let t0 = Instant::now();
    let mut p = PeerPolicy::default();
    p.handle_connected(t0, node(1), true, true, true);
    p.handle_disconnected(&node(1));
    assert_eq!(p.poll_timeout(), None);
    assert_eq!(p.peers().count(), 0);
    p.handle_punch_failed(t0, &node(1));
    assert_eq!(p.next_try(&node(1)), None);
}
