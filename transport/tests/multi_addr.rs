//! A persistent peer given several addresses (as a join ticket may hold)
//! is reached even when the first address is dead: each redial attempt
//! moves on to the next address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use relay_transport::{PeerEvent, PeerState};
use support::*;

#[tokio::test]
async fn redial_moves_on_to_the_next_address() {
    let a = transport(None).await;
    let b = transport(None).await;
    // A bound-but-silent UDP socket: dials to it time out.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();

    let mut events = a.subscribe();
    a.add_peer_addrs(b.node_id(), vec![dead_addr, addr(&b)]);
    event(
        &mut events,
        |e| matches!(e, PeerEvent::Connected { node_id, .. } if *node_id == b.node_id()),
    )
    .await;
    let peer = a
        .peers()
        .into_iter()
        .find(|p| p.node_id == b.node_id())
        .unwrap();
    assert_eq!(peer.state, PeerState::Connected);
    assert_eq!(peer.remote_addr, Some(addr(&b)));
    drop(dead);
}
