//! Connect time with a fresh client each time, per stack: the server
//! endpoint stays up; each sample binds a new client endpoint (outside the
//! timing), times the dial until the connection is up, and closes it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use relay_transport::NetworkKey;

use crate::common;
use crate::stacks::{self, Stack};

/// `samples` fresh-client connects of `stack`; each one's time.
pub async fn connect_times(stack: Stack, samples: usize) -> Vec<Duration> {
    match stack {
        Stack::Stock => stock(samples).await,
        Stack::Iroh => iroh(samples).await,
        Stack::Relay => relay(samples).await,
    }
}

async fn stock(samples: usize) -> Vec<Duration> {
    let configs = common::stock::configs(None);
    let (server, _client, addr) = common::stock::endpoints(&configs);
    let acceptor = server.clone();
    let accepting = tokio::spawn(async move {
        while let Some(incoming) = acceptor.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    conn.closed().await;
                }
            });
        }
    });
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let mut client =
            quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
        client.set_default_client_config(configs.client.clone());
        let start = Instant::now();
        let conn = client
            .connect(addr, common::stock::SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        times.push(start.elapsed());
        conn.close(0u32.into(), b"");
        client.wait_idle().await;
    }
    accepting.abort();
    times
}

async fn iroh(samples: usize) -> Vec<Duration> {
    let server = stacks::iroh_endpoint().await;
    let addr = stacks::iroh_addr(&server);
    let acceptor = server.clone();
    let accepting = tokio::spawn(async move {
        while let Some(incoming) = acceptor.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    conn.closed().await;
                }
            });
        }
    });
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let client = stacks::iroh_endpoint().await;
        let start = Instant::now();
        let conn = client
            .connect(addr.clone(), stacks::IROH_ALPN)
            .await
            .unwrap();
        times.push(start.elapsed());
        conn.close(0u32.into(), b"");
        client.close().await;
    }
    accepting.abort();
    server.close().await;
    times
}

async fn relay(samples: usize) -> Vec<Duration> {
    let key = NetworkKey::generate();
    let server = common::relay::bind_transport(&key).await;
    let addr = common::relay::transport_addr(&server);
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let client = common::relay::bind_transport(&key).await;
        let start = Instant::now();
        client.connect(server.node_id(), addr).await.unwrap();
        times.push(start.elapsed());
        client.close().await;
    }
    server.close().await;
    times
}
