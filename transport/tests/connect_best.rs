//! Fast start: with a relay serving both sides, `connect_best` reaches a
//! peer over the relay even when the address we hold for it is dead, and
//! goes straight to the address when no relay serves us.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use relay_transport::{PathKind, SecretKey, Transport};
use support::*;

async fn node(relay: bool) -> Transport {
    init_tracing();
    let mut c = config(SecretKey::generate(), None);
    c.relay = relay;
    // Keep the path as dialled: this test is about the first route.
    c.traversal = false;
    Transport::bind(c).await.unwrap()
}

async fn registered_with(client: &Transport, relay: &Transport) {
    within(client.connect(relay.node_id(), addr(relay)))
        .await
        .unwrap();
    let r = relay.node_id();
    within(async {
        while !client.relays().contains(&r) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn relay_first_even_with_a_dead_address() {
    let r = node(true).await;
    let a = node(false).await;
    let b = node(false).await;
    registered_with(&a, &r).await;
    registered_with(&b, &r).await;
    let _serve = serve(&b);
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();

    within(a.connect_best(b.node_id(), Some(dead.local_addr().unwrap())))
        .await
        .unwrap();
    let peer = a
        .peers()
        .into_iter()
        .find(|p| p.node_id == b.node_id())
        .unwrap();
    assert_eq!(peer.path, PathKind::Relayed);
    assert_eq!(peer.via, Some(r.node_id()));
    assert_eq!(echo(&a, b.node_id(), b"first bytes").await, b"first bytes");
}

#[tokio::test]
async fn direct_when_no_relay_serves_us() {
    let a = node(false).await;
    let b = node(false).await;
    let _serve = serve(&b);
    within(a.connect_best(b.node_id(), Some(addr(&b))))
        .await
        .unwrap();
    let peer = a
        .peers()
        .into_iter()
        .find(|p| p.node_id == b.node_id())
        .unwrap();
    assert_eq!(peer.path, PathKind::Direct);
    assert_eq!(peer.remote_addr, Some(addr(&b)));
}
