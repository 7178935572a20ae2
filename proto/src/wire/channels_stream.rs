//! The binary frames of the local API's `channels` stream: how a peer
//! process subscribes and publishes through its node (docs/LOCAL_API.md,
//! "Channels routes"). Each is the payload of one frame of the local API's
//! frame stream ([`crate::frame_stream`]), so its length is known; it
//! starts with a type byte, and integers are big-endian:
//!
//! | type | name | direction | after the type |
//! |------|------|-----------|----------------|
//! | `0x01` | message | node → subscriber | publisher (32) · seq (u64) · ts (u64, unix ms) · data |
//! | `0x02` | gap | node → subscriber | publisher (32) · from (u64) · to (u64): messages `from..=to` were missed |
//! | `0x03` | end | node → client | the JSON error `{"error":{"kind","detail"}}` (UTF-8) |
//! | `0x04` | ack | node → publisher | delivered (u32) · targets (u32), one per message, in order |
//!
//! The stream's first frames (the client's JSON open frame and the node's
//! JSON answer) and a publisher's messages (each frame is the message's
//! bytes, untyped) are not [`StreamFrame`]s.
//!
//! Decoding is strict and total: an unknown type, a gap or ack of any
//! other length, a message shorter than its head, a publisher that is not
//! a valid [`NodeId`], a gap with `from > to` and an end whose error is not
//! UTF-8 are typed errors. Decoded frames borrow the input and re-encode to
//! the same bytes.

use thiserror::Error;

use crate::NodeId;

/// Frame type: a message.
pub const MESSAGE: u8 = 0x01;
/// Frame type: a gap notice.
pub const GAP: u8 = 0x02;
/// Frame type: the end, with a JSON error.
pub const END: u8 = 0x03;
/// Frame type: a publish acknowledgement.
pub const ACK: u8 = 0x04;
/// Bytes of a message frame before its data: type, publisher, seq, ts.
pub const MESSAGE_HEAD_LEN: usize = 1 + 32 + 8 + 8;
/// Bytes of a gap frame: type, publisher, from, to.
pub const GAP_LEN: usize = 1 + 32 + 8 + 8;
/// Bytes of an ack frame: type, delivered, targets.
pub const ACK_LEN: usize = 1 + 4 + 4;

/// One node-to-client frame of the `channels` stream, borrowing its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamFrame<'a> {
    /// A message of the subscription.
    Message {
        /// Who published it.
        publisher: NodeId,
        /// Its sequence number from that publisher.
        seq: u64,
        /// The owner's clock when it took it (unix ms).
        ts: u64,
        /// The payload.
        data: &'a [u8],
    },
    /// Messages `from..=to` of `publisher` were missed.
    Gap {
        /// Whose messages.
        publisher: NodeId,
        /// First missed.
        from: u64,
        /// Last missed (at least `from`).
        to: u64,
    },
    /// The subscription or publishing session is over; the node closes.
    End {
        /// The JSON error, `{"error":{"kind","detail"}}`, as the node wrote
        /// it (parsed by the caller).
        error: &'a str,
    },
    /// One published message was taken by the owner.
    Ack {
        /// Targets that got it.
        delivered: u32,
        /// Targets when it was taken (subscriptions plus queue groups).
        targets: u32,
    },
}

/// A `channels` stream frame does not decode. Displayed as `kind: detail`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StreamFrameError {
    /// An unknown frame type.
    #[error("bad-frame-type: unknown channels frame type {0:#04x}")]
    FrameType(u8),
    /// The frame ends before its fixed fields.
    #[error("truncated: the frame ends inside {0}")]
    Truncated(&'static str),
    /// Bytes after the last field of a fixed-size frame.
    #[error("trailing-bytes: {0} bytes after the last field")]
    Trailing(usize),
    /// The publisher is not a valid NodeId.
    #[error("bad-node-id: the publisher is not a valid NodeId")]
    Publisher,
    /// A gap whose range is empty.
    #[error("empty-gap: a gap from {from} to {to}")]
    EmptyGap {
        /// First.
        from: u64,
        /// Last.
        to: u64,
    },
    /// An end frame whose error is not UTF-8.
    #[error("bad-utf8: the end frame's error is not UTF-8")]
    Utf8,
}

impl StreamFrameError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::FrameType(_) => "bad-frame-type",
            Self::Truncated(_) => "truncated",
            Self::Trailing(_) => "trailing-bytes",
            Self::Publisher => "bad-node-id",
            Self::EmptyGap { .. } => "empty-gap",
            Self::Utf8 => "bad-utf8",
        }
    }
}

/// Publisher, then two u64s (the head of a message, the body of a gap),
/// and what follows.
fn id_and_words<'a>(
    rest: &'a [u8],
    what: &'static str,
) -> Result<(NodeId, u64, u64, &'a [u8]), StreamFrameError> {
    let (id, tail) = rest
        .split_first_chunk::<32>()
        .ok_or(StreamFrameError::Truncated("the publisher"))?;
    let (a, tail) = tail
        .split_first_chunk::<8>()
        .ok_or(StreamFrameError::Truncated(what))?;
    let (b, tail) = tail
        .split_first_chunk::<8>()
        .ok_or(StreamFrameError::Truncated(what))?;
    let publisher = NodeId::from_bytes(id).map_err(|_| StreamFrameError::Publisher)?;
    Ok((
        publisher,
        u64::from_be_bytes(*a),
        u64::from_be_bytes(*b),
        tail,
    ))
}

impl StreamFrame<'_> {
    /// Appends the frame's payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Message {
                publisher,
                seq,
                ts,
                data,
            } => {
                out.reserve(MESSAGE_HEAD_LEN + data.len());
                out.push(MESSAGE);
                out.extend_from_slice(publisher.as_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&ts.to_be_bytes());
                out.extend_from_slice(data);
            }
            Self::Gap {
                publisher,
                from,
                to,
            } => {
                out.push(GAP);
                out.extend_from_slice(publisher.as_bytes());
                out.extend_from_slice(&from.to_be_bytes());
                out.extend_from_slice(&to.to_be_bytes());
            }
            Self::End { error } => {
                out.push(END);
                out.extend_from_slice(error.as_bytes());
            }
            Self::Ack { delivered, targets } => {
                out.push(ACK);
                out.extend_from_slice(&delivered.to_be_bytes());
                out.extend_from_slice(&targets.to_be_bytes());
            }
        }
    }

    /// Decodes one frame's payload.
    pub fn decode(payload: &[u8]) -> Result<StreamFrame<'_>, StreamFrameError> {
        let (&kind, rest) = payload
            .split_first()
            .ok_or(StreamFrameError::Truncated("the type"))?;
        match kind {
            MESSAGE => {
                let (publisher, seq, ts, data) = id_and_words(rest, "the seq and ts")?;
                Ok(StreamFrame::Message {
                    publisher,
                    seq,
                    ts,
                    data,
                })
            }
            GAP => {
                let (publisher, from, to, tail) = id_and_words(rest, "the gap range")?;
                if !tail.is_empty() {
                    return Err(StreamFrameError::Trailing(tail.len()));
                }
                if from > to {
                    return Err(StreamFrameError::EmptyGap { from, to });
                }
                Ok(StreamFrame::Gap {
                    publisher,
                    from,
                    to,
                })
            }
            END => std::str::from_utf8(rest)
                .map(|error| StreamFrame::End { error })
                .map_err(|_| StreamFrameError::Utf8),
            ACK => {
                let (d, tail) = rest
                    .split_first_chunk::<4>()
                    .ok_or(StreamFrameError::Truncated("the delivered count"))?;
                let (t, tail) = tail
                    .split_first_chunk::<4>()
                    .ok_or(StreamFrameError::Truncated("the targets count"))?;
                if !tail.is_empty() {
                    return Err(StreamFrameError::Trailing(tail.len()));
                }
                Ok(StreamFrame::Ack {
                    delivered: u32::from_be_bytes(*d),
                    targets: u32::from_be_bytes(*t),
                })
            }
            other => Err(StreamFrameError::FrameType(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn publisher() -> NodeId {
        crate::SecretKey::from_bytes(&[7; 32]).node_id()
    }

    fn encoded(frame: &StreamFrame<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(&mut out);
        out
    }

    fn round_trip(frame: &StreamFrame<'_>) {
        let out = encoded(frame);
        assert_eq!(&StreamFrame::decode(&out).unwrap(), frame);
    }

    #[test]
    fn every_frame_round_trips() {
        let p = publisher();
        round_trip(&StreamFrame::Message {
            publisher: p,
            seq: 5,
            ts: u64::MAX,
            data: b"hi",
        });
        round_trip(&StreamFrame::Message {
            publisher: p,
            seq: 0,
            ts: 0,
            data: b"",
        });
        round_trip(&StreamFrame::Gap {
            publisher: p,
            from: 2,
            to: 2,
        });
        round_trip(&StreamFrame::End {
            error: r#"{"error":{"detail":"revoked","kind":"token"}}"#,
        });
        round_trip(&StreamFrame::End { error: "" });
        round_trip(&StreamFrame::Ack {
            delivered: 1,
            targets: u32::MAX,
        });
    }

    #[test]
    fn the_bytes_are_the_documented_layout() {
        let p = publisher();
        let mut m = vec![MESSAGE];
        m.extend_from_slice(p.as_bytes());
        m.extend_from_slice(&5u64.to_be_bytes());
        m.extend_from_slice(&9u64.to_be_bytes());
        m.extend_from_slice(b"hi");
        let frame = StreamFrame::Message {
            publisher: p,
            seq: 5,
            ts: 9,
            data: b"hi",
        };
        assert_eq!(encoded(&frame), m);
        assert_eq!(m.len(), MESSAGE_HEAD_LEN + 2);
        let gap = encoded(&StreamFrame::Gap {
            publisher: p,
            from: 2,
            to: 4,
        });
        assert_eq!(gap.len(), GAP_LEN);
        assert_eq!(gap[0], GAP);
        assert_eq!(
            &gap[33..],
            &[0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 4]
        );
        let ack = encoded(&StreamFrame::Ack {
            delivered: 1,
            targets: 0x0102_0304,
        });
        assert_eq!(ack, [ACK, 0, 0, 0, 1, 1, 2, 3, 4]);
        assert_eq!(ack.len(), ACK_LEN);
        assert_eq!(encoded(&StreamFrame::End { error: "{}" }), b"\x03{}");
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        let kind = |b: &[u8]| StreamFrame::decode(b).unwrap_err().kind();
        let p = publisher();
        let gap = encoded(&StreamFrame::Gap {
            publisher: p,
            from: 2,
            to: 4,
        });
        assert_eq!(kind(&[]), "truncated");
        assert_eq!(kind(&[0x09, 1, 2]), "bad-frame-type");
        assert_eq!(kind(&[0x00]), "bad-frame-type");
        assert_eq!(kind(&[MESSAGE; 10]), "truncated");
        assert_eq!(kind(&gap[..MESSAGE_HEAD_LEN - 1]), "truncated");
        assert_eq!(kind(&gap[..20]), "truncated");
        assert_eq!(kind(&gap[..GAP_LEN - 1]), "truncated");
        let mut long = gap.clone();
        long.push(0);
        assert_eq!(kind(&long), "trailing-bytes");
        let mut reversed = gap.clone();
        reversed[33..].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(
            StreamFrame::decode(&reversed).unwrap_err(),
            StreamFrameError::EmptyGap { from: 4, to: 2 }
        );
        // Not a point on the curve: the same check as NodeId::from_bytes.
        let mut bad_id = [0u8; 32];
        bad_id[0] = 2;
        assert!(NodeId::from_bytes(&bad_id).is_err());
        for t in [MESSAGE, GAP] {
            let mut f = vec![t];
            f.extend_from_slice(&bad_id);
            f.extend_from_slice(&[0; 16]);
            assert_eq!(kind(&f), "bad-node-id");
        }
        assert_eq!(kind(&[END, 0xff, 0xfe]), "bad-utf8");
        assert_eq!(kind(&[ACK]), "truncated");
        assert_eq!(kind(&[ACK, 0, 0, 0, 1, 0, 0, 0]), "truncated");
        assert_eq!(kind(&[ACK, 0, 0, 0, 1, 0, 0, 0, 1, 0]), "trailing-bytes");
        let e = StreamFrame::decode(&[0x7f]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad-frame-type: unknown channels frame type 0x7f"
        );
    }

    #[test]
    fn any_prefix_of_a_frame_decodes_or_is_a_typed_error() {
        let p = publisher();
        let frames = [
            encoded(&StreamFrame::Message {
                publisher: p,
                seq: 1,
                ts: 2,
                data: b"abc",
            }),
            encoded(&StreamFrame::Gap {
                publisher: p,
                from: 1,
                to: 9,
            }),
            encoded(&StreamFrame::Ack {
                delivered: 3,
                targets: 4,
            }),
        ];
        for f in &frames {
            for n in 0..=f.len() {
                if let Ok(frame) = StreamFrame::decode(&f[..n]) {
                    assert_eq!(encoded(&frame), &f[..n]);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn any_bytes_decode_and_re_encode_or_are_typed_errors(
            kind in 0u8..6,
            body in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            // A valid publisher half the time, so messages and gaps decode.
            let mut bytes = vec![kind];
            if body.first().is_some_and(|b| b % 2 == 0) {
                bytes.extend_from_slice(publisher().as_bytes());
            }
            bytes.extend_from_slice(&body);
            match StreamFrame::decode(&bytes) {
                Ok(frame) => prop_assert_eq!(encoded(&frame), bytes),
                Err(e) => prop_assert!(e.to_string().starts_with(e.kind())),
            }
        }
    }
}
