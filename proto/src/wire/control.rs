//! The transport control channel: small messages the transports of two
//! connected nodes exchange about the connection itself.
//!
//! Every QUIC datagram on a connection starts with one prefix byte added and
//! stripped by the transport:
//!
//! - [`DATAGRAM_CONTROL`]: a [`ControlMsg`] (postcard-encoded), sent once,
//!   unreliably (for periodic, idempotent hints);
//! - [`DATAGRAM_APP`]: an application datagram;
//! - [`DATAGRAM_RELIABLE`]: a [`ReliableFrame`] of the reliable control
//!   channel: a [`ControlMsg`] with a per-connection sequence number
//!   ([`ReliableFrame::Msg`]), or the receiver's acknowledgement
//!   ([`ReliableFrame::Ack`]). The sender retransmits what is not
//!   acknowledged; the receiver delivers in order, once.
//!
//! An encoded message is at most [`MAX_CONTROL_LEN`] bytes (a reliable frame
//! at most [`MAX_RELIABLE_LEN`]); [`ControlMsg::decode`] and
//! [`ReliableFrame::decode`] refuse anything longer, anything with trailing
//! bytes and invalid NodeIds, with a typed [`ControlMsgError`].
//!
//! The messages:
//!
//! - [`ControlMsg::ObservedAddr`]: "I see you at this address" (sent on
//!   connect and whenever it changes; it is the receiver's reflexive
//!   address as seen by the sender).
//! - [`ControlMsg::RelayOffer`]: "I relay for mesh members, within these
//!   limits" (repeated until the peer registers).
//! - [`ControlMsg::RelayRegister`] / [`ControlMsg::RelayRegistered`] /
//!   [`ControlMsg::RelayRefused`]: a client asks a relay to serve it; the
//!   relay answers. Registration happens over the authenticated connection
//!   between the two, so only mesh members are ever served.
//! - [`ControlMsg::PeerGone`]: from a relay: a node a client had a relayed
//!   session with left (or was never a client).
//! - [`ControlMsg::Traversal`]: the traversal messages
//!   ([`super::traversal`]).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::traversal::{TraversalMsg, TraversalMsgError};
use crate::NodeId;

/// Datagram prefix of a control message.
pub const DATAGRAM_CONTROL: u8 = 0x00;
/// Datagram prefix of an application datagram.
pub const DATAGRAM_APP: u8 = 0x01;
/// Datagram prefix of a reliable control frame ([`ReliableFrame`]).
pub const DATAGRAM_RELIABLE: u8 = 0x02;
/// Longest encoded control message (prefix not included).
pub const MAX_CONTROL_LEN: usize = 1000;
/// Longest encoded [`ReliableFrame`] (prefix not included): a message and
/// its header (variant and sequence number).
pub const MAX_RELIABLE_LEN: usize = MAX_CONTROL_LEN + 11;
/// How many sequence numbers after [`ReliableFrame::Ack`]'s `next` its
/// `above` bitmap covers.
pub const ACK_BITMAP_LEN: u64 = 64;

/// A relay's stated per-client limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RelayLimitsMsg {
    /// Sustained relayed bytes per second per client.
    pub rate_bytes_per_sec: u64,
    /// Burst allowance in bytes per client.
    pub burst_bytes: u64,
    /// Frames queued per client at most.
    pub queue_packets: u32,
    /// Bytes queued per client at most.
    pub queue_bytes: u32,
    /// Largest inner packet relayed.
    pub max_packet: u32,
}

/// Why a relay refused a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RefuseReason {
    /// The node does not relay.
    Disabled,
    /// The relay serves as many clients as it allows.
    Full,
    /// The relay reaches the client only through another relay.
    NoDirectPath,
}

impl RefuseReason {
    /// Stable text.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Full => "full",
            Self::NoDirectPath => "no-direct-path",
        }
    }
}

/// Why a relay reports a peer gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GoneReason {
    /// The peer was a client and left.
    Left,
    /// The peer is not a client of this relay.
    Unknown,
}

impl GoneReason {
    /// Stable text.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Unknown => "unknown",
        }
    }
}

/// A transport control message. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlMsg {
    /// The address the sender observes for the receiver.
    ObservedAddr {
        /// The receiver's address as the sender sees it.
        addr: SocketAddr,
    },
    /// The sender relays for mesh members within these limits.
    RelayOffer {
        /// Per-client limits.
        limits: RelayLimitsMsg,
    },
    /// Please relay for me.
    RelayRegister,
    /// Registered: the relay forwards for the receiver from now on.
    RelayRegistered {
        /// Per-client limits.
        limits: RelayLimitsMsg,
    },
    /// Registration refused.
    RelayRefused {
        /// Why.
        reason: RefuseReason,
    },
    /// A peer of a relayed session is gone.
    PeerGone {
        /// The peer.
        node_id: NodeId,
        /// Why.
        reason: GoneReason,
    },
    /// A traversal message.
    Traversal(TraversalMsg),
}

/// Why a control message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControlMsgError {
    /// Longer than [`MAX_CONTROL_LEN`].
    #[error("control message of {0} bytes exceeds {MAX_CONTROL_LEN}")]
    TooLong(usize),
    /// Not a valid encoding.
    #[error("malformed control message: {0}")]
    Malformed(postcard::Error),
    /// A reliable frame longer than [`MAX_RELIABLE_LEN`].
    #[error("reliable control frame of {0} bytes exceeds {MAX_RELIABLE_LEN}")]
    FrameTooLong(usize),
    /// Bytes after the message.
    #[error("{0} trailing bytes after control message")]
    Trailing(usize),
    /// A NodeId that is not a valid key.
    #[error("invalid NodeId in control message")]
    InvalidNodeId,
    /// An invalid traversal message.
    #[error(transparent)]
    Traversal(#[from] TraversalMsgError),
    /// Encoding failed.
    #[error("cannot encode control message: {0}")]
    Encode(postcard::Error),
}

impl ControlMsgError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        "invalid-control-msg"
    }
}

impl ControlMsg {
    /// Checks what serde cannot: NodeIds are valid keys, nested messages
    /// are within their bounds.
    pub fn validate(&self) -> Result<(), ControlMsgError> {
        match self {
            Self::PeerGone { node_id, .. } => NodeId::from_bytes(node_id.as_bytes())
                .map(|_| ())
                .map_err(|_| ControlMsgError::InvalidNodeId),
            Self::Traversal(msg) => Ok(msg.validate()?),
            Self::ObservedAddr { .. }
            | Self::RelayOffer { .. }
            | Self::RelayRegister
            | Self::RelayRegistered { .. }
            | Self::RelayRefused { .. } => Ok(()),
        }
    }

    /// Decodes and validates one message that fills `data` exactly (the
    /// datagram prefix already stripped).
    pub fn decode(data: &[u8]) -> Result<Self, ControlMsgError> {
        if data.len() > MAX_CONTROL_LEN {
            return Err(ControlMsgError::TooLong(data.len()));
        }
        let (msg, rest) =
            postcard::take_from_bytes::<Self>(data).map_err(ControlMsgError::Malformed)?;
        if !rest.is_empty() {
            return Err(ControlMsgError::Trailing(rest.len()));
        }
        msg.validate()?;
        Ok(msg)
    }

    /// Encodes the message (without the datagram prefix).
    pub fn encode(&self) -> Result<Vec<u8>, ControlMsgError> {
        let bytes = postcard::to_allocvec(self).map_err(ControlMsgError::Encode)?;
        if bytes.len() > MAX_CONTROL_LEN {
            return Err(ControlMsgError::TooLong(bytes.len()));
        }
        Ok(bytes)
    }

    /// Encodes the message as a whole datagram: [`DATAGRAM_CONTROL`] and
    /// the message.
    pub fn encode_datagram(&self) -> Result<Vec<u8>, ControlMsgError> {
        let body = self.encode()?;
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(DATAGRAM_CONTROL);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ObservedAddr { .. } => "observed-addr",
            Self::RelayOffer { .. } => "relay-offer",
            Self::RelayRegister => "relay-register",
            Self::RelayRegistered { .. } => "relay-registered",
            Self::RelayRefused { .. } => "relay-refused",
            Self::PeerGone { .. } => "peer-gone",
            Self::Traversal(_) => "traversal",
        }
    }
}

/// A frame of the reliable control channel (datagram prefix
/// [`DATAGRAM_RELIABLE`]). Sequence numbers count from 0 per connection and
/// direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReliableFrame {
    /// A control message; the receiver acknowledges `seq`.
    Msg {
        /// The message's sequence number.
        seq: u64,
        /// The message.
        msg: ControlMsg,
    },
    /// What the receiver holds: every message below `next`, and message
    /// `next + 1 + i` for each bit `i` set in `above` (bit 0 is the least
    /// significant; `next` itself is missing by definition).
    Ack {
        /// The lowest sequence number not received.
        next: u64,
        /// Messages received beyond `next`.
        above: u64,
    },
}

impl ReliableFrame {
    /// Decodes and validates one frame that fills `data` exactly (the
    /// datagram prefix already stripped).
    pub fn decode(data: &[u8]) -> Result<Self, ControlMsgError> {
        if data.len() > MAX_RELIABLE_LEN {
            return Err(ControlMsgError::FrameTooLong(data.len()));
        }
        let (frame, rest) =
            postcard::take_from_bytes::<Self>(data).map_err(ControlMsgError::Malformed)?;
        if !rest.is_empty() {
            return Err(ControlMsgError::Trailing(rest.len()));
        }
        if let Self::Msg { msg, .. } = &frame {
            msg.validate()?;
        }
        Ok(frame)
    }

    /// Encodes the frame as a whole datagram: [`DATAGRAM_RELIABLE`] and the
    /// frame. A message longer than [`MAX_CONTROL_LEN`] is refused.
    pub fn encode_datagram(&self) -> Result<Vec<u8>, ControlMsgError> {
        if let Self::Msg { msg, .. } = self {
            // The bound on the message itself, as for an unreliable one.
            msg.encode()?;
        }
        let body = postcard::to_allocvec(self).map_err(ControlMsgError::Encode)?;
        if body.len() > MAX_RELIABLE_LEN {
            return Err(ControlMsgError::FrameTooLong(body.len()));
        }
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(DATAGRAM_RELIABLE);
        out.extend_from_slice(&body);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;
    use proptest::prelude::*;

    fn limits() -> RelayLimitsMsg {
        RelayLimitsMsg {
            rate_bytes_per_sec: 1 << 20,
            burst_bytes: 1 << 18,
            queue_packets: 256,
            queue_bytes: 1 << 19,
            max_packet: 1439,
        }
    }

    fn samples() -> Vec<ControlMsg> {
        vec![
            ControlMsg::ObservedAddr {
                addr: "203.0.113.7:4242".parse().unwrap(),
            },
            ControlMsg::ObservedAddr {
                addr: "[2001:db8::1]:9".parse().unwrap(),
            },
            ControlMsg::RelayOffer { limits: limits() },
            ControlMsg::RelayRegister,
            ControlMsg::RelayRegistered { limits: limits() },
            ControlMsg::RelayRefused {
                reason: RefuseReason::Full,
            },
            ControlMsg::PeerGone {
                node_id: SecretKey::generate().node_id(),
                reason: GoneReason::Left,
            },
            ControlMsg::Traversal(TraversalMsg::NatInfo {
                nat: crate::wire::traversal::NatType::Cone,
            }),
        ]
    }

    #[test]
    fn roundtrip_every_variant() {
        for msg in samples() {
            let bytes = msg.encode().unwrap();
            assert!(bytes.len() < 100, "{msg:?} is {} bytes", bytes.len());
            assert_eq!(ControlMsg::decode(&bytes), Ok(msg.clone()));
            let dgram = msg.encode_datagram().unwrap();
            assert_eq!(dgram[0], DATAGRAM_CONTROL);
            assert_eq!(&dgram[1..], &bytes[..]);
        }
    }

    #[test]
    fn typed_errors() {
        assert!(matches!(
            ControlMsg::decode(&[]),
            Err(ControlMsgError::Malformed(_))
        ));
        assert!(matches!(
            ControlMsg::decode(&[200]),
            Err(ControlMsgError::Malformed(_))
        ));
        let mut trailing = ControlMsg::RelayRegister.encode().unwrap();
        trailing.push(0);
        assert_eq!(
            ControlMsg::decode(&trailing),
            Err(ControlMsgError::Trailing(1))
        );
        assert_eq!(
            ControlMsg::decode(&[0u8; MAX_CONTROL_LEN + 1]),
            Err(ControlMsgError::TooLong(MAX_CONTROL_LEN + 1))
        );
        // PeerGone with a NodeId that is not a curve point (y = 2).
        let mut bad = ControlMsg::PeerGone {
            node_id: SecretKey::generate().node_id(),
            reason: GoneReason::Unknown,
        }
        .encode()
        .unwrap();
        bad[1..33].copy_from_slice(&{
            let mut b = [0u8; 32];
            b[0] = 2;
            b
        });
        assert_eq!(
            ControlMsg::decode(&bad),
            Err(ControlMsgError::InvalidNodeId)
        );
        assert_eq!(ControlMsgError::InvalidNodeId.kind(), "invalid-control-msg");
    }

    #[test]
    fn reliable_frames_roundtrip() {
        for (seq, msg) in samples().into_iter().enumerate() {
            for seq in [seq as u64, u64::MAX - seq as u64] {
                let frame = ReliableFrame::Msg {
                    seq,
                    msg: msg.clone(),
                };
                let dgram = frame.encode_datagram().unwrap();
                assert_eq!(dgram[0], DATAGRAM_RELIABLE);
                assert_eq!(ReliableFrame::decode(&dgram[1..]), Ok(frame));
            }
        }
        let ack = ReliableFrame::Ack {
            next: u64::MAX,
            above: u64::MAX,
        };
        let dgram = ack.encode_datagram().unwrap();
        assert!(dgram.len() <= 22, "{} bytes", dgram.len());
        assert_eq!(ReliableFrame::decode(&dgram[1..]), Ok(ack));
    }

    #[test]
    fn reliable_frame_typed_errors() {
        assert!(matches!(
            ReliableFrame::decode(&[]),
            Err(ControlMsgError::Malformed(_))
        ));
        assert!(matches!(
            ReliableFrame::decode(&[2]),
            Err(ControlMsgError::Malformed(_))
        ));
        assert_eq!(
            ReliableFrame::decode(&[0u8; MAX_RELIABLE_LEN + 1]),
            Err(ControlMsgError::FrameTooLong(MAX_RELIABLE_LEN + 1))
        );
        let mut trailing = ReliableFrame::Ack { next: 1, above: 0 }
            .encode_datagram()
            .unwrap();
        trailing.push(0);
        assert_eq!(
            ReliableFrame::decode(&trailing[1..]),
            Err(ControlMsgError::Trailing(1))
        );
        // A carried message is validated like a bare one.
        let mut bad = ReliableFrame::Msg {
            seq: 5,
            msg: ControlMsg::PeerGone {
                node_id: SecretKey::generate().node_id(),
                reason: GoneReason::Left,
            },
        }
        .encode_datagram()
        .unwrap();
        // prefix, variant, seq, then the message: variant, NodeId.
        bad[4..36].copy_from_slice(&{
            let mut b = [0u8; 32];
            b[0] = 2;
            b
        });
        assert_eq!(
            ReliableFrame::decode(&bad[1..]),
            Err(ControlMsgError::InvalidNodeId)
        );
        // A message over the bound is refused on encode.
        let long = ControlMsg::Traversal(TraversalMsg::Introduce(
            crate::wire::traversal::Introduction {
                req: 1,
                requester: SecretKey::generate().node_id(),
                peer: SecretKey::generate().node_id(),
                candidates: vec!["[2001:db8::1]:9".parse().unwrap(); 60],
                peer_nat: crate::wire::traversal::NatType::Cone,
                fire_in_ms: 1,
            },
        ));
        assert!(ReliableFrame::Msg { seq: 0, msg: long }
            .encode_datagram()
            .is_err());
    }

    proptest! {
        #[test]
        fn reliable_decode_is_total(data in proptest::collection::vec(any::<u8>(), 0..1200)) {
            if let Ok(frame) = ReliableFrame::decode(&data) {
                let dgram = frame.encode_datagram().unwrap();
                prop_assert_eq!(ReliableFrame::decode(&dgram[1..]), Ok(frame));
            }
        }

        #[test]
        fn decode_is_total(data in proptest::collection::vec(any::<u8>(), 0..1200)) {
            if let Ok(msg) = ControlMsg::decode(&data) {
                prop_assert_eq!(ControlMsg::decode(&msg.encode().unwrap()), Ok(msg));
            }
        }
    }
}
