//! Per-stack drivers: set up one connection on loopback for stock quinn or
//! relay-node and run the stream workloads of [`crate::streams`] on it.

use std::time::Duration;

use relay_transport::NetworkKey;

use crate::common;
use crate::streams;

/// Which stack a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// quinn + rustls, ChaCha20-Poly1305 only.
    Stock,
    /// relay-node's Transport (Noise inside quinn).
    Relay,
}

/// One-way bulk: `repeats` transfers of `total` bytes on fresh streams of
/// one connection; returns each transfer's time.
pub async fn bulk(stack: Stack, total: u64, repeats: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(repeats);
    match stack {
        Stack::Stock => {
            let configs = common::stock::configs(None);
            let (server, client, addr) = common::stock::endpoints(&configs);
            let (client_conn, server_conn) = common::stock::connect(&server, &client, addr).await;
            for _ in 0..repeats {
                let send = client_conn.open_uni().await.unwrap();
                let server_conn = server_conn.clone();
                let recv = async move { server_conn.accept_uni().await.unwrap() };
                times.push(streams::bulk(send, recv, total).await);
            }
            client_conn.close(0u32.into(), b"done");
        }
        Stack::Relay => {
            let network_key = NetworkKey::generate();
            let (server, client) = common::relay::transport_pair(&network_key).await;
            for _ in 0..repeats {
                let send = client.open_uni(server.node_id()).await.unwrap();
                let accepting = server.clone();
                let recv = async move { common::relay::accept_uni(&accepting).await };
                times.push(streams::bulk(send, recv, total).await);
            }
            client.close().await;
            server.close().await;
        }
    }
    times
}

/// Request/response round trips on one bidirectional stream.
pub async fn round_trips(stack: Stack, warmup: usize, rounds: usize) -> Vec<Duration> {
    match stack {
        Stack::Stock => {
            let configs = common::stock::configs(None);
            let (server, client, addr) = common::stock::endpoints(&configs);
            let (client_conn, server_conn) = common::stock::connect(&server, &client, addr).await;
            let (send, recv) = client_conn.open_bi().await.unwrap();
            let accept = async move { server_conn.accept_bi().await.unwrap() };
            let times = streams::round_trips(send, recv, accept, warmup, rounds).await;
            client_conn.close(0u32.into(), b"done");
            times
        }
        Stack::Relay => {
            let network_key = NetworkKey::generate();
            let (server, client) = common::relay::transport_pair(&network_key).await;
            let (send, recv) = client.open_bi(server.node_id()).await.unwrap();
            let accepting = server.clone();
            let accept = async move { common::relay::accept_bi(&accepting).await };
            let times = streams::round_trips(send, recv, accept, warmup, rounds).await;
            client.close().await;
            server.close().await;
            times
        }
    }
}
