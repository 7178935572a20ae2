//! Parsing of command-line values into typed values, with stable error kinds
//! (`invalid-address`, `invalid-peer`, `invalid-node-id`, `invalid-ticket`).
//!
//! Error messages never echo a ticket: it holds the network key.

use std::net::{SocketAddr, ToSocketAddrs};

use relay_proto::{NodeId, ParseNodeIdError, ParseTicketError, Ticket};
use thiserror::Error;

/// A command-line value was rejected.
#[derive(Debug, Error)]
pub enum ArgError {
    /// Not `HOST:PORT`.
    #[error("invalid-address: {input:?} is not HOST:PORT ({reason})")]
    Address {
        /// What the user typed.
        input: String,
        /// Why it failed.
        reason: String,
    },
    /// Not `NODEID@HOST:PORT`.
    #[error("invalid-peer: {input:?}: {reason}")]
    Peer {
        /// What the user typed.
        input: String,
        /// Why it failed.
        reason: String,
    },
    /// Not a NodeId.
    #[error("invalid-node-id: {0}")]
    NodeId(#[from] ParseNodeIdError),
    /// Not a ticket.
    #[error("invalid-ticket: {0}")]
    Ticket(#[from] ParseTicketError),
    /// Not a ledger entry kind.
    #[error("invalid-kind: {0:?} is not a ledger entry kind (node-announcement, relay-session, traversal-outcome, channel-registration, service-registration, token-revocation)")]
    Kind(String),
    /// Not a ledger cursor.
    #[error("invalid-cursor: {0:?} is not a ledger cursor (a decimal number from a listing)")]
    Cursor(String),
}

impl ArgError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Address { .. } => "invalid-address",
            Self::Peer { .. } => "invalid-peer",
            Self::NodeId(_) => "invalid-node-id",
            Self::Ticket(_) => "invalid-ticket",
            Self::Kind(_) => "invalid-kind",
            Self::Cursor(_) => "invalid-cursor",
        }
    }
}

/// A ledger entry kind, by its name.
pub fn entry_kind(input: &str) -> Result<relay_proto::ledger::EntryKind, ArgError> {
    input
        .trim()
        .parse()
        .map_err(|_| ArgError::Kind(input.to_string()))
}

/// A ledger cursor.
pub fn cursor(input: &str) -> Result<crate::ledger::Cursor, ArgError> {
    input
        .trim()
        .parse()
        .map_err(|_| ArgError::Cursor(input.to_string()))
}

/// `HOST:PORT`: an IP literal (`[v6]:port` for IPv6) or a name resolved once
/// through the system resolver (first result wins).
pub fn host_port(input: &str) -> Result<SocketAddr, ArgError> {
    let err = |reason: String| ArgError::Address {
        input: input.to_string(),
        reason,
    };
    if let Ok(addr) = input.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !input.contains(':') {
        return Err(err("missing :PORT".into()));
    }
    match input.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| err("name has no addresses".into())),
        Err(e) => Err(err(e.to_string())),
    }
}

/// `NODEID@HOST:PORT`.
pub fn peer(input: &str) -> Result<(NodeId, SocketAddr), ArgError> {
    let err = |reason: String| ArgError::Peer {
        input: input.to_string(),
        reason,
    };
    let (id, addr) = input
        .split_once('@')
        .ok_or_else(|| err("expected NODEID@HOST:PORT".into()))?;
    let id = id.parse::<NodeId>().map_err(|e| err(e.to_string()))?;
    let addr = host_port(addr).map_err(|e| err(e.to_string()))?;
    Ok((id, addr))
}

/// A NodeId in its canonical text form.
pub fn node_id(input: &str) -> Result<NodeId, ArgError> {
    Ok(input.trim().parse::<NodeId>()?)
}

/// A join ticket.
pub fn ticket(input: &str) -> Result<Ticket, ArgError> {
    Ok(Ticket::decode(input)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    #[test]
    fn addresses() {
        assert_eq!(host_port("127.0.0.1:7420").unwrap().port(), 7420);
        assert_eq!(host_port("[::1]:1").unwrap().port(), 1);
        assert_eq!(host_port("localhost:9").unwrap().port(), 9);
        for bad in ["", "127.0.0.1", "1.2.3.4:99999", "::1"] {
            let e = host_port(bad).unwrap_err();
            assert_eq!(e.kind(), "invalid-address", "{bad}");
        }
    }

    #[test]
    fn peers() {
        let id = SecretKey::generate().node_id();
        let (got, addr) = peer(&format!("{id}@127.0.0.1:5")).unwrap();
        assert_eq!((got, addr.port()), (id, 5));
        for bad in [
            "x@127.0.0.1:5".to_string(),
            format!("{id}"),
            format!("{id}@nope"),
        ] {
            assert_eq!(peer(&bad).unwrap_err().kind(), "invalid-peer", "{bad}");
        }
    }

    #[test]
    fn ids_and_tickets() {
        assert_eq!(node_id("abc").unwrap_err().kind(), "invalid-node-id");
        let e = ticket("rnt1zzzz").unwrap_err();
        assert_eq!(e.kind(), "invalid-ticket");
        assert!(e.to_string().starts_with("invalid-ticket: "));
    }
}
