//! Connected pairs for the relayed-vs-direct comparison: A and B either
//! connected directly (A dialled B's address) or through a relay on its own
//! thread (A reached B by NodeId alone with `connect_relayed`). The stream
//! workloads of [`crate::streams`] run on either.

use std::time::Duration;

use relay_transport::{NetworkKey, RelayLimits, Transport};

use crate::common::relay::{
    accept_bi, accept_uni, bind_transport_no_traversal as bind_transport, transport_addr,
};
use crate::common::relay_node::{join_relay, RelayThread};
use crate::streams::{self, EchoStream};

/// How A reaches B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A dialled B's address.
    Direct,
    /// Through a relay both are clients of.
    Relayed,
}

/// One live A→B connection.
pub struct Rig {
    a: Transport,
    b: Transport,
    relay: Option<RelayThread>,
}

impl Rig {
    /// Connects a fresh A and B by `route`; a relayed rig starts its own
    /// relay with `limits`.
    pub async fn new(route: Route, limits: RelayLimits) -> Self {
        let network_key = NetworkKey::generate();
        let a = bind_transport(&network_key).await;
        let b = bind_transport(&network_key).await;
        let relay = match route {
            Route::Direct => {
                a.connect(b.node_id(), transport_addr(&b)).await.unwrap();
                None
            }
            Route::Relayed => {
                let relay = RelayThread::start(&network_key, limits);
                join_relay(&a, &relay).await;
                join_relay(&b, &relay).await;
                a.connect_relayed(b.node_id()).await.unwrap();
                Some(relay)
            }
        };
        Self { a, b, relay }
    }

    /// The relay's counters (relayed rigs only).
    pub fn relay_stats(&self) -> Option<relay_transport::RelayStats> {
        self.relay
            .as_ref()
            .map(|r| r.transport.relay_status().stats)
    }

    /// CPU time the relay's thread has used (relayed rigs only).
    pub fn relay_cpu(&self) -> Option<Duration> {
        self.relay.as_ref().and_then(RelayThread::cpu_time)
    }

    /// One-way bulk of `total` bytes from A to B on a fresh stream.
    pub async fn bulk(&self, total: u64) -> Duration {
        let send = self.a.open_uni(self.b.node_id()).await.unwrap();
        let b = self.b.clone();
        streams::bulk(send, async move { accept_uni(&b).await }, total).await
    }

    /// A bidirectional stream B echoes on.
    pub async fn echo_stream(&self) -> EchoStream {
        let (send, recv) = self.a.open_bi(self.b.node_id()).await.unwrap();
        let b = self.b.clone();
        EchoStream::new(send, recv, async move { accept_bi(&b).await })
    }

    /// Closes A, B and the relay.
    pub async fn close(self) {
        self.a.close().await;
        self.b.close().await;
        if let Some(relay) = self.relay {
            tokio::task::spawn_blocking(move || relay.stop())
                .await
                .unwrap();
        }
    }
}
