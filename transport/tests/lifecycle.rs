//! Two transports on loopback: connect, streams and datagrams both ways,
//! peer snapshots, events, and a clean close seen by the other side.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bytes::Bytes;
use relay_transport::{PathKind, PeerEvent, PeerState};
use support::*;

#[tokio::test]
async fn connect_exchange_and_close() {
    let a = transport(None).await;
    let b = transport(None).await;
    assert_eq!(addr(&a).ip().to_string(), "127.0.0.1");
    assert_ne!(addr(&a).port(), 0, "local_addrs reports the real port");
    let mut a_events = a.subscribe();
    let mut b_events = b.subscribe();
    let mut a_seen = serve(&a);
    let mut b_seen = serve(&b);

    within(a.connect(b.node_id(), addr(&b))).await.unwrap();
    let ev = event(&mut a_events, is_connected(b.node_id())).await;
    assert!(
        matches!(
            ev,
            PeerEvent::Connected {
                node_id,
                path: PathKind::Direct,
                remote_addr: Some(remote),
                ..
            } if node_id == b.node_id() && remote == addr(&b)
        ),
        "{ev:?}"
    );
    let ev = event(&mut b_events, is_connected(a.node_id())).await;
    assert!(
        matches!(
            ev,
            PeerEvent::Connected {
                node_id,
                path: PathKind::Direct,
                remote_addr: Some(remote),
                ..
            } if node_id == a.node_id() && remote == addr(&a)
        ),
        "{ev:?}"
    );
    // Connecting again is a no-op on the existing connection.
    within(a.connect(b.node_id(), addr(&b))).await.unwrap();

    // Bi stream echo, both directions.
    let data = pattern(100_000, 1);
    assert_eq!(echo(&a, b.node_id(), &data).await, data);
    assert_eq!(echo(&b, a.node_id(), b"hello a").await, b"hello a");

    // Uni streams.
    let mut send = a.open_uni(b.node_id()).await.unwrap();
    send.write_all(b"uni a->b").await.unwrap();
    send.finish().unwrap();
    match within(b_seen.recv()).await.unwrap() {
        Seen::Uni(from, data) => {
            assert_eq!(from, a.node_id());
            assert_eq!(data, b"uni a->b");
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut send = b.open_uni(a.node_id()).await.unwrap();
    send.write_all(b"uni b->a").await.unwrap();
    send.finish().unwrap();
    match within(a_seen.recv()).await.unwrap() {
        Seen::Uni(from, data) => {
            assert_eq!(from, b.node_id());
            assert_eq!(data, b"uni b->a");
        }
        other => panic!("unexpected {other:?}"),
    }

    // Datagrams.
    a.send_datagram(b.node_id(), Bytes::from_static(b"dg a->b"))
        .unwrap();
    match within(b_seen.recv()).await.unwrap() {
        Seen::Datagram(from, data) => {
            assert_eq!(from, a.node_id());
            assert_eq!(&data[..], b"dg a->b");
        }
        other => panic!("unexpected {other:?}"),
    }
    b.send_datagram(a.node_id(), Bytes::from_static(b"dg b->a"))
        .unwrap();
    match within(a_seen.recv()).await.unwrap() {
        Seen::Datagram(from, data) => {
            assert_eq!(from, b.node_id());
            assert_eq!(&data[..], b"dg b->a");
        }
        other => panic!("unexpected {other:?}"),
    }

    // Snapshots.
    let peers = a.peers();
    assert_eq!(peers.len(), 1);
    let p = &peers[0];
    assert_eq!(p.node_id, b.node_id());
    assert_eq!(p.state, PeerState::Connected);
    assert_eq!(p.path, PathKind::Direct);
    assert_eq!(p.remote_addr, Some(addr(&b)));
    assert!(p.outbound);
    assert!(p.rtt.is_some());
    assert!(p.since.is_some());
    assert!(p.bytes_sent > 100_000, "sent {}", p.bytes_sent);
    assert!(p.bytes_received > 0);
    let peers = b.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].node_id, a.node_id());
    assert_eq!(peers[0].remote_addr, Some(addr(&a)));
    assert!(!peers[0].outbound);
    assert!(peers[0].bytes_received > 100_000);

    // Close: the other side sees Disconnected and forgets the peer.
    a.close().await;
    let ev = event(&mut b_events, is_disconnected(a.node_id())).await;
    match ev {
        PeerEvent::Disconnected { reason, .. } => {
            assert!(reason.starts_with("peer-shutdown: "), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(b.peers().is_empty());
    assert!(
        b.open_bi(a.node_id()).await.is_err(),
        "no connection after close"
    );
    // a's own side reports the local close and its accept queue ends.
    let ev = event(&mut a_events, is_disconnected(b.node_id())).await;
    assert!(matches!(ev, PeerEvent::Disconnected { .. }));
    assert!(within(a.accept()).await.is_none());
    let err = a.connect(b.node_id(), addr(&b)).await.unwrap_err();
    assert_eq!(err.kind.as_str(), "endpoint-closed");
    b.close().await;
}

#[tokio::test]
async fn streams_to_unknown_peers_fail_cleanly() {
    let a = transport(None).await;
    let stranger = relay_transport::SecretKey::generate().node_id();
    let err = a.open_bi(stranger).await.unwrap_err();
    assert_eq!(err.kind(), "not-connected");
    let err = a.send_datagram(stranger, Bytes::new()).unwrap_err();
    assert_eq!(err.kind(), "not-connected");
    a.close().await;
}
