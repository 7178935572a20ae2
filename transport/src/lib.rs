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
//! (direct, punched or relayed) carries the packets, so a path can change
//! without a new handshake.
//!
//! ## The async side
//!
//! This crate composes the sans-IO cores of `relay-transport-core` (the
//! Noise session, traversal, the relay server, port mapping, the path
//! mapping; re-exported here under [`noise`], [`traversal`], [`relay`],
//! [`portmap`], [`socket::mapping`] and [`error`]) with quinn, tokio and
//! the sockets, and its job is the I/O and the clock around them. The
//! policy is the cores' too: traversal's retry, backoff and fallback
//! (`traversal::peer_policy`), the relay client's registration and
//! failover (`relay::client_core`) and the redial backoff (`redial` in
//! the core crate); the drivers feed them events and carry out what they
//! return. Drivers reach the endpoint only through the narrow handles of
//! `handles.rs`.
//!
//! ## The control channel
//!
//! Every QUIC datagram carries a one-byte prefix the transport adds and
//! strips: `0x00` for its own control messages (observed addresses, relay
//! registration, peer gone, traversal; see `relay_proto::wire::control`),
//! `0x01` for application datagrams. Upper layers never see the prefix.
//!
//! ## MTU
//!
//! Every connection starts at quinn's 1200-byte MTU and path MTU discovery
//! stops at [`MAX_UDP_PAYLOAD`] (1400), so that a packet still fits when
//! its path becomes relayed and gains the 57-byte authenticated relay
//! header (1457 bytes, within a 1500-byte Ethernet path's 1472 for IPv4
//! UDP).
//!
//! ## The API the upper layers use
//!
//! - [`Transport::bind`] starts an endpoint from a [`TransportConfig`].
//! - [`Transport::connect`] dials a NodeId at an address once;
//!   [`Transport::connect_relayed`] dials a NodeId with no address, through
//!   a relay (see [`relay`]);
//!   [`Transport::add_peer`] keeps a peer connected, redialling with capped
//!   backoff.
//! - [`Transport::open_bi`] / [`Transport::open_uni`] open reliable streams to
//!   a NodeId; [`Transport::send_datagram`] sends an unreliable datagram.
//! - [`Transport::accept`] yields what peers open or send to us
//!   ([`Incoming`]); upper layers use the [`mux`] on top of it instead,
//!   which routes streams and datagrams to handlers by protocol id and
//!   opens streams to a NodeId, dialing it when needed.
//! - [`Transport::subscribe`] yields [`PeerEvent`]s: connected (with the
//!   connection's generation), path changed, disconnected.
//! - [`Transport::peers`] snapshots every peer as [`PeerInfo`] for status.
//! - [`Transport::relay_sessions`] hands over the relay sessions this
//!   node's relay server closed, with their counters.
//! - [`Transport::port_map_status`] reports the port mapping of our UDP
//!   port on the default gateway (PCP, NAT-PMP, UPnP-IGD; see [`portmap`]),
//!   whose mapped address traversal publishes as a candidate.
//! - [`Transport::close`] closes every connection cleanly (and releases the
//!   port mapping).
//!
//! There is exactly one connection per pair of nodes. When both dial at once,
//! the connection initiated by the lower NodeId wins and the other is closed
//! with [`CLOSE_DUPLICATE`].
//!
//! ## What this layer must not know about
//!
//! Channels, RPC, the ledger, files, the CLI and the local API. It
//! carries bytes between authenticated NodeIds and reports what it sees.

pub mod config;
pub use relay_transport_core::error;
pub mod events;
mod handles;
pub mod mux;
pub mod noise;
pub mod portmap;
pub mod relay;
pub mod socket;
pub mod traversal;
mod tuning;

mod endpoint;

pub use config::TransportConfig;
pub use endpoint::{ChannelStats, HandshakeFailure, HandshakeStatus, StreamHook, Transport};
pub use error::{BindError, DialError, DialErrorKind, StreamError};
pub use events::{Incoming, PathKind, PeerEvent, PeerInfo, PeerState};
pub use mux::{Mux, MuxConfig, OpenError, ProtocolId, ProtocolRx, QueueConfig};
pub use portmap::{PortMapConfig, PortMapStatus};
pub use quinn::{RecvStream, SendStream};
pub use relay::{RelayLimits, RelaySessionEvent, RelayStats, RelayStatus};
pub use relay_proto::wire::control::ControlMsg;
pub use relay_proto::wire::traversal::TraversalMsg;
pub use relay_proto::{NetworkKey, NodeId, SecretKey};
pub use traversal::TraversalSnapshot;
pub use tuning::QuicTuning;

/// Application close code: a duplicate connection lost the tie-break.
pub const CLOSE_DUPLICATE: u32 = 1;
/// Application close code: the node is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 2;
/// Application close code: a relay reported the peer gone and no other
/// path reaches it.
pub const CLOSE_PEER_GONE: u32 = 3;
/// Largest UDP payload path MTU discovery grows a connection to; see the
/// crate docs ("MTU").
pub const MAX_UDP_PAYLOAD: u16 = 1400;
