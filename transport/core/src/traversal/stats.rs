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
    /// Birthday runs started (cone x symmetric pairs whose ordinary punch
    /// showed nothing; see `birthday`).
    pub birthday_runs: u64,
    /// Birthday packets sent (ports opened and random probes), all runs.
    pub birthday_packets: u64,
    /// Birthday runs whose punch then found a direct path.
    pub birthday_successes: u64,
    /// Birthday packets sent by the runs that succeeded (divide by
    /// `birthday_successes` for packets per success).
    pub birthday_packets_won: u64,
    /// Binding-lifetime packets we sent as the measuring side (opening
    /// probes and checks).
    pub lifetime_packets: u64,
    /// Binding checks we answered as an observer.
    pub binding_checks_answered: u64,
    /// Binding checks we refused (not observed at that IP, over budget).
    pub binding_checks_refused: u64,
    /// Times our own address changed (see `roam`).
    pub address_changes: u64,
    /// Mapping checks we finished as the asking side (see `mapcheck`).
    pub mapping_checks: u64,
    /// Mapping checks we offered our alternate port for, as an observer.
    pub mapping_offers: u64,
    /// Mapping checks we refused as an observer (not reached at our own
    /// address, no alternate port, over budget) and probes on the
    /// alternate port left unanswered.
    pub mapping_refused: u64,
    /// Birthday runs started because a plain punch failed while the NAT
    /// types left a direct path possible (see `agent_birthday`).
    pub birthday_escalations: u64,
}

impl TraversalStats {
    /// Birthday packets spent per successful run, if any succeeded.
    pub fn birthday_packets_per_success(&self) -> Option<u64> {
        self.birthday_packets_won
            .checked_div(self.birthday_successes)
    }
}
