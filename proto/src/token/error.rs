//! Why a token was refused: one variant per stable kind, printed
//! `token: KIND: detail`.

use thiserror::Error;

/// A token (or chain) was refused, at issue time or when verified.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// A link's signature does not verify, or the chain is not rooted at the
    /// trusted issuer (the channel owner).
    #[error("token: invalid-signature: {0}")]
    InvalidSignature(String),
    /// A link's expiry has passed, or a link would outlive its parent.
    #[error("token: expired: {0}")]
    Expired(String),
    /// A link is not valid yet.
    #[error("token: not-yet-valid: {0}")]
    NotYetValid(String),
    /// A link was delegated from a token whose depth does not allow it.
    #[error("token: delegation-exhausted: {0}")]
    DelegationExhausted(String),
    /// The requested scope is not granted, or a link widens its parent's scopes.
    #[error("token: scope: {0}")]
    Scope(String),
    /// The channel does not match the token's pattern, or a link widens its
    /// parent's channel.
    #[error("token: channel-mismatch: {0}")]
    ChannelMismatch(String),
    /// A link of the chain is revoked.
    #[error("token: revoked: {0}")]
    Revoked(String),
    /// The token's bytes or text could not be decoded, or a field is invalid.
    #[error("token: malformed: {0}")]
    Malformed(String),
    /// The holder is not the last link's subject, or a link is not issued by
    /// its parent's subject.
    #[error("token: wrong-subject: {0}")]
    WrongSubject(String),
    /// The chain has more links than [`super::MAX_CHAIN`].
    #[error("token: chain-too-long: {0}")]
    ChainTooLong(String),
}

impl TokenError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidSignature(_) => "invalid-signature",
            Self::Expired(_) => "expired",
            Self::NotYetValid(_) => "not-yet-valid",
            Self::DelegationExhausted(_) => "delegation-exhausted",
            Self::Scope(_) => "scope",
            Self::ChannelMismatch(_) => "channel-mismatch",
            Self::Revoked(_) => "revoked",
            Self::Malformed(_) => "malformed",
            Self::WrongSubject(_) => "wrong-subject",
            Self::ChainTooLong(_) => "chain-too-long",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_starts_with_token_and_kind() {
        let e = TokenError::Revoked("link 1".into());
        assert_eq!(e.to_string(), "token: revoked: link 1");
        assert_eq!(e.kind(), "revoked");
        let e = TokenError::ChainTooLong("9 links".into());
        assert!(e.to_string().starts_with(&format!("token: {}:", e.kind())));
    }
}
