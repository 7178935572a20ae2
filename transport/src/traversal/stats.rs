//! Traversal counters for status and metrics.

/// Counters of one traversal core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraversalStats {
    /// Punch sessions started.
    pub punches_attempted: u64,
    /// Punch sessions that found a direct path.
    pub punches_succeeded: u64,
    /// Times a peer stayed on (or went back to) its relayed path because
    /// going direct failed or a direct path was lost.
    pub relay_fallbacks: u64,
    /// Times a peer got a new direct path.
    pub direct_upgrades: u64,
    /// The last failure, as `kind: detail`.
    pub last_error: Option<String>,
    /// Probes and replies sent.
    pub probes_sent: u64,
    /// Valid probes and replies received.
    pub probes_received: u64,
    /// Probe frames dropped as malformed, unknown-sender or badly tagged.
    pub probes_invalid: u64,
    /// Introductions this node made as introducer.
    pub introductions: u64,
    /// Requests this node refused as introducer.
    pub introductions_rejected: u64,
}
