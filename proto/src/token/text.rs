//! The text form of a chain: `rnk1` then the binary form ([`super::chain`])
//! in lowercase base32 without padding. Copy-paste safe; parsed strictly
//! (bounded length, the exact prefix, canonical base32, no trailing bytes).

use super::chain::MAX_CHAIN_BYTES;
use super::token::MAX_LINK_BYTES;
use super::{TokenChain, TokenError};

/// The prefix of every token's text form.
pub const TEXT_PREFIX: &str = "rnk1";

/// The longest text accepted: a chain one link past [`super::MAX_CHAIN`] (so that
/// such a chain reports `chain-too-long`, not `malformed`).
pub const MAX_TEXT: usize = TEXT_PREFIX.len() + (MAX_CHAIN_BYTES + MAX_LINK_BYTES) * 8 / 5 + 1;

impl TokenChain {
    /// The text form.
    pub fn to_text(&self) -> String {
        format!("{TEXT_PREFIX}{}", crate::base32_encode(&self.encode()))
    }

    /// Parses the text form. Surrounding whitespace is not trimmed.
    pub fn from_text(text: &str) -> Result<Self, TokenError> {
        if text.len() > MAX_TEXT {
            return Err(TokenError::Malformed(format!(
                "{} characters is longer than any token",
                text.len()
            )));
        }
        let body = text.strip_prefix(TEXT_PREFIX).ok_or_else(|| {
            TokenError::Malformed(format!(
                "a token starts with {TEXT_PREFIX:?}; is this the whole string printed by `relay-node token issue`?"
            ))
        })?;
        let bytes = crate::base32_decode(body).map_err(|e| {
            TokenError::Malformed(format!("bad encoding ({e}); the token may be cut short"))
        })?;
        Self::decode(&bytes)
    }
}

impl std::fmt::Display for TokenChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl std::str::FromStr for TokenChain {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_text(s)
    }
}
