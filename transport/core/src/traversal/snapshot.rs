//! What a transport's traversal reports upward for status, `netcheck` and
//! metrics: one plain snapshot taken under the core's lock.

use std::collections::BTreeMap;

use relay_proto::NodeId;

use super::lifetime::LifetimeReport;
use super::nat::{NatReport, Observation};
use super::stats::TraversalStats;

/// Traversal state at one instant ([`crate::Transport::traversal_snapshot`]).
#[derive(Debug, Clone, Default)]
pub struct TraversalSnapshot {
    /// Whether this transport runs traversal at all
    /// ([`crate::TransportConfig::traversal`]). When false, everything
    /// else holds defaults.
    pub enabled: bool,
    /// Our NAT type and reflexive address.
    pub nat: NatReport,
    /// Counters and the last failure.
    pub stats: TraversalStats,
    /// Why a peer is not direct, for connected peers that have a reason.
    pub why: BTreeMap<NodeId, String>,
    /// Every live observation of our address, by observer.
    pub observations: Vec<(NodeId, Observation)>,
    /// Our NAT's binding lifetime and the keepalive interval in use on
    /// direct paths.
    pub lifetime: LifetimeReport,
    /// The keepalive interval quinn gives new connections (the learned
    /// one once the lifetime is known; see `endpoint::quic`).
    pub quic_keep_alive: std::time::Duration,
}
