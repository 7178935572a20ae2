//! The stream protocol dispatcher and ping over two real in-process
//! transports on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use quinn::{ReadError, ReadToEndError, VarInt};
use relay_node::protocols::{self, ping, Dispatcher, PROTO_PING};
use relay_transport::{NetworkKey, PeerState, SecretKey, Transport, TransportConfig};

const TIMEOUT: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .expect("step timed out")
}

/// Two transports sharing a network key; `b` serves the built-in protocols
/// and `a` is connected to it.
async fn pair() -> (Transport, Transport) {
    let key = NetworkKey::generate();
    let bind = |key: NetworkKey| {
        Transport::bind(TransportConfig::new(
            SecretKey::generate(),
            Some(key),
            "127.0.0.1:0".parse().unwrap(),
        ))
    };
    let a = bind(key.clone()).await.unwrap();
    let b = bind(key).await.unwrap();
    tokio::spawn(protocols::serve_incoming(
        b.clone(),
        Dispatcher::with_builtins(),
    ));
    within(a.connect(b.node_id(), b.local_addrs()[0]))
        .await
        .unwrap();
    (a, b)
}

fn reset_code(result: Result<Vec<u8>, ReadToEndError>) -> Option<VarInt> {
    match result {
        Err(ReadToEndError::Read(ReadError::Reset(code))) => Some(code),
        _ => None,
    }
}

#[tokio::test]
async fn ping_round_trip_over_direct_path() {
    let (a, b) = pair().await;
    let pong = within(ping::ping(&a, b.node_id(), None, TIMEOUT))
        .await
        .unwrap();
    assert_eq!(pong.node_id, b.node_id().to_string());
    assert_eq!(pong.path, "direct");
    assert_eq!(pong.remote_addr, Some(b.local_addrs()[0].to_string()));
    assert!(pong.rtt_ms >= 0.0);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn unknown_protocol_byte_resets_the_stream() {
    let (a, b) = pair().await;
    let (mut send, mut recv) = within(protocols::open_stream(&a, b.node_id(), 0x7f))
        .await
        .unwrap();
    send.write_all(b"hello").await.unwrap();
    send.finish().unwrap();
    let code = reset_code(within(recv.read_to_end(1024)).await);
    assert_eq!(
        code,
        Some(VarInt::from_u32(protocols::RESET_UNKNOWN_PROTOCOL))
    );
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn oversized_ping_frame_resets_the_stream() {
    let (a, b) = pair().await;
    let (mut send, mut recv) = within(protocols::open_stream(&a, b.node_id(), PROTO_PING))
        .await
        .unwrap();
    // Write without waiting: the responder may reset before reading it all.
    let _ = send.write_all(&[0u8; ping::MAX_FRAME + 1]).await;
    let _ = send.finish();
    let code = reset_code(within(recv.read_to_end(1024)).await);
    assert_eq!(code, Some(VarInt::from_u32(protocols::RESET_BAD_FRAME)));
    // The connection survives a bad stream.
    within(ping::ping(&a, b.node_id(), None, TIMEOUT))
        .await
        .unwrap();
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn ping_failures_are_typed() {
    let (a, b) = pair().await;
    let stranger = SecretKey::generate().node_id();
    let err = within(ping::ping(&a, stranger, None, TIMEOUT))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "not-connected");
    let err = within(ping::ping(&a, a.node_id(), None, TIMEOUT))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid-peer");
    assert!(a
        .peers()
        .iter()
        .any(|p| p.node_id == b.node_id() && p.state == PeerState::Connected));
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn ping_dials_a_known_address_first() {
    let key = NetworkKey::generate();
    let bind = |key: NetworkKey| {
        Transport::bind(TransportConfig::new(
            SecretKey::generate(),
            Some(key),
            "127.0.0.1:0".parse().unwrap(),
        ))
    };
    let a = bind(key.clone()).await.unwrap();
    let b = bind(key).await.unwrap();
    tokio::spawn(protocols::serve_incoming(
        b.clone(),
        Dispatcher::with_builtins(),
    ));
    let pong = within(ping::ping(
        &a,
        b.node_id(),
        Some(b.local_addrs()[0]),
        TIMEOUT,
    ))
    .await
    .unwrap();
    assert_eq!(pong.path, "direct");
    a.close().await;
    b.close().await;
}
