//! A persistent peer goes away and comes back on the same address with the
//! same key: the dialer shows it as connecting meanwhile and reconnects on
//! its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use relay_transport::{PeerState, SecretKey, Transport};
use support::*;

/// Binds `secret` on `addr`. The previous owner of the port has closed, but
/// the OS may release the port a moment later: retry only on AddrInUse,
/// within the overall timeout.
async fn rebind(secret: SecretKey, addr: SocketAddr) -> Transport {
    within(async {
        loop {
            let mut c = config(secret.clone(), None);
            c.listen = addr;
            match Transport::bind(c).await {
                Ok(t) => return t,
                Err(relay_transport::BindError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AddrInUse =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("bind: {e}"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn persistent_peer_reconnects() {
    let b_secret = SecretKey::generate();
    let b = Transport::bind(config(b_secret.clone(), None))
        .await
        .unwrap();
    let b_id = b.node_id();
    let b_addr = addr(&b);
    let a = transport(None).await;
    let mut events = a.subscribe();
    let mut b_events = b.subscribe();

    a.add_peer(b_id, b_addr);
    event(&mut events, is_connected(b_id)).await;
    event(&mut b_events, is_connected(a.node_id())).await;
    let first = a.peers()[0].clone();
    assert_eq!(first.state, PeerState::Connected);
    assert!(first.outbound);

    // B goes away.
    b.close().await;
    drop(b);
    event(&mut events, is_disconnected(b_id)).await;
    let peers = a.peers();
    assert_eq!(peers.len(), 1, "a persistent peer stays listed");
    assert_eq!(peers[0].node_id, b_id);
    assert_eq!(peers[0].state, PeerState::Connecting);
    assert_eq!(peers[0].remote_addr, None);

    // B comes back with the same key on the same port; A redials by itself.
    let b2 = rebind(b_secret, b_addr).await;
    let _served = serve(&b2);
    event(&mut events, is_connected(b_id)).await;
    let peers = a.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].state, PeerState::Connected);
    assert_eq!(peers[0].remote_addr, Some(b_addr));
    assert!(peers[0].since >= first.since);
    let data = pattern(10_000, 7);
    assert_eq!(echo(&a, b_id, &data).await, data);

    a.close().await;
    b2.close().await;
}
