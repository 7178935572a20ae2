//! Replication messages between two connected nodes.
//!
//! ```text
//! Hello   = 0x01 || version (u8) || count (u16) || count * (origin (32) || seq (u64) || hash (32))
//! Entries = 0x02 || origin (32) || from_seq (u64) || to_seq (u64) || count (u16) || count * entry
//! Want    = 0x03 || origin (32) || from_seq (u64)
//! ```
//!
//! - **Hello** carries the sender's version vector: for each origin, the
//!   highest seq up to which it holds everything that still exists (its
//!   *frontier*) and the hash of that entry. Sent on connect and on every
//!   anti-entropy tick.
//! - **Entries** carries entries of one origin, in increasing seq order, and
//!   states that they are **all** the entries the sender holds in
//!   `from_seq..=to_seq` (a missing seq was dropped by retention). A live
//!   push is a one-entry range.
//! - **Want** asks for everything the receiver holds of `origin` from
//!   `from_seq` on (gap repair and fork probes).
//!
//! Decoding is strict and bounded: at most [`MAX_MSG`] bytes,
//! [`MAX_VECTOR`] origins, [`MAX_BATCH`] entries, valid NodeIds, entries of
//! the message's origin in strictly increasing seq order inside the range,
//! no trailing bytes. Signatures are not checked here; the replica checks
//! them before storing.

use super::codec::{CodecError, Reader, Writer};
use super::entry::{Entry, EntryError, EntryHash};
use crate::NodeId;

/// The replication protocol version in [`LedgerMsg::Hello`].
pub const PROTOCOL_VERSION: u8 = 1;
/// Largest encoded message.
pub const MAX_MSG: usize = 1024 * 1024;
/// Most origins in one Hello.
pub const MAX_VECTOR: usize = 4096;
/// Most entries in one Entries message.
pub const MAX_BATCH: usize = 512;

const TAG_HELLO: u8 = 1;
const TAG_ENTRIES: u8 = 2;
const TAG_WANT: u8 = 3;

/// One origin in a version vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorItem {
    /// The origin.
    pub origin: NodeId,
    /// The sender's frontier for it.
    pub seq: u64,
    /// Hash of the sender's entry at `seq`.
    pub hash: EntryHash,
}

/// A replication message. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerMsg {
    /// The sender's version vector.
    Hello {
        /// The sender's protocol version.
        version: u8,
        /// Frontier per origin.
        vector: Vec<VectorItem>,
    },
    /// All entries the sender holds of `origin` in `from_seq..=to_seq`.
    Entries {
        /// The feed.
        origin: NodeId,
        /// First seq covered.
        from_seq: u64,
        /// Last seq covered.
        to_seq: u64,
        /// The entries, increasing seq.
        entries: Vec<Entry>,
    },
    /// Send everything of `origin` from `from_seq` on.
    Want {
        /// The feed.
        origin: NodeId,
        /// First seq wanted.
        from_seq: u64,
    },
}

/// Why a replication message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerMsgError {
    /// Longer than [`MAX_MSG`].
    #[error("ledger message of {0} bytes exceeds {MAX_MSG}")]
    TooLong(usize),
    /// Empty input.
    #[error("empty ledger message")]
    Empty,
    /// Unknown first byte.
    #[error("unknown ledger message tag {0:#04x}")]
    UnknownTag(u8),
    /// A field failed to decode.
    #[error("malformed ledger message: {0}")]
    Malformed(#[from] CodecError),
    /// An entry failed to decode.
    #[error("ledger message entry: {0}")]
    Entry(#[from] EntryError),
    /// The range is empty or starts at 0.
    #[error("bad range {from}..={to}")]
    BadRange {
        /// From.
        from: u64,
        /// To.
        to: u64,
    },
    /// An entry of another origin, out of order or outside the range.
    #[error("entry {index} does not belong to the message's origin and range in order")]
    Misplaced {
        /// Index of the entry.
        index: usize,
    },
}

impl LedgerMsgError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        "invalid-ledger-msg"
    }
}

impl LedgerMsg {
    /// The canonical encoding (bounds are the caller's: the replica never
    /// builds a message over them).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Self::Hello { version, vector } => {
                w.u8(TAG_HELLO);
                w.u8(*version);
                w.len16(vector.len());
                for item in vector {
                    w.node_id(&item.origin);
                    w.u64(item.seq);
                    w.raw(&item.hash.0);
                }
            }
            Self::Entries {
                origin,
                from_seq,
                to_seq,
                entries,
            } => {
                w.u8(TAG_ENTRIES);
                w.node_id(origin);
                w.u64(*from_seq);
                w.u64(*to_seq);
                w.len16(entries.len());
                for e in entries {
                    e.encode_into(&mut w);
                }
            }
            Self::Want { origin, from_seq } => {
                w.u8(TAG_WANT);
                w.node_id(origin);
                w.u64(*from_seq);
            }
        }
        w.into_bytes()
    }

    /// Decodes one message that fills `data` exactly.
    pub fn decode(data: &[u8]) -> Result<Self, LedgerMsgError> {
        if data.len() > MAX_MSG {
            return Err(LedgerMsgError::TooLong(data.len()));
        }
        let mut r = Reader::new(data);
        let tag = r.u8("tag").map_err(|_| LedgerMsgError::Empty)?;
        let msg = match tag {
            TAG_HELLO => {
                let version = r.u8("version")?;
                let n = r.len16("vector", MAX_VECTOR)?;
                let mut vector = Vec::with_capacity(n.min(r.remaining() / 72));
                for _ in 0..n {
                    vector.push(VectorItem {
                        origin: r.node_id("origin")?,
                        seq: r.u64("seq")?,
                        hash: EntryHash(r.array("hash")?),
                    });
                }
                Self::Hello { version, vector }
            }
            TAG_ENTRIES => {
                let origin = r.node_id("origin")?;
                let from_seq = r.u64("from_seq")?;
                let to_seq = r.u64("to_seq")?;
                if from_seq == 0 || from_seq > to_seq {
                    return Err(LedgerMsgError::BadRange {
                        from: from_seq,
                        to: to_seq,
                    });
                }
                let n = r.len16("entries", MAX_BATCH)?;
                let mut entries: Vec<Entry> = Vec::with_capacity(n.min(r.remaining() / 149));
                for index in 0..n {
                    let e = match Entry::read_of(&mut r, Some(&origin)) {
                        Ok(e) => e,
                        Err(EntryError::Malformed(CodecError::Invalid("origin"))) => {
                            return Err(LedgerMsgError::Misplaced { index })
                        }
                        Err(e) => return Err(e.into()),
                    };
                    let after_prev = entries.last().is_none_or(|p| e.seq > p.seq);
                    if e.origin != origin || e.seq < from_seq || e.seq > to_seq || !after_prev {
                        return Err(LedgerMsgError::Misplaced { index });
                    }
                    entries.push(e);
                }
                Self::Entries {
                    origin,
                    from_seq,
                    to_seq,
                    entries,
                }
            }
            TAG_WANT => {
                let origin = r.node_id("origin")?;
                let from_seq = r.u64("from_seq")?;
                if from_seq == 0 {
                    return Err(LedgerMsgError::BadRange {
                        from: 0,
                        to: u64::MAX,
                    });
                }
                Self::Want { origin, from_seq }
            }
            other => return Err(LedgerMsgError::UnknownTag(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::body::{Body, TokenRevocation};
    use crate::SecretKey;

    fn feed(n: u64) -> Vec<Entry> {
        let key = SecretKey::from_bytes(&[3; 32]);
        let mut prev = EntryHash::ZERO;
        (1..=n)
            .map(|seq| {
                let body = Body::TokenRevocation(TokenRevocation {
                    token_id: [seq as u8; 32],
                    expires_unix_ms: 10,
                    reason: String::new(),
                });
                let e = Entry::sign(&key, seq, prev, seq, &body).unwrap();
                prev = e.hash();
                e
            })
            .collect()
    }

    #[test]
    fn messages_roundtrip() {
        let entries = feed(3);
        let origin = entries[0].origin;
        for msg in [
            LedgerMsg::Hello {
                version: PROTOCOL_VERSION,
                vector: vec![VectorItem {
                    origin,
                    seq: 3,
                    hash: entries[2].hash(),
                }],
            },
            LedgerMsg::Entries {
                origin,
                from_seq: 1,
                to_seq: 4,
                entries,
            },
            LedgerMsg::Want {
                origin,
                from_seq: 9,
            },
        ] {
            assert_eq!(LedgerMsg::decode(&msg.encode()), Ok(msg));
        }
    }

    #[test]
    fn rejects_misplaced_and_bad_ranges() {
        let entries = feed(3);
        let origin = entries[0].origin;
        let reordered = LedgerMsg::Entries {
            origin,
            from_seq: 1,
            to_seq: 3,
            entries: vec![entries[1].clone(), entries[0].clone()],
        };
        assert_eq!(
            LedgerMsg::decode(&reordered.encode()),
            Err(LedgerMsgError::Misplaced { index: 1 })
        );
        let outside = LedgerMsg::Entries {
            origin,
            from_seq: 2,
            to_seq: 3,
            entries: vec![entries[0].clone()],
        };
        assert_eq!(
            LedgerMsg::decode(&outside.encode()),
            Err(LedgerMsgError::Misplaced { index: 0 })
        );
        let foreign = LedgerMsg::Entries {
            origin: SecretKey::from_bytes(&[4; 32]).node_id(),
            from_seq: 1,
            to_seq: 3,
            entries: vec![entries[0].clone()],
        };
        assert_eq!(
            LedgerMsg::decode(&foreign.encode()),
            Err(LedgerMsgError::Misplaced { index: 0 })
        );
        let empty_range = LedgerMsg::Entries {
            origin,
            from_seq: 3,
            to_seq: 2,
            entries: vec![],
        };
        assert!(matches!(
            LedgerMsg::decode(&empty_range.encode()),
            Err(LedgerMsgError::BadRange { .. })
        ));
        assert_eq!(LedgerMsg::decode(&[]), Err(LedgerMsgError::Empty));
        assert_eq!(LedgerMsg::decode(&[9]), Err(LedgerMsgError::UnknownTag(9)));
        let mut want = LedgerMsg::Want {
            origin,
            from_seq: 1,
        }
        .encode();
        want.push(0);
        assert!(matches!(
            LedgerMsg::decode(&want),
            Err(LedgerMsgError::Malformed(CodecError::Trailing(1)))
        ));
        assert!(matches!(
            LedgerMsg::decode(&vec![1u8; MAX_MSG + 1]),
            Err(LedgerMsgError::TooLong(_))
        ));
    }

    #[test]
    fn claimed_counts_do_not_preallocate() {
        // A Hello claiming MAX_VECTOR items with no bytes behind them.
        let mut w = Writer::new();
        w.u8(TAG_HELLO);
        w.u8(1);
        w.u16(MAX_VECTOR as u16);
        assert!(matches!(
            LedgerMsg::decode(&w.into_bytes()),
            Err(LedgerMsgError::Malformed(CodecError::Truncated(_)))
        ));
    }
}
