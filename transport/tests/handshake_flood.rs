//! A half-open handshake flood: valid Initial packets whose Noise message 1
//! announces a length it never completes, each of which would hold a
//! handshake slot until it times out. A legitimate peer dialing while the
//! flood runs still connects on its first attempt: under load the victim
//! answers unvalidated sources with a QUIC Retry and bounds the handshakes
//! pending per source address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use relay_transport::noise::{self, NoiseConfig};
use relay_transport::{NodeId, SecretKey};
use support::*;

/// Flood sockets (sources): attempts round-robin over them.
const SOURCES: usize = 8;
/// Attempts per second, as in the reported incident.
const RATE: u64 = 300;

/// Sends half-open handshakes to `target` at [`RATE`] per second from
/// [`SOURCES`] sockets until dropped; counts the attempts started.
struct Flood {
    started: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Flood {
    fn start(target: NodeId, to: SocketAddr) -> Self {
        let config = NoiseConfig::new(SecretKey::generate(), None);
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(Duration::from_secs(30).try_into().unwrap()));
        let client = noise::stalling_client_config(&config, Arc::new(transport));
        let endpoints: Vec<quinn::Endpoint> = (0..SOURCES)
            .map(|_| {
                quinn::Endpoint::new(
                    noise::endpoint_config(),
                    None,
                    UdpSocket::bind("127.0.0.1:0").unwrap(),
                    Arc::new(quinn::TokioRuntime),
                )
                .unwrap()
            })
            .collect();
        let started = Arc::new(AtomicU64::new(0));
        let count = started.clone();
        let task = tokio::spawn(async move {
            // The attempts stay alive (a dropped attempt would close).
            let mut held = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let per_tick = RATE / 100;
            let mut n = 0usize;
            loop {
                tick.tick().await;
                for _ in 0..per_tick {
                    let ep = &endpoints[n % SOURCES];
                    n += 1;
                    if let Ok(connecting) = ep.connect_with(client.clone(), to, &target.to_string())
                    {
                        held.push(connecting);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Self { started, task }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn legitimate_peer_connects_on_its_first_attempt_during_a_flood() {
    let victim = transport(None).await;
    let victim_id = victim.node_id();
    let _served = serve(&victim);
    let flood = Flood::start(victim_id, addr(&victim));
    // More attempts than the victim has handshake slots (256), well
    // within the time each would hold one (the 5 s handshake timeout).
    within(async {
        while flood.started.load(Ordering::Relaxed) < 400 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    let peer = transport(None).await;
    let dial = peer.connect(victim_id, addr(&victim)).await;
    assert!(
        dial.is_ok(),
        "first dial during the flood: {dial:?}; victim: {:?}",
        victim.handshake_status()
    );
    let data = pattern(10_000, 5);
    assert_eq!(echo(&peer, victim_id, &data).await, data);

    let status = victim.handshake_status();
    println!(
        "flood: {} attempts started; victim sent {} retries, dropped {}",
        flood.started.load(Ordering::Relaxed),
        status.retries_sent,
        status.attempts_dropped
    );
    assert!(
        status.retries_sent > 0,
        "under load unvalidated sources get a Retry"
    );
    drop(flood);
    peer.close().await;
    victim.close().await;
}
