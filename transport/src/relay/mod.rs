//! Relaying on the async side. The relay server core and per-client
//! frame authentication are `relay_transport_core::relay`, re-exported
//! here; this module adds:
//!
//! - `driver`: runs the core inside a transport with `relay: true`: feeds
//!   it relay-send frames from the path socket, registers clients that ask
//!   over their authenticated connection, sends what it emits;
//! - `client`: the other side: which connected peers relay for us,
//!   registering with them, choosing one for a relayed path, moving
//!   relayed paths when a relay goes away (failover) or reports a peer
//!   gone;
//! - [`ConnectionKeys`]: the frame keys of a live connection.
//!
//! The client's decisions (registration and re-registration with backoff,
//! relay choice, failover, peer gone) are the sans-IO `client_core`, in
//! the core crate and re-exported here.
//!
//! Relaying is off by default ([`crate::TransportConfig::relay`]).

pub(crate) mod client;
pub(crate) mod driver;
mod keys;

pub use keys::ConnectionKeys;
pub use relay_transport_core::relay::*;
