//! Address changes in the simulated world (see `sim/`): a host on a direct
//! path moves behind another NAT mid-run. It must notice (local address
//! samples, as the driver takes them once a second), lose the dead direct
//! path quickly, re-learn its NAT from fresh observations, and go direct
//! again at its new address through a re-punch. Deterministic: simulated
//! time, seeded loss.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sim;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use relay_proto::NodeId;
use relay_transport::traversal::{NatType, RoamCause, TraversalConfig, TraversalEvent};
use sim::{HostId, Impairment, NatKind, World};

const BINDINGS: Duration = Duration::from_secs(600);
const STEP: Duration = Duration::from_millis(50);

struct Mesh {
    world: World,
    a: HostId,
    b: HostId,
    introducer: HostId,
    observer: HostId,
}

fn id(world: &World, h: HostId) -> NodeId {
    world.hosts[h].id
}

/// What the transport's driver does around the core, in the simulator:
/// a local-address sample every second (towards the introducer, our
/// relay); a peer's fallback to the relay makes the other side suspect
/// its direct path (relayed packets arrive while it is direct); a
/// `Repunch` asks the introducer. Runs until `until` (from the start).
fn drive(m: &mut Mesh, until: Duration, seen: &mut usize, next_sample: &mut Duration) {
    let relay_ip = m.world.hosts[m.introducer].local.ip();
    let iid = id(&m.world, m.introducer);
    while m.world.elapsed() < until {
        if m.world.elapsed() >= *next_sample {
            *next_sample += Duration::from_secs(1);
            let now = m.world.now();
            for h in [m.a, m.b] {
                let local: IpAddr = m.world.hosts[h].local.ip();
                m.world.hosts[h]
                    .core
                    .handle_local_addr(now, relay_ip, Some(local));
            }
        }
        m.world.run_for(STEP);
        let records: Vec<_> = m.world.records[*seen..].to_vec();
        *seen = m.world.records.len();
        for r in records {
            let now = m.world.now();
            match r.event {
                TraversalEvent::DirectPathLost { peer, .. } => {
                    // The host falls back to the relay: its packets reach
                    // the peer relayed, and the peer probes at once.
                    let other = m.world.host_of(&peer).unwrap();
                    let me = id(&m.world, r.host);
                    m.world.hosts[other].core.suspect_direct_path(now, &me);
                }
                TraversalEvent::Repunch { peer } => {
                    m.world.hosts[r.host]
                        .core
                        .request_direct(now, peer, Some(iid))
                        .unwrap();
                }
                _ => {}
            }
        }
    }
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
/// and B behind `b_kind`, each connected directly to both public hosts,
/// and A and B connected to each other through the relay.
fn mesh(seed: u64, a_kind: NatKind, b_kind: NatKind) -> Mesh {
    let config = TraversalConfig::default();
    let mut world = World::new(seed, Impairment::default());
    let introducer = world.add_public(config.clone());
    let observer = world.add_public(config.clone());
    let a = world.add_site(a_kind, BINDINGS, config.clone());
    let b = world.add_site(b_kind, BINDINGS, config);
    for site in [a, b] {
        world.connect_direct(site, introducer);
        world.connect_direct(site, observer);
    }
    world.connect_relayed(a, b);
    Mesh {
        world,
        a,
        b,
        introducer,
        observer,
    }
}

/// Runs the mesh for 1 s, then A asks the introducer to introduce it to B.
fn start_punch(m: &mut Mesh, seen: &mut usize, next_sample: &mut Duration) {
    drive(m, Duration::from_secs(1), seen, next_sample);
    let (bid, iid) = (id(&m.world, m.b), id(&m.world, m.introducer));
    let now = m.world.now();
    m.world.hosts[m.a]
        .core
        .request_direct(now, bid, Some(iid))
        .unwrap();
}

fn moves_and_goes_direct_again(seed: u64, from: NatKind, to: NatKind, b_kind: NatKind) {
    let label = format!("A {from:?} -> {to:?}, B {b_kind:?} (seed {seed})");
    let mut m = mesh(seed, from, b_kind);
    let (a, b, introducer) = (m.a, m.b, m.introducer);
    let (aid, bid) = (id(&m.world, a), id(&m.world, b));
    let (mut seen, mut next_sample) = (0, Duration::ZERO);
    start_punch(&mut m, &mut seen, &mut next_sample);
    drive(&mut m, Duration::from_secs(10), &mut seen, &mut next_sample);
    let old_b = m.world.hosts[a].core.direct_path(&bid).expect(&label);
    let old_a = m.world.hosts[b].core.direct_path(&aid).expect(&label);
    let old_reflex = m.world.hosts[a].core.nat().reflex_addr.expect(&label);
    assert_eq!(m.world.hosts[a].core.stats().address_changes, 0, "{label}");

    // A moves. Its relay and the observer see it at its new address once
    // its packets reach them (quinn migrates on their side), which the
    // model places 0.5 s and 3 s after the move.
    let moved_at = m.world.elapsed();
    let new_ip = m.world.move_host(a, to, BINDINGS);
    drive(
        &mut m,
        moved_at + Duration::from_millis(500),
        &mut seen,
        &mut next_sample,
    );
    m.world.connect_direct(a, introducer);
    drive(
        &mut m,
        moved_at + Duration::from_secs(3),
        &mut seen,
        &mut next_sample,
    );
    m.world.connect_direct(a, m.observer);
    drive(
        &mut m,
        moved_at + Duration::from_secs(20),
        &mut seen,
        &mut next_sample,
    );

    // A noticed, once.
    let changes: Vec<_> = m
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
    assert_eq!(change.new, m.world.hosts[a].local.ip(), "{label}");
    assert!(
        noticed - moved_at <= Duration::from_secs(3),
        "{label}: {noticed:?}"
    );
    assert_eq!(m.world.hosts[a].core.stats().address_changes, 1, "{label}");
    assert_eq!(m.world.hosts[b].core.stats().address_changes, 0, "{label}");

    // Both lost the old direct path soon after (A probes at once; B once
    // A's packets arrive relayed): relayed in between.
    let a_lost = lost_at(&m.world, a, moved_at).expect(&label);
    let b_lost = lost_at(&m.world, b, moved_at).expect(&label);
    assert!(
        a_lost - noticed <= Duration::from_secs(2),
        "{label}: {a_lost:?}"
    );
    assert!(
        b_lost - a_lost <= Duration::from_secs(2),
        "{label}: {b_lost:?}"
    );

    // The NAT is re-learned at the new address.
    let report = m.world.hosts[a].core.nat();
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
    let a_to_b = direct_found(&m.world, a, bid, a_lost).expect(&label);
    let b_to_a = direct_found(&m.world, b, aid, b_lost).expect(&label);
    assert_eq!(a_to_b, old_b, "{label}: B did not move");
    assert_ne!(b_to_a, old_a, "{label}");
    assert_eq!(b_to_a.ip(), IpAddr::V4(new_ip), "{label}");
    assert_eq!(m.world.hosts[a].core.direct_path(&bid), Some(a_to_b));
    assert_eq!(m.world.hosts[b].core.direct_path(&aid), Some(b_to_a));
    assert_eq!(m.world.reachable(a, a_to_b), Some(b), "{label}");
    assert_eq!(m.world.reachable(b, b_to_a), Some(a), "{label}");
    let again = m
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
    let (mut seen, mut next_sample) = (0, Duration::ZERO);
    let bid = id(&m.world, b);
    start_punch(&mut m, &mut seen, &mut next_sample);
    drive(&mut m, Duration::from_secs(10), &mut seen, &mut next_sample);
    let to_b = m.world.hosts[a].core.direct_path(&bid).unwrap();
    let sent = m.world.hosts[a].core.stats().probes_sent;
    m.world.move_host(a, NatKind::PortRestricted, BINDINGS);
    drive(&mut m, Duration::from_secs(20), &mut seen, &mut next_sample);
    let stats = m.world.hosts[a].core.stats();
    assert_eq!(stats.address_changes, 1);
    // It was probed (not left to the 20 s keepalive) and answered.
    assert!(stats.probes_sent > sent);
    assert_eq!(m.world.hosts[a].core.direct_path(&bid), Some(to_b));
    assert_eq!(m.world.reachable(a, to_b), Some(b));
    assert!(!m.world.records.iter().any(|r| r.host == a
        && matches!(
            r.event,
            TraversalEvent::DirectPathLost { .. } | TraversalEvent::Repunch { .. }
        )));
}

#[test]
fn a_host_that_does_not_move_reports_no_change() {
    let mut m = mesh(5, NatKind::PortRestricted, NatKind::PortRestricted);
    let (a, b, introducer) = (m.a, m.b, m.introducer);
    let (mut seen, mut next_sample) = (0, Duration::ZERO);
    let bid = id(&m.world, b);
    start_punch(&mut m, &mut seen, &mut next_sample);
    // Re-observations of the same address (a reconnect) change nothing.
    drive(&mut m, Duration::from_secs(30), &mut seen, &mut next_sample);
    m.world.connect_direct(a, introducer);
    drive(&mut m, Duration::from_secs(60), &mut seen, &mut next_sample);
    assert_eq!(m.world.hosts[a].core.stats().address_changes, 0);
    assert!(m.world.hosts[a].core.direct_path(&bid).is_some());
    assert!(!m.world.records.iter().any(|r| matches!(
        r.event,
        TraversalEvent::DirectPathLost { .. } | TraversalEvent::Repunch { .. }
    )));
}
