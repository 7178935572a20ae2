//! One link of a token chain: its claims, their canonical signed encoding and
//! their binary form.

use crate::ledger::codec::{CodecError, Reader, Writer};
use crate::signing::{Canonical, Context, SigningError};
use crate::{NodeId, SecretKey};

use super::{ChannelPattern, Scopes, TokenError, TokenId, MAX_CHAIN, MAX_PATTERN};

/// The context string token signatures are made over.
pub const TOKEN_CONTEXT: Context = Context::new("relay-node/v1/token");

/// Bytes of one link in the binary form, at most.
pub const MAX_LINK_BYTES: usize = 32 + 32 + 1 + 2 + MAX_PATTERN + 8 + 8 + 1 + 16 + 16 + 64;

/// What a token says, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// Who signs it: the channel owner for a root token, else the parent
    /// link's subject.
    pub issuer: NodeId,
    /// Who may use it.
    pub subject: NodeId,
    /// What it allows.
    pub scopes: Scopes,
    /// Which channels: an exact name or a pattern, bound in full.
    pub channel: ChannelPattern,
    /// Valid from (unix ms, inclusive).
    pub not_before: u64,
    /// Valid until (unix ms, exclusive).
    pub expires: u64,
    /// How many more links may be delegated below this one (at most
    /// `MAX_CHAIN - 1`).
    pub delegation_depth: u8,
    /// This token's unique id (what a revocation names).
    pub id: TokenId,
    /// The parent link's id; [`TokenId::NONE`] for a root token.
    pub parent: TokenId,
}

/// A signed link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The signed claims.
    pub claims: TokenClaims,
    /// ed25519 by `claims.issuer` over [`TokenClaims::canonical`].
    pub signature: [u8; 64],
}

impl TokenClaims {
    /// The canonical encoding that is signed:
    /// `"relay-node/v1/token\0" || issuer || subject || scopes (u8) ||
    /// channel (u16 length, bytes) || not_before (u64) || expires (u64) ||
    /// delegation_depth (u8) || id (16) || parent (16)`.
    pub fn canonical(&self) -> Result<Canonical, SigningError> {
        Ok(Canonical::new(TOKEN_CONTEXT)?
            .fixed(self.issuer.as_bytes())
            .fixed(self.subject.as_bytes())
            .fixed(&[self.scopes.bits()])
            .bytes(self.channel.as_str().as_bytes())?
            .u64(self.not_before)
            .u64(self.expires)
            .fixed(&[self.delegation_depth])
            .fixed(self.id.as_bytes())
            .fixed(self.parent.as_bytes()))
    }

    /// Signs the claims with `key`, which must be the issuer's.
    pub fn sign(self, key: &SecretKey) -> Result<Token, TokenError> {
        if key.node_id() != self.issuer {
            return Err(TokenError::WrongSubject(format!(
                "this key is {}, not the issuer {}",
                key.node_id(),
                self.issuer
            )));
        }
        let signature = self.canonical().map_err(signing_error)?.sign(key);
        Ok(Token {
            claims: self,
            signature,
        })
    }
}

impl Token {
    /// Verifies the signature by `claims.issuer`, strictly.
    pub fn verify_signature(&self) -> Result<(), SigningError> {
        self.claims
            .canonical()?
            .verify(&self.claims.issuer, &self.signature)
    }

    pub(super) fn write(&self, w: &mut Writer) {
        let c = &self.claims;
        w.node_id(&c.issuer);
        w.node_id(&c.subject);
        w.u8(c.scopes.bits());
        w.text(c.channel.as_str());
        w.u64(c.not_before);
        w.u64(c.expires);
        w.u8(c.delegation_depth);
        w.raw(c.id.as_bytes());
        w.raw(c.parent.as_bytes());
        w.raw(&self.signature);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, TokenError> {
        let claims = TokenClaims {
            issuer: r.node_id("issuer").map_err(codec_error)?,
            subject: r.node_id("subject").map_err(codec_error)?,
            scopes: Scopes::from_bits(r.u8("scopes").map_err(codec_error)?)
                .ok_or_else(|| TokenError::Malformed("unknown scope bits".into()))?,
            channel: ChannelPattern::parse(&r.text("channel", MAX_PATTERN).map_err(codec_error)?)?,
            not_before: r.u64("not_before").map_err(codec_error)?,
            expires: r.u64("expires").map_err(codec_error)?,
            delegation_depth: depth(r.u8("delegation_depth").map_err(codec_error)?)?,
            id: TokenId::from_bytes(r.array("id").map_err(codec_error)?),
            parent: TokenId::from_bytes(r.array("parent").map_err(codec_error)?),
        };
        let signature = r.array("signature").map_err(codec_error)?;
        Ok(Self { claims, signature })
    }
}

/// A delegation depth, refused past `MAX_CHAIN - 1`.
pub(super) fn depth(value: u8) -> Result<u8, TokenError> {
    if usize::from(value) >= MAX_CHAIN {
        return Err(TokenError::Malformed(format!(
            "delegation depth {value} exceeds {}",
            MAX_CHAIN - 1
        )));
    }
    Ok(value)
}

pub(super) fn codec_error(e: CodecError) -> TokenError {
    TokenError::Malformed(e.to_string())
}

pub(super) fn signing_error(e: SigningError) -> TokenError {
    TokenError::Malformed(e.to_string())
}
