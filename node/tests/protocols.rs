//! The node's protocols on the transport's mux, and ping, over two real
//! in-process transports on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use quinn::{ReadError, ReadToEndError, VarInt};
use relay_node::protocols::{self, ping};
use relay_transport::mux::{RESET_BAD_FRAME, RESET_UNKNOWN_PROTOCOL};
use relay_transport::{
    Mux, MuxConfig, NetworkKey, PeerState, ProtocolId, SecretKey, Transport, TransportConfig,
};
use tokio::task::JoinSet;

const TIMEOUT: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .expect("step timed out")
}

/// A node on loopback: its mux, and the tasks serving the built-in
/// protocols.
struct Node {
    mux: Mux,
    _served: JoinSet<()>,
}

impl Node {
    async fn bind(key: NetworkKey) -> Self {
        let transport = Transport::bind(TransportConfig::new(
            SecretKey::generate(),
            Some(key),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .await
        .unwrap();
        let mux = Mux::new(transport, MuxConfig::default());
        let served = protocols::serve_builtins(&mux).unwrap();
        mux.start();
        Self {
            mux,
            _served: served,
        }
    }

    fn transport(&self) -> &Transport {
        self.mux.transport()
    }
}

/// Two nodes sharing a network key, `a` connected to `b`.
async fn pair() -> (Node, Node) {
    let key = NetworkKey::generate();
    let a = Node::bind(key.clone()).await;
    let b = Node::bind(key).await;
    within(
        a.transport()
            .connect(b.transport().node_id(), b.transport().local_addrs()[0]),
    )
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
    let b_id = b.transport().node_id();
    let pong = within(ping::ping(&a.mux, b_id, TIMEOUT)).await.unwrap();
    assert_eq!(pong.node_id, b_id.to_string());
    assert_eq!(pong.path, "direct");
    assert_eq!(
        pong.remote_addr,
        Some(b.transport().local_addrs()[0].to_string())
    );
    assert!(pong.rtt_ms >= 0.0);
    let served = b.mux.stats();
    assert_eq!(served.protocols[0].name, "ping");
    assert_eq!(served.protocols[0].streams_accepted, 1);
    a.transport().close().await;
    b.transport().close().await;
}

#[tokio::test]
async fn unknown_protocol_id_resets_the_stream() {
    let (a, b) = pair().await;
    let (mut send, mut recv) = within(
        a.mux
            .open_bi(b.transport().node_id(), ProtocolId::new(0x7f)),
    )
    .await
    .unwrap();
    send.write_all(b"hello").await.unwrap();
    send.finish().unwrap();
    let code = reset_code(within(recv.read_to_end(1024)).await);
    assert_eq!(code, Some(VarInt::from_u32(RESET_UNKNOWN_PROTOCOL)));
    assert_eq!(b.mux.stats().unknown_protocol, 1);
    a.transport().close().await;
    b.transport().close().await;
}

#[tokio::test]
async fn oversized_ping_frame_resets_the_stream() {
    let (a, b) = pair().await;
    let b_id = b.transport().node_id();
    let (mut send, mut recv) = within(a.mux.open_bi(b_id, ping::PING)).await.unwrap();
    // Write without waiting: the responder may reset before reading it all.
    let _ = send.write_all(&[0u8; ping::MAX_FRAME + 1]).await;
    let _ = send.finish();
    let code = reset_code(within(recv.read_to_end(1024)).await);
    assert_eq!(code, Some(VarInt::from_u32(RESET_BAD_FRAME)));
    // The connection survives a bad stream.
    within(ping::ping(&a.mux, b_id, TIMEOUT)).await.unwrap();
    a.transport().close().await;
    b.transport().close().await;
}

#[tokio::test]
async fn ping_failures_are_typed() {
    let (a, b) = pair().await;
    let stranger = SecretKey::generate().node_id();
    let err = within(ping::ping(&a.mux, stranger, TIMEOUT))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "not-connected");
    let err = within(ping::ping(&a.mux, a.transport().node_id(), TIMEOUT))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid-peer");
    assert!(a
        .transport()
        .peers()
        .iter()
        .any(|p| p.node_id == b.transport().node_id() && p.state == PeerState::Connected));
    a.transport().close().await;
    b.transport().close().await;
}

#[tokio::test]
async fn ping_dials_a_known_address_first() {
    let key = NetworkKey::generate();
    let a = Node::bind(key.clone()).await;
    let b = Node::bind(key).await;
    let b_id = b.transport().node_id();
    assert!(a.mux.remember_addr(b_id, b.transport().local_addrs()[0]));
    let pong = within(ping::ping(&a.mux, b_id, TIMEOUT)).await.unwrap();
    assert_eq!(pong.path, "direct");
    a.transport().close().await;
    b.transport().close().await;
}
