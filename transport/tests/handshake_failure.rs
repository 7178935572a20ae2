//! A persistent peer whose handshake fails is not left looking like a peer
//! still connecting: both sides count the failure, the dialer shows its
//! kind as the peer's `why`, and the responder records the address (and
//! the NodeId the initiator proved) with the kind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering::Relaxed;

use relay_transport::{DialErrorKind, NetworkKey, PeerState, SecretKey};
use support::*;

/// Polls `cond` (a state, not a time) until it holds, within the overall
/// test timeout.
async fn until(mut cond: impl FnMut() -> bool) {
    within(async {
        while !cond() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn wrong_network_key_is_visible_on_both_sides() {
    let a = transport(Some(NetworkKey::generate())).await;
    let b = transport(Some(NetworkKey::generate())).await;
    let b_id = b.node_id();

    // One dial: exactly one failure on each side, no completed handshake.
    let err = within(a.connect(b_id, addr(&b))).await.unwrap_err();
    assert_eq!(err.kind, DialErrorKind::NetworkKeyMismatch);
    until(|| b.noise_stats().handshake_failures.load(Relaxed) == 1).await;
    assert_eq!(b.noise_stats().handshakes.load(Relaxed), 0);
    assert_eq!(a.noise_stats().handshake_failures.load(Relaxed), 1);
    assert_eq!(a.noise_stats().handshakes.load(Relaxed), 0);

    // As a persistent peer it stays listed, with the kind as its why.
    a.add_peer(b_id, addr(&b));

    until(|| {
        let why = a.peers().first().and_then(|p| p.why.clone());
        why.is_some() && b.handshake_status().failures > 0
    })
    .await;

    let peer = a.peers().remove(0);
    assert_eq!(peer.state, PeerState::Connecting, "still redialled");
    let why = peer.why.unwrap();
    assert!(why.starts_with("network-key-mismatch: "), "{why}");
    assert!(a.noise_stats().handshake_failures.load(Relaxed) >= 1);
    let dialer = a.handshake_status();
    let last = dialer.last.unwrap();
    assert_eq!(last.kind, DialErrorKind::NetworkKeyMismatch);
    assert_eq!(last.peer, Some(b_id));
    assert!(last.outbound);

    let responder = b.handshake_status();
    let last = responder.last.unwrap();
    assert_eq!(last.kind, DialErrorKind::NetworkKeyMismatch);
    assert_eq!(last.addr, Some(addr(&a)));
    assert_eq!(last.peer, Some(a.node_id()), "message 1 named it");
    assert!(!last.outbound);
    assert!(b.peers().is_empty());
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_later_success_clears_the_why() {
    let a = transport(None).await;
    let b_secret = SecretKey::generate();
    let b = transport(None).await;
    // Dial b's address under a NodeId it does not hold, then the right one.
    let wrong = b_secret.node_id();
    assert!(within(a.connect(wrong, addr(&b))).await.is_err());
    within(a.connect(b.node_id(), addr(&b))).await.unwrap();
    let infos = a.peers();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].why, None);
    // The responder's handshake task reports on its own.
    until(|| b.handshake_status().failures >= 1).await;
    assert_eq!(
        b.handshake_status().last.unwrap().kind,
        DialErrorKind::PeerKeyMismatch
    );
    a.close().await;
    b.close().await;
}
