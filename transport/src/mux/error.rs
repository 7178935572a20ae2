//! The mux's per-operation errors, printed as `kind: detail`.

use thiserror::Error;

use super::id::ProtocolId;
use crate::{DialError, StreamError};

/// Registering a protocol failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegisterError {
    /// Id 0 is reserved.
    #[error("reserved-protocol: protocol id {0} is reserved")]
    Reserved(ProtocolId),
    /// Another handler holds the id.
    #[error("already-registered: protocol {id} is registered as {name:?}")]
    AlreadyRegistered {
        /// The id.
        id: ProtocolId,
        /// The name it is registered under.
        name: &'static str,
    },
    /// The mux is closed.
    #[error("shutdown: the mux is closed")]
    Closed,
}

impl RegisterError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Reserved(_) => "reserved-protocol",
            Self::AlreadyRegistered { .. } => "already-registered",
            Self::Closed => "shutdown",
        }
    }
}

/// Opening a stream to a NodeId failed.
#[derive(Debug, Clone, Error)]
pub enum OpenError {
    /// The NodeId is this node's own.
    #[error("invalid-peer: {0} is this node")]
    SelfPeer(String),
    /// No connection, no known address and no relay to dial through.
    #[error("not-connected: no connection to {0}, no known address and no relay")]
    NotConnected(String),
    /// Dialing the peer failed.
    #[error("{0}")]
    Dial(DialError),
    /// The connection failed while opening the stream.
    #[error("connection-lost: {0}")]
    ConnectionLost(String),
}

impl OpenError {
    /// The stable kind (a dial failure keeps the dial's kind).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SelfPeer(_) => "invalid-peer",
            Self::NotConnected(_) => "not-connected",
            Self::Dial(e) => e.kind.as_str(),
            Self::ConnectionLost(_) => "connection-lost",
        }
    }
}

impl From<StreamError> for OpenError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::NotConnected(peer) => Self::NotConnected(peer),
            StreamError::ConnectionLost(d) | StreamError::Datagram(d) => Self::ConnectionLost(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DialErrorKind;

    #[test]
    fn kinds_are_stable() {
        assert_eq!(
            RegisterError::Reserved(ProtocolId::RESERVED).to_string(),
            "reserved-protocol: protocol id 0x0000 is reserved"
        );
        let e = RegisterError::AlreadyRegistered {
            id: ProtocolId::new(1),
            name: "ping",
        };
        assert_eq!(e.kind(), "already-registered");
        assert_eq!(
            e.to_string(),
            "already-registered: protocol 0x0001 is registered as \"ping\""
        );
        let e = OpenError::Dial(DialError::new(DialErrorKind::Timeout, "slow"));
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            ("timeout", "timeout: slow")
        );
        let e: OpenError = StreamError::ConnectionLost("gone".into()).into();
        assert_eq!(e.kind(), "connection-lost");
        assert_eq!(OpenError::SelfPeer("x".into()).kind(), "invalid-peer");
        assert_eq!(OpenError::NotConnected("x".into()).kind(), "not-connected");
    }
}
