//! Traversal control messages ([`TraversalMsg`]), carried inside the
//! transport control channel as one `ControlMsg::Traversal` variant
//! (postcard-encoded, unreliable QUIC datagrams: senders retry).
//!
//! The exchange, for node A reaching node B through introducer I (a node
//! connected to both):
//!
//! 1. Every node tells its peers its NAT type ([`TraversalMsg::NatInfo`]).
//! 2. A asks I: [`TraversalMsg::ReachRequest`] `{ req, target: B }`.
//! 3. I answers both sides with an [`Introduction`]: the other side's
//!    candidates (only addresses I observed itself), its NAT type, and a
//!    relative fire time ("fire in N ms", computed per side from its RTT so
//!    the two clocks never need to agree).
//!    Or I refuses A: [`TraversalMsg::Rejected`].
//!
//! Separately, a node measuring how long its NAT keeps an idle binding asks
//! a directly connected peer (the observer) to send one probe to an address
//! it saw one of our probe ports at: [`TraversalMsg::BindingCheck`].
//!
//! A node that only one public peer observes learns whether its NAT maps
//! per destination from that peer's second UDP port (RFC 5780's
//! alternate-port test): it asks [`TraversalMsg::MappingCheck`], the peer
//! answers [`TraversalMsg::MappingPort`] with its alternate port (or
//! refuses), and the node probes both of the peer's ports from its one
//! socket; each reply says where that port saw it.
//!
//! Decoding ([`TraversalMsg::decode`]) is total and checks the bounds
//! ([`TraversalMsg::validate`]); messages decoded as part of a larger
//! envelope must be validated too.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::NodeId;

/// Most candidates one introduction may carry.
pub const MAX_CANDIDATES: usize = 8;
/// Latest fire time an introduction may ask for, in milliseconds.
pub const MAX_FIRE_IN_MS: u32 = 10_000;

/// How a node's NAT maps its socket, as far as it can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum NatType {
    /// Not enough observations (fewer than two observers on different IPs).
    #[default]
    Unknown,
    /// No NAT: the reflexive address is the bound address (or one was pinned).
    Open,
    /// Endpoint-independent mapping: one external ip:port for every
    /// destination.
    Cone,
    /// Endpoint-dependent mapping: different external ports per destination.
    Symmetric,
}

impl NatType {
    /// Stable text: "unknown" | "open" | "cone" | "symmetric".
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Open => "open",
            Self::Cone => "cone",
            Self::Symmetric => "symmetric",
        }
    }
}

impl std::fmt::Display for NatType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an introducer refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RejectReason {
    /// The requester is over its introduction budget.
    Budget,
    /// The introducer has no connection to the target.
    NotConnected,
    /// The introducer has observed no address for one of the two sides.
    NoObservedAddr,
    /// The introducer does not introduce.
    Disabled,
}

impl RejectReason {
    /// Stable text.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Budget => "over budget",
            Self::NotConnected => "target not connected to introducer",
            Self::NoObservedAddr => "no observed address",
            Self::Disabled => "introductions disabled",
        }
    }
}

/// One side's half of an introduction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Introduction {
    /// The request this answers (chosen by the requester).
    pub req: u64,
    /// Who asked for it.
    pub requester: NodeId,
    /// The node to punch towards.
    pub peer: NodeId,
    /// The peer's candidate addresses, as the introducer observed them.
    pub candidates: Vec<SocketAddr>,
    /// The peer's NAT type, as the peer reported it.
    pub peer_nat: NatType,
    /// Start probing this many milliseconds after receipt.
    pub fire_in_ms: u32,
}

/// A traversal control message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TraversalMsg {
    /// "My NAT type is now this."
    NatInfo {
        /// The sender's current classification.
        nat: NatType,
    },
    /// "Please introduce me to `target`."
    ReachRequest {
        /// Requester-chosen id; retries reuse it.
        req: u64,
        /// The node to reach.
        target: NodeId,
    },
    /// "Punch towards this peer."
    Introduce(Introduction),
    /// "I will not introduce you."
    Rejected {
        /// The refused request.
        req: u64,
        /// Its target.
        target: NodeId,
        /// Why.
        reason: RejectReason,
    },
    /// "My gateway maps this external address to my socket" (a port
    /// mapping: NAT-PMP, PCP or UPnP-IGD), or `None` when the mapping is
    /// gone. An introducer adds it to the sender's candidates only when
    /// its IP is the one it observes the sender at.
    PortMapped {
        /// The mapped external address.
        addr: Option<SocketAddr>,
    },
    /// "Send one probe (flag `BINDING`, transaction id `tx`) from your
    /// main socket to `addr`": a binding-lifetime check. `addr` is where
    /// the receiver saw one of the sender's probe ports some seconds ago;
    /// whether the probe gets through tells whether the sender's NAT still
    /// holds that binding. The receiver answers only a peer it is connected
    /// to, only on the IP it observes that peer at, and within a budget.
    BindingCheck {
        /// The transaction id the probe must carry.
        tx: [u8; BINDING_TX_LEN],
        /// Where to send it.
        addr: SocketAddr,
    },
    /// "Tell me your alternate port": the start of a mapping check (see
    /// the module docs). The receiver answers with
    /// [`TraversalMsg::MappingPort`], or with nothing when the sender is
    /// over its budget.
    MappingCheck {
        /// Sender-chosen id; retries reuse it.
        tx: [u8; BINDING_TX_LEN],
    },
    /// "Probe my alternate port `port`, on the IP you reach me at, with
    /// `BINDING` probes, for the next few seconds", or `None`: this node
    /// does not offer mapping checks to you (it is not reachable at its
    /// own address, or has no alternate port).
    MappingPort {
        /// The [`TraversalMsg::MappingCheck`] this answers.
        tx: [u8; BINDING_TX_LEN],
        /// The alternate UDP port, never 0.
        port: Option<u16>,
    },
}

/// Length of a binding check's transaction id (a probe's).
pub const BINDING_TX_LEN: usize = 12;

/// Why a traversal message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TraversalMsgError {
    /// Not a valid postcard encoding of a message.
    #[error("malformed traversal message")]
    Malformed,
    /// Bytes after the message.
    #[error("{0} trailing bytes after traversal message")]
    Trailing(usize),
    /// Too many candidates.
    #[error("{0} candidates, at most {MAX_CANDIDATES}")]
    TooManyCandidates(usize),
    /// Fire time too far ahead.
    #[error("fire time {0} ms is beyond {MAX_FIRE_IN_MS} ms")]
    FireTime(u32),
    /// A mapped address with port 0 or an unspecified IP.
    #[error("invalid mapped address in traversal message")]
    MappedAddr,
    /// A binding-check address with port 0 or an unspecified IP.
    #[error("invalid binding-check address in traversal message")]
    CheckAddr,
    /// An alternate port of 0.
    #[error("alternate port 0 in traversal message")]
    AltPort,
    /// A NodeId that is not a valid key.
    #[error("invalid NodeId in traversal message")]
    NodeId,
    /// Encoding failed (cannot happen for valid messages).
    #[error("cannot encode traversal message")]
    Encode,
}

impl TraversalMsgError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        "invalid-traversal-msg"
    }
}

fn check_id(id: &NodeId) -> Result<(), TraversalMsgError> {
    NodeId::from_bytes(id.as_bytes())
        .map(|_| ())
        .map_err(|_| TraversalMsgError::NodeId)
}

impl TraversalMsg {
    /// Checks the bounds serde cannot express.
    pub fn validate(&self) -> Result<(), TraversalMsgError> {
        match self {
            Self::NatInfo { .. } | Self::MappingCheck { .. } => Ok(()),
            Self::MappingPort { port, .. } => match port {
                Some(0) => Err(TraversalMsgError::AltPort),
                _ => Ok(()),
            },
            Self::PortMapped { addr } => match addr {
                Some(a) if a.port() == 0 || a.ip().is_unspecified() => {
                    Err(TraversalMsgError::MappedAddr)
                }
                _ => Ok(()),
            },
            Self::BindingCheck { addr, .. } => {
                if addr.port() == 0 || addr.ip().is_unspecified() {
                    return Err(TraversalMsgError::CheckAddr);
                }
                Ok(())
            }
            Self::ReachRequest { target, .. } | Self::Rejected { target, .. } => check_id(target),
            Self::Introduce(intro) => {
                if intro.candidates.len() > MAX_CANDIDATES {
                    return Err(TraversalMsgError::TooManyCandidates(intro.candidates.len()));
                }
                if intro.fire_in_ms > MAX_FIRE_IN_MS {
                    return Err(TraversalMsgError::FireTime(intro.fire_in_ms));
                }
                check_id(&intro.requester)?;
                check_id(&intro.peer)
            }
        }
    }

    /// Decodes and validates one message that fills `data` exactly.
    pub fn decode(data: &[u8]) -> Result<Self, TraversalMsgError> {
        let (msg, rest) =
            postcard::take_from_bytes::<Self>(data).map_err(|_| TraversalMsgError::Malformed)?;
        if !rest.is_empty() {
            return Err(TraversalMsgError::Trailing(rest.len()));
        }
        msg.validate()?;
        Ok(msg)
    }

    /// Encodes a message (validated first).
    pub fn encode(&self) -> Result<Vec<u8>, TraversalMsgError> {
        self.validate()?;
        postcard::to_allocvec(self).map_err(|_| TraversalMsgError::Encode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;

    fn id(n: u8) -> NodeId {
        SecretKey::from_bytes(&[n; 32]).node_id()
    }

    fn intro(candidates: usize, fire_in_ms: u32) -> TraversalMsg {
        TraversalMsg::Introduce(Introduction {
            req: 7,
            requester: id(1),
            peer: id(2),
            candidates: (0..candidates)
                .map(|i| SocketAddr::from(([203, 0, 113, i as u8], 4000)))
                .collect(),
            peer_nat: NatType::Cone,
            fire_in_ms,
        })
    }

    #[test]
    fn roundtrip_every_variant() {
        let msgs = [
            TraversalMsg::NatInfo {
                nat: NatType::Symmetric,
            },
            TraversalMsg::ReachRequest {
                req: u64::MAX,
                target: id(3),
            },
            intro(2, 40),
            TraversalMsg::Rejected {
                req: 1,
                target: id(4),
                reason: RejectReason::Budget,
            },
            TraversalMsg::PortMapped {
                addr: Some("198.51.101.10:40000".parse().unwrap()),
            },
            TraversalMsg::PortMapped { addr: None },
            TraversalMsg::BindingCheck {
                tx: [7; BINDING_TX_LEN],
                addr: "198.51.101.10:40001".parse().unwrap(),
            },
            TraversalMsg::BindingCheck {
                tx: [0; BINDING_TX_LEN],
                addr: "[2001:db8::1]:9".parse().unwrap(),
            },
            TraversalMsg::MappingCheck {
                tx: [3; BINDING_TX_LEN],
            },
            TraversalMsg::MappingPort {
                tx: [3; BINDING_TX_LEN],
                port: Some(40001),
            },
            TraversalMsg::MappingPort {
                tx: [4; BINDING_TX_LEN],
                port: None,
            },
        ];
        for msg in msgs {
            let bytes = msg.encode().unwrap();
            assert!(bytes.len() < 1000);
            assert_eq!(TraversalMsg::decode(&bytes), Ok(msg));
        }
    }

    #[test]
    fn bounds_are_enforced() {
        assert_eq!(
            intro(MAX_CANDIDATES + 1, 0).encode(),
            Err(TraversalMsgError::TooManyCandidates(MAX_CANDIDATES + 1))
        );
        assert_eq!(
            intro(1, MAX_FIRE_IN_MS + 1).encode(),
            Err(TraversalMsgError::FireTime(MAX_FIRE_IN_MS + 1))
        );
        let mut bytes = intro(1, 1).encode().unwrap();
        bytes.push(0);
        assert_eq!(
            TraversalMsg::decode(&bytes),
            Err(TraversalMsgError::Trailing(1))
        );
        assert_eq!(
            TraversalMsg::decode(&[0xff, 0xff]),
            Err(TraversalMsgError::Malformed)
        );
        for bad in ["0.0.0.0:4000", "198.51.101.10:0"] {
            assert_eq!(
                TraversalMsg::PortMapped {
                    addr: Some(bad.parse().unwrap())
                }
                .encode(),
                Err(TraversalMsgError::MappedAddr)
            );
        }
    }

    #[test]
    fn binding_check_bounds() {
        for bad in ["0.0.0.0:4000", "198.51.101.10:0", "[::]:9"] {
            let msg = TraversalMsg::BindingCheck {
                tx: [1; BINDING_TX_LEN],
                addr: bad.parse().unwrap(),
            };
            assert_eq!(msg.encode(), Err(TraversalMsgError::CheckAddr));
            // A peer that encodes it anyway is refused on decode.
            let bytes = postcard::to_allocvec(&msg).unwrap();
            assert_eq!(
                TraversalMsg::decode(&bytes),
                Err(TraversalMsgError::CheckAddr)
            );
        }
        let good = TraversalMsg::BindingCheck {
            tx: [1; BINDING_TX_LEN],
            addr: "198.51.101.10:4000".parse().unwrap(),
        }
        .encode()
        .unwrap();
        // A 12-byte id is fixed-size: a truncated one does not decode.
        assert_eq!(
            TraversalMsg::decode(&good[..good.len() - 1]),
            Err(TraversalMsgError::Malformed)
        );
    }

    #[test]
    fn earlier_variants_keep_their_encoding() {
        // The mapping-check messages were appended: the variant index of
        // every earlier message is unchanged.
        let nat = TraversalMsg::NatInfo { nat: NatType::Cone }
            .encode()
            .unwrap();
        assert_eq!(nat, [0, 2]);
        let check = TraversalMsg::BindingCheck {
            tx: [0; BINDING_TX_LEN],
            addr: "198.51.101.10:4000".parse().unwrap(),
        }
        .encode()
        .unwrap();
        assert_eq!(check[0], 5);
        let ask = TraversalMsg::MappingCheck {
            tx: [0; BINDING_TX_LEN],
        };
        assert_eq!(ask.encode().unwrap()[0], 6);
    }

    #[test]
    fn alternate_port_zero_is_refused() {
        let msg = TraversalMsg::MappingPort {
            tx: [1; BINDING_TX_LEN],
            port: Some(0),
        };
        assert_eq!(msg.encode(), Err(TraversalMsgError::AltPort));
        let bytes = postcard::to_allocvec(&msg).unwrap();
        assert_eq!(
            TraversalMsg::decode(&bytes),
            Err(TraversalMsgError::AltPort)
        );
    }

    #[test]
    fn invalid_node_id_is_rejected() {
        let good = TraversalMsg::ReachRequest {
            req: 1,
            target: id(3),
        }
        .encode()
        .unwrap();
        // Overwrite the key with y = 2, which is not on the curve.
        let mut bad = good.clone();
        let start = bad.len() - 32;
        bad[start..].fill(0);
        bad[start] = 2;
        assert_eq!(TraversalMsg::decode(&bad), Err(TraversalMsgError::NodeId));
    }
}
