//! # relay-transport: encrypted connections between relay-node peers
//!
//! This layer gives every pair of nodes one encrypted, authenticated QUIC
//! connection. The QUIC machinery (streams, datagrams, loss recovery, flow
//! and congestion control) is quinn's; the key exchange is a Noise handshake
//! (`Noise_IK` / `Noise_IKpsk2` with the mesh network key) plugged in through
//! quinn's crypto traits ([`noise`]). There is no TLS.
//!
//! Beneath quinn sits the *path socket* ([`socket`]): quinn only ever sees a
//! stable mapped address per peer, and the socket decides which real path
//! (direct today; punched and relayed later) carries the packets, so a path
//! can change without a new handshake.
//!
//! ## The API the upper layers use
//!
//! - [`Transport::bind`] starts an endpoint from a [`TransportConfig`].
//! - [`Transport::connect`] dials a NodeId at an address once;
//!   [`Transport::add_peer`] keeps a peer connected, redialling with capped
//!   backoff.
//! - [`Transport::open_bi`] / [`Transport::open_uni`] open reliable streams to
//!   a NodeId; [`Transport::send_datagram`] sends an unreliable datagram.
//! - [`Transport::accept`] yields what peers open or send to us
//!   ([`Incoming`]).
//! - [`Transport::subscribe`] yields [`PeerEvent`]s: connected, path changed,
//!   disconnected.
//! - [`Transport::peers`] snapshots every peer as [`PeerInfo`] for status.
//! - [`Transport::close`] closes every connection cleanly.
//!
//! There is exactly one connection per pair of nodes. When both dial at once,
//! the connection initiated by the lower NodeId wins and the other is closed
//! with [`CLOSE_DUPLICATE`].
//!
//! ## What this layer must not know about
//!
//! Channels, RPC, the ledger, files, the CLI and the control socket. It
//! carries bytes between authenticated NodeIds and reports what it sees.

pub mod config;
pub mod error;
pub mod events;
pub mod noise;
pub mod socket;
pub mod traversal;

mod endpoint;

pub use config::TransportConfig;
pub use endpoint::Transport;
pub use error::{BindError, DialError, DialErrorKind, StreamError};
pub use events::{Incoming, PathKind, PeerEvent, PeerInfo, PeerState};
pub use quinn::{RecvStream, SendStream};
pub use relay_proto::{NetworkKey, NodeId, SecretKey};

/// Application close code: a duplicate connection lost the tie-break.
pub const CLOSE_DUPLICATE: u32 = 1;
/// Application close code: the node is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 2;
