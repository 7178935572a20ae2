//! Address changes in the simulated world (see `sim/`): a host on a direct
//! path moves behind another NAT mid-run. It must notice (local address
//! samples, as the driver takes them once a second), lose the dead direct
//! path quickly, re-learn its NAT from fresh observations, and go direct
//! again at its new address through a re-punch. Deterministic: simulated
//! time, seeded loss.
//!
//! Around the cores runs the transport's own policy core, driven as the
//! transport's driver drives it (`sim::driver`): the relayed connection
//! asks for an introduction itself, a fallback to the relay is what makes
//! the peer suspect its direct path, a `Repunch` goes through the policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sim;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use relay_proto::NodeId;
use relay_transport::traversal::peer_policy::PeerPath;
use relay_transport::traversal::{NatType, RoamCause, TraversalConfig, TraversalEvent};
use sim::driver::Driven;
use sim::{HostId, Impairment, NatKind, World};

const BINDINGS: Duration = Duration::from_secs(600);

struct Mesh {
    net: Driven,
    a: HostId,
    b: HostId,
    introducer: HostId,
    observer: HostId,
}

fn id(world: &World, h: HostId) -> NodeId {
    world.hosts[h].id
}

fn direct_found(world: &World, host: HostId, peer: NodeId, after: Duration) -> Option<SocketAddr> {
    world
        .records
        .iter()
        .filter(|r| r.host == host && r.at >= after)
        .find_map(|r| match r.event {
            TraversalEvent::DirectPathFound { peer: p, addr } if p == peer => Some(addr),
            _ => None,
        })
}

fn lost_at(world: &World, host: HostId, after: Duration) -> Option<Duration> {
    world
        .records
        .iter()
        .find(|r| {
            r.host == host
                && r.at >= after
                && matches!(r.event, TraversalEvent::DirectPathLost { .. })
        })
        .map(|r| r.at)
}

/// An introducer and an observer on public addresses, A behind `a_kind`
/// and B behind `b_kind`, each connected directly to both public hosts
/// (A and B connect through the relay in [`start_punch`]).
fn mesh(seed: u64, a_kind: NatKind, b_kind: NatKind) -> Mesh {
    let config = TraversalConfig::default();
    let mut world = World::new(seed, Impairment::default());
    let introducer = world.add_public(config.clone());
    let observer = world.add_public(config.clone());
    let a = world.add_site(a_kind, BINDINGS, config.clone());
    let b = world.add_site(b_kind, BINDINGS, config);
    let mut net = Driven::new(world);
    for site in [a, b] {
        net.connect_direct(site, introducer);
        net.connect_direct(site, observer);
    }
    Mesh {
        net,
        a,
        b,
        introducer,
        observer,
    }
}

/// Runs the mesh for 1 s, then A dials B through the introducer, their
/// relay; A's policy asks for an introduction at once.
fn start_punch(m: &mut Mesh) {
    m.net.run_until(Duration::from_secs(1));
    m.net.connect_relayed_via(m.a, m.b, m.introducer);
}

fn moves_and_goes_direct_again(seed: u64, from: NatKind, to: NatKind, b_kind: NatKind) {
    let label = format!("A {from:?} -> {to:?}, B {b_kind:?} (seed {seed})");
    let mut m = mesh(seed, from, b_kind);
    let (a, b, introducer) = (m.a, m.b, m.introducer);
    let (aid, bid) = (id(&m.net.world, a), id(&m.net.world, b));
    start_punch(&mut m);
    m.net.run_until(Duration::from_secs(10));
    let old_b = m.net.world.hosts[a].core.direct_path(&bid).expect(&label);
    let old_a = m.net.world.hosts[b].core.direct_path(&aid).expect(&label);
    // The drivers moved both connections there.
    assert_eq!(m.net.path(a, &bid), PeerPath::Direct(old_b), "{label}");
    assert_eq!(m.net.path(b, &aid), PeerPath::Direct(old_a), "{label}");
    let old_reflex = m.net.world.hosts[a].core.nat().reflex_addr.expect(&label);
    assert_eq!(
        m.net.world.hosts[a].core.stats().address_changes,
        0,
        "{label}"
    );

    // A moves. Its relay and the observer see it at its new address once
    // its packets reach them (quinn migrates on their side), which the
    // model places 0.5 s and 3 s after the move.
    let moved_at = m.net.world.elapsed();
    let new_ip = m.net.world.move_host(a, to, BINDINGS);
    m.net.run_until(moved_at + Duration::from_millis(500));
    m.net.connect_direct(a, introducer);
    m.net.run_until(moved_at + Duration::from_secs(3));
    m.net.connect_direct(a, m.observer);
    m.net.run_until(moved_at + Duration::from_secs(20));

    // A noticed, once.
    let changes: Vec<_> = m
        .net
        .world
        .records
        .iter()
        .filter(|r| r.host == a)
        .filter_map(|r| match r.event {
            TraversalEvent::AddressChanged(c) => Some((r.at, c)),
            _ => None,
        })
        .collect();
    assert_eq!(changes.len(), 1, "{label}: {changes:?}");
    let (noticed, change) = changes[0];
    assert_eq!(change.cause, RoamCause::Local, "{label}");
    assert_eq!(change.new, m.net.world.hosts[a].local.ip(), "{label}");
    assert!(
        noticed - moved_at <= Duration::from_secs(3),
        "{label}: {noticed:?}"
    );
    assert_eq!(
        m.net.world.hosts[a].core.stats().address_changes,
        1,
        "{label}"
    );
    assert_eq!(
        m.net.world.hosts[b].core.stats().address_changes,
        0,
        "{label}"
    );

    // A lost the old direct path soon after it noticed; B loses it once
    // A's packets arrive relayed (read on its driver's next tick), unless
    // the re-punch A starts at once replaces it first. Relayed in
    // between.
    let a_lost = lost_at(&m.net.world, a, moved_at).expect(&label);
    assert!(
        a_lost - noticed <= Duration::from_secs(2),
        "{label}: {a_lost:?}"
    );
    let b_lost = lost_at(&m.net.world, b, moved_at);
    if let Some(b_lost) = b_lost {
        assert!(
            b_lost - a_lost <= Duration::from_secs(2),
            "{label}: {b_lost:?}"
        );
    }
    let b_lost = b_lost.unwrap_or(a_lost);

    // The NAT is re-learned at the new address.
    let report = m.net.world.hosts[a].core.nat();
    let reflex = report.reflex_addr.expect(&label);
    assert_eq!(reflex.ip(), IpAddr::V4(new_ip), "{label}");
    assert_ne!(reflex, old_reflex, "{label}");
    let expected = if to == NatKind::Symmetric {
        NatType::Symmetric
    } else {
        NatType::Cone
    };
    assert_eq!(report.nat, expected, "{label}");

    // Direct again, at A's new address, found after both lost the old one.
    let a_to_b = direct_found(&m.net.world, a, bid, a_lost).expect(&label);
    let b_to_a = direct_found(&m.net.world, b, aid, b_lost).expect(&label);
    assert_eq!(a_to_b, old_b, "{label}: B did not move");
    assert_ne!(b_to_a, old_a, "{label}");
    assert_eq!(b_to_a.ip(), IpAddr::V4(new_ip), "{label}");
    assert_eq!(m.net.world.hosts[a].core.direct_path(&bid), Some(a_to_b));
    assert_eq!(m.net.world.hosts[b].core.direct_path(&aid), Some(b_to_a));
    assert_eq!(m.net.path(a, &bid), PeerPath::Direct(a_to_b), "{label}");
    assert_eq!(m.net.path(b, &aid), PeerPath::Direct(b_to_a), "{label}");
    assert_eq!(m.net.world.reachable(a, a_to_b), Some(b), "{label}");
    assert_eq!(m.net.world.reachable(b, b_to_a), Some(a), "{label}");
    let again = m
        .net
        .world
        .records
        .iter()
        .find(|r| {
            r.host == a
                && r.at >= moved_at
                && matches!(r.event, TraversalEvent::DirectPathFound { .. })
        })
        .map(|r| r.at - moved_at)
        .unwrap();
    println!(
        "roam sim: {label}: noticed after {:?}, direct again after {again:?}",
        noticed - moved_at
    );
}

#[test]
fn a_host_moving_behind_another_nat_goes_relayed_then_direct_again() {
    moves_and_goes_direct_again(
        7,
        NatKind::PortRestricted,
        NatKind::PortRestricted,
        NatKind::PortRestricted,
    );
}

#[test]
fn moves_between_nat_kinds_across_seeds() {
    use NatKind::*;
    for seed in 20..26 {
        moves_and_goes_direct_again(seed, FullCone, PortRestricted, PortRestricted);
        moves_and_goes_direct_again(seed, PortRestricted, FullCone, AddressRestricted);
        moves_and_goes_direct_again(seed, AddressRestricted, PortRestricted, PortRestricted);
    }
}

#[test]
fn a_move_to_a_symmetric_nat_facing_a_port_restricted_peer() {
    // Needs birthday probing once A has re-learned that its new NAT is
    // symmetric.
    moves_and_goes_direct_again(
        9,
        NatKind::PortRestricted,
        NatKind::Symmetric,
        NatKind::PortRestricted,
    );
}

#[test]
fn a_direct_path_that_still_answers_is_kept() {
    // B's full cone lets A's probes from its new address in, and B
    // answers them there: A's direct path survives the move, nothing is
    // re-punched.
    let mut m = mesh(11, NatKind::PortRestricted, NatKind::FullCone);
    let (a, b) = (m.a, m.b);
    let bid = id(&m.net.world, b);
    start_punch(&mut m);
    m.net.run_until(Duration::from_secs(10));
    let to_b = m.net.world.hosts[a].core.direct_path(&bid).unwrap();
    let sent = m.net.world.hosts[a].core.stats().probes_sent;
    m.net.world.move_host(a, NatKind::PortRestricted, BINDINGS);
    m.net.run_until(Duration::from_secs(20));
    let stats = m.net.world.hosts[a].core.stats();
    assert_eq!(stats.address_changes, 1);
    // It was probed (not left to the 20 s keepalive) and answered.
    assert!(stats.probes_sent > sent);
    assert_eq!(m.net.world.hosts[a].core.direct_path(&bid), Some(to_b));
    assert_eq!(m.net.world.reachable(a, to_b), Some(b));
    assert!(!m.net.world.records.iter().any(|r| r.host == a
        && matches!(
            r.event,
            TraversalEvent::DirectPathLost { .. } | TraversalEvent::Repunch { .. }
        )));
}

#[test]
fn a_host_that_does_not_move_reports_no_change() {
    let mut m = mesh(5, NatKind::PortRestricted, NatKind::PortRestricted);
    let (a, b, introducer) = (m.a, m.b, m.introducer);
    let bid = id(&m.net.world, b);
    start_punch(&mut m);
    // Re-observations of the same address (a reconnect) change nothing.
    m.net.run_until(Duration::from_secs(30));
    m.net.connect_direct(a, introducer);
    m.net.run_until(Duration::from_secs(60));
    assert_eq!(m.net.world.hosts[a].core.stats().address_changes, 0);
    assert!(m.net.world.hosts[a].core.direct_path(&bid).is_some());
    assert!(!m.net.world.records.iter().any(|r| matches!(
        r.event,
        TraversalEvent::DirectPathLost { .. } | TraversalEvent::Repunch { .. }
    )));
}

#[test]
fn a_fallback_makes_the_peer_probe_its_path_and_both_stay_relayed() {
    // A moves from a port-restricted NAT to a symmetric one facing B's
    // symmetric NAT: no re-punch can work. B's keepalives alone would
    // notice late; A's fallback reaches B relayed, and B's policy has it
    // probe its direct path at once.
    let mut m = mesh(9, NatKind::PortRestricted, NatKind::Symmetric);
    let (a, b, introducer) = (m.a, m.b, m.introducer);
    let (aid, bid) = (id(&m.net.world, a), id(&m.net.world, b));
    let iid = id(&m.net.world, introducer);
    start_punch(&mut m);
    m.net.run_until(Duration::from_secs(15));
    let to_a = m.net.world.hosts[b].core.direct_path(&aid).unwrap();
    assert_eq!(m.net.path(b, &aid), PeerPath::Direct(to_a));
    let moved_at = m.net.world.elapsed();
    m.net.world.move_host(a, NatKind::Symmetric, BINDINGS);
    m.net.run_until(moved_at + Duration::from_millis(500));
    m.net.connect_direct(a, introducer);
    m.net.run_until(moved_at + Duration::from_secs(30));
    let a_lost = lost_at(&m.net.world, a, moved_at).unwrap();
    let b_lost = lost_at(&m.net.world, b, moved_at).unwrap();
    let keepalive = TraversalConfig::default().keepalive_interval;
    println!(
        "A lost after {:?}, B {:?} later",
        a_lost - moved_at,
        b_lost - a_lost
    );
    assert!(b_lost - a_lost <= Duration::from_secs(3), "{b_lost:?}");
    assert!(b_lost - a_lost < keepalive, "{b_lost:?} vs {keepalive:?}");
    // Both relayed again through their relay, retries planned.
    assert_eq!(m.net.path(a, &bid), PeerPath::Relayed(iid));
    assert_eq!(m.net.path(b, &aid), PeerPath::Relayed(iid));
    assert!(m.net.world.hosts[b].core.direct_path(&aid).is_none());
}
