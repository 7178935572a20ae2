//! Unit tests of the relay core on simulated time.

use super::*;
use relay_proto::wire::relay::{RELAY_RECV, RELAY_SEND};
use relay_proto::SecretKey;

fn id() -> NodeId {
    SecretKey::generate().node_id()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

/// Each client's frame keys, derived from its NodeId (tests only).
fn keys(id: &NodeId) -> FrameKeys {
    let b = id.as_bytes();
    let mut send = [0u8; 16];
    let mut recv = [0u8; 16];
    send.copy_from_slice(&b[..16]);
    recv.copy_from_slice(&b[16..]);
    FrameKeys::from_bytes(send, recv)
}

thread_local! {
    static SEALERS: std::cell::RefCell<HashMap<NodeId, super::super::auth::Sealer>> =
        std::cell::RefCell::new(HashMap::new());
}

/// A relay-send frame from `from` to `dst`, sealed with `from`'s key and
/// its next sequence number.
fn send_frame(from: &NodeId, dst: &NodeId, len: usize) -> Vec<u8> {
    let packet = vec![0x40u8; len];
    let mut out = Vec::new();
    RelayFrame::new(RelayFrameKind::Send, dst, &packet)
        .emit_to_vec(&mut out)
        .unwrap();
    SEALERS.with(|s| {
        s.borrow_mut()
            .entry(*from)
            .or_insert_with(|| keys(from).client().unwrap().0)
            .seal(&mut out)
            .unwrap()
    });
    out
}

fn register(
    relay: &mut RelayServer,
    now: Instant,
    id: NodeId,
    at: SocketAddr,
) -> Result<(), RegisterError> {
    relay.register(now, id, at, keys(&id))
}

struct Setup {
    relay: RelayServer,
    now: Instant,
    a: NodeId,
    b: NodeId,
}

fn setup(limits: RelayLimits) -> Setup {
    let now = Instant::now();
    let mut relay = RelayServer::new(limits);
    let (a, b) = (id(), id());
    register(&mut relay, now, a, addr(1)).unwrap();
    register(&mut relay, now, b, addr(2)).unwrap();
    Setup { relay, now, a, b }
}

#[test]
fn forwards_between_registered_clients() {
    let Setup {
        mut relay,
        now,
        a,
        b,
    } = setup(RelayLimits::default());
    let frame = send_frame(&a, &b, 100);
    assert_eq!(relay.handle_frame(now, addr(1), &frame), Verdict::Queued);
    let t = relay.poll_transmit().unwrap();
    assert_eq!(t.dest, addr(2));
    assert_eq!(t.data[0], RELAY_RECV);
    assert_eq!(&t.data[1..33], a.as_bytes(), "source named");
    assert_eq!(
        &t.data[relay::HEADER_LEN..],
        &frame[relay::HEADER_LEN..],
        "inner packet untouched"
    );
    // Sealed for B: B's key opens it, A's does not.
    let out = RelayFrame::parse(&t.data).unwrap();
    keys(&b).client().unwrap().1.open(&out).unwrap();
    assert!(keys(&a).client().unwrap().1.open(&out).is_err());
    assert_eq!(relay.poll_transmit(), None);
    let s = relay.stats();
    assert_eq!(s.clients, 2);
    assert_eq!(s.sessions, 1);
    assert_eq!(s.sessions_total, 1);
    assert_eq!(s.bytes_forwarded, 100);
    assert_eq!(s.packets_forwarded, 1);
    assert_eq!(s.packets_dropped, 0);
    // The reverse direction is the same session.
    relay.handle_frame(now, addr(2), &send_frame(&b, &a, 10));
    assert_eq!(relay.poll_transmit().unwrap().dest, addr(1));
    assert_eq!(relay.stats().sessions, 1);
}

#[test]
fn drops_and_counts_frames_from_strangers_and_garbage() {
    let Setup {
        mut relay,
        now,
        a,
        b,
    } = setup(RelayLimits::default());
    let frame = send_frame(&a, &b, 50);
    assert_eq!(
        relay.handle_frame(now, addr(9), &frame),
        Verdict::Dropped(DropReason::UnknownSource)
    );
    assert_eq!(
        relay.handle_frame(now, addr(1), &[RELAY_SEND, 1, 2]),
        Verdict::Dropped(DropReason::Malformed)
    );
    let mut recv = frame.clone();
    recv[0] = RELAY_RECV;
    assert_eq!(
        relay.handle_frame(now, addr(1), &recv),
        Verdict::Dropped(DropReason::Malformed),
        "clients may not send relay-recv frames"
    );
    let s = relay.stats();
    assert_eq!(s.packets_dropped, 3);
    assert_eq!(s.dropped_unknown_source, 1);
    assert_eq!(s.dropped_malformed, 2);
    assert_eq!(relay.poll_transmit(), None);
    assert_eq!(relay.poll_control(), None, "strangers get no reply");
}

#[test]
fn unknown_destination_gets_a_budgeted_reply() {
    let limits = RelayLimits {
        gone_replies_per_sec: 2,
        ..RelayLimits::default()
    };
    let Setup {
        mut relay, now, a, ..
    } = setup(limits);
    let stranger = id();
    let frame = send_frame(&a, &stranger, 40);
    for _ in 0..5 {
        assert_eq!(
            relay.handle_frame(now, addr(1), &send_frame(&a, &stranger, 40)),
            Verdict::Dropped(DropReason::UnknownDest)
        );
    }
    let mut replies = Vec::new();
    while let Some(r) = relay.poll_control() {
        replies.push(r);
    }
    assert_eq!(replies.len(), 2, "reply budget");
    for (to, msg) in &replies {
        assert_eq!(*to, a);
        assert_eq!(
            *msg,
            ControlMsg::PeerGone {
                node_id: stranger,
                reason: GoneReason::Unknown
            }
        );
        assert!(msg.encode().unwrap().len() < frame.len(), "reply smaller");
    }
    // The budget refills with time.
    relay.handle_frame(
        now + Duration::from_secs(1),
        addr(1),
        &send_frame(&a, &stranger, 40),
    );
    assert!(relay.poll_control().is_some());
    // Sending to oneself is not a session.
    assert_eq!(
        relay.handle_frame(now, addr(1), &send_frame(&a, &a, 40)),
        Verdict::Dropped(DropReason::UnknownDest)
    );
    assert_eq!(relay.stats().dropped_unknown_dest, 7);
}

#[test]
fn rate_limit_drops_beyond_the_bucket_and_refills() {
    let limits = RelayLimits {
        rate_bytes_per_sec: 10_000,
        burst_bytes: 5_000,
        ..RelayLimits::default()
    };
    let Setup {
        mut relay,
        now,
        a,
        b,
    } = setup(limits);
    let len = 1000 - relay::HEADER_LEN; // 1000 bytes with the header
    let mut queued = 0;
    for _ in 0..20 {
        if relay.handle_frame(now, addr(1), &send_frame(&a, &b, len)) == Verdict::Queued {
            queued += 1;
        }
        while relay.poll_transmit().is_some() {}
    }
    assert_eq!(queued, 5, "burst of 5000 bytes");
    assert_eq!(relay.stats().dropped_rate, 15);
    // 0.5 s later: 5000 more bytes.
    let later = now + Duration::from_millis(500);
    let mut more = 0;
    for _ in 0..20 {
        if relay.handle_frame(later, addr(1), &send_frame(&a, &b, len)) == Verdict::Queued {
            more += 1;
        }
    }
    assert_eq!(more, 5);
    assert_eq!(relay.refill_time(10_000), Duration::from_secs(1));
}

#[test]
fn queue_is_bounded_per_client_and_drained_round_robin() {
    let limits = RelayLimits {
        queue_packets: 3,
        ..RelayLimits::default()
    };
    let now = Instant::now();
    let mut relay = RelayServer::new(limits);
    let (a, b, c) = (id(), id(), id());
    register(&mut relay, now, a, addr(1)).unwrap();
    register(&mut relay, now, b, addr(2)).unwrap();
    register(&mut relay, now, c, addr(3)).unwrap();
    for _ in 0..10 {
        relay.handle_frame(now, addr(1), &send_frame(&a, &c, 10));
    }
    assert_eq!(relay.queued(&a), 3);
    assert_eq!(relay.stats().dropped_queue, 7);
    relay.handle_frame(now, addr(2), &send_frame(&b, &c, 10));
    // A, B, A, A: B is not starved behind A's queue.
    let order: Vec<Vec<u8>> = std::iter::from_fn(|| relay.poll_transmit())
        .map(|t| t.data[1..33].to_vec())
        .collect();
    let (ra, rb) = (a.as_bytes().to_vec(), b.as_bytes().to_vec());
    assert_eq!(order, vec![ra.clone(), rb, ra.clone(), ra]);
    assert_eq!(relay.queued(&a), 0);
}

#[test]
fn leaving_client_tells_its_session_peers() {
    let now = Instant::now();
    let mut relay = RelayServer::new(RelayLimits::default());
    let (a, b, c) = (id(), id(), id());
    register(&mut relay, now, a, addr(1)).unwrap();
    register(&mut relay, now, b, addr(2)).unwrap();
    register(&mut relay, now, c, addr(3)).unwrap();
    relay.handle_frame(now, addr(1), &send_frame(&a, &b, 10));
    relay.handle_frame(now, addr(2), &send_frame(&b, &a, 10));
    // A frame for B still queued when B leaves is dropped, not sent to a
    // stale address.
    relay.handle_frame(now, addr(3), &send_frame(&c, &b, 10));
    assert_eq!(relay.stats().sessions, 2);
    while relay.poll_transmit().is_some() {}
    relay.handle_frame(now, addr(1), &send_frame(&a, &b, 10));
    assert!(relay.unregister(&b));
    assert!(!relay.unregister(&b));
    assert!(!relay.is_client(&b));
    assert_eq!(relay.poll_transmit(), None);
    let mut told: Vec<NodeId> = std::iter::from_fn(|| relay.poll_control())
        .map(|(to, msg)| {
            assert_eq!(
                msg,
                ControlMsg::PeerGone {
                    node_id: b,
                    reason: GoneReason::Left
                }
            );
            to
        })
        .collect();
    told.sort();
    let mut expected = vec![a, c];
    expected.sort();
    assert_eq!(told, expected);
    let s = relay.stats();
    assert_eq!(s.sessions, 0);
    assert_eq!(s.clients, 2);
    assert_eq!(s.dropped_unknown_dest, 1);
    // B's address is no longer a client's.
    assert_eq!(
        relay.handle_frame(now, addr(2), &send_frame(&b, &a, 10)),
        Verdict::Dropped(DropReason::UnknownSource)
    );
}

#[test]
fn limits_on_clients_and_sessions() {
    let limits = RelayLimits {
        max_clients: 2,
        max_sessions_per_client: 1,
        ..RelayLimits::default()
    };
    let Setup {
        mut relay,
        now,
        a,
        b,
    } = setup(limits);
    assert_eq!(
        register(&mut relay, now, id(), addr(3)),
        Err(RegisterError::Full)
    );
    assert_eq!(
        register(&mut relay, now, a, addr(5)),
        Ok(()),
        "re-register moves"
    );
    assert_eq!(
        relay.handle_frame(now, addr(1), &send_frame(&a, &b, 10)),
        Verdict::Dropped(DropReason::UnknownSource)
    );
    assert_eq!(
        relay.handle_frame(now, addr(5), &send_frame(&a, &b, 10)),
        Verdict::Queued
    );
    relay.unregister(&b);
    let c = id();
    register(&mut relay, now, c, addr(3)).unwrap();
    let d_frame = send_frame(&a, &c, 10);
    assert_eq!(relay.handle_frame(now, addr(5), &d_frame), Verdict::Queued);
    assert_eq!(relay.limits().to_msg().max_packet, MAX_PACKET as u32);
}

#[test]
fn forged_and_replayed_frames_are_dropped_counted_and_never_answered() {
    let Setup {
        mut relay,
        now,
        a,
        b,
    } = setup(RelayLimits::default());
    let good = send_frame(&a, &b, 200);
    // From A's address, but sealed with another key (an on-path attacker
    // spoofing A's address).
    let mallory = id();
    let forged = send_frame(&mallory, &b, 200);
    assert_eq!(
        relay.handle_frame(now, addr(1), &forged),
        Verdict::Dropped(DropReason::Unauthenticated)
    );
    // A frame naming an unknown peer, forged: no "unknown peer" reply.
    let forged_unknown = send_frame(&mallory, &id(), 200);
    assert_eq!(
        relay.handle_frame(now, addr(1), &forged_unknown),
        Verdict::Dropped(DropReason::Unauthenticated)
    );
    // A's genuine frame with its header changed.
    let mut tampered = good.clone();
    tampered[5] ^= 1;
    assert_eq!(
        relay.handle_frame(now, addr(1), &tampered),
        Verdict::Dropped(DropReason::Unauthenticated)
    );
    assert_eq!(relay.handle_frame(now, addr(1), &good), Verdict::Queued);
    assert_eq!(
        relay.handle_frame(now, addr(1), &good),
        Verdict::Dropped(DropReason::Unauthenticated),
        "a replay"
    );
    let s = relay.stats();
    assert_eq!(s.dropped_auth, 4);
    assert_eq!(s.packets_dropped, 4);
    assert_eq!(s.packets_forwarded, 0);
    assert_eq!(relay.poll_control(), None);
    assert!(relay.poll_transmit().is_some());
    assert_eq!(relay.poll_transmit(), None);
}

#[test]
fn re_registering_with_new_keys_switches_keys() {
    let Setup {
        mut relay,
        now,
        a,
        b,
    } = setup(RelayLimits::default());
    let new_keys = FrameKeys::from_bytes([7; 16], [8; 16]);
    relay.register(now, a, addr(1), new_keys.clone()).unwrap();
    assert_eq!(
        relay.handle_frame(now, addr(1), &send_frame(&a, &b, 10)),
        Verdict::Dropped(DropReason::Unauthenticated),
        "the old connection's key no longer works"
    );
    let (sealer, _) = new_keys.client().unwrap();
    let mut frame = Vec::new();
    RelayFrame::new(RelayFrameKind::Send, &b, &[0x40; 10])
        .emit_to_vec(&mut frame)
        .unwrap();
    sealer.seal(&mut frame).unwrap();
    assert_eq!(relay.handle_frame(now, addr(1), &frame), Verdict::Queued);
}

#[test]
fn the_session_log_counts_forwarded_frames_and_closes_when_a_client_leaves() {
    let Setup {
        mut relay,
        now,
        a,
        b,
    } = setup(RelayLimits::default());
    let later = now + Duration::from_secs(4);
    assert_eq!(
        relay.handle_frame(now, addr(1), &send_frame(&a, &b, 100)),
        Verdict::Queued
    );
    assert_eq!(
        relay.handle_frame(later, addr(2), &send_frame(&b, &a, 50)),
        Verdict::Queued
    );
    // Dropped frames are not counted.
    relay.handle_frame(later, addr(9), &send_frame(&a, &b, 70));
    while relay.poll_transmit().is_some() {}
    assert_eq!(relay.session_log().open(), 1);
    assert_eq!(relay.session_log().poll_closed(), None);
    relay.unregister(&a);
    let ev = relay.session_log().poll_closed().unwrap();
    assert_eq!((ev.a.min(ev.b), ev.a.max(ev.b)), (a.min(b), a.max(b)));
    assert!(ev.a < ev.b);
    assert_eq!((ev.bytes, ev.packets), (150, 2));
    assert_eq!(ev.duration, Duration::from_secs(4));
    assert_eq!(relay.session_log().poll_closed(), None);
}
