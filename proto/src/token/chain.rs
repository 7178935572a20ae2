//! A token chain: a root token issued by the channel owner and up to seven
//! delegations below it, and its binary form.
//!
//! ```text
//! chain = version (u8, 1) || count (u8, 1..=8) || link * count
//! link  = issuer (32) || subject (32) || scopes (u8) || channel (u16 length, bytes)
//!         || not_before (u64) || expires (u64) || delegation_depth (u8)
//!         || id (16) || parent (16) || signature (64)
//! ```
//!
//! Integers are big-endian. Decoding is strict: a known version, valid
//! NodeIds, known scope bits, a valid channel pattern, no trailing bytes.

use crate::ledger::codec::{Reader, Writer};

use super::token::{codec_error, MAX_LINK_BYTES};
use super::{Token, TokenError};

/// Most links in a chain.
pub const MAX_CHAIN: usize = 8;
/// The binary form's version byte.
pub const CHAIN_VERSION: u8 = 1;
/// Bytes of the largest binary chain.
pub const MAX_CHAIN_BYTES: usize = 2 + MAX_CHAIN * MAX_LINK_BYTES;

/// A non-empty chain of at most [`MAX_CHAIN`] links, root first. Holding one
/// says nothing about its validity: see [`super::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenChain(Vec<Token>);

impl TokenChain {
    /// A chain of `links`, root first: 1 to [`MAX_CHAIN`] of them.
    pub fn new(links: Vec<Token>) -> Result<Self, TokenError> {
        if links.is_empty() {
            return Err(TokenError::Malformed(
                "a chain has at least one link".into(),
            ));
        }
        if links.len() > MAX_CHAIN {
            return Err(too_long(links.len()));
        }
        Ok(Self(links))
    }

    /// The links, root first.
    pub fn links(&self) -> &[Token] {
        &self.0
    }

    /// The root link (issued by the channel owner).
    pub fn root(&self) -> &Token {
        // A chain is never empty (checked by `new` and `decode`).
        &self.0[0]
    }

    /// The last link: the one whose subject holds the chain.
    pub fn leaf(&self) -> &Token {
        &self.0[self.0.len() - 1]
    }

    /// This chain with `link` appended.
    pub fn with(&self, link: Token) -> Result<Self, TokenError> {
        let mut links = self.0.clone();
        links.push(link);
        Self::new(links)
    }

    /// The binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(CHAIN_VERSION);
        // At most MAX_CHAIN links (checked on construction).
        w.u8(self.0.len() as u8);
        for link in &self.0 {
            link.write(&mut w);
        }
        w.into_bytes()
    }

    /// Decodes the binary form strictly. More than [`MAX_CHAIN`] links is
    /// `chain-too-long`; anything else wrong is `malformed`.
    pub fn decode(bytes: &[u8]) -> Result<Self, TokenError> {
        if bytes.len() > MAX_CHAIN_BYTES + MAX_LINK_BYTES {
            return Err(TokenError::Malformed(format!(
                "{} bytes is longer than any chain",
                bytes.len()
            )));
        }
        let mut r = Reader::new(bytes);
        let version = r.u8("version").map_err(codec_error)?;
        if version != CHAIN_VERSION {
            return Err(TokenError::Malformed(format!(
                "version {version} is not supported"
            )));
        }
        let count = usize::from(r.u8("count").map_err(codec_error)?);
        if count > MAX_CHAIN {
            return Err(too_long(count));
        }
        let mut links = Vec::with_capacity(count);
        for _ in 0..count {
            links.push(Token::read(&mut r)?);
        }
        r.finish().map_err(codec_error)?;
        Self::new(links)
    }
}

fn too_long(links: usize) -> TokenError {
    TokenError::ChainTooLong(format!("{links} links, at most {MAX_CHAIN}"))
}
