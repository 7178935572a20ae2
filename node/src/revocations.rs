//! The revocation table: which token ids are revoked, by whom and until
//! when, built from `token-revocation` ledger entries. Pure state (the
//! caller passes entries and `now`); [`crate::revocations_set`] keeps one
//! up to date from the running node's ledger and shares it.
//!
//! A revocation counts only when its origin is an authority over the
//! revoked link: the link's issuer or an issuer above it in the chain
//! (`relay_proto::token::Revocations`). Any member can write a
//! `token-revocation` entry; the table records the origin and lets the
//! verifier decide.
//!
//! Bounds: at most [`MAX_PER_ORIGIN`] live revocations per origin (the
//! ledger keeps revocations until the token expires, so an origin could
//! otherwise grow the table without bound); further ones from that origin
//! are ignored and counted.

use std::collections::HashMap;

use relay_proto::ledger::body::TokenRevocation;
use relay_proto::token::{Revocations, TokenId};
use relay_proto::NodeId;

/// Most live revocations one origin may hold in the table.
pub const MAX_PER_ORIGIN: usize = 10_000;

/// What applying one revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It is new: the id is now revoked by `origin` until `expires`.
    Added(Revoked),
    /// The same origin had already revoked the id (the later expiry is kept).
    Known,
    /// Its token has already expired at `now`.
    Expired,
    /// Its `token_id` is not a token id (nonzero padding).
    NotAToken,
    /// The origin holds [`MAX_PER_ORIGIN`] live revocations already.
    OverLimit,
}

/// One revocation, as the table holds it and announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Revoked {
    /// The revoked link.
    pub id: TokenId,
    /// Who wrote the revocation (the ledger entry's origin).
    pub by: NodeId,
    /// The revoked token's expiry (unix ms): kept until then.
    pub expires: u64,
}

/// Revoked token ids with their revokers.
#[derive(Debug, Default, Clone)]
pub struct RevocationTable {
    by_id: HashMap<TokenId, Vec<(NodeId, u64)>>,
    per_origin: HashMap<NodeId, usize>,
    over_limit: u64,
}

impl RevocationTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a `token-revocation` entry of `origin` at `now` (unix ms).
    pub fn apply(&mut self, origin: NodeId, body: &TokenRevocation, now: u64) -> Applied {
        let Some(id) = TokenId::from_revocation_key(&body.token_id) else {
            return Applied::NotAToken;
        };
        if body.expires_unix_ms <= now {
            return Applied::Expired;
        }
        let revokers = self.by_id.entry(id).or_default();
        if let Some(known) = revokers.iter_mut().find(|(o, _)| *o == origin) {
            known.1 = known.1.max(body.expires_unix_ms);
            return Applied::Known;
        }
        let count = self.per_origin.entry(origin).or_default();
        if *count >= MAX_PER_ORIGIN {
            self.over_limit += 1;
            if revokers.is_empty() {
                self.by_id.remove(&id);
            }
            return Applied::OverLimit;
        }
        *count += 1;
        revokers.push((origin, body.expires_unix_ms));
        Applied::Added(Revoked {
            id,
            by: origin,
            expires: body.expires_unix_ms,
        })
    }

    /// Drops revocations whose token has expired at `now`.
    pub fn prune(&mut self, now: u64) {
        let per_origin = &mut self.per_origin;
        self.by_id.retain(|_, revokers| {
            revokers.retain(|(origin, expires)| {
                let keep = *expires > now;
                if !keep {
                    if let Some(n) = per_origin.get_mut(origin) {
                        *n = n.saturating_sub(1);
                    }
                }
                keep
            });
            !revokers.is_empty()
        });
        per_origin.retain(|_, n| *n > 0);
    }

    /// Whether anyone revoked `id` (use [`Revocations::is_revoked`] to
    /// count only authorities).
    pub fn is_revoked_by_anyone(&self, id: &TokenId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Who revoked `id`.
    pub fn revokers(&self, id: &TokenId) -> Vec<NodeId> {
        self.by_id
            .get(id)
            .map(|r| r.iter().map(|(o, _)| *o).collect())
            .unwrap_or_default()
    }

    /// Live revocations held.
    pub fn len(&self) -> usize {
        self.per_origin.values().sum()
    }

    /// Every live revocation (for a holder of links to re-check them all,
    /// e.g. after missing announcements).
    pub fn all(&self) -> Vec<Revoked> {
        self.by_id
            .iter()
            .flat_map(|(id, r)| {
                r.iter().map(|(by, expires)| Revoked {
                    id: *id,
                    by: *by,
                    expires: *expires,
                })
            })
            .collect()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Revocations ignored because their origin was over its limit.
    pub fn over_limit(&self) -> u64 {
        self.over_limit
    }
}

impl Revocations for RevocationTable {
    fn is_revoked(&self, id: &TokenId, authorities: &[NodeId]) -> bool {
        self.by_id
            .get(id)
            .is_some_and(|r| r.iter().any(|(o, _)| authorities.contains(o)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    fn id(n: u8) -> NodeId {
        SecretKey::from_bytes(&[n; 32]).node_id()
    }

    fn body(token: u8, expires: u64) -> TokenRevocation {
        TokenRevocation {
            token_id: TokenId::from_bytes([token; 16]).revocation_key(),
            expires_unix_ms: expires,
            reason: String::new(),
        }
    }

    #[test]
    fn applies_counts_authorities_and_prunes() {
        let mut t = RevocationTable::new();
        let tok = TokenId::from_bytes([1; 16]);
        assert!(matches!(t.apply(id(1), &body(1, 100), 10), Applied::Added(r) if r.id == tok));
        assert_eq!(t.apply(id(1), &body(1, 200), 10), Applied::Known);
        assert!(matches!(
            t.apply(id(2), &body(1, 100), 10),
            Applied::Added(_)
        ));
        assert_eq!(t.len(), 2);
        let mut all: Vec<NodeId> = t.all().iter().map(|r| r.by).collect();
        all.sort_by_key(|n| *n.as_bytes());
        let mut want = vec![id(1), id(2)];
        want.sort_by_key(|n| *n.as_bytes());
        assert_eq!(all, want);
        assert!(t.is_revoked_by_anyone(&tok));
        assert!(t.is_revoked(&tok, &[id(2)]));
        assert!(!t.is_revoked(&tok, &[id(3)]));
        assert!(!t.is_revoked(&TokenId::from_bytes([2; 16]), &[id(1)]));
        // Origin 2's copy expires at 100, origin 1's was extended to 200.
        t.prune(150);
        assert_eq!(t.revokers(&tok), vec![id(1)]);
        t.prune(200);
        assert!(t.is_empty());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn refuses_expired_foreign_and_too_many() {
        let mut t = RevocationTable::new();
        assert_eq!(t.apply(id(1), &body(1, 10), 10), Applied::Expired);
        let mut foreign = body(1, 100);
        foreign.token_id[31] = 1;
        assert_eq!(t.apply(id(1), &foreign, 10), Applied::NotAToken);
        for n in 0..MAX_PER_ORIGIN {
            let mut b = body(0, 100);
            b.token_id[..8].copy_from_slice(&(n as u64 + 1).to_be_bytes());
            assert!(matches!(t.apply(id(1), &b, 10), Applied::Added(_)));
        }
        assert_eq!(t.apply(id(1), &body(0xee, 100), 10), Applied::OverLimit);
        assert_eq!(t.over_limit(), 1);
        assert!(!t.is_revoked_by_anyone(&TokenId::from_bytes([0xee; 16])));
        // Another origin is not affected.
        assert!(matches!(
            t.apply(id(2), &body(0xee, 100), 10),
            Applied::Added(_)
        ));
    }
}
