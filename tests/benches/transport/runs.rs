//! Per-stack rigs: one connection on loopback for stock quinn or relay-node,
//! on which the stream workloads of [`crate::streams`] run. Both rigs are
//! built first and then used in turn, so load from other processes hits
//! both stacks alike.

use std::time::Duration;

use relay_transport::{NetworkKey, Transport};

use crate::common;
use crate::streams::{self, EchoStream};

/// Which stack a rig uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// quinn + rustls, ChaCha20-Poly1305 only.
    Stock,
    /// relay-node's Transport (Noise inside quinn).
    Relay,
}

/// One live connection of a stack.
#[derive(Debug)]
pub enum Rig {
    /// Stock quinn: endpoints kept alive with the connection.
    Stock {
        /// Server and client endpoints.
        endpoints: (quinn::Endpoint, quinn::Endpoint),
        /// Client side.
        client: quinn::Connection,
        /// Server side.
        server: quinn::Connection,
    },
    /// relay-node: two connected Transports.
    Relay {
        /// The accepting side.
        server: Transport,
        /// The dialling side.
        client: Transport,
    },
}

impl Rig {
    /// Sets up a connected pair for `stack`.
    pub async fn new(stack: Stack) -> Self {
        match stack {
            Stack::Stock => {
                let configs = common::stock::configs(None);
                let (server_ep, client_ep, addr) = common::stock::endpoints(&configs);
                let (client, server) = common::stock::connect(&server_ep, &client_ep, addr).await;
                Rig::Stock {
                    endpoints: (server_ep, client_ep),
                    client,
                    server,
                }
            }
            Stack::Relay => {
                let network_key = NetworkKey::generate();
                let (server, client) = common::relay::transport_pair(&network_key).await;
                Rig::Relay { server, client }
            }
        }
    }

    /// One-way bulk of `total` bytes on a fresh unidirectional stream.
    pub async fn bulk(&self, total: u64) -> Duration {
        match self {
            Rig::Stock { client, server, .. } => {
                let send = client.open_uni().await.unwrap();
                let server = server.clone();
                let recv = async move { server.accept_uni().await.unwrap() };
                streams::bulk(send, recv, total).await
            }
            Rig::Relay { server, client } => {
                let send = client.open_uni(server.node_id()).await.unwrap();
                let accepting = server.clone();
                let recv = async move { common::relay::accept_uni(&accepting).await };
                streams::bulk(send, recv, total).await
            }
        }
    }

    /// A bidirectional stream the peer echoes on.
    pub async fn echo_stream(&self) -> EchoStream {
        match self {
            Rig::Stock { client, server, .. } => {
                let (send, recv) = client.open_bi().await.unwrap();
                let server = server.clone();
                EchoStream::new(send, recv, async move { server.accept_bi().await.unwrap() })
            }
            Rig::Relay { server, client } => {
                let (send, recv) = client.open_bi(server.node_id()).await.unwrap();
                let accepting = server.clone();
                EchoStream::new(send, recv, async move {
                    common::relay::accept_bi(&accepting).await
                })
            }
        }
    }

    /// Closes the connection cleanly.
    pub async fn close(self) {
        match self {
            Rig::Stock {
                endpoints, client, ..
            } => {
                client.close(0u32.into(), b"done");
                endpoints.1.wait_idle().await;
            }
            Rig::Relay { server, client } => {
                client.close().await;
                server.close().await;
            }
        }
    }
}
