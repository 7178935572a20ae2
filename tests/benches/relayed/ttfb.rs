//! Time to first byte: a fresh A dials B and sends one byte on a new
//! unidirectional stream; the time runs from the start of the dial until B
//! has read that byte. Relayed, A knows only B's NodeId and is already a
//! client of the relay (joining it is not timed); direct, A dials B's
//! address. One long-lived B serves both kinds of sample.

use std::time::{Duration, Instant};

use relay_transport::{Incoming, NetworkKey, NodeId, Transport};
use tokio::sync::mpsc;

use crate::common::relay::{bind_transport_no_traversal as bind_transport, transport_addr};
use crate::common::relay_node::{join_relay, RelayThread};
use crate::rigs::Route;

/// One sample: until the dial returned, and until B read the first byte.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// `connect` / `connect_relayed` returned.
    pub connected: Duration,
    /// B read the first byte.
    pub first_byte: Duration,
}

/// B, a client of the relay, reporting when it reads each stream's first
/// byte.
pub struct Target {
    network_key: NetworkKey,
    b: Transport,
    arrivals: mpsc::UnboundedReceiver<(NodeId, Instant)>,
}

impl Target {
    /// Starts B and makes it a client of `relay`.
    pub async fn new(network_key: &NetworkKey, relay: &RelayThread) -> Self {
        let b = bind_transport(network_key).await;
        join_relay(&b, relay).await;
        let (tx, arrivals) = mpsc::unbounded_channel();
        let accepting = b.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                let Incoming::Uni { from, mut recv } = incoming else {
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut byte = [0u8; 1];
                    if recv.read_exact(&mut byte).await.is_ok() {
                        let _ = tx.send((from, Instant::now()));
                    }
                });
            }
        });
        Self {
            network_key: network_key.clone(),
            b,
            arrivals,
        }
    }

    /// One sample by `route` from a fresh A.
    pub async fn sample(&mut self, route: Route, relay: &RelayThread) -> Sample {
        let a = bind_transport(&self.network_key).await;
        let b_id = self.b.node_id();
        if route == Route::Relayed {
            join_relay(&a, relay).await;
        }
        let start = Instant::now();
        match route {
            Route::Direct => a.connect(b_id, transport_addr(&self.b)).await.unwrap(),
            Route::Relayed => a.connect_relayed(b_id).await.unwrap(),
        }
        let connected = start.elapsed();
        let mut send = a.open_uni(b_id).await.unwrap();
        send.write_all(&[0x42]).await.unwrap();
        let a_id = a.node_id();
        let arrived = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let (from, at) = self.arrivals.recv().await.unwrap();
                if from == a_id {
                    return at;
                }
            }
        })
        .await
        .expect("B never read the first byte");
        let _ = send.finish();
        a.close().await;
        Sample {
            connected,
            first_byte: arrived - start,
        }
    }

    /// Closes B.
    pub async fn close(self) {
        self.b.close().await;
    }
}
