//! Entry kinds and their bodies.
//!
//! Every kind has a one-byte code on the wire, a stable text name and one
//! body type with a canonical encoding ([`super::codec`]). Bodies decode
//! strictly: bounded lists and text, valid NodeIds, no trailing bytes.
//!
//! | code | kind                   | body                      | retention class |
//! |------|------------------------|---------------------------|-----------------|
//! | 1    | `node-announcement`    | [`NodeAnnouncement`]      | state, one per origin |
//! | 2    | `relay-session`        | [`RelaySession`]          | event |
//! | 3    | `traversal-outcome`    | [`TraversalOutcome`]      | event |
//! | 4    | `channel-registration` | [`ChannelRegistration`]   | state, one per (origin, name) |
//! | 5    | `service-registration` | [`ServiceRegistration`]   | state, one per (origin, name) |
//! | 6    | `token-revocation`     | [`TokenRevocation`]       | until the token expires |

use std::net::SocketAddr;

use super::codec::{CodecError, Reader, Writer};
use super::membership::{MemberProof, MEMBER_PROOF_LEN};
use crate::NodeId;

/// Most addresses a node announces.
pub const MAX_ADDRS: usize = 16;
/// Longest version string.
pub const MAX_VERSION: usize = 64;
/// Longest `why` of a traversal outcome.
pub const MAX_WHY: usize = 256;
/// Longest channel or service name.
pub const MAX_NAME: usize = 255;
/// Longest opaque spec of a channel or service registration.
pub const MAX_SPEC: usize = 8 * 1024;
/// Longest reason of a revocation.
pub const MAX_REASON: usize = 256;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    /// A node's addresses, NAT type, relay offer and version.
    NodeAnnouncement,
    /// A relay's view of a session it carried.
    RelaySession,
    /// How connecting to a peer went.
    TraversalOutcome,
    /// A pub/sub channel exists (filled in by channels).
    ChannelRegistration,
    /// An RPC service exists (filled in by nRPC).
    ServiceRegistration,
    /// A token is revoked until it expires.
    TokenRevocation,
}

/// How long entries of a kind are kept (see docs/LEDGER.md for the bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetentionClass {
    /// Only the latest entry per key is kept.
    LatestPerKey,
    /// A count and an age bound per origin.
    Event,
    /// Kept until the revoked token's expiry.
    UntilExpiry,
}

impl EntryKind {
    /// Every kind, in code order.
    pub const ALL: [EntryKind; 6] = [
        Self::NodeAnnouncement,
        Self::RelaySession,
        Self::TraversalOutcome,
        Self::ChannelRegistration,
        Self::ServiceRegistration,
        Self::TokenRevocation,
    ];

    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Self::NodeAnnouncement => 1,
            Self::RelaySession => 2,
            Self::TraversalOutcome => 3,
            Self::ChannelRegistration => 4,
            Self::ServiceRegistration => 5,
            Self::TokenRevocation => 6,
        }
    }

    /// The kind with this wire code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The stable text name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeAnnouncement => "node-announcement",
            Self::RelaySession => "relay-session",
            Self::TraversalOutcome => "traversal-outcome",
            Self::ChannelRegistration => "channel-registration",
            Self::ServiceRegistration => "service-registration",
            Self::TokenRevocation => "token-revocation",
        }
    }

    /// How long entries of this kind are kept.
    pub fn retention(self) -> RetentionClass {
        match self {
            Self::NodeAnnouncement | Self::ChannelRegistration | Self::ServiceRegistration => {
                RetentionClass::LatestPerKey
            }
            Self::RelaySession | Self::TraversalOutcome => RetentionClass::Event,
            Self::TokenRevocation => RetentionClass::UntilExpiry,
        }
    }
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EntryKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// A kind name that is not one of [`EntryKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown-kind: {0:?} is not a ledger entry kind")]
pub struct UnknownKind(pub String);

/// The NAT type a node announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatType {
    /// Not classified yet.
    Unknown,
    /// Reachable at its bind address.
    Open,
    /// Endpoint-independent mapping.
    Cone,
    /// Endpoint-dependent mapping.
    Symmetric,
}

impl NatType {
    fn code(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Open => 1,
            Self::Cone => 2,
            Self::Symmetric => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Unknown),
            1 => Some(Self::Open),
            2 => Some(Self::Cone),
            3 => Some(Self::Symmetric),
            _ => None,
        }
    }

    /// Stable text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Open => "open",
            Self::Cone => "cone",
            Self::Symmetric => "symmetric",
        }
    }
}

/// `node-announcement`: where and how to reach the origin. Latest wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAnnouncement {
    /// Addresses to dial, best first (at most [`MAX_ADDRS`]).
    pub addrs: Vec<SocketAddr>,
    /// The origin's NAT type.
    pub nat: NatType,
    /// Whether the origin relays for mesh members.
    pub relay: bool,
    /// The origin's software version (at most [`MAX_VERSION`] bytes).
    pub version: String,
    /// The origin's membership proof under the mesh's network key
    /// ([`super::membership`]); encoded as 32 trailing bytes when present,
    /// nothing when absent (a mesh without a network key).
    pub member_proof: Option<MemberProof>,
}

/// Whether a relay session was opened or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionPhase {
    /// The relay started carrying the pair's packets.
    Opened,
    /// The relay stopped; the counters are final.
    Closed,
}

/// `relay-session`: the relay's (origin's) view of a session it carried
/// between `a` and `b` (`a` < `b` bytewise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySession {
    /// Opened or closed.
    pub phase: SessionPhase,
    /// One end (the lower NodeId).
    pub a: NodeId,
    /// The other end.
    pub b: NodeId,
    /// Bytes carried, both ways.
    pub bytes: u64,
    /// Packets carried, both ways.
    pub packets: u64,
    /// Milliseconds since the session opened.
    pub duration_ms: u64,
}

/// How a connection to a peer ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathOutcome {
    /// A direct (possibly punched) path.
    Direct,
    /// Only a relayed path.
    Relayed,
}

/// `traversal-outcome`: how the origin's attempt to reach `peer` went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraversalOutcome {
    /// The peer.
    pub peer: NodeId,
    /// Direct or relayed.
    pub outcome: PathOutcome,
    /// Milliseconds from the first attempt to the direct path, if it went direct.
    pub time_to_direct_ms: Option<u64>,
    /// Why (a stable failure kind or a short reason; at most [`MAX_WHY`] bytes).
    pub why: String,
    /// Birthday probes sent (0 if none).
    pub birthday_packets: u32,
}

/// `channel-registration`: a channel exists. The spec is opaque here; the
/// channels layer defines it. Latest per (origin, name) wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRegistration {
    /// The full channel name (at most [`MAX_NAME`] bytes).
    pub name: String,
    /// Whether this registration withdraws the channel.
    pub withdrawn: bool,
    /// Opaque spec (at most [`MAX_SPEC`] bytes).
    pub spec: Vec<u8>,
}

/// `service-registration`: a service exists. Same shape and rules as
/// [`ChannelRegistration`]; nRPC defines the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRegistration {
    /// The full service name (at most [`MAX_NAME`] bytes).
    pub name: String,
    /// Whether this registration withdraws the service.
    pub withdrawn: bool,
    /// Opaque spec (at most [`MAX_SPEC`] bytes).
    pub spec: Vec<u8>,
}

/// `token-revocation`: a token may no longer be used. Kept until
/// `expires_unix_ms`, after which the token is dead anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRevocation {
    /// The token's id.
    pub token_id: [u8; 32],
    /// The token's own expiry (unix ms).
    pub expires_unix_ms: u64,
    /// Why (at most [`MAX_REASON`] bytes).
    pub reason: String,
}

/// A typed entry body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// See [`NodeAnnouncement`].
    NodeAnnouncement(NodeAnnouncement),
    /// See [`RelaySession`].
    RelaySession(RelaySession),
    /// See [`TraversalOutcome`].
    TraversalOutcome(TraversalOutcome),
    /// See [`ChannelRegistration`].
    ChannelRegistration(ChannelRegistration),
    /// See [`ServiceRegistration`].
    ServiceRegistration(ServiceRegistration),
    /// See [`TokenRevocation`].
    TokenRevocation(TokenRevocation),
}

/// Why a body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} body: {source}")]
pub struct BodyError {
    /// The kind whose body failed.
    pub kind: EntryKind,
    /// What failed.
    #[source]
    pub source: CodecError,
}

impl Body {
    /// The kind this body belongs to.
    pub fn kind(&self) -> EntryKind {
        match self {
            Self::NodeAnnouncement(_) => EntryKind::NodeAnnouncement,
            Self::RelaySession(_) => EntryKind::RelaySession,
            Self::TraversalOutcome(_) => EntryKind::TraversalOutcome,
            Self::ChannelRegistration(_) => EntryKind::ChannelRegistration,
            Self::ServiceRegistration(_) => EntryKind::ServiceRegistration,
            Self::TokenRevocation(_) => EntryKind::TokenRevocation,
        }
    }

    /// The canonical encoding. Fails if a field is over its bound.
    pub fn encode(&self) -> Result<Vec<u8>, BodyError> {
        let mut w = Writer::new();
        match self {
            Self::NodeAnnouncement(b) => {
                w.len16(b.addrs.len());
                for a in &b.addrs {
                    w.socket_addr(a);
                }
                w.u8(b.nat.code());
                w.bool(b.relay);
                w.text(&b.version);
                if let Some(p) = &b.member_proof {
                    w.raw(&p.0);
                }
            }
            Self::RelaySession(b) => {
                w.u8(match b.phase {
                    SessionPhase::Opened => 1,
                    SessionPhase::Closed => 2,
                });
                w.node_id(&b.a);
                w.node_id(&b.b);
                w.u64(b.bytes);
                w.u64(b.packets);
                w.u64(b.duration_ms);
            }
            Self::TraversalOutcome(b) => {
                w.node_id(&b.peer);
                w.u8(match b.outcome {
                    PathOutcome::Direct => 1,
                    PathOutcome::Relayed => 2,
                });
                match b.time_to_direct_ms {
                    None => w.u8(0),
                    Some(ms) => {
                        w.u8(1);
                        w.u64(ms);
                    }
                }
                w.text(&b.why);
                w.u32(b.birthday_packets);
            }
            Self::ChannelRegistration(ChannelRegistration {
                name,
                withdrawn,
                spec,
            })
            | Self::ServiceRegistration(ServiceRegistration {
                name,
                withdrawn,
                spec,
            }) => {
                w.text(name);
                w.bool(*withdrawn);
                w.bytes16(spec);
            }
            Self::TokenRevocation(b) => {
                w.raw(&b.token_id);
                w.u64(b.expires_unix_ms);
                w.text(&b.reason);
            }
        }
        let bytes = w.into_bytes();
        // Decoding what we encoded enforces every bound in one place.
        Self::decode(self.kind(), &bytes)?;
        Ok(bytes)
    }

    /// Decodes a body of `kind` that fills `data` exactly.
    pub fn decode(kind: EntryKind, data: &[u8]) -> Result<Self, BodyError> {
        let wrap = |source| BodyError { kind, source };
        let mut r = Reader::new(data);
        let body = Self::read(kind, &mut r).map_err(wrap)?;
        r.finish().map_err(wrap)?;
        Ok(body)
    }

    fn read(kind: EntryKind, r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match kind {
            EntryKind::NodeAnnouncement => {
                let n = r.len16("addrs", MAX_ADDRS)?;
                let mut addrs = Vec::with_capacity(n);
                for _ in 0..n {
                    addrs.push(r.socket_addr("addr")?);
                }
                let nat = NatType::from_code(r.u8("nat")?).ok_or(CodecError::Invalid("nat"))?;
                let relay = r.bool("relay")?;
                let version = r.text("version", MAX_VERSION)?;
                // Exactly 32 bytes left: the proof; anything else but
                // nothing is left for `finish` to refuse.
                let member_proof = if r.remaining() == MEMBER_PROOF_LEN {
                    Some(MemberProof(r.array("member_proof")?))
                } else {
                    None
                };
                Self::NodeAnnouncement(NodeAnnouncement {
                    addrs,
                    nat,
                    relay,
                    version,
                    member_proof,
                })
            }
            EntryKind::RelaySession => {
                let phase = match r.u8("phase")? {
                    1 => SessionPhase::Opened,
                    2 => SessionPhase::Closed,
                    _ => return Err(CodecError::Invalid("phase")),
                };
                Self::RelaySession(RelaySession {
                    phase,
                    a: r.node_id("a")?,
                    b: r.node_id("b")?,
                    bytes: r.u64("bytes")?,
                    packets: r.u64("packets")?,
                    duration_ms: r.u64("duration_ms")?,
                })
            }
            EntryKind::TraversalOutcome => {
                let peer = r.node_id("peer")?;
                let outcome = match r.u8("outcome")? {
                    1 => PathOutcome::Direct,
                    2 => PathOutcome::Relayed,
                    _ => return Err(CodecError::Invalid("outcome")),
                };
                let time_to_direct_ms = match r.u8("time_to_direct")? {
                    0 => None,
                    1 => Some(r.u64("time_to_direct")?),
                    _ => return Err(CodecError::Invalid("time_to_direct")),
                };
                Self::TraversalOutcome(TraversalOutcome {
                    peer,
                    outcome,
                    time_to_direct_ms,
                    why: r.text("why", MAX_WHY)?,
                    birthday_packets: r.u32("birthday_packets")?,
                })
            }
            EntryKind::ChannelRegistration | EntryKind::ServiceRegistration => {
                let name = r.text("name", MAX_NAME)?;
                if name.is_empty() {
                    return Err(CodecError::Invalid("name"));
                }
                let withdrawn = r.bool("withdrawn")?;
                let spec = r.bytes16("spec", MAX_SPEC)?;
                if kind == EntryKind::ChannelRegistration {
                    Self::ChannelRegistration(ChannelRegistration {
                        name,
                        withdrawn,
                        spec,
                    })
                } else {
                    Self::ServiceRegistration(ServiceRegistration {
                        name,
                        withdrawn,
                        spec,
                    })
                }
            }
            EntryKind::TokenRevocation => Self::TokenRevocation(TokenRevocation {
                token_id: r.array("token_id")?,
                expires_unix_ms: r.u64("expires_unix_ms")?,
                reason: r.text("reason", MAX_REASON)?,
            }),
        })
    }

    /// The key under which "latest wins" for state-like kinds (`None` for
    /// other kinds). Keys are per origin: the store prefixes the origin.
    pub fn retention_key(&self) -> Option<Vec<u8>> {
        match self {
            Self::NodeAnnouncement(_) => Some(Vec::new()),
            Self::ChannelRegistration(b) => Some(b.name.as_bytes().to_vec()),
            Self::ServiceRegistration(b) => Some(b.name.as_bytes().to_vec()),
            Self::RelaySession(_) | Self::TraversalOutcome(_) | Self::TokenRevocation(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;

    fn samples() -> Vec<Body> {
        let a = SecretKey::from_bytes(&[1; 32]).node_id();
        let b = SecretKey::from_bytes(&[2; 32]).node_id();
        vec![
            Body::NodeAnnouncement(NodeAnnouncement {
                addrs: vec![
                    "192.0.2.1:7420".parse().unwrap(),
                    "[2001:db8::1]:7420".parse().unwrap(),
                ],
                nat: NatType::Cone,
                relay: true,
                version: "0.1.0".into(),
                member_proof: None,
            }),
            Body::RelaySession(RelaySession {
                phase: SessionPhase::Closed,
                a,
                b,
                bytes: 1 << 40,
                packets: 12345,
                duration_ms: 60_000,
            }),
            Body::TraversalOutcome(TraversalOutcome {
                peer: b,
                outcome: PathOutcome::Direct,
                time_to_direct_ms: Some(830),
                why: "birthday".into(),
                birthday_packets: 2048,
            }),
            Body::ChannelRegistration(ChannelRegistration {
                name: "sensors.temp".into(),
                withdrawn: false,
                spec: vec![1, 2, 3],
            }),
            Body::ServiceRegistration(ServiceRegistration {
                name: "kv".into(),
                withdrawn: true,
                spec: vec![],
            }),
            Body::TokenRevocation(TokenRevocation {
                token_id: [9; 32],
                expires_unix_ms: 1_800_000_000_000,
                reason: "leaked".into(),
            }),
        ]
    }

    #[test]
    fn every_kind_roundtrips_and_names_parse() {
        for body in samples() {
            let bytes = body.encode().unwrap();
            assert_eq!(Body::decode(body.kind(), &bytes).unwrap(), body);
            let kind = body.kind();
            assert_eq!(EntryKind::from_code(kind.code()), Some(kind));
            assert_eq!(kind.as_str().parse::<EntryKind>(), Ok(kind));
        }
        assert!("nope".parse::<EntryKind>().is_err());
        assert_eq!(EntryKind::from_code(0), None);
    }

    #[test]
    fn decoding_is_strict() {
        for body in samples() {
            let mut bytes = body.encode().unwrap();
            bytes.push(0);
            assert!(matches!(
                Body::decode(body.kind(), &bytes),
                Err(BodyError {
                    source: CodecError::Trailing(1),
                    ..
                })
            ));
            bytes.truncate(bytes.len() - 2);
            assert!(Body::decode(body.kind(), &bytes).is_err());
        }
    }

    #[test]
    fn over_bound_fields_do_not_encode() {
        let body = Body::NodeAnnouncement(NodeAnnouncement {
            addrs: vec!["192.0.2.1:1".parse().unwrap(); MAX_ADDRS + 1],
            nat: NatType::Open,
            relay: false,
            version: String::new(),
            member_proof: None,
        });
        assert!(body.encode().is_err());
        let body = Body::ServiceRegistration(ServiceRegistration {
            name: String::new(),
            withdrawn: false,
            spec: vec![],
        });
        assert!(body.encode().is_err());
    }

    #[test]
    fn a_member_proof_is_32_trailing_bytes() {
        let key = crate::NetworkKey::from_bytes([7; 32]);
        let origin = SecretKey::from_bytes(&[1; 32]).node_id();
        let plain = NodeAnnouncement {
            addrs: vec![],
            nat: NatType::Unknown,
            relay: false,
            version: "v".into(),
            member_proof: None,
        };
        let proven = NodeAnnouncement {
            member_proof: Some(MemberProof::new(&key, &origin)),
            ..plain.clone()
        };
        let a = Body::NodeAnnouncement(plain).encode().unwrap();
        let b = Body::NodeAnnouncement(proven.clone()).encode().unwrap();
        assert_eq!(b.len(), a.len() + MEMBER_PROOF_LEN);
        assert_eq!(&b[..a.len()], &a[..]);
        assert_eq!(
            Body::decode(EntryKind::NodeAnnouncement, &b).unwrap(),
            Body::NodeAnnouncement(proven)
        );
        // 31 or 33 trailing bytes are refused.
        assert!(Body::decode(EntryKind::NodeAnnouncement, &b[..b.len() - 1]).is_err());
        let mut long = b.clone();
        long.push(0);
        assert!(Body::decode(EntryKind::NodeAnnouncement, &long).is_err());
    }
}
