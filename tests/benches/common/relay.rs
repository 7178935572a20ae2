//! relay-node setups for the benches: bare quinn endpoints running
//! relay-node's Noise crypto (`relay_transport::noise`), and full
//! [`relay_transport::Transport`] pairs on loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use relay_transport::noise::{self, NoiseConfig};
use relay_transport::{Incoming, NetworkKey, NodeId, SecretKey, Transport, TransportConfig};

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

fn quinn_transport() -> Arc<quinn::TransportConfig> {
    Arc::new(quinn::TransportConfig::default())
}

/// A quinn endpoint with relay-node's endpoint config on loopback, serving
/// with `server` if given (call inside a tokio runtime).
pub fn noise_endpoint(server: Option<quinn::ServerConfig>) -> quinn::Endpoint {
    let socket = std::net::UdpSocket::bind(loopback()).unwrap();
    quinn::Endpoint::new(
        noise::endpoint_config(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .unwrap()
}

/// A bare-quinn Noise server with a fresh identity: (endpoint, its NodeId,
/// its address).
pub fn noise_server(network_key: &NetworkKey) -> (quinn::Endpoint, NodeId, SocketAddr) {
    let secret = SecretKey::generate();
    let node_id = secret.node_id();
    let config = NoiseConfig::new(secret, Some(network_key.clone()));
    let endpoint = noise_endpoint(Some(noise::server_config(&config, quinn_transport())));
    let addr = endpoint.local_addr().unwrap();
    (endpoint, node_id, addr)
}

/// A client config with a fresh identity.
pub fn noise_client_config(network_key: &NetworkKey) -> quinn::ClientConfig {
    let config = NoiseConfig::new(SecretKey::generate(), Some(network_key.clone()));
    noise::client_config(&config, quinn_transport())
}

/// Dials `server_id` at `addr` from `client` with `config`.
pub async fn noise_dial(
    client: &quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    server_id: &NodeId,
) -> quinn::Connection {
    client
        .connect_with(config, addr, &server_id.to_string())
        .unwrap()
        .await
        .unwrap()
}

/// Connects bare Noise endpoints once; returns (client side, server side).
pub async fn noise_connect(
    server: &quinn::Endpoint,
    client: &quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    server_id: &NodeId,
) -> (quinn::Connection, quinn::Connection) {
    let accept = async { server.accept().await.unwrap().await.unwrap() };
    let dial = noise_dial(client, config, addr, server_id);
    let (server_side, client_side) = tokio::join!(accept, dial);
    (client_side, server_side)
}

/// Binds a relay-node Transport with a fresh identity on loopback.
pub async fn bind_transport(network_key: &NetworkKey) -> Transport {
    let config = TransportConfig::new(SecretKey::generate(), Some(network_key.clone()), loopback());
    Transport::bind(config).await.unwrap()
}

/// [`bind_transport`] with NAT traversal off, so that a connection made
/// through a relay stays relayed (on loopback traversal would move it to
/// the direct path at once).
pub async fn bind_transport_no_traversal(network_key: &NetworkKey) -> Transport {
    let mut config =
        TransportConfig::new(SecretKey::generate(), Some(network_key.clone()), loopback());
    config.traversal = false;
    Transport::bind(config).await.unwrap()
}

/// The loopback address a Transport listens on.
pub fn transport_addr(transport: &Transport) -> SocketAddr {
    transport
        .local_addrs()
        .into_iter()
        .find(|a| a.is_ipv4())
        .unwrap()
}

/// Two connected Transports: (server, client).
pub async fn transport_pair(network_key: &NetworkKey) -> (Transport, Transport) {
    let server = bind_transport(network_key).await;
    let client = bind_transport(network_key).await;
    client
        .connect(server.node_id(), transport_addr(&server))
        .await
        .unwrap();
    (server, client)
}

/// The next bidirectional stream a Transport accepts.
pub async fn accept_bi(transport: &Transport) -> (quinn::SendStream, quinn::RecvStream) {
    loop {
        match transport.accept().await {
            Some(Incoming::Bi { send, recv, .. }) => return (send, recv),
            Some(_) => continue,
            None => panic!("transport closed"),
        }
    }
}

/// The next unidirectional stream a Transport accepts.
pub async fn accept_uni(transport: &Transport) -> quinn::RecvStream {
    loop {
        match transport.accept().await {
            Some(Incoming::Uni { recv, .. }) => return recv,
            Some(_) => continue,
            None => panic!("transport closed"),
        }
    }
}
