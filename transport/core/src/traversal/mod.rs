//! NAT traversal: observed addresses, NAT classification, introductions,
//! hole punching with authenticated probes, and keepalives.
//!
//! Everything here is a sans-IO state machine ([`Traversal`]): the async
//! driver owns the clock and the sockets, feeds inputs with `handle_*`, and
//! drains `poll_transmit` / `poll_event` / `poll_timeout`. A test can run a
//! whole NATed mesh in one thread on simulated time (see
//! `tests/traversal_sim.rs`).
//!
//! ## The flow
//!
//! 1. Every connection reports the address it sees the other side at; the
//!    driver feeds those to [`Traversal::handle_observed_addr`] and the
//!    [`nat`] classifier decides open / cone / symmetric / unknown. With a
//!    single public observer, its second UDP port tells whether our NAT
//!    maps per destination ([`mapcheck`]).
//! 2. A and B are connected (perhaps through a relay) and share a probe
//!    key. A calls [`Traversal::request_direct`] with an introducer I, a
//!    node connected to both. I answers both with the other's
//!    I-observed address and a fire time ([`introducer`]).
//! 3. At the fire time both send probes (`0x10`) to every candidate and
//!    answer probes with replies (`0x11`) sent to where each probe came
//!    from; sources of probes become peer-reflexive candidates ([`punch`]).
//! 4. The first address validated both ways and nominated by the lower
//!    NodeId wins: [`TraversalEvent::DirectPathFound`]. Otherwise
//!    [`TraversalEvent::PunchFailed`] with a `why` for status and the peer
//!    stays relayed.
//! 5. A cone x symmetric pair whose ordinary punch shows nothing falls
//!    back to birthday-paradox probing ([`birthday`]): the symmetric side
//!    opens many extra ports, the cone side probes random ports, and the
//!    port that gets hit carries the connection.
//! 6. Idle direct paths get keepalives ([`keepalive`]);
//!    [`TraversalEvent::DirectPathLost`] when they stop answering. Their
//!    interval follows our NAT's binding lifetime, measured with the help
//!    of a directly connected peer ([`lifetime`]).
//! 7. When our own address changes ([`roam`]), direct paths are probed at
//!    once, the NAT is re-learned from fresh observations, peers are told,
//!    and every peer whose direct path was lost is re-punched
//!    ([`TraversalEvent::Repunch`]).
//!
//! The wire formats live in `relay_proto::wire::{probe, traversal}`.
//!
//! Inside a transport, `relay_transport::traversal`'s driver runs the
//! core: it owns the clock, feeds it frames, control messages and
//! connection events, and moves relayed connections to the direct paths
//! it finds (`TransportConfig::traversal`).

mod agent;
pub mod auth;
pub mod birthday;
mod config;
pub mod early;
mod error;
pub mod introducer;
pub mod keepalive;
pub mod lifetime;
pub mod mapcheck;
pub mod mapped;
pub mod nat;
mod output;
pub mod peer_policy;
pub mod punch;
pub mod roam;
mod snapshot;
mod stats;

pub use agent::{failure_why, ConnectionInfo, Traversal};
pub use auth::ProbeKey;
pub use birthday::{BirthdayConfig, PortId};
pub use config::TraversalConfig;
pub use error::{TraversalError, TraversalErrorKind};
pub use lifetime::{LifetimeConfig, LifetimeReport, LifetimeState};
pub use mapcheck::{MapCheckResult, MappingCheckConfig};
pub use nat::{NatReport, Observation};
pub use output::{TraversalEvent, TraversalTransmit};
pub use peer_policy::{PeerPolicy, PolicyConfig};
pub use relay_proto::wire::traversal::{NatType, TraversalMsg};
pub use roam::{AddressChange, RoamCause, RoamConfig};
pub use snapshot::TraversalSnapshot;
pub use stats::TraversalStats;
