//! Shared helpers for the Transport integration tests: endpoints on
//! loopback, waiting for events with an overall timeout, and a peer that
//! echoes bi streams and reports uni streams and datagrams.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use relay_transport::{
    Incoming, NetworkKey, NodeId, PeerEvent, PeerInfo, SecretKey, Transport, TransportConfig,
};
use tokio::sync::{broadcast, mpsc};

/// Overall bound for anything a test waits on.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A config on 127.0.0.1:0 with test-friendly timings.
pub fn config(secret: SecretKey, network_key: Option<NetworkKey>) -> TransportConfig {
    let mut c = TransportConfig::new(secret, network_key, "127.0.0.1:0".parse().unwrap());
    c.keep_alive = Duration::from_secs(1);
    c.idle_timeout = Duration::from_secs(10);
    c.reconnect_min = Duration::from_millis(50);
    c.reconnect_max = Duration::from_millis(400);
    c.dial_timeout = Duration::from_secs(5);
    c
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A transport with a fresh identity.
pub async fn transport(network_key: Option<NetworkKey>) -> Transport {
    init_tracing();
    Transport::bind(config(SecretKey::generate(), network_key))
        .await
        .unwrap()
}

pub fn addr(t: &Transport) -> SocketAddr {
    t.local_addrs()[0]
}

/// Awaits a future with the overall test timeout.
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .expect("test step timed out")
}

/// The next event matching `pred` (others are skipped).
pub async fn event(
    rx: &mut broadcast::Receiver<PeerEvent>,
    mut pred: impl FnMut(&PeerEvent) -> bool,
) -> PeerEvent {
    within(async {
        loop {
            let ev = rx.recv().await.unwrap();
            if pred(&ev) {
                return ev;
            }
        }
    })
    .await
}

pub fn is_connected(node: NodeId) -> impl FnMut(&PeerEvent) -> bool {
    move |ev| matches!(ev, PeerEvent::Connected { node_id, .. } if *node_id == node)
}

pub fn is_disconnected(node: NodeId) -> impl FnMut(&PeerEvent) -> bool {
    move |ev| matches!(ev, PeerEvent::Disconnected { node_id, .. } if *node_id == node)
}

/// Waits until `t.peers()` satisfies `cond`, re-checking after each event
/// (subscribe before the change that should satisfy it).
pub async fn until_peers(
    t: &Transport,
    rx: &mut broadcast::Receiver<PeerEvent>,
    mut cond: impl FnMut(&[PeerInfo]) -> bool,
) {
    within(async {
        while !cond(&t.peers()) {
            match rx.recv().await {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event channel: {e}"),
            }
        }
    })
    .await
}

/// What the serving side saw.
#[derive(Debug)]
pub enum Seen {
    Uni(NodeId, Vec<u8>),
    Datagram(NodeId, Bytes),
}

/// Serves `t.accept()`: echoes every bi stream, reports uni streams and
/// datagrams on the returned channel. Ends when `accept` returns `None`.
pub fn serve(t: &Transport) -> mpsc::UnboundedReceiver<Seen> {
    let (tx, rx) = mpsc::unbounded_channel();
    let t = t.clone();
    tokio::spawn(async move {
        while let Some(incoming) = t.accept().await {
            match incoming {
                Incoming::Bi {
                    mut send, mut recv, ..
                } => {
                    tokio::spawn(async move {
                        let data = recv.read_to_end(1 << 20).await.unwrap();
                        send.write_all(&data).await.unwrap();
                        send.finish().unwrap();
                        let _ = send.stopped().await;
                    });
                }
                Incoming::Uni { from, mut recv } => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let data = recv.read_to_end(1 << 20).await.unwrap();
                        let _ = tx.send(Seen::Uni(from, data));
                    });
                }
                Incoming::Datagram { from, data } => {
                    let _ = tx.send(Seen::Datagram(from, data));
                }
            }
        }
    });
    rx
}

/// Sends `data` on a new bi stream to `peer` and returns the echo.
pub async fn echo(t: &Transport, peer: NodeId, data: &[u8]) -> Vec<u8> {
    within(async {
        let (mut send, mut recv) = t.open_bi(peer).await.unwrap();
        send.write_all(data).await.unwrap();
        send.finish().unwrap();
        recv.read_to_end(1 << 20).await.unwrap()
    })
    .await
}

/// Deterministic test bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
