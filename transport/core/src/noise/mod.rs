//! Noise-in-QUIC: quinn's pluggable crypto driven by a `snow` handshake.
//!
//! One key exchange, one layer of encryption: a Noise IK handshake (IKpsk2
//! with the mesh network key) runs in QUIC's CRYPTO frames, its payloads
//! carry the QUIC transport parameters, and its split keys the packet
//! protection. The pieces:
//!
//! - `handshake`: snow state, CRYPTO framing, payload codec;
//! - `session`: quinn's `Session`, the key hand-over order;
//! - `keys`: packet/header protection and the key schedule;
//! - `config`: quinn's crypto client/server configs and quinn configs;
//! - `retry`: Retry integrity tags, reset and token keys;
//! - `classify`: failure → [`crate::DialErrorKind`];
//! - `stall`: a client that never completes message 1 (flood tests only).
//!
//! The dialer passes the peer's NodeId text as the server name; after the
//! handshake `quinn::Connection::peer_identity()` holds a `Box<NodeId>`
//! (`relay_transport::noise::peer_node_id`).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use relay_proto::{NetworkKey, SecretKey};

mod classify;
mod config;
mod handshake;
mod keys;
mod retry;
mod session;
mod stall;

pub use classify::{classify_connect_error, classify_inbound_error, failed_remotely};
#[doc(hidden)]
pub use handshake::{decode_payload, HandshakePayload, PayloadError, PayloadKind};
pub use keys::PacketSuite;
#[doc(hidden)]
pub use session::fuzz_responder;
pub use session::NoiseHandshakeData;

/// The private QUIC version relay-node speaks.
pub const QUIC_VERSION: u32 = 0x524e_0001;

/// CRYPTO_ERROR alert: the responder could not process handshake message 1
/// (sent on the wire; the initiator maps it to `peer-key-mismatch`).
pub const ALERT_MSG1_REJECTED: u8 = 0x51;
/// CRYPTO_ERROR alert: the initiator could not process handshake message 2
/// (wrong network key).
pub const ALERT_MSG2_REJECTED: u8 = 0x52;
/// CRYPTO_ERROR alert: one side runs with a network key and the other
/// without (maps to `network-key-mismatch`).
pub const ALERT_MODE_MISMATCH: u8 = 0x53;

/// Counters the crypto layer keeps, shared by every session of an endpoint.
#[derive(Debug, Default)]
pub struct NoiseStats {
    /// Completed handshakes.
    pub handshakes: AtomicU64,
    /// Failed handshakes.
    pub handshake_failures: AtomicU64,
    /// 1-RTT key updates performed.
    pub key_updates: AtomicU64,
    /// Inbound attempts answered with a QUIC Retry (address validation
    /// under load or over a source's budget).
    pub retries_sent: AtomicU64,
    /// Inbound attempts dropped unanswered (every handshake slot taken, or
    /// a validated source over its budget).
    pub attempts_dropped: AtomicU64,
}

/// Crypto settings shared by the client and server sides of an endpoint.
#[derive(Debug, Clone)]
pub struct NoiseConfig {
    /// Our identity.
    pub secret_key: SecretKey,
    /// The mesh network key (IKpsk2), or `None` for plain IK.
    pub network_key: Option<NetworkKey>,
    /// Override for the packet key confidentiality limit (tests force key
    /// updates with a small value).
    pub confidentiality_limit: Option<u64>,
    /// Offer AES-256-GCM for 1-RTT packets (default: when this machine
    /// runs AES in hardware, [`PacketSuite::aes_in_hardware`]). The peer
    /// must offer it too; otherwise ChaCha20-Poly1305 protects them.
    pub aes_gcm: bool,
    /// Shared counters.
    pub stats: Arc<NoiseStats>,
}

impl NoiseConfig {
    /// Default settings for an identity and optional network key.
    pub fn new(secret_key: SecretKey, network_key: Option<NetworkKey>) -> Self {
        Self {
            secret_key,
            network_key,
            confidentiality_limit: None,
            aes_gcm: PacketSuite::aes_in_hardware(),
            stats: Arc::default(),
        }
    }
}

/// A quinn client config. Dial with `server_name` = the peer's NodeId text.
pub fn client_config(
    config: &NoiseConfig,
    transport: Arc<quinn_proto::TransportConfig>,
) -> quinn_proto::ClientConfig {
    config::client_config(config, transport)
}

/// A client config whose handshakes never complete: message 1 announces
/// its full length but only half of it is sent. For tests and benchmarks
/// of half-open handshake floods only; never dial peers with it.
#[doc(hidden)]
pub fn stalling_client_config(
    config: &NoiseConfig,
    transport: Arc<quinn_proto::TransportConfig>,
) -> quinn_proto::ClientConfig {
    config::stalling_client_config(config, transport)
}

/// A quinn server config.
pub fn server_config(
    config: &NoiseConfig,
    transport: Arc<quinn_proto::TransportConfig>,
) -> quinn_proto::ServerConfig {
    config::server_config(config, transport)
}

/// A quinn endpoint config speaking [`QUIC_VERSION`] only, with keyed reset
/// tokens (a random key) and the fixed bit never greased. For endpoints
/// without an identity of their own (tests, benchmarks); a node uses
/// [`endpoint_config_for`].
pub fn endpoint_config() -> quinn_proto::EndpointConfig {
    config::endpoint_config()
}

/// [`endpoint_config`] with the stateless reset key derived from the
/// node's secret key, so that after a crash and restart the node resets
/// its peers' stale connections at once (see `retry`).
pub fn endpoint_config_for(secret: &SecretKey) -> quinn_proto::EndpointConfig {
    config::endpoint_config_for(secret)
}
