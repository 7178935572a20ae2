//! Parse errors for identities and tickets, each with a stable kind.

use thiserror::Error;

/// Why a NodeId text or byte string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseNodeIdError {
    /// Not 52 lowercase base32 characters.
    #[error("a NodeId is 52 lowercase base32 characters, got {0}")]
    Length(usize),
    /// Not valid base32.
    #[error("{0}")]
    Encoding(#[from] crate::Base32Error),
    /// The 32 bytes are not a valid ed25519 public key.
    #[error("not a valid ed25519 public key")]
    InvalidKey,
}

impl ParseNodeIdError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        "invalid-node-id"
    }
}

/// Why a join ticket was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseTicketError {
    /// Does not start with the ticket prefix.
    #[error(
        "a ticket starts with \"{0}\"; is this the whole string printed by `relay-node invite`?"
    )]
    Prefix(&'static str),
    /// Not valid base32 (often: cut while copying).
    #[error("bad encoding ({0}); the ticket may be cut short or mistyped")]
    Encoding(#[from] crate::Base32Error),
    /// The ticket body is truncated or malformed.
    #[error("malformed ticket body; the ticket may be cut short")]
    Body,
    /// A version this build does not know.
    #[error("ticket version {0} is not supported by this build")]
    Version(u8),
    /// The NodeId inside is invalid.
    #[error("ticket holds an invalid NodeId")]
    NodeId,
    /// Extra bytes after the body.
    #[error("ticket has {0} trailing bytes")]
    Trailing(usize),
    /// A checksum mismatch: the ticket was altered.
    #[error("ticket checksum mismatch; the ticket was altered or mistyped")]
    Checksum,
}

impl ParseTicketError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        "invalid-ticket"
    }
}
