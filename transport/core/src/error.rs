//! Per-operation errors with stable kinds, printed as `kind: detail`.

use thiserror::Error;

/// Binding the endpoint failed.
#[derive(Debug, Error)]
pub enum BindError {
    /// The UDP socket could not be bound.
    #[error("bind: cannot bind {addr}: {source}")]
    Io {
        /// The address we tried.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// quinn refused the configuration.
    #[error("config: {0}")]
    Config(String),
}

/// Stable kinds for dial failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DialErrorKind {
    /// The responder's static key is not the NodeId we dialed.
    PeerKeyMismatch,
    /// The two sides hold different mesh network keys.
    NetworkKeyMismatch,
    /// The peer speaks another QUIC version.
    VersionMismatch,
    /// No answer within the dial timeout.
    Timeout,
    /// The peer closed or refused the connection.
    Refused,
    /// Dialing ourselves, or an address we cannot use.
    InvalidAddress,
    /// The local endpoint is closed.
    EndpointClosed,
    /// Anything else on the QUIC layer.
    Transport,
    /// Dialing by NodeId alone, but no connected relay serves us.
    NoRelay,
    /// No relay we use knows the peer.
    PeerNotReachable,
}

impl DialErrorKind {
    /// The stable text of this kind.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::PeerKeyMismatch => "peer-key-mismatch",
            Self::NetworkKeyMismatch => "network-key-mismatch",
            Self::VersionMismatch => "version-mismatch",
            Self::Timeout => "timeout",
            Self::Refused => "refused",
            Self::InvalidAddress => "invalid-address",
            Self::EndpointClosed => "endpoint-closed",
            Self::Transport => "transport",
            Self::NoRelay => "no-relay",
            Self::PeerNotReachable => "peer-not-reachable",
        }
    }
}

impl std::fmt::Display for DialErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dial failed.
#[derive(Debug, Clone, Error)]
#[error("{kind}: {detail}")]
pub struct DialError {
    /// Stable kind.
    pub kind: DialErrorKind,
    /// Human detail.
    pub detail: String,
}

impl DialError {
    /// Builds a dial error.
    pub fn new(kind: DialErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

/// Opening a stream or sending a datagram failed.
#[derive(Debug, Clone, Error)]
pub enum StreamError {
    /// No connection to that peer, and none could be made.
    #[error("not-connected: no connection to {0}")]
    NotConnected(String),
    /// The connection was lost.
    #[error("connection-lost: {0}")]
    ConnectionLost(String),
    /// The peer does not accept datagrams, or the datagram is too large.
    #[error("datagram: {0}")]
    Datagram(String),
}

impl StreamError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotConnected(_) => "not-connected",
            Self::ConnectionLost(_) => "connection-lost",
            Self::Datagram(_) => "datagram",
        }
    }
}
