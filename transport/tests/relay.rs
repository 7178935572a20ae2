//! Relayed paths through a relay node, in-process on loopback: A and B are
//! connected only to relay R (they never learn each other's address), A
//! reaches B by NodeId alone, the relay forwards only ciphertext, refuses
//! strangers, enforces its rate limit, reports peers gone, and a relayed
//! connection fails over to another relay without breaking. Traversal is
//! off on the clients here, so relayed paths stay relayed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_proto::wire::relay::{RelayFrame, RelayFrameKind, RELAY_RECV, RELAY_SEND};
use relay_transport::{
    DialErrorKind, NodeId, PathKind, PeerEvent, PeerInfo, PeerState, RelayLimits, SecretKey,
    Transport,
};
use support::*;
use tokio::net::UdpSocket;

/// A recognizable plaintext that must never cross the relay in clear.
const MARKER: &[u8] = b"relay-must-never-see-this-plaintext";

async fn relay_node(limits: RelayLimits) -> Transport {
    init_tracing();
    let mut c = config(SecretKey::generate(), None);
    c.relay = true;
    c.relay_limits = limits;
    Transport::bind(c).await.unwrap()
}

/// Polls `cond` until it holds (overall test timeout).
async fn poll_until(mut cond: impl FnMut() -> bool) {
    within(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A relay client with traversal off: these tests pin relayed paths (on
/// loopback traversal would move them to direct at once; `upgrade.rs`
/// covers that).
async fn client() -> Transport {
    init_tracing();
    let mut c = config(SecretKey::generate(), None);
    c.traversal = false;
    Transport::bind(c).await.unwrap()
}

async fn connected_to_relay(client: &Transport, relay: &Transport) {
    within(client.connect(relay.node_id(), addr(relay)))
        .await
        .unwrap();
    let r = relay.node_id();
    poll_until(|| client.relays().contains(&r)).await;
}

fn info(t: &Transport, peer: NodeId) -> PeerInfo {
    t.peers()
        .into_iter()
        .find(|p| p.node_id == peer)
        .expect("peer listed")
}

/// A UDP shim in front of a target: the client talks to `front`, the
/// target sees `back`. Records every datagram both ways; `cut` stops all
/// forwarding.
struct Shim {
    front: SocketAddr,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    cut: Arc<AtomicBool>,
}

async fn shim(target: SocketAddr) -> Shim {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client = Arc::new(Mutex::new(None::<SocketAddr>));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let cut = Arc::new(AtomicBool::new(false));
    let s = Shim {
        front: front.local_addr().unwrap(),
        seen: seen.clone(),
        cut: cut.clone(),
    };
    {
        let (front, back, client, seen, cut) = (
            front.clone(),
            back.clone(),
            client.clone(),
            seen.clone(),
            cut.clone(),
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                if cut.load(Ordering::Relaxed) {
                    continue;
                }
                *client.lock().unwrap() = Some(from);
                seen.lock().unwrap().push(buf[..n].to_vec());
                let _ = back.send_to(&buf[..n], target).await;
            }
        });
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = back.recv_from(&mut buf).await {
            if cut.load(Ordering::Relaxed) || from != target {
                continue;
            }
            let dest = *client.lock().unwrap();
            if let Some(dest) = dest {
                seen.lock().unwrap().push(buf[..n].to_vec());
                let _ = front.send_to(&buf[..n], dest).await;
            }
        }
    });
    s
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn plaintext(len: usize) -> Vec<u8> {
    MARKER.iter().copied().cycle().take(len).collect()
}

#[tokio::test]
async fn reach_by_node_id_through_relay_carries_only_ciphertext() {
    let r = relay_node(RelayLimits::default()).await;
    let a = client().await;
    let b = client().await;
    let _a_seen = serve(&a);
    let _b_seen = serve(&b);
    let (a_id, b_id, r_id) = (a.node_id(), b.node_id(), r.node_id());

    // A reaches R only through a capturing shim; B directly.
    let a_shim = shim(addr(&r)).await;
    within(a.connect(r_id, a_shim.front)).await.unwrap();
    poll_until(|| a.relays().contains(&r_id)).await;
    connected_to_relay(&b, &r).await;

    let mut a_events = a.subscribe();
    within(a.connect_relayed(b_id)).await.unwrap();
    let data = plaintext(100_000);
    assert_eq!(echo(&a, b_id, &data).await, data);
    // And the other way.
    let back = plaintext(20_000);
    assert_eq!(echo(&b, a_id, &back).await, back);

    let ev = event(&mut a_events, is_connected(b_id)).await;
    assert!(
        matches!(
            ev,
            PeerEvent::Connected {
                node_id,
                path: PathKind::Relayed,
                remote_addr: None,
                ..
            } if node_id == b_id
        ),
        "{ev:?}"
    );
    let ab = info(&a, b_id);
    assert_eq!(ab.state, PeerState::Connected);
    assert_eq!(ab.path, PathKind::Relayed);
    assert_eq!(ab.via, Some(r_id));
    assert_eq!(ab.remote_addr, None, "A never learns B's address");
    assert_eq!(ab.path_changes, 0);
    let ba = info(&b, a_id);
    assert_eq!(ba.path, PathKind::Relayed);
    assert_eq!(ba.via, Some(r_id));
    assert_eq!(ba.remote_addr, None, "B never learns A's address");

    // Each side told the other the address it observes.
    poll_until(|| info(&r, a_id).observed_addr.is_some()).await;
    poll_until(|| a.observed_addrs().iter().any(|(id, _)| *id == r_id)).await;

    // The relay forwarded the inner packets, and only ever saw ciphertext.
    let status = r.relay_status();
    assert!(status.enabled);
    assert_eq!(status.stats.clients, 2);
    assert_eq!(status.stats.sessions, 1);
    assert!(status.stats.bytes_forwarded > 100_000);
    let seen = a_shim.seen.lock().unwrap().clone();
    let sends = seen.iter().filter(|d| d[0] == RELAY_SEND).count();
    let recvs = seen.iter().filter(|d| d[0] == RELAY_RECV).count();
    assert!(sends > 50 && recvs > 10, "{sends} sends, {recvs} recvs");
    for d in &seen {
        assert!(!contains(d, MARKER), "plaintext crossed the relay");
    }
    // The bytes really are there in clear on the application side.
    assert!(contains(&data, MARKER));

    for t in [&a, &b, &r] {
        t.close().await;
    }
}

#[tokio::test]
async fn relay_refuses_frames_from_non_clients() {
    let r = relay_node(RelayLimits::default()).await;
    let b = client().await;
    connected_to_relay(&b, &r).await;
    // A stranger (no authenticated connection, not registered) sends a
    // well-formed relay-send frame naming a real client.
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut frame = Vec::new();
    RelayFrame::new(RelayFrameKind::Send, &b.node_id(), &[0x40; 200])
        .emit_to_vec(&mut frame)
        .unwrap();
    for _ in 0..5 {
        stranger.send_to(&frame, addr(&r)).await.unwrap();
    }
    poll_until(|| r.relay_status().stats.dropped_unknown_source >= 5).await;
    let stats = r.relay_status().stats;
    assert_eq!(stats.packets_forwarded, 0);
    assert_eq!(stats.sessions, 0);
    // No reply went to the stranger.
    let mut buf = [0u8; 64];
    let reply =
        tokio::time::timeout(Duration::from_millis(200), stranger.recv_from(&mut buf)).await;
    assert!(reply.is_err(), "a stranger got a reply");
    // A node that does not relay refuses registration; nobody uses it.
    let plain = client().await;
    within(b.connect(plain.node_id(), addr(&plain)))
        .await
        .unwrap();
    assert_eq!(b.relays(), vec![r.node_id()]);
    assert!(!plain.relay_status().enabled);
    for t in [&b, &r, &plain] {
        t.close().await;
    }
}

#[tokio::test]
async fn rate_limit_drops_and_counts_without_breaking_the_connection() {
    let limits = RelayLimits {
        rate_bytes_per_sec: 400_000,
        burst_bytes: 40_000,
        ..RelayLimits::default()
    };
    let r = relay_node(limits).await;
    let a = client().await;
    let b = client().await;
    let _b_seen = serve(&b);
    connected_to_relay(&a, &r).await;
    connected_to_relay(&b, &r).await;
    within(a.connect_relayed(b.node_id())).await.unwrap();
    let data = pattern(400_000, 9);
    assert_eq!(echo(&a, b.node_id(), &data).await, data);
    let status = r.relay_status();
    assert_eq!(status.limits.rate_bytes_per_sec, 400_000);
    let s = status.stats;
    assert!(s.dropped_rate > 0, "{s:?}");
    assert_eq!(
        s.packets_dropped,
        s.dropped_rate
            + s.dropped_queue
            + s.dropped_malformed
            + s.dropped_unknown_source
            + s.dropped_unknown_dest
            + s.dropped_sessions
    );
    for t in [&a, &b, &r] {
        t.close().await;
    }
}

#[tokio::test]
async fn unknown_node_and_no_relay_fail_with_kinds() {
    let a = client().await;
    let stranger = SecretKey::generate().node_id();
    let e = within(a.connect_relayed(stranger)).await.unwrap_err();
    assert_eq!(e.kind, DialErrorKind::NoRelay, "{e}");
    assert!(a.peers().is_empty(), "a failed dial leaves nothing");

    let r = relay_node(RelayLimits::default()).await;
    connected_to_relay(&a, &r).await;
    let e = within(a.connect_relayed(stranger)).await.unwrap_err();
    assert_eq!(e.kind, DialErrorKind::PeerNotReachable, "{e}");
    assert_eq!(e.to_string().split(':').next(), Some("peer-not-reachable"));
    assert_eq!(a.peers().len(), 1, "only the relay");
    assert!(r.relay_status().stats.dropped_unknown_dest > 0);
    a.close().await;
    r.close().await;
}

#[tokio::test]
async fn peer_leaving_the_relay_is_reported_gone() {
    let r = relay_node(RelayLimits::default()).await;
    let a = client().await;
    let b = client().await;
    let _b_seen = serve(&b);
    connected_to_relay(&a, &r).await;
    connected_to_relay(&b, &r).await;
    within(a.connect_relayed(b.node_id())).await.unwrap();
    assert_eq!(echo(&a, b.node_id(), b"hi").await, b"hi");
    let mut a_events = a.subscribe();
    b.close().await;
    let b_id = b.node_id();
    let ev = event(&mut a_events, |ev| matches!(ev, PeerEvent::PeerGone { .. })).await;
    assert_eq!(
        ev,
        PeerEvent::PeerGone {
            node_id: b_id,
            relay: r.node_id(),
            reason: "left".into()
        }
    );
    poll_until(|| a.peers().iter().all(|p| p.node_id != b_id)).await;
    a.close().await;
    r.close().await;
}

#[tokio::test]
async fn peer_vanishing_behind_the_relay_closes_with_peer_gone() {
    // R notices B is gone by its (short) idle timeout; B's inner close
    // never reaches A, so A learns it only from the relay.
    init_tracing();
    let mut rc = config(SecretKey::generate(), None);
    rc.relay = true;
    rc.idle_timeout = Duration::from_secs(2);
    rc.keep_alive = Duration::from_millis(300);
    let r = Transport::bind(rc).await.unwrap();
    let a = client().await;
    let b = client().await;
    let _b_seen = serve(&b);
    connected_to_relay(&a, &r).await;
    let b_shim = shim(addr(&r)).await;
    within(b.connect(r.node_id(), b_shim.front)).await.unwrap();
    poll_until(|| b.relays().contains(&r.node_id())).await;
    within(a.connect_relayed(b.node_id())).await.unwrap();
    assert_eq!(echo(&a, b.node_id(), b"hello").await, b"hello");
    let mut a_events = a.subscribe();
    b_shim.cut.store(true, Ordering::Relaxed);
    let b_id = b.node_id();
    let ev = event(&mut a_events, is_disconnected(b_id)).await;
    let PeerEvent::Disconnected { reason, .. } = ev else {
        unreachable!()
    };
    assert!(reason.starts_with("peer-gone: "), "{reason}");
    for t in [&a, &b, &r] {
        t.close().await;
    }
}

#[tokio::test]
async fn relayed_connection_fails_over_to_another_relay() {
    let r1 = relay_node(RelayLimits::default()).await;
    let r2 = relay_node(RelayLimits::default()).await;
    let a = client().await;
    let b = client().await;
    let _b_seen = serve(&b);
    for client in [&a, &b] {
        connected_to_relay(client, &r1).await;
        connected_to_relay(client, &r2).await;
    }
    let b_id = b.node_id();
    within(a.connect_relayed(b_id)).await.unwrap();
    let a_id = a.node_id();
    poll_until(|| {
        b.peers()
            .iter()
            .any(|p| p.node_id == a_id && p.state == PeerState::Connected)
    })
    .await;
    let before = info(&a, b_id);
    let used = before.via.expect("relayed");
    let (gone, other) = if used == r1.node_id() {
        (&r1, &r2)
    } else {
        (&r2, &r1)
    };

    // A stream opened before the failover and finished after it.
    let (mut send, mut recv) = within(a.open_bi(b_id)).await.unwrap();
    let first = pattern(50_000, 1);
    within(send.write_all(&first)).await.unwrap();
    let mut a_events = a.subscribe();
    gone.close().await;
    let ev = event(
        &mut a_events,
        |ev| matches!(ev, PeerEvent::PathChanged { node_id, .. } if *node_id == b_id),
    )
    .await;
    assert_eq!(
        ev,
        PeerEvent::PathChanged {
            node_id: b_id,
            path: PathKind::Relayed,
            remote_addr: None
        }
    );
    let second = pattern(80_000, 2);
    within(send.write_all(&second)).await.unwrap();
    send.finish().unwrap();
    let got = within(recv.read_to_end(1 << 20)).await.unwrap();
    assert_eq!(got.len(), first.len() + second.len());
    assert_eq!(&got[..first.len()], &first[..]);
    assert_eq!(&got[first.len()..], &second[..]);

    let after = info(&a, b_id);
    assert_eq!(after.via, Some(other.node_id()));
    assert_eq!(after.since, before.since, "same connection");
    assert_eq!(after.path_changes, 1);
    assert_eq!(a.relays(), vec![other.node_id()]);
    assert_eq!(echo(&a, b_id, b"still here").await, b"still here");
    for t in [&a, &b, other] {
        t.close().await;
    }
}
