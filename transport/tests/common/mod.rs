//! Shared helpers for the Noise-over-quinn integration tests: plain UDP
//! endpoints on loopback and a condition wait with an overall timeout.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use relay_transport::noise::{self, NoiseConfig};
use relay_transport::{NetworkKey, NodeId, SecretKey};

/// Overall bound for anything a test waits on.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A node identity plus its crypto config.
pub struct Node {
    pub id: NodeId,
    pub config: NoiseConfig,
}

pub fn node(network_key: Option<NetworkKey>) -> Node {
    let secret = SecretKey::generate();
    Node {
        id: secret.node_id(),
        config: NoiseConfig::new(secret, network_key),
    }
}

pub fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(Duration::from_secs(10).try_into().unwrap()));
    Arc::new(t)
}

/// An endpoint on 127.0.0.1:0; a server when `serve` is set.
pub fn endpoint(config: &NoiseConfig, serve: bool) -> quinn::Endpoint {
    endpoint_with(noise::endpoint_config(), config, serve)
}

pub fn endpoint_with(
    endpoint_config: quinn::EndpointConfig,
    config: &NoiseConfig,
    serve: bool,
) -> quinn::Endpoint {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = serve.then(|| noise::server_config(config, transport()));
    quinn::Endpoint::new(
        endpoint_config,
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .unwrap()
}

pub fn addr(ep: &quinn::Endpoint) -> SocketAddr {
    ep.local_addr().unwrap()
}

/// Dials `peer` at `to` with `from`'s client config.
pub async fn dial(
    ep: &quinn::Endpoint,
    from: &NoiseConfig,
    peer: &NodeId,
    to: SocketAddr,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let cfg = noise::client_config(from, transport());
    ep.connect_with(cfg, to, &peer.to_string()).unwrap().await
}

/// Awaits a future with the overall test timeout.
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .expect("test step timed out")
}

/// Polls a condition until it holds, failing after the overall timeout.
pub async fn wait_until(mut cond: impl FnMut() -> bool) {
    within(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// Echo server: accepts one connection, echoes every bi stream until the
/// connection closes, returns the peer it saw and 32 exported bytes.
pub async fn echo_server(ep: quinn::Endpoint) -> (Option<NodeId>, [u8; 32]) {
    let incoming = ep.accept().await.unwrap();
    let conn = incoming.await.unwrap();
    let peer = noise::peer_node_id(&conn);
    let mut ekm = [0u8; 32];
    conn.export_keying_material(&mut ekm, b"test label", b"ctx")
        .unwrap();
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Some(n) = recv.read(&mut buf).await.unwrap() {
                send.write_all(&buf[..n]).await.unwrap();
            }
            send.finish().unwrap();
            let _ = send.stopped().await;
        });
    }
    (peer, ekm)
}

/// Sends `data` on a new bi stream and returns what comes back.
pub async fn echo(conn: &quinn::Connection, data: &[u8]) -> Vec<u8> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let data = data.to_vec();
    let writer = tokio::spawn(async move {
        send.write_all(&data).await.unwrap();
        send.finish().unwrap();
    });
    let back = recv.read_to_end(usize::MAX).await.unwrap();
    writer.await.unwrap();
    back
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}
