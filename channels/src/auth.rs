//! How the owner asks whether a peer may subscribe or publish: the
//! [`Authorizer`] trait. The node implements it on the token layer; this
//! crate never parses or verifies a token itself.
//!
//! A check happens once, when a link opens (or its token is refreshed); the
//! [`Grant`] it returns is cached on the link: its expiry drives the sweep,
//! its token ids let a revocation find the links it covers.

use relay_proto::wire::channel::TokenKind;
use relay_proto::NodeId;

/// What a link wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Receive messages.
    Subscribe,
    /// Send messages.
    Publish,
}

impl Action {
    /// Stable text (the token scope's name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Publish => "publish",
        }
    }
}

/// A positive verdict, cached on the link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// When the verdict runs out (unix ms): the earliest expiry of the
    /// chain. `None`: never (no token was needed).
    pub expires_ms: Option<u64>,
    /// Ids of every token of the chain (revocation keys), root first:
    /// revoking any of them ends the link.
    pub token_ids: Vec<[u8; 32]>,
    /// The issuer of each of those tokens, in the same order. A
    /// revocation of token `i` counts only when it comes from the issuer
    /// of token `i` or of a token above it.
    pub issuers: Vec<NodeId>,
}

impl Grant {
    /// A verdict that needs no token and never runs out.
    pub fn open() -> Self {
        Self::default()
    }

    /// Whether a revocation of `token_id` written by `by` covers this
    /// verdict.
    pub fn revoked_by(&self, token_id: &[u8; 32], by: &NodeId) -> bool {
        self.token_ids
            .iter()
            .position(|id| id == token_id)
            .is_some_and(|i| self.issuers.iter().take(i + 1).any(|n| n == by))
    }
}

/// Checks a token chain for a peer, a channel and an action.
pub trait Authorizer {
    /// Whether `peer` may do `action` on `channel` at `now_ms` with the
    /// token chain `token` (never empty: an absent token is refused by the
    /// owner before asking).
    fn check(
        &self,
        peer: &NodeId,
        channel: &str,
        action: Action,
        token: &[u8],
        now_ms: u64,
    ) -> Result<Grant, TokenKind>;
}

/// Refuses every token as malformed: without a token layer, only
/// channels that require no token, and the owner itself, can be used.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyTokens;

impl Authorizer for DenyTokens {
    fn check(
        &self,
        _peer: &NodeId,
        _channel: &str,
        _action: Action,
        _token: &[u8],
        _now_ms: u64,
    ) -> Result<Grant, TokenKind> {
        Err(TokenKind::Malformed)
    }
}
