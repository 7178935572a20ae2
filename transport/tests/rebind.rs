//! NAT rebinding under the *dialing* side: the dialed peer's NAT gives its
//! flow a new external port mid-transfer (simulated by a forwarding shim
//! that swaps its outward socket and drops what still arrives at the old
//! one). The dialer recognizes the peer's packets by connection ID, quinn
//! accepts them, and the dialer moves its send path to the new address: the
//! transfer completes byte-exact on the same connection, `since` unchanged,
//! no new handshake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use relay_transport::{Incoming, PathKind, PeerEvent, PeerState, Transport};
use support::*;
use tokio::net::UdpSocket;

/// A one-client NAT in front of `target`: the client talks to the current
/// outward socket; `rebind` replaces it with a new one (new port) and the
/// old one drops everything, like a flushed conntrack entry.
struct Nat {
    outward: Arc<Mutex<Arc<UdpSocket>>>,
    client: Arc<Mutex<Option<SocketAddr>>>,
    back: Arc<UdpSocket>,
    target: SocketAddr,
}

impl Nat {
    async fn new(target: SocketAddr) -> Self {
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let first = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let nat = Self {
            outward: Arc::new(Mutex::new(first.clone())),
            client: Arc::new(Mutex::new(None)),
            back: back.clone(),
            target,
        };
        nat.spawn_outward(first);
        let (outward, client) = (nat.outward.clone(), nat.client.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = back.recv_from(&mut buf).await {
                let dest = *client.lock().unwrap();
                let socket = outward.lock().unwrap().clone();
                if let (true, Some(dest)) = (from == target, dest) {
                    let _ = socket.send_to(&buf[..n], dest).await;
                }
            }
        });
        nat
    }

    fn spawn_outward(&self, socket: Arc<UdpSocket>) {
        let (outward, client, back, target) = (
            self.outward.clone(),
            self.client.clone(),
            self.back.clone(),
            self.target,
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if !Arc::ptr_eq(&outward.lock().unwrap(), &socket) {
                    continue; // the binding is gone
                }
                *client.lock().unwrap() = Some(from);
                let _ = back.send_to(&buf[..n], target).await;
            }
        });
    }

    fn addr(&self) -> SocketAddr {
        self.outward.lock().unwrap().local_addr().unwrap()
    }

    async fn rebind(&self) -> SocketAddr {
        let new = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        *self.outward.lock().unwrap() = new.clone();
        self.spawn_outward(new.clone());
        new.local_addr().unwrap()
    }
}

/// Echoes every bi stream chunk by chunk, as it arrives.
fn stream_echo(t: &Transport) {
    let t = t.clone();
    tokio::spawn(async move {
        while let Some(incoming) = t.accept().await {
            if let Incoming::Bi {
                mut send, mut recv, ..
            } = incoming
            {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Some(n) = recv.read(&mut buf).await.unwrap() {
                        send.write_all(&buf[..n]).await.unwrap();
                    }
                    send.finish().unwrap();
                    let _ = send.stopped().await;
                });
            }
        }
    });
}

#[tokio::test]
async fn dialer_follows_a_rebinding_mid_transfer() {
    let a = transport(None).await;
    let b = transport(None).await;
    stream_echo(&b);
    let mut a_events = a.subscribe();
    let b_id = b.node_id();
    let nat = Nat::new(addr(&b)).await;
    let old = nat.addr();

    within(a.connect(b_id, old)).await.unwrap();
    event(&mut a_events, is_connected(b_id)).await;
    let before = a.peers()[0].clone();
    assert_eq!(before.remote_addr, Some(old));
    let handshakes = |t: &Transport| t.noise_stats().handshakes.load(Ordering::Relaxed);
    let (a_hs, b_hs) = (handshakes(&a), handshakes(&b));

    let data = pattern(600_000, 9);
    let (first, rest) = data.split_at(200_000);
    let (mut send, mut recv) = within(a.open_bi(b_id)).await.unwrap();
    let mut echoed = vec![0u8; 100_000];
    within(async {
        send.write_all(first).await.unwrap();
        recv.read_exact(&mut echoed).await.unwrap();
    })
    .await;

    // The NAT in front of B rebinds mid-transfer.
    let new = nat.rebind().await;
    assert_ne!(new, old);
    let rest = rest.to_vec();
    let writer = tokio::spawn(async move {
        send.write_all(&rest).await.unwrap();
        send.finish().unwrap();
        send
    });
    let tail = within(recv.read_to_end(1 << 21)).await.unwrap();
    let _send = within(writer).await.unwrap();
    echoed.extend_from_slice(&tail);
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "echo differs");

    // A followed B to its new address on the same connection.
    let ev = event(
        &mut a_events,
        |ev| matches!(ev, PeerEvent::PathChanged { remote_addr: Some(r), .. } if *r == new),
    )
    .await;
    assert_eq!(
        ev,
        PeerEvent::PathChanged {
            node_id: b_id,
            path: PathKind::Direct,
            remote_addr: Some(new),
        }
    );
    let after = a.peers();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].state, PeerState::Connected);
    assert_eq!(after[0].remote_addr, Some(new));
    assert_eq!(after[0].since, before.since);
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
    // And traffic keeps flowing there.
    let more = pattern(50_000, 10);
    let (mut send, mut recv) = within(a.open_bi(b_id)).await.unwrap();
    let echoed = within(async {
        send.write_all(&more).await.unwrap();
        send.finish().unwrap();
        recv.read_to_end(1 << 20).await.unwrap()
    })
    .await;
    assert_eq!(echoed, more);

    a.close().await;
    b.close().await;
}
