//! Relaying: packets between two nodes that cannot reach each other go
//! through a third node both are connected to.
//!
//! - [`auth`]: per-client frame authentication (keys from the
//!   client<->relay connection, sequence numbers, tags, replay window);
//! - [`server`]: the sans-IO relay core (who is served, limits, counters,
//!   peer gone);
//! - `driver`: runs the core inside a transport with `relay: true`: feeds
//!   it relay-send frames from the path socket, registers clients that ask
//!   over their authenticated connection, sends what it emits;
//! - `client`: the other side: which connected peers relay for us,
//!   registering with them, choosing one for a relayed path, moving
//!   relayed paths when a relay goes away (failover) or reports a peer
//!   gone;
//! - [`client_core`]: the client's decisions, sans-IO: registration and
//!   re-registration with backoff, relay choice, failover, peer gone.
//!
//! A relayed path carries the inner connection's QUIC packets, already
//! end-to-end encrypted by the two clients: a relay never sees plaintext,
//! and the inner connection survives a change of relay (or a move to a
//! direct path) with no new handshake, because quinn only ever sees the
//! peer's mapped address (see [`crate::socket`]).
//!
//! Relaying is off by default ([`crate::TransportConfig::relay`]).

pub mod auth;
pub(crate) mod client;
pub mod client_core;
pub(crate) mod driver;
pub mod server;

pub use server::{RelayLimits, RelayStats};

/// The relay server's state, as reported upward for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayStatus {
    /// Whether this node relays for others.
    pub enabled: bool,
    /// The limits it enforces (the configured ones when disabled).
    pub limits: RelayLimits,
    /// Its counters (zero when disabled).
    pub stats: RelayStats,
}
