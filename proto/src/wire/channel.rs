//! Channel frames: what the channels layer of two nodes exchanges about
//! named pub/sub channels (mux protocol id 3).
//!
//! Every frame is one postcard-encoded [`ChannelFrame`]. On a stream each
//! frame travels inside the length-prefixed framing of
//! [`crate::frame_stream`] (u32 big-endian length, then the frame); as a
//! datagram (best-effort delivery) the datagram payload is exactly one
//! frame. [`ChannelFrame::decode`] refuses anything longer than
//! [`MAX_FRAME_LEN`], trailing bytes, names, groups and tokens over their
//! bounds, empty names and invalid NodeIds, with a typed
//! [`ChannelFrameError`].
//!
//! Frames name a *link*: a number the opener (a subscriber or a publisher)
//! picks for one subscription or one publishing session with one owner.
//! The owner keys its state by (peer, link), so links of different peers
//! never collide.
//!
//! | frame | direction | meaning |
//! |-------|-----------|---------|
//! | [`ChannelFrame::Subscribe`] | subscriber → owner | subscribe to a channel with a token chain, an optional queue group, a start point, an initial credit and a backpressure mode |
//! | [`ChannelFrame::Advertise`] | publisher → owner | open a publishing session with a token chain |
//! | [`ChannelFrame::Accepted`] | owner → opener | the subscription or session is live |
//! | [`ChannelFrame::Denied`] | owner → opener | refused, with a [`Reason`] |
//! | [`ChannelFrame::Publish`] | publisher → owner | one message with the publisher's sequence number |
//! | [`ChannelFrame::PublishAck`] | owner → publisher | cumulative: every message up to `seq` not acknowledged before was taken, and each reached `delivered` targets of `targets` (one ack per run of messages taken together with equal counts) |
//! | [`ChannelFrame::Deliver`] | owner → subscriber | one message: publisher, sequence, owner timestamp, data |
//! | [`ChannelFrame::DeliverBatch`] | owner → subscriber | consecutive messages of one publisher taken at the same time: publisher, first sequence, owner timestamp, the payloads |
//! | [`ChannelFrame::Gap`] | owner → subscriber | messages of a publisher in `from..=to` were dropped for this subscription |
//! | [`ChannelFrame::Credit`] | both | the receiver may send `n` more messages on the link |
//! | [`ChannelFrame::TokenRefresh`] | opener → owner | a fresh token chain for a live link |
//! | [`ChannelFrame::Unsubscribe`] | opener → owner | close the link |
//! | [`ChannelFrame::End`] | owner → opener | the link is over, with a [`Reason`] |

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::NodeId;

/// Longest channel name (bytes).
pub const MAX_NAME: usize = 255;
/// Longest queue group name (bytes).
pub const MAX_GROUP: usize = 64;
/// Longest token chain (bytes, opaque here).
pub const MAX_TOKEN: usize = 8 * 1024;
/// Largest message payload (bytes).
pub const MAX_DATA: usize = 64 * 1024;
/// Most messages in one [`ChannelFrame::DeliverBatch`].
pub const MAX_BATCH: usize = 1024;
/// Most payload bytes (all messages together) in one
/// [`ChannelFrame::DeliverBatch`]; a batch with its header and the length
/// of each message stays below [`MAX_FRAME_LEN`].
pub const MAX_BATCH_BYTES: usize = MAX_DATA;
/// Most (publisher, seq) cursors a resuming subscription carries.
pub const MAX_CURSORS: usize = 64;
/// Longest encoded frame: the largest payload plus headroom for the
/// largest header (a Subscribe with every bound reached stays below it too).
pub const MAX_FRAME_LEN: usize = MAX_DATA + MAX_TOKEN + 4 * 1024;

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Start {
    /// Only messages published from now on.
    Live,
    /// Every retained message, then live.
    FromStart,
    /// The last `n` retained messages, then live.
    Last(u32),
    /// Resume: retained messages after these (publisher, seq) cursors, then
    /// live. A publisher not named is replayed from its oldest retained
    /// message.
    After(Vec<Cursor>),
}

/// What the owner does when a subscription's buffer is full (the
/// subscriber gave no credit for a while).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Backpressure {
    /// Publishers wait until the subscriber gives credit.
    Block,
    /// The oldest buffered message is dropped (and reported as a gap).
    DropOldest,
    /// The new message is dropped (and reported as a gap).
    DropNewest,
}

impl Backpressure {
    /// Stable text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::DropOldest => "drop-oldest",
            Self::DropNewest => "drop-newest",
        }
    }

    /// The mode with this text.
    pub fn from_text(text: &str) -> Option<Self> {
        [Self::Block, Self::DropOldest, Self::DropNewest]
            .into_iter()
            .find(|m| m.as_str() == text)
    }
}

/// A position in one publisher's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cursor {
    /// The publisher.
    pub publisher: NodeId,
    /// The last sequence number seen from it.
    pub seq: u64,
}

/// What went wrong with a token (the kinds of the token layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TokenKind {
    /// A signature does not verify.
    InvalidSignature,
    /// Past its expiry.
    Expired,
    /// Before its not-before.
    NotYetValid,
    /// A delegation past the allowed depth.
    DelegationExhausted,
    /// The scope is not granted.
    Scope,
    /// The token does not cover this channel.
    ChannelMismatch,
    /// Revoked.
    Revoked,
    /// Not a token.
    Malformed,
    /// Presented by a node that is not its subject.
    WrongSubject,
    /// More links than allowed.
    ChainTooLong,
    /// The channel requires a token and none was presented.
    Required,
}

impl TokenKind {
    /// Every kind, in code order.
    pub const ALL: [TokenKind; 11] = [
        Self::InvalidSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::DelegationExhausted,
        Self::Scope,
        Self::ChannelMismatch,
        Self::Revoked,
        Self::Malformed,
        Self::WrongSubject,
        Self::ChainTooLong,
        Self::Required,
    ];

    /// Stable text (after `token: `).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidSignature => "invalid-signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not-yet-valid",
            Self::DelegationExhausted => "delegation-exhausted",
            Self::Scope => "scope",
            Self::ChannelMismatch => "channel-mismatch",
            Self::Revoked => "revoked",
            Self::Malformed => "malformed",
            Self::WrongSubject => "wrong-subject",
            Self::ChainTooLong => "chain-too-long",
            Self::Required => "required",
        }
    }

    /// The kind with this text.
    pub fn from_text(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Why a link was denied or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// A token problem.
    Token(TokenKind),
    /// No channel of that name is owned by the receiver.
    NoSuchChannel,
    /// Too many authentication failures from this peer lately.
    Throttled,
    /// The owner's bounds (links per peer, subscriptions per channel) are
    /// reached.
    TooMany,
    /// The link number is already in use.
    Duplicate,
    /// The channel was removed.
    Removed,
    /// The opener asked to close the link.
    Closed,
    /// The owner is shutting down.
    Shutdown,
    /// The peer broke the protocol (a frame for the wrong direction, a
    /// publish beyond its credit).
    Protocol,
}

impl Reason {
    /// Stable text: `token: <kind>` for token problems, else one word.
    pub fn text(&self) -> String {
        match self {
            Self::Token(k) => format!("token: {}", k.as_str()),
            other => other.kind().to_string(),
        }
    }

    /// The stable kind (`token` for every token problem).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::NoSuchChannel => "no-such-channel",
            Self::Throttled => "throttled",
            Self::TooMany => "too-many",
            Self::Duplicate => "duplicate",
            Self::Removed => "removed",
            Self::Closed => "closed",
            Self::Shutdown => "shutdown",
            Self::Protocol => "protocol",
        }
    }
}

/// A channel frame. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelFrame {
    /// Subscribe to `name`.
    Subscribe {
        /// The subscriber's link number.
        link: u64,
        /// The full channel name.
        name: String,
        /// The token chain (empty: none).
        token: Vec<u8>,
        /// The queue group, if any.
        queue: Option<String>,
        /// Where to start.
        start: Start,
        /// Messages the owner may send before more credit.
        credit: u32,
        /// What the owner does when this subscription's buffer is full.
        backpressure: Backpressure,
    },
    /// Open a publishing session on `name`.
    Advertise {
        /// The publisher's link number.
        link: u64,
        /// The full channel name.
        name: String,
        /// The token chain (empty: none).
        token: Vec<u8>,
        /// The first sequence number this session may send (resuming
        /// publishers continue their sequence).
        next_seq: u64,
    },
    /// The link is live.
    Accepted {
        /// The link.
        link: u64,
        /// Whether the channel is reliable (else best-effort: datagrams).
        reliable: bool,
        /// For a publishing session: messages it may send before more
        /// credit (0 for a subscription).
        credit: u32,
        /// For a publishing session: the last sequence number the owner
        /// took from this publisher (0: none), so a resuming publisher
        /// resends only what is missing.
        last_seq: u64,
    },
    /// The link is refused.
    Denied {
        /// The link.
        link: u64,
        /// Why.
        reason: Reason,
    },
    /// One message from a publisher.
    Publish {
        /// The publishing session.
        link: u64,
        /// The publisher's sequence number (consecutive from 1).
        seq: u64,
        /// The payload.
        #[serde(with = "payload")]
        data: Bytes,
    },
    /// The owner took messages: cumulative, it covers every message of
    /// the session up to `seq` that an earlier `PublishAck` did not, and
    /// each of them reached `delivered` of `targets`. The owner sends one
    /// per run of messages it took together with equal counts (when the
    /// counts change inside a run, one ack ends where they change). Nodes
    /// before this meaning sent one per message and resolved only the
    /// message named by `seq`.
    PublishAck {
        /// The publishing session.
        link: u64,
        /// The last sequence number covered.
        seq: u64,
        /// Targets (subscriptions, queue groups) that got each message.
        delivered: u32,
        /// Targets when they were taken.
        targets: u32,
    },
    /// One message for a subscription.
    Deliver {
        /// The subscription.
        link: u64,
        /// Who published it.
        publisher: NodeId,
        /// Its sequence number from that publisher.
        seq: u64,
        /// When the owner took it (unix ms).
        ts: u64,
        /// The payload.
        #[serde(with = "payload")]
        data: Bytes,
    },
    /// Messages `from..=to` of `publisher` were dropped for this
    /// subscription.
    Gap {
        /// The subscription.
        link: u64,
        /// Whose messages.
        publisher: NodeId,
        /// First missed sequence number.
        from: u64,
        /// Last missed sequence number.
        to: u64,
    },
    /// The receiver may send `n` more messages on the link.
    Credit {
        /// The link.
        link: u64,
        /// How many more.
        n: u32,
    },
    /// A fresh token chain for a live link.
    TokenRefresh {
        /// The link.
        link: u64,
        /// The token chain.
        token: Vec<u8>,
    },
    /// Close the link.
    Unsubscribe {
        /// The link.
        link: u64,
    },
    /// The link is over.
    End {
        /// The link.
        link: u64,
        /// Why.
        reason: Reason,
    },
    /// Consecutive messages of one publisher for a subscription, taken
    /// by the owner at the same time: payload `i` (from 0) is message
    /// `seq + i`. The same as that many [`Self::Deliver`]s, with one
    /// header. 1 to [`MAX_BATCH`] messages, [`MAX_BATCH_BYTES`] of
    /// payload in all. (Added after the other frames: a node of older
    /// code cannot decode it.)
    DeliverBatch {
        /// The subscription.
        link: u64,
        /// Who published them.
        publisher: NodeId,
        /// The first message's sequence number.
        seq: u64,
        /// When the owner took them (unix ms).
        ts: u64,
        /// The payloads, in sequence order.
        #[serde(with = "payloads")]
        data: Vec<Bytes>,
    },
}

/// Why a channel frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChannelFrameError {
    /// Longer than [`MAX_FRAME_LEN`].
    #[error("channel frame of {0} bytes exceeds {MAX_FRAME_LEN}")]
    TooLong(usize),
    /// Not a valid encoding.
    #[error("malformed channel frame: {0}")]
    Malformed(postcard::Error),
    /// Bytes after the frame.
    #[error("{0} trailing bytes after channel frame")]
    Trailing(usize),
    /// A field over its bound, or an empty name.
    #[error("channel frame field {0} is empty or over its bound")]
    Bound(&'static str),
    /// A NodeId that is not a valid key.
    #[error("invalid NodeId in channel frame")]
    InvalidNodeId,
    /// A gap whose range is empty.
    #[error("gap from {from} to {to} is empty")]
    EmptyGap {
        /// First.
        from: u64,
        /// Last.
        to: u64,
    },
    /// Encoding failed.
    #[error("cannot encode channel frame: {0}")]
    Encode(postcard::Error),
}

impl ChannelFrameError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        "invalid-channel-frame"
    }
}

/// Checks a channel name: 1 to [`MAX_NAME`] bytes, no control characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && !name.chars().any(char::is_control)
}

fn check(ok: bool, field: &'static str) -> Result<(), ChannelFrameError> {
    if ok {
        Ok(())
    } else {
        Err(ChannelFrameError::Bound(field))
    }
}

/// A NodeId inside a frame must be a valid key (`NodeId::from_bytes`
/// remembers the last few it found valid, so a stream of deliveries from
/// the same publishers checks each once).
fn check_id(id: &NodeId) -> Result<(), ChannelFrameError> {
    NodeId::from_bytes(id.as_bytes()).map_err(|_| ChannelFrameError::InvalidNodeId)?;
    Ok(())
}

impl Start {
    fn validate(&self) -> Result<(), ChannelFrameError> {
        match self {
            Self::After(cursors) => {
                check(cursors.len() <= MAX_CURSORS, "cursors")?;
                cursors.iter().try_for_each(|c| check_id(&c.publisher))
            }
            Self::Live | Self::FromStart | Self::Last(_) => Ok(()),
        }
    }
}

/// A payload on the wire: a byte string (the same encoding as a
/// `Vec<u8>`, written and read in one piece).
mod payload {
    use bytes::Bytes;
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(data)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        d.deserialize_bytes(Payload)
    }

    pub(super) struct Payload;

    impl<'de> Visitor<'de> for Payload {
        type Value = Bytes;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Bytes, E> {
            Ok(Bytes::copy_from_slice(v))
        }

        fn visit_borrowed_bytes<E: Error>(self, v: &'de [u8]) -> Result<Bytes, E> {
            Ok(super::shared_slice(v))
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
            Ok(Bytes::from(v))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(super::MAX_DATA));
            while let Some(b) = seq.next_element::<u8>()? {
                v.push(b);
            }
            Ok(Bytes::from(v))
        }
    }
}

/// The payloads of a [`ChannelFrame::DeliverBatch`]: a sequence of byte
/// strings (a varint count, then each as a varint length and the bytes),
/// at most [`MAX_BATCH`] of them.
mod payloads {
    use bytes::Bytes;
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::MAX_BATCH;

    struct Out<'a>(&'a Bytes);

    impl Serialize for Out<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::payload::serialize(self.0, s)
        }
    }

    pub fn serialize<S: Serializer>(data: &[Bytes], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(data.len()))?;
        for d in data {
            seq.serialize_element(&Out(d))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Bytes>, D::Error> {
        d.deserialize_seq(Payloads)
    }

    struct Payloads;

    impl<'de> Visitor<'de> for Payloads {
        type Value = Vec<Bytes>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a sequence of byte strings")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Bytes>, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH));
            // The frame being decoded, looked up once for the batch (not
            // once per payload).
            let source = super::decode_source();
            while let Some(piece) = seq.next_element::<Piece<'de>>()? {
                if v.len() >= MAX_BATCH {
                    return Err(A::Error::custom("too many messages in a batch"));
                }
                v.push(match piece {
                    Piece::Borrowed(b) => super::slice_of(source.as_ref(), b),
                    Piece::Owned(b) => b,
                });
            }
            Ok(v)
        }
    }

    /// One payload as the deserializer hands it over: borrowed from the
    /// input (to become a slice of the frame), or owned.
    enum Piece<'de> {
        Borrowed(&'de [u8]),
        Owned(Bytes),
    }

    impl<'de> Deserialize<'de> for Piece<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_bytes(PieceVisitor)
        }
    }

    struct PieceVisitor;

    impl<'de> Visitor<'de> for PieceVisitor {
        type Value = Piece<'de>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_borrowed_bytes<E: Error>(self, v: &'de [u8]) -> Result<Piece<'de>, E> {
            Ok(Piece::Borrowed(v))
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Piece<'de>, E> {
            Ok(Piece::Owned(Bytes::copy_from_slice(v)))
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Piece<'de>, E> {
            Ok(Piece::Owned(Bytes::from(v)))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Piece<'de>, A::Error> {
            super::payload::Payload.visit_seq(seq).map(Piece::Owned)
        }
    }
}

thread_local! {
    /// The frame [`ChannelFrame::decode_shared`] is decoding: payloads
    /// found inside it are slices of it, not copies.
    static SOURCE: std::cell::RefCell<Option<Bytes>> = const { std::cell::RefCell::new(None) };
}

/// `v` as a slice of the frame being decoded by
/// [`ChannelFrame::decode_shared`] (no copy), else a copy.
fn shared_slice(v: &[u8]) -> Bytes {
    SOURCE.with(|s| slice_of(s.borrow().as_ref(), v))
}

/// The frame [`ChannelFrame::decode_shared`] is decoding, if any.
fn decode_source() -> Option<Bytes> {
    SOURCE.with(|s| s.borrow().clone())
}

/// `v` as a slice of `source` when it lies inside it (no copy), else a
/// copy.
fn slice_of(source: Option<&Bytes>, v: &[u8]) -> Bytes {
    if let Some(src) = source {
        let start = (v.as_ptr() as usize).wrapping_sub(src.as_ptr() as usize);
        if start <= src.len() && v.len() <= src.len() - start {
            return src.slice(start..start + v.len());
        }
    }
    Bytes::copy_from_slice(v)
}

/// A postcard output that appends to a caller's buffer.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

impl ChannelFrame {
    /// Checks what serde cannot: bounds, names, NodeIds, gap ranges.
    pub fn validate(&self) -> Result<(), ChannelFrameError> {
        match self {
            Self::Subscribe {
                name,
                token,
                queue,
                start,
                ..
            } => {
                check(valid_name(name), "name")?;
                check(token.len() <= MAX_TOKEN, "token")?;
                if let Some(q) = queue {
                    check(!q.is_empty() && q.len() <= MAX_GROUP, "queue")?;
                }
                start.validate()
            }
            Self::Advertise { name, token, .. } => {
                check(valid_name(name), "name")?;
                check(token.len() <= MAX_TOKEN, "token")
            }
            Self::TokenRefresh { token, .. } => check(token.len() <= MAX_TOKEN, "token"),
            Self::Publish { data, .. } => check(data.len() <= MAX_DATA, "data"),
            Self::Deliver {
                publisher, data, ..
            } => {
                check_id(publisher)?;
                check(data.len() <= MAX_DATA, "data")
            }
            Self::DeliverBatch {
                publisher,
                seq,
                data,
                ..
            } => {
                check_id(publisher)?;
                check(!data.is_empty() && data.len() <= MAX_BATCH, "batch")?;
                let bytes = data.iter().map(Bytes::len).sum::<usize>();
                check(bytes <= MAX_BATCH_BYTES, "data")?;
                check(seq.checked_add(data.len() as u64 - 1).is_some(), "seq")
            }
            Self::Gap {
                publisher,
                from,
                to,
                ..
            } => {
                check_id(publisher)?;
                if from > to {
                    return Err(ChannelFrameError::EmptyGap {
                        from: *from,
                        to: *to,
                    });
                }
                Ok(())
            }
            Self::Accepted { .. }
            | Self::Denied { .. }
            | Self::PublishAck { .. }
            | Self::Credit { .. }
            | Self::Unsubscribe { .. }
            | Self::End { .. } => Ok(()),
        }
    }

    /// Decodes and validates one frame that fills `data` exactly.
    pub fn decode(data: &[u8]) -> Result<Self, ChannelFrameError> {
        if data.len() > MAX_FRAME_LEN {
            return Err(ChannelFrameError::TooLong(data.len()));
        }
        let (frame, rest) =
            postcard::take_from_bytes::<Self>(data).map_err(ChannelFrameError::Malformed)?;
        if !rest.is_empty() {
            return Err(ChannelFrameError::Trailing(rest.len()));
        }
        frame.validate()?;
        Ok(frame)
    }

    /// [`Self::decode`] of a frame held in `data`: the payloads are
    /// slices of `data` (sharing its buffer), not copies.
    pub fn decode_shared(data: &Bytes) -> Result<Self, ChannelFrameError> {
        SOURCE.with(|s| *s.borrow_mut() = Some(data.clone()));
        let frame = Self::decode(data);
        SOURCE.with(|s| *s.borrow_mut() = None);
        frame
    }

    /// Encodes the frame (validated first, so nothing out of bounds is
    /// ever sent).
    pub fn encode(&self) -> Result<Vec<u8>, ChannelFrameError> {
        self.validate()?;
        let bytes = postcard::to_allocvec(self).map_err(ChannelFrameError::Encode)?;
        if bytes.len() > MAX_FRAME_LEN {
            return Err(ChannelFrameError::TooLong(bytes.len()));
        }
        Ok(bytes)
    }

    /// Appends the frame to `out` as one stream frame: its encoded length
    /// (u32 big-endian, as [`crate::frame_stream`] frames it), then the
    /// encoding, with no buffer of its own in between. Validated first; on
    /// an error `out` is left as it was.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), ChannelFrameError> {
        self.validate()?;
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        let written = postcard::serialize_with_flavor(self, Append(&mut *out))
            .map_err(ChannelFrameError::Encode)
            .and_then(|()| {
                let len = out.len() - start - 4;
                if len > MAX_FRAME_LEN {
                    return Err(ChannelFrameError::TooLong(len));
                }
                u32::try_from(len).map_err(|_| ChannelFrameError::TooLong(len))
            });
        match (written, out.get_mut(start..start + 4)) {
            (Ok(len), Some(prefix)) => {
                prefix.copy_from_slice(&len.to_be_bytes());
                Ok(())
            }
            (Err(e), _) => {
                out.truncate(start);
                Err(e)
            }
            (Ok(len), None) => {
                out.truncate(start);
                Err(ChannelFrameError::TooLong(len as usize))
            }
        }
    }

    /// The link the frame is about.
    pub fn link(&self) -> u64 {
        match self {
            Self::Subscribe { link, .. }
            | Self::Advertise { link, .. }
            | Self::Accepted { link, .. }
            | Self::Denied { link, .. }
            | Self::Publish { link, .. }
            | Self::PublishAck { link, .. }
            | Self::Deliver { link, .. }
            | Self::Gap { link, .. }
            | Self::Credit { link, .. }
            | Self::TokenRefresh { link, .. }
            | Self::Unsubscribe { link }
            | Self::End { link, .. }
            | Self::DeliverBatch { link, .. } => *link,
        }
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Subscribe { .. } => "subscribe",
            Self::Advertise { .. } => "advertise",
            Self::Accepted { .. } => "accepted",
            Self::Denied { .. } => "denied",
            Self::Publish { .. } => "publish",
            Self::PublishAck { .. } => "publish-ack",
            Self::Deliver { .. } => "deliver",
            Self::Gap { .. } => "gap",
            Self::Credit { .. } => "credit",
            Self::TokenRefresh { .. } => "token-refresh",
            Self::Unsubscribe { .. } => "unsubscribe",
            Self::End { .. } => "end",
            Self::DeliverBatch { .. } => "deliver-batch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;

    fn id() -> NodeId {
        SecretKey::from_bytes(&[7; 32]).node_id()
    }

    fn roundtrip(frame: ChannelFrame) {
        let bytes = frame.encode().unwrap();
        assert_eq!(ChannelFrame::decode(&bytes).unwrap(), frame);
    }

    #[test]
    fn every_frame_roundtrips() {
        roundtrip(ChannelFrame::Subscribe {
            link: 1,
            name: "a/b".into(),
            token: vec![1, 2, 3],
            queue: Some("g".into()),
            start: Start::After(vec![Cursor {
                publisher: id(),
                seq: 9,
            }]),
            credit: 64,
            backpressure: Backpressure::DropOldest,
        });
        roundtrip(ChannelFrame::Deliver {
            link: 1,
            publisher: id(),
            seq: 2,
            ts: 3,
            data: vec![0; MAX_DATA].into(),
        });
        roundtrip(ChannelFrame::End {
            link: 4,
            reason: Reason::Token(TokenKind::Revoked),
        });
    }

    #[test]
    fn bounds_are_enforced_both_ways() {
        let long = ChannelFrame::Subscribe {
            link: 1,
            name: "x".repeat(MAX_NAME + 1),
            token: vec![],
            queue: None,
            start: Start::Live,
            credit: 1,
            backpressure: Backpressure::Block,
        };
        assert_eq!(long.encode(), Err(ChannelFrameError::Bound("name")));
        let bytes = postcard::to_allocvec(&long).unwrap();
        assert_eq!(
            ChannelFrame::decode(&bytes),
            Err(ChannelFrameError::Bound("name"))
        );
        let empty = ChannelFrame::Advertise {
            link: 1,
            name: String::new(),
            token: vec![],
            next_seq: 1,
        };
        assert!(empty.encode().is_err());
        let gap = ChannelFrame::Gap {
            link: 1,
            publisher: id(),
            from: 5,
            to: 4,
        };
        assert!(matches!(
            gap.encode(),
            Err(ChannelFrameError::EmptyGap { .. })
        ));
        let big = vec![0u8; MAX_FRAME_LEN + 1];
        assert_eq!(
            ChannelFrame::decode(&big),
            Err(ChannelFrameError::TooLong(MAX_FRAME_LEN + 1))
        );
        let mut ok = ChannelFrame::Credit { link: 1, n: 2 }.encode().unwrap();
        ok.push(0);
        assert_eq!(
            ChannelFrame::decode(&ok),
            Err(ChannelFrameError::Trailing(1))
        );
    }

    #[test]
    fn an_invalid_publisher_is_refused_after_valid_ones_were_seen() {
        let frame = ChannelFrame::Deliver {
            link: 1,
            publisher: id(),
            seq: 1,
            ts: 2,
            data: vec![3; 8].into(),
        };
        // Seen (and remembered as valid) on this thread.
        roundtrip(frame.clone());
        let bad = (0..=255u8)
            .map(|b| [b; 32])
            .find(|k| NodeId::from_bytes(k).is_err())
            .unwrap();
        let mut bytes = frame.encode().unwrap();
        let at = bytes
            .windows(32)
            .position(|w| w == id().as_bytes())
            .unwrap();
        bytes[at..at + 32].copy_from_slice(&bad);
        assert!(matches!(
            ChannelFrame::decode(&bytes),
            Err(ChannelFrameError::InvalidNodeId)
        ));
        roundtrip(frame);
    }

    #[test]
    fn encode_into_appends_a_length_prefixed_frame() {
        let frames = [
            ChannelFrame::Credit { link: 1, n: 2 },
            ChannelFrame::Deliver {
                link: 3,
                publisher: id(),
                seq: 4,
                ts: 5,
                data: vec![6; 100].into(),
            },
        ];
        let mut out = vec![9];
        for f in &frames {
            f.encode_into(&mut out).unwrap();
        }
        let mut rest = &out[1..];
        for f in &frames {
            let bytes = f.encode().unwrap();
            let (len, tail) = rest.split_at(4);
            assert_eq!(len, (bytes.len() as u32).to_be_bytes());
            assert_eq!(&tail[..bytes.len()], &bytes[..]);
            rest = &tail[bytes.len()..];
        }
        assert!(rest.is_empty());
        let bad = ChannelFrame::Gap {
            link: 1,
            publisher: id(),
            from: 5,
            to: 4,
        };
        let before = out.clone();
        assert!(bad.encode_into(&mut out).is_err());
        assert_eq!(out, before, "nothing appended on an error");
    }

    #[test]
    fn payloads_encode_as_a_byte_vector_did() {
        #[derive(Serialize)]
        enum Old {
            _A,
            _B,
            _C,
            _D,
            Publish { link: u64, seq: u64, data: Vec<u8> },
        }
        let old = postcard::to_allocvec(&Old::Publish {
            link: 1,
            seq: 2,
            data: vec![3; 200],
        })
        .unwrap();
        let new = ChannelFrame::Publish {
            link: 1,
            seq: 2,
            data: vec![3; 200].into(),
        };
        assert_eq!(new.encode().unwrap(), old);
        assert_eq!(ChannelFrame::decode(&old).unwrap(), new);
    }

    fn batch(n: usize, len: usize) -> ChannelFrame {
        ChannelFrame::DeliverBatch {
            link: 3,
            publisher: id(),
            seq: 10,
            ts: 5,
            data: (0..n).map(|i| Bytes::from(vec![i as u8; len])).collect(),
        }
    }

    #[test]
    fn a_batch_roundtrips_and_is_bounded() {
        roundtrip(batch(1, 0));
        roundtrip(batch(MAX_BATCH, MAX_BATCH_BYTES / MAX_BATCH));
        let empty = batch(0, 1);
        assert_eq!(empty.encode(), Err(ChannelFrameError::Bound("batch")));
        let many = batch(MAX_BATCH + 1, 0);
        assert_eq!(many.encode(), Err(ChannelFrameError::Bound("batch")));
        let bytes = postcard::to_allocvec(&many).unwrap();
        assert!(ChannelFrame::decode(&bytes).is_err());
        let big = batch(2, MAX_BATCH_BYTES / 2 + 1);
        assert_eq!(big.encode(), Err(ChannelFrameError::Bound("data")));
        let bytes = postcard::to_allocvec(&big).unwrap();
        assert_eq!(
            ChannelFrame::decode(&bytes),
            Err(ChannelFrameError::Bound("data"))
        );
        let past_the_end = ChannelFrame::DeliverBatch {
            link: 1,
            publisher: id(),
            seq: u64::MAX,
            ts: 0,
            data: vec![Bytes::new(), Bytes::new()],
        };
        assert_eq!(past_the_end.encode(), Err(ChannelFrameError::Bound("seq")));
    }

    #[test]
    fn a_batch_encodes_as_its_deliveries_payloads_in_sequence() {
        // The payloads are a sequence of byte strings, as a `Vec<Vec<u8>>`.
        let frame = batch(3, 2);
        let bytes = frame.encode().unwrap();
        let tail: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 2]).collect();
        let tail = postcard::to_allocvec(&tail).unwrap();
        assert!(bytes.ends_with(&tail));
    }

    #[test]
    fn decode_shared_slices_the_frame_and_decodes_the_same() {
        for frame in [
            batch(4, 16),
            ChannelFrame::Publish {
                link: 1,
                seq: 2,
                data: vec![7; 30].into(),
            },
        ] {
            let bytes = Bytes::from(frame.encode().unwrap());
            let shared = ChannelFrame::decode_shared(&bytes).unwrap();
            assert_eq!(shared, frame);
            let payloads: Vec<Bytes> = match shared {
                ChannelFrame::DeliverBatch { data, .. } => data,
                ChannelFrame::Publish { data, .. } => vec![data],
                _ => unreachable!(),
            };
            let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
            for p in payloads {
                assert!(
                    range.contains(&(p.as_ptr() as usize)),
                    "a slice, not a copy"
                );
            }
            // Plain decoding copies.
            let copied = ChannelFrame::decode(&bytes).unwrap();
            assert_eq!(copied, frame);
        }
    }

    #[test]
    fn reason_texts() {
        assert_eq!(Reason::Token(TokenKind::Expired).text(), "token: expired");
        assert_eq!(Reason::NoSuchChannel.text(), "no-such-channel");
        for k in TokenKind::ALL {
            assert_eq!(TokenKind::from_text(k.as_str()), Some(k));
        }
    }
}
