//! The binary frames of the local API's `rpc-call` stream: how a peer
//! process makes one streaming nRPC call (client streaming, duplex, server
//! streaming) through its node (docs/LOCAL_API.md, "Streaming calls from a
//! peer process"). Each is the payload of one frame of the local API's
//! frame stream ([`crate::frame_stream`]), so its length is known; it
//! starts with a type byte. One connection carries one call, so there is
//! no call id:
//!
//! | type | name | direction | after the type |
//! |------|------|-----------|----------------|
//! | `0x01` | message | process → node | one request message |
//! | `0x02` | finish | process → node | nothing: the last request was sent |
//! | `0x11` | message | node → process | one response message |
//! | `0x13` | end | node → process | an nRPC trailer frame ([`Trailer`]): the call's status |
//!
//! Decoding is strict and total: unknown types, bytes after `finish`, and
//! a trailer that does not decode or has bytes after it are typed errors;
//! the trailer reuses [`super::rpc`]'s decoder and bounds.

use thiserror::Error;

use super::rpc::{decode_frame, Frame, RpcFrameError, Trailer};

/// Frame type: a request message.
pub const SEND: u8 = 0x01;
/// Frame type: the caller finished sending.
pub const FINISH: u8 = 0x02;
/// Frame type: a response message.
pub const MESSAGE: u8 = 0x11;
/// Frame type: the call's status.
pub const END: u8 = 0x13;

/// One frame of the `rpc-call` stream, borrowing its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFrame<'a> {
    /// A request message (process → node).
    Send(&'a [u8]),
    /// The caller finished sending (process → node).
    Finish,
    /// A response message (node → process).
    Message(&'a [u8]),
    /// The call's status; nothing follows (node → process).
    End(Trailer),
}

/// An `rpc-call` frame does not decode or encode. Displayed as
/// `kind: detail`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallFrameError {
    /// An unknown frame type.
    #[error("bad-frame-type: unknown rpc-call frame type {0:#04x}")]
    FrameType(u8),
    /// The frame is empty, or ends inside its trailer.
    #[error("truncated: the frame ends inside {0}")]
    Truncated(&'static str),
    /// Bytes after the last field.
    #[error("trailing-bytes: {0} bytes after the last field")]
    Trailing(usize),
    /// The nested trailer is invalid.
    #[error("{0}")]
    Nested(#[from] RpcFrameError),
}

impl CallFrameError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::FrameType(_) => "bad-frame-type",
            Self::Truncated(_) => "truncated",
            Self::Trailing(_) => "trailing-bytes",
            Self::Nested(_) => "bad-frame",
        }
    }
}

impl CallFrame<'_> {
    /// Appends the frame's payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CallFrameError> {
        let start = out.len();
        match self {
            Self::Send(body) => {
                out.push(SEND);
                out.extend_from_slice(body);
            }
            Self::Finish => out.push(FINISH),
            Self::Message(body) => {
                out.push(MESSAGE);
                out.extend_from_slice(body);
            }
            Self::End(trailer) => {
                out.push(END);
                trailer.encode(out).map_err(|e| {
                    out.truncate(start);
                    CallFrameError::Nested(e)
                })?;
            }
        }
        Ok(())
    }

    /// Decodes one frame's payload.
    pub fn decode(payload: &[u8]) -> Result<CallFrame<'_>, CallFrameError> {
        let (&kind, rest) = payload
            .split_first()
            .ok_or(CallFrameError::Truncated("the type"))?;
        match kind {
            SEND => Ok(CallFrame::Send(rest)),
            FINISH => match rest {
                [] => Ok(CallFrame::Finish),
                more => Err(CallFrameError::Trailing(more.len())),
            },
            MESSAGE => Ok(CallFrame::Message(rest)),
            END => match decode_frame(rest)? {
                Some((Frame::Trailer(trailer), used)) if used == rest.len() => {
                    Ok(CallFrame::End(trailer))
                }
                Some((Frame::Trailer(_), used)) => Err(CallFrameError::Trailing(rest.len() - used)),
                Some(_) => Err(RpcFrameError::Field("not a trailer").into()),
                None => Err(CallFrameError::Truncated("the trailer")),
            },
            other => Err(CallFrameError::FrameType(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::rpc::Code;

    fn bytes(frame: &CallFrame<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(&mut out).unwrap();
        assert_eq!(&CallFrame::decode(&out).unwrap(), frame);
        out
    }

    #[test]
    fn every_frame_round_trips_with_its_documented_bytes() {
        assert_eq!(bytes(&CallFrame::Send(b"hi")), [SEND, b'h', b'i']);
        assert_eq!(bytes(&CallFrame::Send(b"")), [SEND]);
        assert_eq!(bytes(&CallFrame::Finish), [FINISH]);
        assert_eq!(bytes(&CallFrame::Message(b"x")), [MESSAGE, b'x']);
        let mut trailer = Trailer::new(Code::NotFound, "no such item");
        trailer.retry_after_ms = Some(5);
        let end = bytes(&CallFrame::End(trailer));
        assert_eq!(end[..2], [END, 0x03]);
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        let kind = |b: &[u8]| CallFrame::decode(b).unwrap_err().kind();
        assert_eq!(kind(&[]), "truncated");
        assert_eq!(kind(&[0x7f]), "bad-frame-type");
        assert_eq!(kind(&[FINISH, 0]), "trailing-bytes");
        assert_eq!(kind(&[END]), "truncated");
        assert_eq!(kind(&[END, 3, 0, 0]), "truncated");
        assert_eq!(kind(&[END, 3, 0, 0, 0, 0]), "bad-frame");
        let mut end = vec![END];
        Trailer::new(Code::Ok, "").encode(&mut end).unwrap();
        end.push(0);
        assert_eq!(kind(&end), "trailing-bytes");
    }
}
