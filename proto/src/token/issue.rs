//! Issuing tokens: a root token signed by the channel owner, and a
//! delegation signed by the holder of a chain. Refuses at issue time what
//! verification would refuse later: a TTL of zero or below, a widening
//! delegation, a depth past the parent's, a chain past [`MAX_CHAIN`].

use crate::{NodeId, SecretKey};

use super::chain::MAX_CHAIN;
use super::token::depth;
use super::verify::{check, narrows};
use super::{
    ChannelPattern, NoRevocations, Scope, Scopes, TokenChain, TokenClaims, TokenError, TokenId,
};

/// How far before `now` an issued token's `not_before` is set, so that a
/// verifier whose clock lags the issuer's by up to this much (unix ms)
/// still accepts a fresh token.
pub const CLOCK_SKEW_MS: u64 = 60_000;

/// What a root token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who may use it.
    pub subject: NodeId,
    /// What it allows (at least one scope).
    pub scopes: Scopes,
    /// Which channels.
    pub channel: ChannelPattern,
    /// Lifetime in ms from now; zero or below is refused.
    pub ttl_ms: i64,
    /// How many delegation levels below it; default 1 with `delegate`, else 0.
    pub depth: Option<u8>,
}

/// What a delegation grants; unset fields inherit the parent's (`depth`:
/// one below the parent's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    /// Who may use it.
    pub subject: NodeId,
    /// What it allows (within the parent's scopes).
    pub scopes: Scopes,
    /// Which channels (contained in the parent's pattern).
    pub channel: Option<ChannelPattern>,
    /// Lifetime in ms from now (not past the parent's expiry).
    pub ttl_ms: Option<i64>,
    /// Delegation depth (below the parent's).
    pub depth: Option<u8>,
}

/// Issues a root token signed by `key` (the channel owner) at `now` (unix ms).
pub fn issue(key: &SecretKey, grant: &Grant, now: u64) -> Result<TokenChain, TokenError> {
    let expires = expiry(now, grant.ttl_ms)?;
    let default_depth = u8::from(grant.scopes.contains(Scope::Delegate));
    let claims = TokenClaims {
        issuer: key.node_id(),
        subject: grant.subject,
        scopes: nonempty(grant.scopes)?,
        channel: grant.channel.clone(),
        not_before: now.saturating_sub(CLOCK_SKEW_MS),
        expires,
        delegation_depth: depth(grant.depth.unwrap_or(default_depth))?,
        id: TokenId::random(),
        parent: TokenId::NONE,
    };
    TokenChain::new(vec![claims.sign(key)?])
}

/// Delegates `parent` to another node: `key` must be the parent's holder
/// and the parent must be valid at `now` (revocation is not checked here).
pub fn delegate(
    parent: &TokenChain,
    key: &SecretKey,
    delegation: &Delegation,
    now: u64,
) -> Result<TokenChain, TokenError> {
    check(parent, now, &NoRevocations)?;
    let p = &parent.leaf().claims;
    if key.node_id() != p.subject {
        return Err(TokenError::WrongSubject(format!(
            "this node is {}, but the token is for {}",
            key.node_id(),
            p.subject
        )));
    }
    if parent.links().len() >= MAX_CHAIN {
        return Err(TokenError::ChainTooLong(format!(
            "the token already has {MAX_CHAIN} links"
        )));
    }
    let expires = match delegation.ttl_ms {
        Some(ttl) => expiry(now, ttl)?,
        None => p.expires,
    };
    let claims = TokenClaims {
        issuer: p.subject,
        subject: delegation.subject,
        scopes: nonempty(delegation.scopes)?,
        channel: delegation
            .channel
            .clone()
            .unwrap_or_else(|| p.channel.clone()),
        not_before: now.saturating_sub(CLOCK_SKEW_MS).max(p.not_before),
        expires,
        delegation_depth: delegation
            .depth
            .unwrap_or_else(|| p.delegation_depth.saturating_sub(1)),
        id: TokenId::random(),
        parent: p.id,
    };
    let link = claims.sign(key)?;
    narrows(parent.leaf(), &link, parent.links().len() + 1)?;
    parent.with(link)
}

fn expiry(now: u64, ttl_ms: i64) -> Result<u64, TokenError> {
    let ttl = u64::try_from(ttl_ms)
        .ok()
        .filter(|t| *t > 0)
        .ok_or_else(|| {
            TokenError::Expired(format!("a TTL of {ttl_ms} ms would be expired at issue"))
        })?;
    now.checked_add(ttl)
        .ok_or_else(|| TokenError::Malformed(format!("a TTL of {ttl_ms} ms overflows")))
}

fn nonempty(scopes: Scopes) -> Result<Scopes, TokenError> {
    if scopes.is_empty() {
        return Err(TokenError::Scope(
            "a token grants at least one scope".into(),
        ));
    }
    Ok(scopes)
}
