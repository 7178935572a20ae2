//! NAT rebinding mid-transfer, in process, through a forwarding shim that
//! stands for a NAT: A (the dialing side) sends to the shim's outward
//! socket, and the shim forwards to B from its inner socket.
//!
//! - **The dialed side's NAT rebinds** (`dialer_follows_a_rebinding_mid_transfer`):
//!   the shim swaps its outward socket, as a NAT in front of B giving B's
//!   flow a new external port. The dialer recognizes B's packets by
//!   connection ID, quinn accepts them, and A moves its send path to the
//!   new address.
//! - **The dialing side's NAT rebinds**
//!   (`acceptor_follows_a_rebinding_of_the_dialer`): the shim swaps its
//!   inner socket, as a NAT in front of A giving A's flow a new external
//!   port. B, the accepting side, sees A's packets from a new address;
//!   quinn validates the path and migrates, and the transport adopts the
//!   new address for A.
//!
//! Either way the transfer completes byte-exact on the same connection,
//! `since` unchanged, no new handshake, and the old socket drops whatever
//! still arrives at it, like a flushed conntrack entry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use relay_transport::{Incoming, NodeId, PathKind, PeerEvent, PeerState, Transport};
use support::*;
use tokio::net::UdpSocket;

type Slot = Arc<Mutex<Arc<UdpSocket>>>;

/// A one-client NAT between A (the client) and `target` (B). `outward`
/// faces A, `inner` faces B; either can be swapped for a new socket (new
/// port), after which the old one drops everything.
struct Nat {
    outward: Slot,
    inner: Slot,
    client: Arc<Mutex<Option<SocketAddr>>>,
    target: SocketAddr,
}

async fn socket() -> Arc<UdpSocket> {
    Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap())
}

impl Nat {
    async fn new(target: SocketAddr) -> Self {
        let (outward, inner) = (socket().await, socket().await);
        let nat = Self {
            outward: Arc::new(Mutex::new(outward.clone())),
            inner: Arc::new(Mutex::new(inner.clone())),
            client: Arc::new(Mutex::new(None)),
            target,
        };
        nat.spawn_outward(outward);
        nat.spawn_inner(inner);
        nat
    }

    /// A's packets: remember A's address, forward to B from `inner`.
    fn spawn_outward(&self, socket: Arc<UdpSocket>) {
        let (outward, inner, client, target) = (
            self.outward.clone(),
            self.inner.clone(),
            self.client.clone(),
            self.target,
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if !Arc::ptr_eq(&outward.lock().unwrap(), &socket) {
                    continue; // the binding is gone
                }
                *client.lock().unwrap() = Some(from);
                let via = inner.lock().unwrap().clone();
                let _ = via.send_to(&buf[..n], target).await;
            }
        });
    }

    /// B's packets: forward to A from `outward`.
    fn spawn_inner(&self, socket: Arc<UdpSocket>) {
        let (outward, inner, client, target) = (
            self.outward.clone(),
            self.inner.clone(),
            self.client.clone(),
            self.target,
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if !Arc::ptr_eq(&inner.lock().unwrap(), &socket) || from != target {
                    continue;
                }
                let dest = *client.lock().unwrap();
                let via = outward.lock().unwrap().clone();
                if let Some(dest) = dest {
                    let _ = via.send_to(&buf[..n], dest).await;
                }
            }
        });
    }

    /// Where A sends (B's address as A sees it).
    fn addr(&self) -> SocketAddr {
        self.outward.lock().unwrap().local_addr().unwrap()
    }

    /// Where B sees A's packets from.
    fn inner_addr(&self) -> SocketAddr {
        self.inner.lock().unwrap().local_addr().unwrap()
    }

    /// B's NAT rebinds: a new outward port.
    async fn rebind_outward(&self) -> SocketAddr {
        let new = socket().await;
        *self.outward.lock().unwrap() = new.clone();
        self.spawn_outward(new.clone());
        new.local_addr().unwrap()
    }

    /// A's NAT rebinds: a new inner port.
    async fn rebind_inner(&self) -> SocketAddr {
        let new = socket().await;
        *self.inner.lock().unwrap() = new.clone();
        self.spawn_inner(new.clone());
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

/// Streams 600 kB from `a` to B's echo; once 100 kB came back, `rebind`
/// runs (the shim takes a new port) and the rest goes across it. Asserts
/// the echo is byte-exact and returns the new address `rebind` gave.
async fn transfer_across_a_rebinding<F>(
    a: &Transport,
    b_id: NodeId,
    seed: u8,
    rebind: F,
) -> SocketAddr
where
    F: std::future::Future<Output = SocketAddr>,
{
    let data = pattern(600_000, seed);
    let (first, rest) = data.split_at(200_000);
    let (mut send, mut recv) = within(a.open_bi(b_id)).await.unwrap();
    let mut echoed = vec![0u8; 100_000];
    within(async {
        send.write_all(first).await.unwrap();
        recv.read_exact(&mut echoed).await.unwrap();
    })
    .await;

    let new = rebind.await;
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
    new
}

/// `watcher` (with `events` subscribed before the rebinding) moved its
/// path to `peer` onto `new`: a `PathChanged` event to there, the peer
/// table showing it, `since` as `before`, and no reconnect.
async fn assert_followed(
    watcher: &Transport,
    events: &mut tokio::sync::broadcast::Receiver<PeerEvent>,
    peer: NodeId,
    new: SocketAddr,
    before: &relay_transport::PeerInfo,
) {
    let ev = event(
        events,
        |ev| matches!(ev, PeerEvent::PathChanged { remote_addr: Some(r), .. } if *r == new),
    )
    .await;
    assert_eq!(
        ev,
        PeerEvent::PathChanged {
            node_id: peer,
            path: PathKind::Direct,
            remote_addr: Some(new),
        }
    );
    let after = watcher.peers();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].state, PeerState::Connected);
    assert_eq!(after[0].remote_addr, Some(new));
    assert_eq!(after[0].since, before.since);
    assert!(after[0].path_changes >= 1);
    no_reconnect(events);
}

/// A fresh 50 kB echo from `a` to `b_id` comes back whole.
async fn echo_more(a: &Transport, b_id: NodeId, seed: u8) {
    let more = pattern(50_000, seed);
    let (mut send, mut recv) = within(a.open_bi(b_id)).await.unwrap();
    let echoed = within(async {
        send.write_all(&more).await.unwrap();
        send.finish().unwrap();
        recv.read_to_end(1 << 20).await.unwrap()
    })
    .await;
    assert_eq!(echoed, more);
}

fn handshakes(t: &Transport) -> u64 {
    t.noise_stats().handshakes.load(Ordering::Relaxed)
}

/// No Connected or Disconnected event is left in `events` (the same
/// connection throughout).
fn no_reconnect(events: &mut tokio::sync::broadcast::Receiver<PeerEvent>) {
    while let Ok(ev) = events.try_recv() {
        assert!(
            !matches!(
                ev,
                PeerEvent::Connected { .. } | PeerEvent::Disconnected { .. }
            ),
            "unexpected {ev:?}"
        );
    }
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
    let (a_hs, b_hs) = (handshakes(&a), handshakes(&b));

    // The NAT in front of B rebinds mid-transfer.
    let new = transfer_across_a_rebinding(&a, b_id, 9, nat.rebind_outward()).await;
    assert_ne!(new, old);

    // A followed B to its new address on the same connection, and
    // traffic keeps flowing there.
    assert_followed(&a, &mut a_events, b_id, new, &before).await;
    assert_eq!(handshakes(&a), a_hs);
    assert_eq!(handshakes(&b), b_hs);
    echo_more(&a, b_id, 10).await;

    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn acceptor_follows_a_rebinding_of_the_dialer() {
    let a = transport(None).await;
    let b = transport(None).await;
    stream_echo(&b);
    let mut b_events = b.subscribe();
    let (a_id, b_id): (NodeId, NodeId) = (a.node_id(), b.node_id());
    let nat = Nat::new(addr(&b)).await;
    let old = nat.inner_addr();

    within(a.connect(b_id, nat.addr())).await.unwrap();
    event(&mut b_events, is_connected(a_id)).await;
    let before = b.peers()[0].clone();
    assert_eq!(before.remote_addr, Some(old));
    let (a_hs, b_hs) = (handshakes(&a), handshakes(&b));

    // The NAT in front of A rebinds mid-transfer.
    let new = transfer_across_a_rebinding(&a, b_id, 11, nat.rebind_inner()).await;
    assert_ne!(new, old);

    // B follows A to its new address on the same connection; A saw
    // nothing change.
    assert_followed(&b, &mut b_events, a_id, new, &before).await;
    assert_eq!(handshakes(&a), a_hs);
    assert_eq!(handshakes(&b), b_hs);
    assert_eq!(a.peers()[0].remote_addr, Some(nat.addr()));

    // Traffic keeps flowing at the new address.
    echo_more(&a, b_id, 12).await;
    assert_eq!(b.peers()[0].remote_addr, Some(new));
    no_reconnect(&mut b_events);

    a.close().await;
    b.close().await;
}
