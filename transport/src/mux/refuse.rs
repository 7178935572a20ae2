//! Why the mux refuses an incoming stream or datagram, and the stream
//! reset code that tells the opener.
//!
//! A refused stream is reset (our send half, on a bidirectional stream)
//! and stopped (our receive half) with the code of its [`Refusal`]; a
//! refused datagram is dropped. Either way the refusal is counted
//! ([`super::MuxStats`]).

use thiserror::Error;

use super::id::{HeaderError, ProtocolId};

/// Reset code: no handler is registered for the stream's protocol id.
pub const RESET_UNKNOWN_PROTOCOL: u32 = 0x10;
/// Reset code: the stream ended or failed before its whole protocol id,
/// or (for protocols to use) a frame on it was malformed or too large.
pub const RESET_BAD_FRAME: u32 = 0x11;
/// Reset code: the protocol id did not arrive within the mux's id timeout.
pub const RESET_ID_TIMEOUT: u32 = 0x12;
/// Reset code: the protocol's queue (or the opener's share of it) is full.
pub const RESET_BUSY: u32 = 0x13;
/// Reset code: too many of the opener's streams (or of all peers'
/// streams) are still awaiting their protocol id.
pub const RESET_TOO_MANY_PENDING: u32 = 0x14;
/// Reset code: the mux is shutting down.
pub const RESET_SHUTDOWN: u32 = 0x15;

/// Why an incoming stream or datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    /// No handler for this id.
    #[error("unknown-protocol: no handler for protocol {0}")]
    UnknownProtocol(ProtocolId),
    /// The header was cut short or the stream failed before it.
    #[error(transparent)]
    BadHeader(#[from] HeaderError),
    /// The header did not arrive in time.
    #[error("id-timeout: no protocol id within {0} ms")]
    IdTimeout(u128),
    /// The protocol's queue, or the sender's share of it, is full.
    #[error("busy: the queue of protocol {0} is full")]
    Busy(ProtocolId),
    /// Too many streams await their id.
    #[error("too-many-pending: too many streams await their protocol id")]
    TooManyPending,
    /// The mux is closed.
    #[error("shutdown: the mux is closed")]
    Shutdown,
}

impl Refusal {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownProtocol(_) => "unknown-protocol",
            Self::BadHeader(_) => "bad-header",
            Self::IdTimeout(_) => "id-timeout",
            Self::Busy(_) => "busy",
            Self::TooManyPending => "too-many-pending",
            Self::Shutdown => "shutdown",
        }
    }

    /// The code a refused stream is reset and stopped with.
    pub fn reset_code(&self) -> u32 {
        match self {
            Self::UnknownProtocol(_) => RESET_UNKNOWN_PROTOCOL,
            Self::BadHeader(_) => RESET_BAD_FRAME,
            Self::IdTimeout(_) => RESET_ID_TIMEOUT,
            Self::Busy(_) => RESET_BUSY,
            Self::TooManyPending => RESET_TOO_MANY_PENDING,
            Self::Shutdown => RESET_SHUTDOWN,
        }
    }
}

/// Abandons both halves of a bidirectional stream with `code`.
pub fn reset_bi(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, code: u32) {
    let code = quinn::VarInt::from_u32(code);
    let _ = send.reset(code);
    let _ = recv.stop(code);
}

/// Abandons the receive half of a unidirectional stream with `code`.
pub fn stop_uni(recv: &mut quinn::RecvStream, code: u32) {
    let _ = recv.stop(quinn::VarInt::from_u32(code));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_codes_are_stable() {
        let cases = [
            (
                Refusal::UnknownProtocol(ProtocolId::new(9)),
                "unknown-protocol",
                0x10,
            ),
            (
                Refusal::BadHeader(HeaderError::Truncated(1)),
                "bad-header",
                0x11,
            ),
            (Refusal::IdTimeout(5), "id-timeout", 0x12),
            (Refusal::Busy(ProtocolId::new(1)), "busy", 0x13),
            (Refusal::TooManyPending, "too-many-pending", 0x14),
            (Refusal::Shutdown, "shutdown", 0x15),
        ];
        for (refusal, kind, code) in cases {
            assert_eq!(refusal.kind(), kind);
            assert_eq!(refusal.reset_code(), code);
            assert!(refusal.to_string().starts_with(&format!("{kind}: ")));
        }
    }
}
