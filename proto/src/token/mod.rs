//! Permission tokens: ed25519-signed grants of scopes on a channel (an
//! exact name or a pattern), valid for a time window, delegable along a
//! chain of at most [`MAX_CHAIN`] links. docs/TOKENS.md describes the format,
//! the text form, the chain rules, the pattern syntax and the errors.
//!
//! - [`ChannelPattern`]: names, `*` and `>` patterns, matching, containment;
//! - [`Scope`] / [`Scopes`]: publish, subscribe, delegate, admin;
//! - [`TokenId`]: 16 random bytes, what a revocation names;
//! - [`Token`] / [`TokenClaims`]: one signed link and its canonical encoding;
//! - [`TokenChain`]: the links, root first, with binary and `rnk1` text forms;
//! - [`issue`] / [`delegate`]: issuing, with the refusals of verification;
//! - [`verify`] / [`check`]: verifying a chain for a request;
//! - [`TokenError`]: one variant per stable kind.
//!
//! Pure data like the rest of the crate: the caller passes `now` (unix ms)
//! and the revocations it knows.

mod chain;
mod error;
mod id;
mod issue;
mod pattern;
mod scope;
mod text;
#[allow(clippy::module_inception)]
mod token;
mod verify;

#[cfg(test)]
mod tests;

pub use chain::{TokenChain, CHAIN_VERSION, MAX_CHAIN, MAX_CHAIN_BYTES};
pub use error::TokenError;
pub use id::TokenId;
pub use issue::{delegate, issue, Delegation, Grant, CLOCK_SKEW_MS};
pub use pattern::{ChannelPattern, MAX_PATTERN};
pub use scope::{Scope, Scopes};
pub use text::{MAX_TEXT, TEXT_PREFIX};
pub use token::{Token, TokenClaims, MAX_LINK_BYTES, TOKEN_CONTEXT};
pub use verify::{check, verify, NoRevocations, Request, Revocations, Verdict};
