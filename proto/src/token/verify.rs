//! Verifying a chain: signatures, the links' narrowing, time, revocation,
//! and finally the request (holder, channel, scope) against the last link.

use crate::NodeId;

use super::{ChannelPattern, Scope, Scopes, Token, TokenChain, TokenError, TokenId};

/// Where revocations are looked up.
///
/// `authorities` are the issuers of the link and of every link above it:
/// only their revocations count, so one member cannot revoke tokens it has
/// no say over. A plain closure `Fn(&TokenId) -> bool` is a `Revocations`
/// that ignores the authorities.
pub trait Revocations {
    /// Whether the link `id` is revoked by one of `authorities`.
    fn is_revoked(&self, id: &TokenId, authorities: &[NodeId]) -> bool;
}

impl<F: Fn(&TokenId) -> bool> Revocations for F {
    fn is_revoked(&self, id: &TokenId, _authorities: &[NodeId]) -> bool {
        self(id)
    }
}

/// No token is revoked (offline checks that cannot see the ledger).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRevocations;

impl Revocations for NoRevocations {
    fn is_revoked(&self, _id: &TokenId, _authorities: &[NodeId]) -> bool {
        false
    }
}

/// What a chain is being used for.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The node presenting the chain (it must be the last link's subject).
    pub holder: NodeId,
    /// The concrete channel name.
    pub channel: &'a str,
    /// The scope needed.
    pub scope: Scope,
    /// Who must have issued the root link: the channel's owner.
    pub trusted_root: NodeId,
}

/// What a valid chain grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The root issuer (the channel owner).
    pub root: NodeId,
    /// The holder (the last link's subject).
    pub holder: NodeId,
    /// The last link's scopes.
    pub scopes: Scopes,
    /// The last link's channel pattern.
    pub channel: ChannelPattern,
    /// When the chain stops being valid (the earliest expiry, unix ms).
    pub expires: u64,
    /// Every link's id, root first: a revocation of any of them ends the grant.
    pub ids: Vec<TokenId>,
    /// Every link's issuer, root first (aligned with `ids`).
    pub issuers: Vec<NodeId>,
}

impl Verdict {
    /// Whether a revocation of `id` written by `by` ends this grant: `id`
    /// is a link of the chain and `by` issued that link or one above it
    /// (the same rule [`verify`] applies through [`Revocations`]).
    pub fn is_revoked_by(&self, id: &TokenId, by: &NodeId) -> bool {
        self.ids
            .iter()
            .position(|i| i == id)
            .is_some_and(|n| self.issuers.iter().take(n + 1).any(|i| i == by))
    }
}

/// Verifies `chain` for `request` at `now` (unix ms).
///
/// Checks in this order, reporting the first failure: the root is issued by
/// `request.trusted_root`; then each link's signature, its binding to its
/// parent and its narrowing; then revocation; then time; then the holder,
/// the scope and the channel.
pub fn verify(
    chain: &TokenChain,
    now: u64,
    request: &Request<'_>,
    revocations: &impl Revocations,
) -> Result<Verdict, TokenError> {
    let root = &chain.root().claims;
    if root.issuer != request.trusted_root {
        return Err(TokenError::InvalidSignature(format!(
            "the root is issued by {}, not by the channel owner {}",
            root.issuer, request.trusted_root
        )));
    }
    let verdict = check(chain, now, revocations)?;
    if verdict.holder != request.holder {
        return Err(TokenError::WrongSubject(format!(
            "the token is for {}, presented by {}",
            verdict.holder, request.holder
        )));
    }
    if !verdict.scopes.contains(request.scope) {
        return Err(TokenError::Scope(format!(
            "{} is not granted (grants {})",
            request.scope, verdict.scopes
        )));
    }
    if !verdict.channel.matches(request.channel) {
        return Err(TokenError::ChannelMismatch(format!(
            "{:?} does not match {:?}",
            request.channel,
            verdict.channel.as_str()
        )));
    }
    Ok(verdict)
}

/// Checks the chain itself at `now`, for whatever holder, channel and scope:
/// signatures, parent binding, narrowing, revocation and time.
pub fn check(
    chain: &TokenChain,
    now: u64,
    revocations: &impl Revocations,
) -> Result<Verdict, TokenError> {
    let links = chain.links();
    for (i, link) in links.iter().enumerate() {
        link.verify_signature().map_err(|e| {
            TokenError::InvalidSignature(format!("link {} ({}): {e}", i + 1, link.claims.id))
        })?;
        match i.checked_sub(1).and_then(|p| links.get(p)) {
            None if link.claims.parent != TokenId::NONE => {
                return Err(TokenError::Malformed("the root names a parent".into()));
            }
            None => {}
            Some(parent) => narrows(parent, link, i + 1)?,
        }
    }
    let mut authorities = Vec::with_capacity(links.len());
    for (i, link) in links.iter().enumerate() {
        authorities.push(link.claims.issuer);
        if revocations.is_revoked(&link.claims.id, &authorities) {
            return Err(TokenError::Revoked(format!(
                "link {} ({}) is revoked",
                i + 1,
                link.claims.id
            )));
        }
    }
    for (i, link) in links.iter().enumerate() {
        in_time(link, now, i + 1)?;
    }
    let leaf = &chain.leaf().claims;
    Ok(Verdict {
        root: chain.root().claims.issuer,
        holder: leaf.subject,
        scopes: leaf.scopes,
        channel: leaf.channel.clone(),
        expires: links.iter().map(|l| l.claims.expires).min().unwrap_or(0),
        ids: links.iter().map(|l| l.claims.id).collect(),
        issuers: links.iter().map(|l| l.claims.issuer).collect(),
    })
}

/// Whether `child` (link number `n`) is a valid delegation of `parent`.
pub(super) fn narrows(parent: &Token, child: &Token, n: usize) -> Result<(), TokenError> {
    let (p, c) = (&parent.claims, &child.claims);
    if c.parent != p.id {
        return Err(TokenError::Malformed(format!(
            "link {n} names parent {}, not {}",
            c.parent, p.id
        )));
    }
    if c.issuer != p.subject {
        return Err(TokenError::WrongSubject(format!(
            "link {n} is issued by {}, not by its parent's subject {}",
            c.issuer, p.subject
        )));
    }
    if !p.scopes.contains(Scope::Delegate) {
        return Err(TokenError::Scope(format!(
            "link {n}: its parent does not grant delegate"
        )));
    }
    if p.delegation_depth == 0 || c.delegation_depth >= p.delegation_depth {
        return Err(TokenError::DelegationExhausted(format!(
            "link {n} has depth {} under a parent of depth {}",
            c.delegation_depth, p.delegation_depth
        )));
    }
    if !p.scopes.covers(c.scopes) {
        return Err(TokenError::Scope(format!(
            "link {n} widens scopes {} to {}",
            p.scopes, c.scopes
        )));
    }
    if !p.channel.contains(&c.channel) {
        return Err(TokenError::ChannelMismatch(format!(
            "link {n} widens channel {:?} to {:?}",
            p.channel.as_str(),
            c.channel.as_str()
        )));
    }
    if c.expires > p.expires {
        return Err(TokenError::Expired(format!(
            "link {n} would outlive its parent"
        )));
    }
    Ok(())
}

fn in_time(link: &Token, now: u64, n: usize) -> Result<(), TokenError> {
    let c = &link.claims;
    if now < c.not_before {
        return Err(TokenError::NotYetValid(format!(
            "link {n} is valid from unix ms {}, now is {now}",
            c.not_before
        )));
    }
    if now >= c.expires {
        return Err(TokenError::Expired(format!(
            "link {n} expired at unix ms {}, now is {now}",
            c.expires
        )));
    }
    Ok(())
}
