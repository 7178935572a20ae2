//! Relaying: packets between two nodes that cannot reach each other go
//! through a third node both are connected to.
//!
//! - [`auth`]: per-client frame authentication (keys from the
//!   client<->relay connection, sequence numbers, tags, replay window);
//! - [`client_core`]: the relay client's decisions (registration with
//!   backoff, relay choice, failover, peer gone);
//! - [`server`]: the sans-IO relay core (who is served, limits, counters,
//!   peer gone);
//! - [`sessions`]: the sessions the relay carried, with their counters,
//!   reported when they close (the node keeps account of them);
//!
//! In `relay_transport::relay`, the async side: `driver` runs the core
//! inside a transport with `relay: true` (feeds it relay-send frames from
//! the path socket, registers clients that ask over their authenticated
//! connection, sends what it emits); `client` is the other side (which
//! connected peers relay for us, registering with them, choosing one for
//! a relayed path, moving relayed paths when a relay goes away or reports
//! a peer gone).
//!
//! A relayed path carries the inner connection's QUIC packets, already
//! end-to-end encrypted by the two clients: a relay never sees plaintext,
//! and the inner connection survives a change of relay (or a move to a
//! direct path) with no new handshake, because quinn only ever sees the
//! peer's mapped address (see [`crate::socket::mapping`]).
//!
//! Relaying is off by default (`TransportConfig::relay`).

pub mod auth;
pub mod client_core;
pub mod server;
pub mod sessions;

pub use server::{RelayLimits, RelayStats};
pub use sessions::{RelaySessionEvent, SessionEnd};

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
