//! # relay-channels: named pub/sub, as sans-IO state machines
//!
//! A node *owns* the channels it registered. Subscribers and publishers on
//! any node open *links* to the owner (subscriptions and publishing
//! sessions) and exchange [`relay_proto::wire::channel`] frames with it.
//! This crate holds the three state machines of that exchange:
//!
//! - [`Owner`]: the owner's side. Channels and their [`Policy`] (token
//!   required, reliable or best-effort, publish rate, history);
//!   subscriptions with their cached auth verdict (a token is checked once,
//!   when the link opens, never per message); per-publisher sequence;
//!   per-subscription backpressure (block with credit, drop-oldest,
//!   drop-newest) with gap notices and counters ([`queue`]); queue groups;
//!   history replay, then live, with neither gap nor duplicate ([`history`]);
//!   the expiry sweep, revocations, token refresh and per-peer throttling
//!   of authentication failures ([`throttle`]).
//! - [`Subscription`]: a subscriber's side: credit, de-duplication and
//!   resume by (publisher, seq) after a reconnect.
//! - [`Publication`]: a publisher's side: sequence numbers, the window of
//!   unacknowledged messages, resend after a reconnect, `try_publish`.
//!
//! Each takes the current time (unix milliseconds) and inputs
//! (`handle_*`) and yields outputs (`poll_transmit`, `poll_event`,
//! `poll_timeout`). Tokens are checked through the [`Authorizer`] trait;
//! [`TokenAuthorizer`] implements it on `relay_proto::token`.
//!
//! ## What this crate must not know about
//!
//! Sockets, streams, datagrams, tokio, clocks, files, the ledger and the
//! node: a driver does the I/O, reads the clock and feeds the machines.

pub mod auth;
pub mod history;
mod owner;
mod owner_flow;
mod owner_link;
pub mod policy;
mod publication;
pub mod queue;
mod rate;
mod subscription;
pub mod throttle;
pub mod tokens;

#[cfg(test)]
mod owner_flow_tests;
#[cfg(test)]
mod owner_tests;
#[cfg(test)]
mod peer_tests;
#[cfg(test)]
mod testutil;

pub use auth::{Action, Authorizer, DenyTokens, Grant};
pub use owner::{
    ChannelInfo, ChannelStats, Owner, OwnerConfig, OwnerError, PublishError, Transmit,
};
pub use policy::{History, Policy, PolicyError};
pub use publication::{PubEvent, Publication, PublishRefused};
pub use subscription::{SubEvent, Subscription, SubscriptionConfig, DEFAULT_WINDOW, MAX_WINDOW};
pub use tokens::{RevokedKeys, TokenAuthorizer};
