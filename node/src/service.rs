//! The running node's answers to control requests: status and netcheck
//! from the transport's snapshots (plus the traversal snapshot), and pings
//! through the ping protocol. The HTTP endpoint reads the same status.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use relay_transport::{Mux, NodeId, Transport};

use crate::control::server::{BoxFuture, ControlHandler};
use crate::control::{Request, Response};
use crate::metrics::collector::NodeStats;
use crate::netcheck::{netcheck_report, NetcheckReport};
use crate::protocols::ping;
use crate::status::StatusReport;
use crate::traversal_view::{NoTraversal, TraversalSource};

/// Ping timeout when the request names none.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest ping timeout a request may ask for.
pub const MAX_PING_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves control requests for one running node.
#[derive(Debug, Clone)]
pub struct NodeService {
    transport: Transport,
    /// The protocol mux pings go through.
    mux: Mux,
    /// NAT type, punch counters and per-peer reasons.
    traversal: Arc<dyn TraversalSource>,
    /// The node's own counters (metrics).
    stats: Arc<NodeStats>,
}

impl NodeService {
    /// A service over `mux` (and its transport). The mux remembers the
    /// `known` peer addresses (`--peer`, bootstrap), to dial a peer that is
    /// not connected when asked to ping it.
    pub fn new(mux: Mux, known: HashMap<NodeId, SocketAddr>) -> Self {
        for (peer, addr) in known {
            mux.remember_addr(peer, addr);
        }
        Self {
            transport: mux.transport().clone(),
            mux,
            traversal: Arc::new(NoTraversal),
            stats: Arc::new(NodeStats::new()),
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

    /// The transport this service answers for.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The protocol mux the node's protocols run on.
    pub fn mux(&self) -> &Mux {
        &self.mux
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
    }

    async fn ping(&self, peer: NodeId, timeout_ms: Option<u64>) -> Response {
        let timeout = timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_PING_TIMEOUT)
            .min(MAX_PING_TIMEOUT);
        match ping::ping(&self.mux, peer, timeout).await {
            Ok(pong) => Response::ok(&pong),
            Err(e) => Response::error(e.kind(), e.detail()),
        }
    }
}

impl ControlHandler for NodeService {
    fn handle(&self, request: Request) -> BoxFuture<'_, Response> {
        Box::pin(async move {
            match request {
                Request::Status => Response::ok(&self.status()),
                Request::Ping {
                    node_id,
                    timeout_ms,
                } => self.ping(node_id, timeout_ms).await,
                Request::Netcheck => Response::ok(&self.netcheck()),
            }
        })
    }
}
