//! Traversal failures with stable kinds, printed `kind: detail`.

use thiserror::Error;

/// Stable kinds of traversal failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraversalErrorKind {
    /// No observer reported our reflexive address in time.
    ReflexTimeout,
    /// The peer cannot be reached through the introducer (not connected to
    /// it, or the introducer never answered).
    PeerNotReachable,
    /// The connection carrying control messages or probes failed.
    Transport,
    /// No introducer (relay) is available to rendezvous through.
    RendezvousNoRelay,
    /// The introducer refused (budget, disabled, no observed address).
    RendezvousRejected,
    /// Probing ran out of time without a path validated both ways.
    PunchFailed,
    /// No port mapping protocol answered (UPnP-IGD, NAT-PMP, PCP).
    PortMapUnavailable,
    /// The request cannot be served by this build or address family.
    Unsupported,
}

impl TraversalErrorKind {
    /// Every kind, in documentation order.
    pub const ALL: [Self; 8] = [
        Self::ReflexTimeout,
        Self::PeerNotReachable,
        Self::Transport,
        Self::RendezvousNoRelay,
        Self::RendezvousRejected,
        Self::PunchFailed,
        Self::PortMapUnavailable,
        Self::Unsupported,
    ];

    /// The kind whose stable text is `text`.
    pub fn from_str_kind(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The stable text of this kind.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ReflexTimeout => "reflex-timeout",
            Self::PeerNotReachable => "peer-not-reachable",
            Self::Transport => "transport",
            Self::RendezvousNoRelay => "rendezvous-no-relay",
            Self::RendezvousRejected => "rendezvous-rejected",
            Self::PunchFailed => "punch-failed",
            Self::PortMapUnavailable => "port-map-unavailable",
            Self::Unsupported => "unsupported",
        }
    }
}

impl std::fmt::Display for TraversalErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A traversal failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind}: {detail}")]
pub struct TraversalError {
    /// Stable kind.
    pub kind: TraversalErrorKind,
    /// Human detail.
    pub detail: String,
}

impl TraversalError {
    /// Builds an error.
    pub fn new(kind: TraversalErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_kind_colon_detail() {
        let e = TraversalError::new(TraversalErrorKind::PunchFailed, "timeout");
        assert_eq!(e.to_string(), "punch-failed: timeout");
        let all = [
            TraversalErrorKind::ReflexTimeout,
            TraversalErrorKind::PeerNotReachable,
            TraversalErrorKind::Transport,
            TraversalErrorKind::RendezvousNoRelay,
            TraversalErrorKind::RendezvousRejected,
            TraversalErrorKind::PunchFailed,
            TraversalErrorKind::PortMapUnavailable,
            TraversalErrorKind::Unsupported,
        ];
        let texts: Vec<&str> = all.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            texts,
            [
                "reflex-timeout",
                "peer-not-reachable",
                "transport",
                "rendezvous-no-relay",
                "rendezvous-rejected",
                "punch-failed",
                "port-map-unavailable",
                "unsupported"
            ]
        );
    }
}
