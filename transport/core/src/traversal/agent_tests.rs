//! Unit tests of the agent's input handling: authentication, replies,
//! request retries and message hygiene. Whole punches run in
//! `tests/traversal_sim.rs`.

use super::*;
use relay_proto::wire::probe::TX_LEN;
use relay_proto::wire::traversal::Introduction;
use relay_proto::SecretKey;

const KEY: [u8; 32] = [42; 32];

fn id(n: u8) -> NodeId {
    SecretKey::from_bytes(&[n; 32]).node_id()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn core(n: u8) -> Traversal {
    Traversal::new(id(n), TraversalConfig::default(), [n; 32])
}

fn connect(core: &mut Traversal, now: Instant, peer: NodeId, observed: Option<SocketAddr>) {
    core.handle_connection(
        now,
        peer,
        ConnectionInfo {
            probe_key: KEY,
            observed,
            rtt: Duration::from_millis(80),
        },
    );
}

fn drain(core: &mut Traversal) -> Vec<TraversalTransmit> {
    std::iter::from_fn(|| core.poll_transmit()).collect()
}

fn probe_from(sender: NodeId, key: &[u8; 32], kind: ProbeKind) -> [u8; PROBE_LEN] {
    flagged_probe(sender, key, kind, 0)
}

fn flagged_probe(sender: NodeId, key: &[u8; 32], kind: ProbeKind, flags: u8) -> [u8; PROBE_LEN] {
    let frame = ProbeFrame {
        kind,
        flags,
        tx: [1; TX_LEN],
        sender: *sender.as_bytes(),
        addr: sa("203.0.113.1:1000"),
        tag: [0; TAG_LEN],
    };
    ProbeKey::new(key).seal(&frame).unwrap()
}

#[test]
fn invalid_probes_are_dropped_without_reply_or_state() {
    let now = Instant::now();
    let mut a = core(1);
    connect(&mut a, now, id(2), None);
    drain(&mut a);
    let src = sa("203.0.113.9:9999");

    let wrong_key = probe_from(id(2), &[7; 32], ProbeKind::Probe);
    let unknown_sender = probe_from(id(3), &KEY, ProbeKind::Probe);
    let reflected = probe_from(id(1), &KEY, ProbeKind::Probe);
    let good = probe_from(id(2), &KEY, ProbeKind::Probe);
    let mut bad_flags = good;
    bad_flags[1] = 0x80;
    let inputs: [&[u8]; 5] = [
        &wrong_key,
        &unknown_sender,
        &reflected,
        &good[..40],
        &bad_flags,
    ];
    for data in inputs {
        assert!(a.handle_frame(now, src, data));
    }
    assert_eq!(a.stats().probes_invalid, 5);
    assert_eq!(a.stats().probes_received, 0);
    assert!(drain(&mut a).is_empty());
    assert!(!a.is_punching(&id(2)));
    // Not a traversal frame at all: left for someone else.
    assert!(!a.handle_frame(now, src, &[0x01, 0, 0]));
    assert!(!a.handle_frame(now, src, &[]));
}

#[test]
fn valid_probe_is_answered_at_its_source_never_larger() {
    let now = Instant::now();
    let mut a = core(1);
    connect(&mut a, now, id(2), None);
    drain(&mut a);
    let src = sa("203.0.113.9:9999");
    let probe = flagged_probe(id(2), &KEY, ProbeKind::Probe, FLAG_KEEPALIVE);
    assert!(a.handle_frame(now, src, &probe));
    let out = drain(&mut a);
    assert_eq!(out.len(), 1);
    let TraversalTransmit::Frame { dst, data } = &out[0] else {
        panic!("{out:?}");
    };
    assert_eq!(*dst, src);
    assert!(data.len() <= probe.len());
    let bytes: [u8; PROBE_LEN] = data.as_slice().try_into().unwrap();
    assert!(ProbeKey::new(&KEY).verify(&bytes));
    let reply = ProbeFrame::parse(&bytes).unwrap();
    assert_eq!(reply.kind, ProbeKind::Reply);
    assert_eq!(reply.flags, FLAG_KEEPALIVE);
    assert_eq!(reply.tx, [1; TX_LEN]);
    assert_eq!(reply.addr, src, "the reply tells the prober what we saw");
    assert_eq!(reply.sender, *id(1).as_bytes());
    // A keepalive starts no session, and an unsolicited reply changes
    // nothing.
    assert!(!a.is_punching(&id(2)));
    let stray_reply = probe_from(id(2), &KEY, ProbeKind::Reply);
    assert!(a.handle_frame(now, src, &stray_reply));
    assert!(drain(&mut a).is_empty());
    assert_eq!(a.direct_path(&id(2)), None);
}

#[test]
fn silent_introducer_yields_peer_not_reachable_after_retries() {
    let t0 = Instant::now();
    let mut a = core(1);
    connect(&mut a, t0, id(2), None);
    connect(&mut a, t0, id(3), Some(sa("198.51.100.3:7000")));
    drain(&mut a);
    a.request_direct(t0, id(2), Some(id(3))).unwrap();
    // A second request while one is pending is a no-op.
    a.request_direct(t0, id(2), Some(id(3))).unwrap();
    let mut requests = Vec::new();
    let mut failed = None;
    for _ in 0..20 {
        requests.extend(drain(&mut a).into_iter().filter_map(|t| match t {
            TraversalTransmit::Control {
                to,
                msg: TraversalMsg::ReachRequest { req, target },
            } => Some((to, req, target)),
            _ => None,
        }));
        if let Some(event) = a.poll_event() {
            failed = Some(event);
            break;
        }
        let Some(t) = a.poll_timeout() else { break };
        a.handle_timeout(t);
    }
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| *r == (id(3), requests[0].1, id(2))));
    let Some(TraversalEvent::PunchFailed { peer, error, .. }) = failed else {
        panic!("{failed:?}");
    };
    assert_eq!(peer, id(2));
    assert_eq!(error.kind, TraversalErrorKind::PeerNotReachable);
    assert_eq!(a.stats().relay_fallbacks, 1);
    assert!(!a.is_punching(&id(2)));
}

fn introduction(requester: NodeId, peer: NodeId, req: u64) -> TraversalMsg {
    TraversalMsg::Introduce(Introduction {
        req,
        requester,
        peer,
        candidates: vec![sa("203.0.113.2:4000")],
        peer_nat: NatType::Cone,
        fire_in_ms: 10,
    })
}

#[test]
fn introductions_are_only_taken_from_peers_and_for_known_peers() {
    let now = Instant::now();
    let mut a = core(1);
    connect(&mut a, now, id(2), None);
    connect(&mut a, now, id(3), Some(sa("198.51.100.3:7000")));
    drain(&mut a);
    // From a node we have no connection to.
    a.handle_control(now, id(9), introduction(id(2), id(2), 1));
    // For a peer we hold no key for.
    a.handle_control(now, id(3), introduction(id(8), id(8), 1));
    // Claiming to answer our request when we made none.
    a.handle_control(now, id(3), introduction(id(1), id(2), 1));
    // Inconsistent: a third party as requester.
    a.handle_control(now, id(3), introduction(id(5), id(2), 1));
    assert!(!a.is_punching(&id(2)));
    assert_eq!(a.stats().punches_attempted, 0);
    // A proper one starts a session, once.
    a.handle_control(now, id(3), introduction(id(2), id(2), 1));
    a.handle_control(now, id(3), introduction(id(2), id(2), 1));
    assert!(a.is_punching(&id(2)));
    assert_eq!(a.stats().punches_attempted, 1);
    assert_eq!(a.peer_nat(&id(2)), Some(NatType::Cone));
}

#[test]
fn introducer_answers_both_sides_with_observed_addresses() {
    let now = Instant::now();
    let mut i = core(3);
    let (addr_a, addr_b) = (sa("203.0.113.1:40000"), sa("203.0.113.2:40000"));
    connect(&mut i, now, id(1), Some(addr_a));
    connect(&mut i, now, id(2), Some(addr_b));
    drain(&mut i);
    i.handle_control(
        now,
        id(1),
        TraversalMsg::ReachRequest {
            req: 5,
            target: id(2),
        },
    );
    let out = drain(&mut i);
    let intros: Vec<(NodeId, Introduction)> = out
        .into_iter()
        .filter_map(|t| match t {
            TraversalTransmit::Control {
                to,
                msg: TraversalMsg::Introduce(intro),
            } => Some((to, intro)),
            _ => None,
        })
        .collect();
    assert_eq!(intros.len(), 2);
    assert_eq!(intros[0].0, id(1));
    assert_eq!(intros[0].1.candidates, vec![addr_b]);
    assert_eq!(intros[1].0, id(2));
    assert_eq!(intros[1].1.candidates, vec![addr_a]);
    assert_eq!(i.stats().introductions, 1);

    // Asking to be introduced to ourselves or to the introducer is refused.
    i.handle_control(
        now,
        id(1),
        TraversalMsg::ReachRequest {
            req: 6,
            target: id(1),
        },
    );
    i.handle_control(
        now,
        id(1),
        TraversalMsg::ReachRequest {
            req: 7,
            target: id(3),
        },
    );
    let refused = drain(&mut i)
        .into_iter()
        .filter(|t| {
            matches!(
                t,
                TraversalTransmit::Control {
                    msg: TraversalMsg::Rejected {
                        reason: RejectReason::NotConnected,
                        ..
                    },
                    ..
                }
            )
        })
        .count();
    assert_eq!(refused, 2);
}

#[test]
fn disconnect_forgets_the_peer() {
    let now = Instant::now();
    let mut a = core(1);
    connect(&mut a, now, id(2), None);
    connect(&mut a, now, id(3), Some(sa("198.51.100.3:7000")));
    a.handle_observed_addr(
        now,
        id(3),
        sa("198.51.100.3:7000").ip(),
        sa("203.0.113.1:4000"),
        sa("10.0.0.2:5000"),
    );
    a.handle_control(now, id(3), introduction(id(2), id(2), 1));
    assert!(a.is_punching(&id(2)));
    a.handle_disconnect(now, &id(2));
    assert!(!a.is_punching(&id(2)));
    assert_eq!(a.why(&id(2)), None);
    a.handle_disconnect(now, &id(3));
    assert_eq!(a.observations().count(), 0);
    // Probes from a forgotten peer no longer authenticate.
    let probe = probe_from(id(2), &KEY, ProbeKind::Probe);
    assert!(a.handle_frame(now, sa("203.0.113.2:1"), &probe));
    assert_eq!(a.stats().probes_invalid, 1);
}

#[test]
fn a_replaced_connection_ends_the_punch_begun_on_the_old_one() {
    // Under loss a dial can complete twice: the peer accepted a first
    // connection the dialer gave up on, then the redial replaced it. A
    // punch begun on the first has spent its schedule; the introduction
    // for the new connection must start a fresh one.
    let now = Instant::now();
    let mut a = core(1);
    connect(&mut a, now, id(2), None);
    connect(&mut a, now, id(3), Some(sa("198.51.100.3:7000")));
    a.handle_control(now, id(3), introduction(id(2), id(2), 1));
    assert!(a.is_punching(&id(2)));
    // The same connection's facts again change nothing.
    let later = now + Duration::from_secs(3);
    connect(&mut a, later, id(2), None);
    assert!(a.is_punching(&id(2)));
    // A new connection (another key) does.
    a.handle_connection(
        later,
        id(2),
        ConnectionInfo {
            probe_key: [43; 32],
            observed: None,
            rtt: Duration::from_millis(80),
        },
    );
    assert!(!a.is_punching(&id(2)));
    a.handle_control(later, id(3), introduction(id(2), id(2), 2));
    assert!(a.is_punching(&id(2)));
    assert_eq!(a.stats().punches_attempted, 2);
    // Its probes carry the new key.
    let probe = probe_from(id(2), &[43; 32], ProbeKind::Probe);
    assert!(a.handle_frame(later, sa("203.0.113.2:4000"), &probe));
    assert_eq!(a.stats().probes_invalid, 0);
}

#[test]
fn a_probe_without_an_introduction_starts_a_session_once() {
    // Our half of the introduction may have been lost: the peer's
    // authenticated probe makes us punch back at its source.
    let now = Instant::now();
    let mut a = core(1);
    connect(&mut a, now, id(2), None);
    drain(&mut a);
    let src = sa("203.0.113.9:9999");
    assert!(a.handle_frame(now, src, &probe_from(id(2), &KEY, ProbeKind::Probe)));
    assert!(a.is_punching(&id(2)));
    let frames: Vec<(SocketAddr, u8)> = drain(&mut a)
        .into_iter()
        .filter_map(|t| match t {
            TraversalTransmit::Frame { dst, data } => Some((dst, data[0])),
            TraversalTransmit::Control { .. } | TraversalTransmit::PortFrame { .. } => None,
        })
        .collect();
    assert_eq!(
        frames,
        [
            (src, relay_proto::wire::probe::PROBE_REPLY),
            (src, relay_proto::wire::probe::PROBE)
        ]
    );
    assert_eq!(a.stats().punches_attempted, 1);
    // More probes join the same session.
    a.handle_frame(now, src, &probe_from(id(2), &KEY, ProbeKind::Probe));
    assert_eq!(a.stats().punches_attempted, 1);
}

fn controls(out: &[TraversalTransmit]) -> Vec<(NodeId, TraversalMsg)> {
    out.iter()
        .filter_map(|t| match t {
            TraversalTransmit::Control { to, msg } => Some((*to, msg.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn port_mapping_is_published_and_introduced_on_the_observed_ip_only() {
    let now = Instant::now();
    let (a, b) = (id(1), id(2));
    let mut intro = core(9);
    let mut core_a = core(1);
    connect(&mut core_a, now, id(9), None);
    connect(&mut core_a, now, b, None);
    drain(&mut core_a);

    // A gets a mapping: every peer is told, once.
    let mapped = sa("198.51.101.10:40000");
    core_a.handle_port_mapping(now, Some(mapped));
    let sent = controls(&drain(&mut core_a));
    assert_eq!(sent.len(), 2);
    assert!(sent
        .iter()
        .all(|(_, m)| *m == TraversalMsg::PortMapped { addr: Some(mapped) }));
    core_a.handle_port_mapping(now, Some(mapped));
    assert!(drain(&mut core_a).is_empty());
    assert_eq!(core_a.port_mapping(), Some(mapped));
    // A peer that connects later hears it too.
    connect(&mut core_a, now, id(3), None);
    assert!(controls(&drain(&mut core_a))
        .contains(&(id(3), TraversalMsg::PortMapped { addr: Some(mapped) })));

    // The introducer sees A at the mapping's IP (another port: a symmetric
    // NAT's flow towards it) and B elsewhere.
    connect(&mut intro, now, a, Some(sa("198.51.101.10:31000")));
    connect(&mut intro, now, b, Some(sa("203.0.113.20:5000")));
    drain(&mut intro);
    intro.handle_control(now, a, TraversalMsg::PortMapped { addr: Some(mapped) });
    assert_eq!(intro.peer_mapping(&a), Some(mapped));
    // B claims a mapping on an IP the introducer never saw it at.
    intro.handle_control(
        now,
        b,
        TraversalMsg::PortMapped {
            addr: Some(sa("192.0.2.66:80")),
        },
    );
    intro.handle_control(now, b, TraversalMsg::ReachRequest { req: 5, target: a });
    let out = controls(&drain(&mut intro));
    let to_b = out
        .iter()
        .find_map(|(to, m)| match m {
            TraversalMsg::Introduce(i) if *to == b => Some(i.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(to_b.candidates, vec![sa("198.51.101.10:31000"), mapped]);
    let to_a = out
        .iter()
        .find_map(|(to, m)| match m {
            TraversalMsg::Introduce(i) if *to == a => Some(i.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(to_a.candidates, vec![sa("203.0.113.20:5000")]);

    // Holding a mapping, A starts its own probes one RTT (80 ms) after
    // the fire time, so B's probes reach the mapping first.
    core_a.handle_control(now, id(9), TraversalMsg::Introduce(to_a.clone()));
    let fire = now + Duration::from_millis(u64::from(to_a.fire_in_ms));
    core_a.handle_timeout(fire + Duration::from_millis(79));
    assert!(drain(&mut core_a)
        .iter()
        .all(|t| !matches!(t, TraversalTransmit::Frame { .. })));
    core_a.handle_timeout(fire + Duration::from_millis(80));
    assert!(drain(&mut core_a).iter().any(
        |t| matches!(t, TraversalTransmit::Frame { dst, .. } if *dst == sa("203.0.113.20:5000"))
    ));

    // The mapping goes away: peers are told.
    core_a.handle_port_mapping(now, None);
    assert!(controls(&drain(&mut core_a))
        .iter()
        .all(|(_, m)| *m == TraversalMsg::PortMapped { addr: None }));
}

#[test]
fn frames_on_a_probe_port_count_only_for_the_run_that_owns_it() {
    let now = Instant::now();
    let mut a = core(1);
    connect(&mut a, now, id(2), None);
    drain(&mut a);
    while a.poll_event().is_some() {}
    let src = sa("203.0.113.9:9999");
    let good = probe_from(id(2), &KEY, ProbeKind::Probe);
    // No birthday run owns port 5: even an authenticated probe on it is
    // refused, answered with nothing, and routes nothing through it.
    assert!(a.handle_port_frame(now, 5, src, &good));
    assert_eq!(a.stats().probes_invalid, 1);
    assert_eq!(a.stats().probes_received, 0);
    assert!(drain(&mut a).is_empty());
    assert_eq!(a.port_route(&src), None);
    assert!(a.poll_event().is_none());
    assert!(!a.is_punching(&id(2)));
    // Forged or foreign frames are refused the same way.
    let forged = probe_from(id(2), &[7; 32], ProbeKind::Probe);
    assert!(a.handle_port_frame(now, 5, src, &forged));
    assert_eq!(a.stats().probes_invalid, 2);
    // Not a traversal frame: left for someone else.
    assert!(!a.handle_port_frame(now, 5, src, &[0x01, 0]));
}

#[test]
fn introduction_before_the_connection_is_replayed_when_it_comes_up() {
    let t0 = Instant::now();
    let mut b = core(2);
    let introducer = id(3);
    connect(&mut b, t0, introducer, None);
    drain(&mut b);
    let intro = |req| {
        TraversalMsg::Introduce(Introduction {
            req,
            requester: id(1),
            peer: id(1),
            candidates: vec![sa("203.0.113.1:4000")],
            peer_nat: NatType::Cone,
            fire_in_ms: 100,
        })
    };
    // A asked I; I's answer reaches B before B's end of the A connection.
    b.handle_control(t0, introducer, intro(9));
    assert!(!b.is_punching(&id(1)));
    connect(&mut b, t0 + Duration::from_millis(50), id(1), None);
    assert!(
        b.is_punching(&id(1)),
        "the held introduction started a punch"
    );
    // It fires at the time it was given on arrival: 100 ms after t0.
    let fired = |b: &mut Traversal| {
        drain(b).iter().any(
            |t| matches!(t, TraversalTransmit::Frame { dst, .. } if *dst == sa("203.0.113.1:4000")),
        )
    };
    b.handle_timeout(t0 + Duration::from_millis(99));
    assert!(!fired(&mut b));
    b.handle_timeout(t0 + Duration::from_millis(100));
    assert!(fired(&mut b));

    // One that waited longer than the buffer keeps it is dropped.
    let mut c = core(4);
    connect(&mut c, t0, introducer, None);
    drain(&mut c);
    c.handle_control(t0, introducer, intro(10));
    connect(&mut c, t0 + crate::traversal::early::EARLY_TTL, id(1), None);
    assert!(!c.is_punching(&id(1)));
}

/// The observer side of the mapping check: offers only to a peer that
/// sees us at our own address, stays silent before its report, and the
/// alternate port answers only that peer's `BINDING` probes, no larger.
#[test]
fn mapping_checks_are_offered_and_answered_only_as_documented() {
    use super::super::mapcheck::ALT_PORT;
    let now = Instant::now();
    let me = sa("198.51.100.1:7000");
    let mut o = core(1);
    o.handle_alt_port(Some(7001));
    let (asker, nated) = (id(2), id(3));
    connect(&mut o, now, asker, Some(sa("203.0.113.2:40000")));
    connect(&mut o, now, nated, Some(sa("203.0.113.3:40000")));
    drain(&mut o);
    let ask = |tx: u8| TraversalMsg::MappingCheck { tx: [tx; TX_LEN] };

    // Before the asker reports where it sees us: no answer (it asks again).
    o.handle_control(now, asker, ask(1));
    assert!(!controls(&drain(&mut o))
        .iter()
        .any(|(_, m)| matches!(m, TraversalMsg::MappingPort { .. })));

    // It sees us at our own address: offered. The NATed one sees us
    // elsewhere (say, we are behind a NAT to it): refused.
    o.handle_observed_addr(now, asker, sa("203.0.113.2:40000").ip(), me, me);
    o.handle_observed_addr(
        now,
        nated,
        sa("203.0.113.3:40000").ip(),
        sa("192.0.2.1:9"),
        me,
    );
    drain(&mut o);
    o.handle_control(now, asker, ask(1));
    o.handle_control(now, nated, ask(2));
    let got = controls(&drain(&mut o));
    assert!(got.contains(&(
        asker,
        TraversalMsg::MappingPort {
            tx: [1; TX_LEN],
            port: Some(7001)
        }
    )));
    assert!(got.contains(&(
        nated,
        TraversalMsg::MappingPort {
            tx: [2; TX_LEN],
            port: None
        }
    )));
    assert_eq!(
        (o.stats().mapping_offers, o.stats().mapping_refused),
        (1, 1)
    );

    // The alternate port: the asker's BINDING probe is answered from it,
    // at its source, with the same size; anything else is dropped.
    let src = sa("203.0.113.2:40001");
    let probe = flagged_probe(asker, &KEY, ProbeKind::Probe, FLAG_BINDING);
    assert!(o.handle_port_frame(now, ALT_PORT, src, &probe));
    let out = drain(&mut o);
    let [TraversalTransmit::PortFrame { port, dst, data }] = &out[..] else {
        panic!("{out:?}");
    };
    assert_eq!((*port, *dst, data.len()), (ALT_PORT, src, PROBE_LEN));
    let reply = ProbeFrame::parse(data[..].try_into().unwrap()).unwrap();
    assert_eq!((reply.kind, reply.addr), (ProbeKind::Reply, src));
    for data in [
        flagged_probe(nated, &KEY, ProbeKind::Probe, FLAG_BINDING),
        flagged_probe(asker, &KEY, ProbeKind::Probe, 0),
        flagged_probe(asker, &KEY, ProbeKind::Reply, FLAG_BINDING),
        flagged_probe(asker, &[9; 32], ProbeKind::Probe, FLAG_BINDING),
    ] {
        let before = o.stats().probes_invalid;
        assert!(o.handle_port_frame(now, ALT_PORT, src, &data));
        assert_eq!(o.stats().probes_invalid, before + 1);
        assert!(drain(&mut o).is_empty());
    }
    // The offer lapses after 5 s.
    let later = now + Duration::from_secs(5);
    assert!(o.handle_port_frame(later, ALT_PORT, src, &probe));
    let answers = |out: &[TraversalTransmit]| {
        out.iter()
            .filter(|t| matches!(t, TraversalTransmit::PortFrame { port, .. } if *port == ALT_PORT))
            .count()
    };
    assert_eq!(answers(&drain(&mut o)), 0);

    // Over budget (4 offers, one back per 30 s): no answer at all.
    let offers = |out: &[TraversalTransmit]| {
        controls(out)
            .into_iter()
            .filter(|(_, m)| matches!(m, TraversalMsg::MappingPort { .. }))
            .count()
    };
    for tx in 10..13 {
        o.handle_control(later, asker, ask(tx));
    }
    assert_eq!(offers(&drain(&mut o)), 3);
    o.handle_control(later, asker, ask(20));
    assert_eq!(offers(&drain(&mut o)), 0);
}

/// The driver reads a peer's control messages and its connection events
/// from two queues, so a message can reach the core before the connection
/// it came on. A node announces its port mapping once, on connect: were
/// that announcement dropped, the introducer would never hand the mapped
/// candidate out, and every punch towards the node (the lab's symmetric
/// NAT with PCP) would probe only the symmetric flow's port. Held and
/// replayed when the connection comes up, it is handed out.
#[test]
fn control_messages_before_the_connection_are_replayed_when_it_comes_up() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let (a, b) = (id(1), id(2));
    let mapped = sa("198.51.101.10:7420");
    let a_seen = sa("198.51.101.10:31000");
    let mut intro = core(3);
    intro.handle_control(
        t0,
        a,
        TraversalMsg::NatInfo {
            nat: NatType::Symmetric,
        },
    );
    intro.handle_control(t0, a, TraversalMsg::PortMapped { addr: Some(mapped) });
    assert_eq!(intro.peer_mapping(&a), None, "no connection to A yet");
    connect(&mut intro, t0 + ms(10), a, Some(a_seen));
    assert_eq!(intro.peer_mapping(&a), Some(mapped));
    assert_eq!(intro.peer_nat(&a), Some(NatType::Symmetric));
    connect(&mut intro, t0 + ms(20), b, Some(sa("198.51.100.11:22742")));
    drain(&mut intro);
    intro.handle_control(
        t0 + ms(30),
        b,
        TraversalMsg::ReachRequest { req: 5, target: a },
    );
    let to_b = controls(&drain(&mut intro))
        .into_iter()
        .find_map(|(to, m)| match m {
            TraversalMsg::Introduce(i) if to == b => Some(i),
            _ => None,
        })
        .unwrap();
    assert_eq!(to_b.candidates, vec![a_seen, mapped]);
    assert_eq!(to_b.peer_nat, NatType::Symmetric);

    // Held for a short while only, and dropped with a connection that
    // closed before it was reported.
    let mut late = core(4);
    late.handle_control(t0, a, TraversalMsg::PortMapped { addr: Some(mapped) });
    connect(
        &mut late,
        t0 + crate::traversal::early::EARLY_TTL,
        a,
        Some(a_seen),
    );
    assert_eq!(late.peer_mapping(&a), None);
    let mut gone = core(5);
    gone.handle_control(t0, a, TraversalMsg::PortMapped { addr: Some(mapped) });
    gone.handle_disconnect(t0 + ms(5), &a);
    connect(&mut gone, t0 + ms(10), a, Some(a_seen));
    assert_eq!(gone.peer_mapping(&a), None);
}

/// A mapping that comes after a punch failed (PCP or UPnP answered late)
/// makes the node reachable where it was not: every peer whose punch
/// failed is punched again at once, not a retry period (15 s) later; the
/// request refreshes the introducer's copy of the mapping first.
#[test]
fn a_new_port_mapping_re_punches_the_peers_whose_punch_failed() {
    let t0 = Instant::now();
    let (b, c, relay) = (id(2), id(4), id(3));
    let mut a = core(1);
    connect(&mut a, t0, relay, Some(sa("203.0.113.10:7420")));
    connect(&mut a, t0, b, None);
    connect(&mut a, t0, c, None);
    a.request_direct(t0, b, Some(relay)).unwrap();
    let req = controls(&drain(&mut a))
        .into_iter()
        .find_map(|(_, m)| match m {
            TraversalMsg::ReachRequest { req, .. } => Some(req),
            _ => None,
        })
        .unwrap();
    a.handle_control(
        t0,
        relay,
        TraversalMsg::Rejected {
            req,
            target: b,
            reason: RejectReason::Budget,
        },
    );
    assert!(a.why(&b).is_some());
    std::iter::from_fn(|| a.poll_event()).for_each(drop);

    let mapped = sa("198.51.101.10:7420");
    a.handle_port_mapping(t0 + Duration::from_secs(1), Some(mapped));
    let repunch: Vec<NodeId> = std::iter::from_fn(|| a.poll_event())
        .filter_map(|e| match e {
            TraversalEvent::Repunch { peer } => Some(peer),
            _ => None,
        })
        .collect();
    assert_eq!(repunch, vec![b], "only the peer whose punch failed");
    // The same mapping again, or none: nothing new to try.
    a.handle_port_mapping(t0 + Duration::from_secs(2), Some(mapped));
    a.handle_port_mapping(t0 + Duration::from_secs(3), None);
    assert!(
        !std::iter::from_fn(|| a.poll_event()).any(|e| matches!(e, TraversalEvent::Repunch { .. }))
    );
    // The re-punch's request tells the introducer the mapping first.
    a.handle_port_mapping(t0 + Duration::from_secs(4), Some(mapped));
    drain(&mut a);
    a.request_direct(t0 + Duration::from_secs(4), b, Some(relay))
        .unwrap();
    let sent = controls(&drain(&mut a));
    let mapped_at = sent
        .iter()
        .position(|m| *m == (relay, TraversalMsg::PortMapped { addr: Some(mapped) }));
    let request_at = sent
        .iter()
        .position(|(_, m)| matches!(m, TraversalMsg::ReachRequest { .. }));
    assert!(mapped_at.unwrap() < request_at.unwrap(), "{sent:?}");
}
