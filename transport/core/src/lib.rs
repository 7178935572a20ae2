//! # relay-transport-core: the transport's sans-IO cores
//!
//! This crate holds the protocol logic of relay-node's transport as state
//! machines in the style of quinn-proto: each takes `now` and its inputs
//! through `handle_*` calls and hands back what to send, what happened
//! and when to wake it through `poll_*` calls. It does no I/O and never
//! reads the clock: time is passed in. The async crate
//! (`relay-transport`) composes these cores with the sockets, the tasks
//! and the clock, as quinn composes quinn-proto.
//!
//! - [`noise`]: the Noise IK handshake inside QUIC through quinn-proto's
//!   crypto traits: session, handshake payloads, packet keys, retry and
//!   reset keys, and the classification of handshake failures;
//! - [`traversal`]: NAT classification, introductions, hole punching,
//!   birthday probing, keepalives, binding lifetime and roaming;
//! - [`relay`]: the relay server core, per-client frame authentication,
//!   the session log, and the relay client's decisions;
//! - [`redial`]: a kept-connected peer's redial policy (capped, jittered
//!   backoff, address rotation, relay fallback);
//! - [`reliable`]: the reliable control channel of one connection
//!   (sequence numbers, acknowledgements, retransmission);
//! - [`portmap`]: the port-mapping machine (PCP, NAT-PMP, UPnP-IGD) and its
//!   codecs;
//! - [`socket`]: the path socket's mapping of peers to mapped addresses
//!   and real paths, and connection-ID routing after a NAT rebinding;
//! - [`error`]: the stable error kinds the transport reports.
//!
//! ## What this crate must not know about
//!
//! tokio, sockets, tasks, the wall clock and quinn's async layer (only
//! quinn-proto, which sits beneath it); and, like the transport above
//! it, channels, RPC, the ledger, the CLI and the local API. A test can
//! drive every core in one thread on simulated time.

pub mod error;
pub mod noise;
pub mod portmap;
pub mod redial;
pub mod relay;
pub mod reliable;
pub mod socket;
pub mod traversal;

pub use error::{BindError, DialError, DialErrorKind, StreamError};
pub use socket::PathKind;
