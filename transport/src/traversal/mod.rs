//! NAT traversal on the async side. The sans-IO core ([`Traversal`] and
//! its parts) is `relay_transport_core::traversal`, re-exported here;
//! this module adds its driver.
//!
//! Inside a transport, `driver` runs the core: it owns the clock, feeds it
//! frames, control messages and connection events, and moves relayed
//! connections to the direct paths it finds (see
//! [`crate::TransportConfig::traversal`]). `netwatch` samples our local
//! address for the core's roaming detection. Neither reaches into the
//! endpoint: they get a [`crate::handles::TraversalHost`]. Its decisions
//! (when to punch, backoff, which path to take, which relay to fall back
//! to) are the sans-IO `peer_policy` core's; the driver only does I/O.

pub(crate) mod driver;
mod netwatch;

pub use relay_transport_core::traversal::*;
