//! The [`Authorizer`] on the token layer ([`relay_proto::token`]): a link's
//! token bytes are a chain in its binary form; the owner must be the root
//! issuer; revocations come from a [`Revocations`] source the caller
//! plugs in (the node's one revocation set, fed by the ledger), or, on its
//! own, from [`RevokedKeys`].

use std::collections::{HashMap, HashSet};

use relay_proto::token::{self, Request, Revocations, Scope, TokenChain, TokenError, TokenId};
use relay_proto::wire::channel::TokenKind;
use relay_proto::NodeId;

use crate::auth::{Action, Authorizer, Grant};

/// Most revocations [`RevokedKeys`] remembers (past this bound further
/// ones are not checked at subscribe time, though live links they cover
/// are still ended by [`crate::Owner::handle_revocation`]).
pub const MAX_REVOCATIONS: usize = 100_000;

/// Checks chains rooted at this node against the revocations of `R`.
#[derive(Debug, Clone)]
pub struct TokenAuthorizer<R = RevokedKeys> {
    owner: NodeId,
    revocations: R,
}

impl TokenAuthorizer<RevokedKeys> {
    /// Chains must be rooted at `owner`; revocations are those given to
    /// [`Self::revoke`].
    pub fn new(owner: NodeId) -> Self {
        Self::with_revocations(owner, RevokedKeys::default())
    }

    /// `by` revoked the token with revocation key `key`.
    pub fn revoke(&mut self, key: [u8; 32], by: NodeId) {
        self.revocations.revoke(key, by);
    }
}

impl<R: Revocations> TokenAuthorizer<R> {
    /// Chains must be rooted at `owner`; `revocations` says which links
    /// are revoked, and by whom.
    pub fn with_revocations(owner: NodeId, revocations: R) -> Self {
        Self { owner, revocations }
    }
}

/// Revocations held in memory, by revocation key: for an owner that is
/// not fed from a ledger (tests, embedding without a node).
#[derive(Debug, Clone, Default)]
pub struct RevokedKeys {
    /// Revocation key → the nodes that revoked it.
    revoked: HashMap<[u8; 32], HashSet<NodeId>>,
}

impl RevokedKeys {
    /// `by` revoked the token with revocation key `key`.
    pub fn revoke(&mut self, key: [u8; 32], by: NodeId) {
        if self.revoked.len() < MAX_REVOCATIONS || self.revoked.contains_key(&key) {
            self.revoked.entry(key).or_default().insert(by);
        }
    }
}

impl Revocations for RevokedKeys {
    fn is_revoked(&self, id: &TokenId, authorities: &[NodeId]) -> bool {
        self.revoked
            .get(&id.revocation_key())
            .is_some_and(|by| authorities.iter().any(|a| by.contains(a)))
    }
}

/// The wire kind of a token error.
pub fn token_kind(e: &TokenError) -> TokenKind {
    TokenKind::from_text(e.kind()).unwrap_or(TokenKind::Malformed)
}

impl<R: Revocations> Authorizer for TokenAuthorizer<R> {
    fn check(
        &self,
        peer: &NodeId,
        channel: &str,
        action: Action,
        token: &[u8],
        now_ms: u64,
    ) -> Result<Grant, TokenKind> {
        let chain = TokenChain::decode(token).map_err(|e| token_kind(&e))?;
        let scope = match action {
            Action::Subscribe => Scope::Subscribe,
            Action::Publish => Scope::Publish,
        };
        let request = Request {
            holder: *peer,
            channel,
            scope,
            trusted_root: self.owner,
        };
        let verdict = token::verify(&chain, now_ms, &request, &self.revocations)
            .map_err(|e| token_kind(&e))?;
        Ok(Grant {
            expires_ms: Some(verdict.expires),
            token_ids: verdict.ids.iter().map(TokenId::revocation_key).collect(),
            issuers: verdict.issuers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::token::{issue, ChannelPattern, Grant as Issue, Scopes};
    use relay_proto::SecretKey;

    fn chain(owner: &SecretKey, subject: NodeId, scopes: &[Scope], pattern: &str) -> Vec<u8> {
        let grant = Issue {
            subject,
            scopes: Scopes::of(scopes),
            channel: ChannelPattern::parse(pattern).unwrap(),
            ttl_ms: 60_000,
            depth: None,
        };
        issue(owner, &grant, 1000).unwrap().encode()
    }

    #[test]
    fn checks_chains_rooted_at_the_owner_with_their_kinds() {
        let owner = SecretKey::from_bytes(&[1; 32]);
        let other = SecretKey::from_bytes(&[2; 32]);
        let b = SecretKey::from_bytes(&[3; 32]).node_id();
        let mut auth = TokenAuthorizer::new(owner.node_id());
        let sub = chain(&owner, b, &[Scope::Subscribe], "news/*");
        let grant = auth
            .check(&b, "news/eu", Action::Subscribe, &sub, 2000)
            .unwrap();
        assert_eq!(grant.expires_ms, Some(61_000));
        assert_eq!(grant.issuers, vec![owner.node_id()]);
        let kind = |r: Result<Grant, TokenKind>| r.unwrap_err();
        assert_eq!(
            kind(auth.check(&b, "news/eu", Action::Publish, &sub, 2000)),
            TokenKind::Scope
        );
        assert_eq!(
            kind(auth.check(&b, "sport", Action::Subscribe, &sub, 2000)),
            TokenKind::ChannelMismatch
        );
        assert_eq!(
            kind(auth.check(&owner.node_id(), "news/eu", Action::Subscribe, &sub, 2000)),
            TokenKind::WrongSubject
        );
        assert_eq!(
            kind(auth.check(&b, "news/eu", Action::Subscribe, &sub, 70_000)),
            TokenKind::Expired
        );
        assert_eq!(
            kind(auth.check(&b, "news/eu", Action::Subscribe, b"junk", 2000)),
            TokenKind::Malformed
        );
        let foreign = chain(&other, b, &[Scope::Subscribe], "news/eu");
        assert_eq!(
            kind(auth.check(&b, "news/eu", Action::Subscribe, &foreign, 2000)),
            TokenKind::InvalidSignature
        );
        // A revocation by someone outside the chain does not count.
        auth.revoke(grant.token_ids[0], other.node_id());
        assert!(auth
            .check(&b, "news/eu", Action::Subscribe, &sub, 2000)
            .is_ok());
        auth.revoke(grant.token_ids[0], owner.node_id());
        assert_eq!(
            kind(auth.check(&b, "news/eu", Action::Subscribe, &sub, 2000)),
            TokenKind::Revoked
        );
    }
}
