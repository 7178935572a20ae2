//! The local API: HTTP/1.1 over `DIR/api.sock`, for the CLI and for the
//! programs of the node's users (docs/LOCAL_API.md is the contract).
//!
//! - [`server`]: binds the socket (0600 in the 0700 data dir), serves only
//!   the node's own uid or root ([`peercred`]), bounds connections without
//!   letting idle or slow ones starve new requests ([`conns`]), and drains
//!   on shutdown.
//! - [`router`]: routes by method and path under `/v1/`; subsystems add
//!   their routes; `GET /v1/stream/{service}` upgrades to the binary frame
//!   stream ([`frames`]).
//! - [`core`]: the node's own routes: health ([`health`], a signed nonce),
//!   status, netcheck, events ([`events`], NDJSON).
//! - [`body`], [`request`], [`error`]: JSON responses and typed errors
//!   (`{"error":{"kind","detail"}}`), body limits and deadlines; shared by
//!   any hyper server in the node.
//! - [`ledger`], [`ledger_json`]: the ledger's routes (members, entries,
//!   follow, verify) and the JSON form of entries and members;
//!   [`ledger_tail`] feeds a follow or event stream (also the HTTP
//!   endpoint's).
//! - [`tokens`]: `POST /v1/tokens/revoke` (a `token-revocation` entry).
//! - [`client`]: the blocking client the CLI verbs use; [`channels_client`]:
//!   the subscriber side of the `channels` frame stream (`relay-node sub`).
//! - [`rpc`]: nRPC's routes (services, call, bench); [`rpc_serve`] and
//!   [`rpc_call`]: the frame streams a peer process serves and makes
//!   streaming calls with.
//!
//! This layer knows HTTP and JSON, not what a route means: it never touches
//! the transport itself; the node hands it snapshots and subscriptions.

pub mod body;
pub mod channels;
pub mod channels_client;
pub mod channels_stream;
pub mod client;
pub mod conns;
pub mod core;
pub mod error;
pub mod events;
pub mod frames;
pub mod health;
pub mod ledger;
pub mod ledger_json;
pub mod ledger_tail;
pub mod peercred;
pub mod request;
pub mod router;
pub mod rpc;
pub mod rpc_call;
pub mod rpc_calls;
pub mod rpc_open;
pub mod rpc_serve;
pub mod server;
pub mod tokens;

#[cfg(test)]
mod tests;

use std::time::Duration;

/// Largest request head.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body.
pub const MAX_BODY: usize = 64 * 1024;
/// Time to send a request head, and longest idle time between requests.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to send a request body once the head is in.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most open connections.
pub const MAX_CONNECTIONS: usize = 256;
/// Most open streams (`/v1/events`, `/v1/stream/...`).
pub const MAX_STREAMS: usize = 64;
/// Time in-flight requests and streams get once shutdown starts.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
