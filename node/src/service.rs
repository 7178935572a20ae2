//! The running node's answers: status and netcheck from the transport's
//! snapshots (plus the traversal snapshot and the subsystems' sections),
//! and the metrics beyond the shared exposition (subsystems, local API).
//! The local API and the HTTP endpoint read the same status.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use relay_transport::{Mux, Transport};

use crate::api::server::ApiStats;
use crate::metrics::collector::NodeStats;
use crate::metrics::text::{count, Kind, TextWriter};
use crate::netcheck::{netcheck_report, NetcheckReport};
use crate::status::StatusReport;
use crate::subsystem::SubsystemSet;
use crate::traversal_view::{NoTraversal, TraversalSource};

/// The state a running node reports.
#[derive(Debug, Clone)]
pub struct NodeService {
    transport: Transport,
    /// The protocol mux (its counters go in the metrics).
    mux: Mux,
    /// NAT type, punch counters and per-peer reasons.
    traversal: Arc<dyn TraversalSource>,
    /// The node's own counters (metrics).
    stats: Arc<NodeStats>,
    /// The subsystems (their status sections and metrics).
    subsystems: SubsystemSet,
    /// The local API's counters.
    api: Option<Arc<ApiStats>>,
}

impl NodeService {
    /// A service over `mux` and its transport.
    pub fn new(mux: Mux) -> Self {
        Self {
            transport: mux.transport().clone(),
            mux,
            traversal: Arc::new(NoTraversal),
            stats: Arc::new(NodeStats::new()),
            subsystems: SubsystemSet::default(),
            api: None,
        }
    }

    /// Uses `source` for the traversal state in status, netcheck and metrics.
    pub fn with_traversal(mut self, source: Arc<dyn TraversalSource>) -> Self {
        self.traversal = source;
        self
    }

    /// Uses `stats` for the node's own counters.
    pub fn with_stats(mut self, stats: Arc<NodeStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Reports the sections and metrics of `subsystems`.
    pub fn with_subsystems(mut self, subsystems: SubsystemSet) -> Self {
        self.subsystems = subsystems;
        self
    }

    /// Reports the local API's counters in the metrics.
    pub fn with_api_stats(mut self, stats: Arc<ApiStats>) -> Self {
        self.api = Some(stats);
        self
    }

    /// The protocol mux the node's protocols run on.
    pub fn mux(&self) -> &Mux {
        &self.mux
    }

    /// The transport this service answers for.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The node's own counters.
    pub fn stats(&self) -> &Arc<NodeStats> {
        &self.stats
    }

    /// The node's view of the network.
    pub fn netcheck(&self) -> NetcheckReport {
        netcheck_report(&self.transport, &self.traversal.snapshot())
    }

    /// The current status.
    pub fn status(&self) -> StatusReport {
        StatusReport::new(
            self.transport.node_id().to_string(),
            &self.transport.local_addrs(),
            self.transport.peers(),
            &self.transport.relay_status(),
        )
        .with_traversal(&self.traversal.snapshot(), &self.transport.observed_addrs())
        .with_port_map(&self.transport.port_map_status())
        .with_subsystems(self.subsystems.status())
        .with_handshakes(&self.transport.handshake_status())
    }

    /// The subsystems' and the local API's metric families (appended to the
    /// shared exposition).
    pub fn extra_metrics(&self) -> String {
        let mut w = TextWriter::new();
        self.subsystems.metrics(&mut w);
        if let Some(api) = &self.api {
            for (name, help, value) in [
                (
                    "relay_node_api_connections_total",
                    "Local API connections accepted.",
                    &api.connections,
                ),
                (
                    "relay_node_api_refused_total",
                    "Local API connections refused for a foreign uid.",
                    &api.refused,
                ),
                (
                    "relay_node_api_evicted_total",
                    "Idle or slow local API connections closed to make room.",
                    &api.evicted,
                ),
                (
                    "relay_node_api_busy_total",
                    "Local API connections refused because every slot was busy.",
                    &api.busy,
                ),
                (
                    "relay_node_api_requests_total",
                    "Local API requests answered.",
                    &api.requests,
                ),
            ] {
                w.single(name, Kind::Counter, help, count(value.load(Relaxed)));
            }
        }
        w.finish()
    }
}
