//! The binary frames of the local API's `rpc-calls` stream: how a peer
//! process makes many unary nRPC calls at once over one connection to its
//! node (docs/LOCAL_API.md, "Many unary calls on one connection"). Each is
//! the payload of one frame of the local API's frame stream
//! ([`crate::frame_stream`]), so its length is known; it starts with a
//! type byte and a call id (u32, big-endian) the process picks:
//!
//! | type | name | direction | after the type and id |
//! |------|------|-----------|-----------------------|
//! | `0x21` | call | process → node | method length (u8), method, request body |
//! | `0x22` | cancel | process → node | nothing |
//! | `0x31` | reply | node → process | the response body (the call ended `ok`) |
//! | `0x32` | error | node → process | an nRPC trailer frame ([`Trailer`]): the call's status |
//!
//! Decoding is strict and total: unknown types, a short id, a method that
//! is empty, longer than [`MAX_METHOD`] or cut off, bytes after `cancel`,
//! and a trailer that does not decode or has bytes after it are typed
//! errors; the trailer reuses [`super::rpc`]'s decoder and bounds.

use thiserror::Error;

use super::rpc::{decode_frame, Frame, RpcFrameError, Trailer, MAX_METHOD};

/// Frame type: a call.
pub const CALL: u8 = 0x21;
/// Frame type: cancel a call.
pub const CANCEL: u8 = 0x22;
/// Frame type: a call ended `ok`, with its response.
pub const REPLY: u8 = 0x31;
/// Frame type: a call ended with another status.
pub const ERROR: u8 = 0x32;

/// One frame of the `rpc-calls` stream, borrowing its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallsFrame<'a> {
    /// Call `method` of the connection's service with `body` (process →
    /// node).
    Call {
        /// The call's id, unique among the connection's calls in flight.
        id: u32,
        /// The method.
        method: &'a str,
        /// The request body.
        body: &'a [u8],
    },
    /// Cancel call `id` (process → node).
    Cancel(u32),
    /// Call `id` ended `ok` with this response (node → process).
    Reply {
        /// The call's id.
        id: u32,
        /// The response body.
        body: &'a [u8],
    },
    /// Call `id` ended with this status (node → process).
    Error {
        /// The call's id.
        id: u32,
        /// The status.
        trailer: Trailer,
    },
}

/// An `rpc-calls` frame does not decode or encode. Displayed as
/// `kind: detail`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallsFrameError {
    /// An unknown frame type.
    #[error("bad-frame-type: unknown rpc-calls frame type {0:#04x}")]
    FrameType(u8),
    /// The frame ends inside a field.
    #[error("truncated: the frame ends inside {0}")]
    Truncated(&'static str),
    /// Bytes after the last field.
    #[error("trailing-bytes: {0} bytes after the last field")]
    Trailing(usize),
    /// The method is empty, too long or not UTF-8.
    #[error("bad-method: {0}")]
    Method(&'static str),
    /// The nested trailer is invalid.
    #[error("{0}")]
    Nested(#[from] RpcFrameError),
}

impl CallsFrameError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::FrameType(_) => "bad-frame-type",
            Self::Truncated(_) => "truncated",
            Self::Trailing(_) => "trailing-bytes",
            Self::Method(_) => "bad-method",
            Self::Nested(_) => "bad-frame",
        }
    }
}

fn check_method(method: &str) -> Result<u8, CallsFrameError> {
    if method.is_empty() {
        return Err(CallsFrameError::Method("empty"));
    }
    if method.len() > MAX_METHOD {
        return Err(CallsFrameError::Method("longer than the limit"));
    }
    u8::try_from(method.len()).map_err(|_| CallsFrameError::Method("longer than the limit"))
}

impl CallsFrame<'_> {
    /// Appends the frame's payload to `out`; nothing is appended on error.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CallsFrameError> {
        let start = out.len();
        match self {
            Self::Call { id, method, body } => {
                let len = check_method(method)?;
                out.push(CALL);
                out.extend_from_slice(&id.to_be_bytes());
                out.push(len);
                out.extend_from_slice(method.as_bytes());
                out.extend_from_slice(body);
            }
            Self::Cancel(id) => {
                out.push(CANCEL);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Self::Reply { id, body } => {
                out.push(REPLY);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(body);
            }
            Self::Error { id, trailer } => {
                out.push(ERROR);
                out.extend_from_slice(&id.to_be_bytes());
                trailer.encode(out).map_err(|e| {
                    out.truncate(start);
                    CallsFrameError::Nested(e)
                })?;
            }
        }
        Ok(())
    }

    /// Decodes one frame's payload.
    pub fn decode(payload: &[u8]) -> Result<CallsFrame<'_>, CallsFrameError> {
        let (&kind, rest) = payload
            .split_first()
            .ok_or(CallsFrameError::Truncated("the type"))?;
        if !matches!(kind, CALL | CANCEL | REPLY | ERROR) {
            return Err(CallsFrameError::FrameType(kind));
        }
        let (id, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(CallsFrameError::Truncated("the call id"))?;
        let id = u32::from_be_bytes(*id);
        match kind {
            CALL => {
                let (&len, rest) = rest
                    .split_first()
                    .ok_or(CallsFrameError::Truncated("the method length"))?;
                let len = usize::from(len);
                if len == 0 {
                    return Err(CallsFrameError::Method("empty"));
                }
                if len > MAX_METHOD {
                    return Err(CallsFrameError::Method("longer than the limit"));
                }
                let (method, body) = rest
                    .split_at_checked(len)
                    .ok_or(CallsFrameError::Truncated("the method"))?;
                let method = std::str::from_utf8(method)
                    .map_err(|_| CallsFrameError::Method("not UTF-8"))?;
                Ok(CallsFrame::Call { id, method, body })
            }
            CANCEL => match rest {
                [] => Ok(CallsFrame::Cancel(id)),
                more => Err(CallsFrameError::Trailing(more.len())),
            },
            REPLY => Ok(CallsFrame::Reply { id, body: rest }),
            _ => match decode_frame(rest)? {
                Some((Frame::Trailer(trailer), used)) if used == rest.len() => {
                    Ok(CallsFrame::Error { id, trailer })
                }
                Some((Frame::Trailer(_), used)) => {
                    Err(CallsFrameError::Trailing(rest.len() - used))
                }
                Some(_) => Err(RpcFrameError::Field("not a trailer").into()),
                None => Err(CallsFrameError::Truncated("the trailer")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::rpc::Code;

    fn bytes(frame: &CallsFrame<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(&mut out).unwrap();
        assert_eq!(&CallsFrame::decode(&out).unwrap(), frame);
        out
    }

    #[test]
    fn every_frame_round_trips_with_its_documented_bytes() {
        let call = CallsFrame::Call {
            id: 0x0102_0304,
            method: "echo",
            body: b"hi",
        };
        assert_eq!(
            bytes(&call),
            [CALL, 1, 2, 3, 4, 4, b'e', b'c', b'h', b'o', b'h', b'i']
        );
        let empty = CallsFrame::Call {
            id: 7,
            method: "m",
            body: b"",
        };
        assert_eq!(bytes(&empty), [CALL, 0, 0, 0, 7, 1, b'm']);
        assert_eq!(bytes(&CallsFrame::Cancel(9)), [CANCEL, 0, 0, 0, 9]);
        let reply = CallsFrame::Reply { id: 1, body: b"x" };
        assert_eq!(bytes(&reply), [REPLY, 0, 0, 0, 1, b'x']);
        let mut trailer = Trailer::new(Code::NotFound, "no such item");
        trailer.retry_after_ms = Some(5);
        let error = bytes(&CallsFrame::Error { id: 2, trailer });
        assert_eq!(error[..6], [ERROR, 0, 0, 0, 2, 0x03]);
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        let kind = |b: &[u8]| CallsFrame::decode(b).unwrap_err().kind();
        assert_eq!(kind(&[]), "truncated");
        assert_eq!(kind(&[0x7f, 0, 0, 0, 0]), "bad-frame-type");
        assert_eq!(kind(&[CALL, 0, 0, 0]), "truncated");
        assert_eq!(kind(&[CALL, 0, 0, 0, 1]), "truncated");
        assert_eq!(kind(&[CALL, 0, 0, 0, 1, 0]), "bad-method");
        assert_eq!(kind(&[CALL, 0, 0, 0, 1, 3, b'a']), "truncated");
        assert_eq!(kind(&[CALL, 0, 0, 0, 1, 1, 0xff]), "bad-method");
        assert_eq!(kind(&[CALL, 0, 0, 0, 1, 255]), "bad-method");
        assert_eq!(kind(&[CANCEL, 0, 0, 0, 1, 0]), "trailing-bytes");
        assert_eq!(kind(&[ERROR, 0, 0, 0, 1]), "truncated");
        assert_eq!(kind(&[ERROR, 0, 0, 0, 1, 3, 0, 0, 0, 0]), "bad-frame");
        let mut error = vec![ERROR, 0, 0, 0, 1];
        Trailer::new(Code::Ok, "").encode(&mut error).unwrap();
        error.push(0);
        assert_eq!(kind(&error), "trailing-bytes");
    }

    #[test]
    fn a_method_over_the_limit_is_not_encoded() {
        let long = "m".repeat(MAX_METHOD + 1);
        let mut out = vec![1];
        let call = CallsFrame::Call {
            id: 1,
            method: &long,
            body: b"",
        };
        assert_eq!(call.encode(&mut out).unwrap_err().kind(), "bad-method");
        assert_eq!(out, [1]);
    }
}
