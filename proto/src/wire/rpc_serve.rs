//! The binary frames of the local API's `rpc-serve` stream: how a peer
//! process serves an nRPC service through its node (docs/LOCAL_API.md,
//! "Serving from a peer process"). Each is the payload of one frame of the
//! local API's frame stream ([`crate::frame_stream`]), so its length is
//! known; it starts with a type byte and the call id (u32 big-endian):
//!
//! | type | name | direction | after the call id |
//! |------|------|-----------|-------------------|
//! | `0x01` | request | node → process | caller (32) · an nRPC call header frame ([`CallHeader`]) · the request body |
//! | `0x02` | cancel | node → process | reason (u8: 1 the caller gave up, 2 the deadline passed) |
//! | `0x03` | request item | node → process | one further request message (streamed requests) |
//! | `0x04` | requests end | node → process | nothing: the caller finished sending |
//! | `0x11` | item | process → node | one response message (server streaming, duplex) |
//! | `0x12` | reply | process → node | the final response message; the call ends `ok` |
//! | `0x13` | end | process → node | an nRPC trailer frame ([`Trailer`]): the call's status |
//! | `0x14` | credit | process → node | count (u32, at least 1): request items the process took |
//!
//! `request item`, `requests end` and `credit` only concern calls of the
//! methods a process declared as streaming its requests (client streaming,
//! duplex): their `request` carries an empty body, and the node sends a
//! request item or the requests end only while the process has credit
//! for it (each takes one).
//!
//! Decoding is strict and total: unknown types and reasons, a zero credit,
//! a call header or trailer that does not decode, and bytes after a
//! trailer or a fixed-size field are typed errors; the nested frames reuse
//! [`super::rpc`]'s decoders and bounds.

use thiserror::Error;

use super::rpc::{decode_frame, CallHeader, Frame, RpcFrameError, Trailer};
use crate::NodeId;

/// Frame type: a call for the process.
pub const REQUEST: u8 = 0x01;
/// Frame type: the node gave up a call.
pub const CANCEL: u8 = 0x02;
/// Frame type: a further request message.
pub const REQUEST_ITEM: u8 = 0x03;
/// Frame type: the caller finished sending requests.
pub const REQUESTS_END: u8 = 0x04;
/// Frame type: a response message.
pub const ITEM: u8 = 0x11;
/// Frame type: the final response message (status `ok`).
pub const REPLY: u8 = 0x12;
/// Frame type: the call's status.
pub const END: u8 = 0x13;
/// Frame type: the process took request items (returns flow-control
/// credit to the node).
pub const CREDIT: u8 = 0x14;
/// Bytes before a frame's body: the type and the call id.
pub const PREFIX_LEN: usize = 5;

/// Why the node cancelled a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The caller gave up (or the connection to it failed).
    Caller,
    /// The call's deadline passed (the caller got `timeout`).
    Deadline,
}

impl CancelReason {
    /// The byte on the wire.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Caller => 1,
            Self::Deadline => 2,
        }
    }

    /// The reason of byte `b`.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Caller),
            2 => Some(Self::Deadline),
            _ => None,
        }
    }
}

/// One frame of the `rpc-serve` stream, borrowing its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeFrame<'a> {
    /// A call for the process.
    Request {
        /// The call id (unique among the connection's open calls).
        call: u32,
        /// The calling node.
        caller: NodeId,
        /// Service, method, remaining deadline, metadata, idempotent flag.
        header: CallHeader,
        /// The request message.
        body: &'a [u8],
    },
    /// The node gave up a call: nothing more about it is read.
    Cancel {
        /// The call id.
        call: u32,
        /// Why.
        reason: CancelReason,
    },
    /// A further request message of a call with streamed requests.
    RequestItem {
        /// The call id.
        call: u32,
        /// The message.
        body: &'a [u8],
    },
    /// The caller finished sending requests.
    RequestsEnd {
        /// The call id.
        call: u32,
    },
    /// A response message.
    Item {
        /// The call id.
        call: u32,
        /// The message.
        body: &'a [u8],
    },
    /// The final response message; the call ends `ok`.
    Reply {
        /// The call id.
        call: u32,
        /// The message.
        body: &'a [u8],
    },
    /// The call's status (`ok` without a final message, or an error).
    End {
        /// The call id.
        call: u32,
        /// The status.
        trailer: Trailer,
    },
    /// The process took `count` request items: the node may send as many
    /// more.
    Credit {
        /// The call id.
        call: u32,
        /// How many (at least 1).
        count: u32,
    },
}

/// An `rpc-serve` frame does not decode or encode. Displayed as
/// `kind: detail`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ServeFrameError {
    /// An unknown frame type.
    #[error("bad-frame-type: unknown rpc-serve frame type {0:#04x}")]
    FrameType(u8),
    /// The frame ends before its fixed fields.
    #[error("truncated: the frame ends inside {0}")]
    Truncated(&'static str),
    /// An unknown cancel reason.
    #[error("bad-reason: unknown cancel reason {0}")]
    Reason(u8),
    /// Bytes after the last field.
    #[error("trailing-bytes: {0} bytes after the last field")]
    Trailing(usize),
    /// A credit of zero.
    #[error("bad-credit: a credit must be at least 1")]
    Credit,
    /// The nested call header or trailer is invalid.
    #[error("{0}")]
    Nested(#[from] RpcFrameError),
}

impl ServeFrameError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::FrameType(_) => "bad-frame-type",
            Self::Truncated(_) => "truncated",
            Self::Reason(_) => "bad-reason",
            Self::Trailing(_) => "trailing-bytes",
            Self::Credit => "bad-credit",
            Self::Nested(_) => "bad-frame",
        }
    }
}

impl ServeFrame<'_> {
    /// The call id.
    pub fn call(&self) -> u32 {
        match self {
            Self::Request { call, .. }
            | Self::Cancel { call, .. }
            | Self::RequestItem { call, .. }
            | Self::RequestsEnd { call }
            | Self::Item { call, .. }
            | Self::Reply { call, .. }
            | Self::End { call, .. }
            | Self::Credit { call, .. } => *call,
        }
    }

    /// Appends the frame's payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ServeFrameError> {
        let start = out.len();
        let (kind, call) = match self {
            Self::Request { call, .. } => (REQUEST, call),
            Self::Cancel { call, .. } => (CANCEL, call),
            Self::RequestItem { call, .. } => (REQUEST_ITEM, call),
            Self::RequestsEnd { call } => (REQUESTS_END, call),
            Self::Item { call, .. } => (ITEM, call),
            Self::Reply { call, .. } => (REPLY, call),
            Self::End { call, .. } => (END, call),
            Self::Credit { call, .. } => (CREDIT, call),
        };
        out.push(kind);
        out.extend_from_slice(&call.to_be_bytes());
        let written = match self {
            Self::Request {
                caller,
                header,
                body,
                ..
            } => {
                out.extend_from_slice(caller.as_bytes());
                header.encode(out).map(|()| out.extend_from_slice(body))
            }
            Self::Cancel { reason, .. } => {
                out.push(reason.as_u8());
                Ok(())
            }
            Self::RequestItem { body, .. } | Self::Item { body, .. } | Self::Reply { body, .. } => {
                out.extend_from_slice(body);
                Ok(())
            }
            Self::RequestsEnd { .. } => Ok(()),
            Self::End { trailer, .. } => trailer.encode(out),
            Self::Credit { count, .. } => {
                if *count == 0 {
                    out.truncate(start);
                    return Err(ServeFrameError::Credit);
                }
                out.extend_from_slice(&count.to_be_bytes());
                Ok(())
            }
        };
        written.map_err(|e| {
            out.truncate(start);
            ServeFrameError::Nested(e)
        })
    }

    /// Decodes one frame's payload.
    pub fn decode(payload: &[u8]) -> Result<ServeFrame<'_>, ServeFrameError> {
        let (&kind, rest) = payload
            .split_first()
            .ok_or(ServeFrameError::Truncated("the type"))?;
        let (id, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(ServeFrameError::Truncated("the call id"))?;
        let call = u32::from_be_bytes(*id);
        match kind {
            REQUEST => {
                let (caller, rest) = rest
                    .split_first_chunk::<32>()
                    .ok_or(ServeFrameError::Truncated("the caller"))?;
                let caller =
                    NodeId::from_bytes(caller).map_err(|_| RpcFrameError::Field("caller"))?;
                let (header, used) = match decode_frame(rest)? {
                    Some((Frame::Header(h), used)) => (h, used),
                    Some(_) => return Err(RpcFrameError::Field("not a call header").into()),
                    None => return Err(ServeFrameError::Truncated("the call header")),
                };
                Ok(ServeFrame::Request {
                    call,
                    caller,
                    header,
                    body: rest.get(used..).unwrap_or_default(),
                })
            }
            CANCEL => match rest {
                [b] => Ok(ServeFrame::Cancel {
                    call,
                    reason: CancelReason::from_u8(*b).ok_or(ServeFrameError::Reason(*b))?,
                }),
                [] => Err(ServeFrameError::Truncated("the reason")),
                more => Err(ServeFrameError::Trailing(more.len() - 1)),
            },
            REQUEST_ITEM => Ok(ServeFrame::RequestItem { call, body: rest }),
            REQUESTS_END => match rest {
                [] => Ok(ServeFrame::RequestsEnd { call }),
                more => Err(ServeFrameError::Trailing(more.len())),
            },
            CREDIT => {
                let (count, more) = rest
                    .split_first_chunk::<4>()
                    .ok_or(ServeFrameError::Truncated("the credit"))?;
                if !more.is_empty() {
                    return Err(ServeFrameError::Trailing(more.len()));
                }
                match u32::from_be_bytes(*count) {
                    0 => Err(ServeFrameError::Credit),
                    count => Ok(ServeFrame::Credit { call, count }),
                }
            }
            ITEM => Ok(ServeFrame::Item { call, body: rest }),
            REPLY => Ok(ServeFrame::Reply { call, body: rest }),
            END => match decode_frame(rest)? {
                Some((Frame::Trailer(trailer), used)) if used == rest.len() => {
                    Ok(ServeFrame::End { call, trailer })
                }
                Some((Frame::Trailer(_), used)) => {
                    Err(ServeFrameError::Trailing(rest.len() - used))
                }
                Some(_) => Err(RpcFrameError::Field("not a trailer").into()),
                None => Err(ServeFrameError::Truncated("the trailer")),
            },
            other => Err(ServeFrameError::FrameType(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::rpc::Code;

    fn round_trip(frame: &ServeFrame<'_>) {
        let mut out = Vec::new();
        frame.encode(&mut out).unwrap();
        assert_eq!(&ServeFrame::decode(&out).unwrap(), frame);
    }

    #[test]
    fn every_frame_round_trips() {
        let header = CallHeader {
            service: "inventory".into(),
            method: "get".into(),
            deadline_ms: 250,
            idempotent: true,
            metadata: vec![("k".into(), "v".into())],
        };
        let caller = crate::SecretKey::from_bytes(&[3; 32]).node_id();
        round_trip(&ServeFrame::Request {
            call: 7,
            caller,
            header,
            body: b"hello",
        });
        round_trip(&ServeFrame::Cancel {
            call: u32::MAX,
            reason: CancelReason::Deadline,
        });
        round_trip(&ServeFrame::RequestItem {
            call: 4,
            body: b"more",
        });
        round_trip(&ServeFrame::RequestItem { call: 4, body: b"" });
        round_trip(&ServeFrame::RequestsEnd { call: 4 });
        round_trip(&ServeFrame::Credit {
            call: 4,
            count: u32::MAX,
        });
        round_trip(&ServeFrame::Item { call: 1, body: b"" });
        round_trip(&ServeFrame::Reply {
            call: 2,
            body: b"x",
        });
        let mut trailer = Trailer::new(Code::NotFound, "no such item");
        trailer.retry_after_ms = Some(5);
        round_trip(&ServeFrame::End { call: 3, trailer });
    }

    #[test]
    fn frames_have_their_documented_bytes() {
        let bytes = |f: ServeFrame<'_>| {
            let mut out = Vec::new();
            f.encode(&mut out).unwrap();
            out
        };
        let cancel = ServeFrame::Cancel {
            call: 7,
            reason: CancelReason::Caller,
        };
        assert_eq!(bytes(cancel), [CANCEL, 0, 0, 0, 7, 1]);
        assert_eq!(
            bytes(ServeFrame::Reply {
                call: 7,
                body: b"x"
            }),
            [REPLY, 0, 0, 0, 7, b'x']
        );
        assert_eq!(
            bytes(ServeFrame::RequestItem {
                call: 7,
                body: b"x"
            }),
            [REQUEST_ITEM, 0, 0, 0, 7, b'x']
        );
        assert_eq!(
            bytes(ServeFrame::RequestsEnd { call: 7 }),
            [REQUESTS_END, 0, 0, 0, 7]
        );
        assert_eq!(
            bytes(ServeFrame::Credit { call: 7, count: 2 }),
            [CREDIT, 0, 0, 0, 7, 0, 0, 0, 2]
        );
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        let kind = |b: &[u8]| ServeFrame::decode(b).unwrap_err().kind();
        assert_eq!(kind(&[]), "truncated");
        assert_eq!(kind(&[ITEM, 0, 0]), "truncated");
        assert_eq!(kind(&[0x7f, 0, 0, 0, 1]), "bad-frame-type");
        assert_eq!(kind(&[CANCEL, 0, 0, 0, 1, 9]), "bad-reason");
        assert_eq!(kind(&[CANCEL, 0, 0, 0, 1, 1, 1]), "trailing-bytes");
        assert_eq!(kind(&[END, 0, 0, 0, 1, 3, 0, 0]), "truncated");
        assert_eq!(kind(&[END, 0, 0, 0, 1, 3, 0, 0, 0, 0]), "bad-frame");
        assert_eq!(kind(&[REQUEST, 0, 0, 0, 1]), "truncated");
        assert_eq!(kind(&[REQUESTS_END, 0, 0, 0, 1, 0]), "trailing-bytes");
        assert_eq!(kind(&[CREDIT, 0, 0, 0, 1, 0, 0, 1]), "truncated");
        assert_eq!(kind(&[CREDIT, 0, 0, 0, 1, 0, 0, 0, 0]), "bad-credit");
        assert_eq!(kind(&[CREDIT, 0, 0, 0, 1, 0, 0, 0, 1, 0]), "trailing-bytes");
        let zero = ServeFrame::Credit { call: 1, count: 0 };
        let mut out = vec![9];
        assert_eq!(zero.encode(&mut out).unwrap_err().kind(), "bad-credit");
        assert_eq!(out, [9]);
        let mut end = vec![END, 0, 0, 0, 1];
        Trailer::new(Code::Ok, "").encode(&mut end).unwrap();
        end.push(0);
        assert_eq!(kind(&end), "trailing-bytes");
    }
}
