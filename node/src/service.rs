//! The running node's answers to control requests: status and netcheck
//! from the transport's snapshots (plus the traversal snapshot), and pings
//! through the ping protocol. The HTTP endpoint reads the same status.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_transport::{NodeId, Transport};

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
    /// Addresses we were told about (`--peer`, bootstrap), for dialing a peer
    /// that is not connected when asked to ping it.
    known: Arc<Mutex<HashMap<NodeId, SocketAddr>>>,
    /// NAT type, punch counters and per-peer reasons.
    traversal: Arc<dyn TraversalSource>,
    /// The node's own counters (metrics).
    stats: Arc<NodeStats>,
}

impl NodeService {
    /// A service over `transport` with the given known peer addresses.
    pub fn new(transport: Transport, known: HashMap<NodeId, SocketAddr>) -> Self {
        Self {
            transport,
            known: Arc::new(Mutex::new(known)),
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
        .with_handshakes(&self.transport.handshake_status())
    }

    /// An address for `peer`: one we were told, else the last one seen.
    fn known_addr(&self, peer: NodeId) -> Option<SocketAddr> {
        let told = self
            .known
            .lock()
            .ok()
            .and_then(|known| known.get(&peer).copied());
        told.or_else(|| {
            self.transport
                .peers()
                .into_iter()
                .find(|p| p.node_id == peer)
                .and_then(|p| p.remote_addr)
        })
    }

    async fn ping(&self, peer: NodeId, timeout_ms: Option<u64>) -> Response {
        let timeout = timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_PING_TIMEOUT)
            .min(MAX_PING_TIMEOUT);
        match ping::ping(&self.transport, peer, self.known_addr(peer), timeout).await {
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
