//! Moving a live connection to another real path: the connection, its
//! streams and its keys carry on; quinn never notices (no new handshake,
//! same `since`), and a PathChanged event reports the move. The peer sees
//! our packets arrive from a new address and follows (quinn migration).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use relay_transport::socket::Path;
use relay_transport::{PathKind, PeerEvent, PeerState};
use support::*;
use tokio::net::UdpSocket;

/// A UDP relay on loopback: what reaches `front` goes to `target` from
/// `back`, and what `target` sends to `back` goes to the last client.
struct Forwarder {
    front: SocketAddr,
    back: SocketAddr,
    to_target: Arc<AtomicU64>,
    to_client: Arc<AtomicU64>,
}

async fn forwarder(target: SocketAddr) -> Forwarder {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client = Arc::new(Mutex::new(None::<SocketAddr>));
    let to_target = Arc::new(AtomicU64::new(0));
    let to_client = Arc::new(AtomicU64::new(0));
    let fwd = Forwarder {
        front: front.local_addr().unwrap(),
        back: back.local_addr().unwrap(),
        to_target: to_target.clone(),
        to_client: to_client.clone(),
    };
    {
        let (front, back, client) = (front.clone(), back.clone(), client.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client.lock().unwrap() = Some(from);
                if back.send_to(&buf[..n], target).await.is_ok() {
                    to_target.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = back.recv_from(&mut buf).await {
            let dest = *client.lock().unwrap();
            if let (true, Some(dest)) = (from == target, dest) {
                if front.send_to(&buf[..n], dest).await.is_ok() {
                    to_client.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    fwd
}

fn is_path_changed(ev: &PeerEvent) -> bool {
    matches!(ev, PeerEvent::PathChanged { .. })
}

#[tokio::test]
async fn live_connection_moves_to_a_new_path() {
    let a = transport(None).await;
    let b = transport(None).await;
    let _a_seen = serve(&a);
    let _b_seen = serve(&b);
    let mut a_events = a.subscribe();
    let mut b_events = b.subscribe();
    let (a_id, b_id) = (a.node_id(), b.node_id());

    within(a.connect(b_id, addr(&b))).await.unwrap();
    event(&mut a_events, is_connected(b_id)).await;
    event(&mut b_events, is_connected(a_id)).await;
    let data = pattern(50_000, 3);
    assert_eq!(echo(&a, b_id, &data).await, data);
    let before = a.peers()[0].clone();
    assert_eq!(before.remote_addr, Some(addr(&b)));
    let handshakes = |t: &relay_transport::Transport| {
        t.noise_stats()
            .handshakes
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let (a_hs, b_hs) = (handshakes(&a), handshakes(&b));

    // Move A's path to B through the forwarder.
    let fwd = forwarder(addr(&b)).await;
    a.set_path(b_id, Path::Direct(fwd.front)).unwrap();
    let ev = event(&mut a_events, is_path_changed).await;
    assert_eq!(
        ev,
        PeerEvent::PathChanged {
            node_id: b_id,
            path: PathKind::Direct,
            remote_addr: Some(fwd.front),
        }
    );

    // Streams keep working, and the traffic really takes the new path.
    let data = pattern(200_000, 4);
    assert_eq!(echo(&a, b_id, &data).await, data);
    assert!(fwd.to_target.load(Ordering::Relaxed) > 0);
    assert!(fwd.to_client.load(Ordering::Relaxed) > 0);

    // Same connection: no new handshake, `since` unchanged.
    let after = a.peers();
    assert_eq!(after.len(), 1);
    let after = &after[0];
    assert_eq!(after.state, PeerState::Connected);
    assert_eq!(after.path, PathKind::Direct);
    assert_eq!(after.remote_addr, Some(fwd.front));
    assert_eq!(after.since, before.since);
    assert_eq!(after.outbound, before.outbound);
    assert_eq!(handshakes(&a), a_hs);
    assert_eq!(handshakes(&b), b_hs);
    while let Ok(ev) = a_events.try_recv() {
        assert!(
            !matches!(
                ev,
                PeerEvent::Connected { .. } | PeerEvent::Disconnected { .. }
            ),
            "unexpected {ev:?}"
        );
    }

    // B saw A's packets arrive from the forwarder and followed them.
    let ev = event(&mut b_events, is_path_changed).await;
    assert_eq!(
        ev,
        PeerEvent::PathChanged {
            node_id: a_id,
            path: PathKind::Direct,
            remote_addr: Some(fwd.back),
        }
    );
    assert_eq!(b.peers()[0].remote_addr, Some(fwd.back));
    let data = pattern(30_000, 5);
    assert_eq!(echo(&b, a_id, &data).await, data);

    // Unknown peers cannot be moved.
    let stranger = relay_transport::SecretKey::generate().node_id();
    assert!(a.set_path(stranger, Path::Direct(fwd.front)).is_err());

    a.close().await;
    b.close().await;
}
