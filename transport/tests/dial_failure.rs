//! Failed dials end with the right stable kind and leave nothing behind: no
//! peer entry, no mapped address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use relay_transport::{DialErrorKind, NetworkKey, SecretKey};
use support::*;

#[tokio::test]
async fn wrong_node_id_is_peer_key_mismatch() {
    let a = transport(None).await;
    let b = transport(None).await;
    let wrong = SecretKey::generate().node_id();
    let err = within(a.connect(wrong, addr(&b))).await.unwrap_err();
    assert_eq!(err.kind, DialErrorKind::PeerKeyMismatch, "{err}");
    assert!(err.to_string().starts_with("peer-key-mismatch: "), "{err}");
    assert!(a.peers().is_empty());
    assert_eq!(a.socket_stats().mapped_entries, 0, "no mapped address left");
    assert!(a.open_bi(wrong).await.is_err());

    // The transport is unharmed: the right NodeId connects.
    within(a.connect(b.node_id(), addr(&b))).await.unwrap();
    assert_eq!(a.peers().len(), 1);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn different_network_keys_are_network_key_mismatch() {
    let a = transport(Some(NetworkKey::generate())).await;
    let b = transport(Some(NetworkKey::generate())).await;
    let err = within(a.connect(b.node_id(), addr(&b))).await.unwrap_err();
    assert_eq!(err.kind, DialErrorKind::NetworkKeyMismatch, "{err}");
    assert!(a.peers().is_empty());
    assert_eq!(a.socket_stats().mapped_entries, 0);
    assert!(b.peers().is_empty(), "the responder admitted nobody");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn network_key_on_one_side_only_is_network_key_mismatch() {
    let a = transport(None).await;
    let b = transport(Some(NetworkKey::generate())).await;
    let err = within(a.connect(b.node_id(), addr(&b))).await.unwrap_err();
    assert_eq!(err.kind, DialErrorKind::NetworkKeyMismatch, "{err}");
    assert!(a.peers().is_empty());
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn same_network_key_connects() {
    let key = NetworkKey::generate();
    let a = transport(Some(key.clone())).await;
    let b = transport(Some(key)).await;
    within(a.connect(b.node_id(), addr(&b))).await.unwrap();
    assert_eq!(a.peers().len(), 1);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn invalid_targets_are_invalid_address() {
    let a = transport(None).await;
    let err = a.connect(a.node_id(), addr(&a)).await.unwrap_err();
    assert_eq!(err.kind, DialErrorKind::InvalidAddress, "{err}");
    let b = SecretKey::generate().node_id();
    let err = a
        .connect(b, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind, DialErrorKind::InvalidAddress, "{err}");
    let err = a
        .connect(b, "[::1]:4000".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        DialErrorKind::InvalidAddress,
        "IPv6 from an IPv4 socket: {err}"
    );
    assert!(a.peers().is_empty());
    assert_eq!(a.socket_stats().mapped_entries, 0);
    a.close().await;
}

#[tokio::test]
async fn silence_is_timeout() {
    let mut c = config(SecretKey::generate(), None);
    c.dial_timeout = std::time::Duration::from_millis(300);
    let a = relay_transport::Transport::bind(c).await.unwrap();
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = silent.local_addr().unwrap();
    let err = within(a.connect(SecretKey::generate().node_id(), to))
        .await
        .unwrap_err();
    assert_eq!(err.kind, DialErrorKind::Timeout, "{err}");
    assert!(a.peers().is_empty());
    assert_eq!(a.socket_stats().mapped_entries, 0);
    a.close().await;
}
