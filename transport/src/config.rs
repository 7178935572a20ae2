//! Endpoint configuration.

use std::net::SocketAddr;
use std::time::Duration;

use relay_proto::{NetworkKey, SecretKey};

use crate::portmap::PortMapConfig;
use crate::relay::RelayLimits;
use crate::tuning::QuicTuning;

/// Everything [`crate::Transport::bind`] needs.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// The node's identity.
    pub secret_key: SecretKey,
    /// The mesh network key; `None` runs plain Noise IK.
    pub network_key: Option<NetworkKey>,
    /// The UDP address to bind.
    pub listen: SocketAddr,
    /// How often an idle connection sends a keepalive, until traversal has
    /// measured the NAT binding lifetime; connections made after that use
    /// the interval learned from it (see docs/TRAVERSAL.md, Keepalives).
    pub keep_alive: Duration,
    /// How long a silent connection lives.
    pub idle_timeout: Duration,
    /// First redial delay for persistent peers.
    pub reconnect_min: Duration,
    /// Cap on the redial delay for persistent peers.
    pub reconnect_max: Duration,
    /// How long a dial may take before it fails with `timeout`.
    pub dial_timeout: Duration,
    /// Relay for authenticated mesh members (off by default). Whether or
    /// not this is set, the node uses any peer that offers relaying.
    pub relay: bool,
    /// The per-client limits enforced (and stated) when relaying.
    pub relay_limits: RelayLimits,
    /// Run NAT traversal: classify our NAT, introduce peers to each other,
    /// and move relayed connections to direct paths when a punch succeeds
    /// (default true). Off, relayed connections stay relayed and
    /// [`crate::Transport::take_frames`] /
    /// [`crate::Transport::take_traversal_messages`] are left to the caller.
    pub traversal: bool,
    /// A known public address of this node: pins the NAT type to open with
    /// this reflexive address and skips classification. Default none.
    pub public_addr: Option<SocketAddr>,
    /// Port mapping (PCP, NAT-PMP, UPnP-IGD) of our UDP port on the
    /// default gateway; on by default (`run --no-port-map` turns it off).
    /// The mapped address becomes a traversal candidate. See
    /// [`crate::portmap`].
    pub port_map: PortMapConfig,
    /// Birthday-paradox probing when one side of a punch is behind a
    /// symmetric NAT and the other behind a cone (default true; needs
    /// `traversal`). It opens up to 256 extra UDP sockets and sends up to
    /// 200 packets/s for a few seconds; see docs/TRAVERSAL.md.
    pub birthday: bool,
    /// quinn's windows, ACK frequency, initial congestion window, packet
    /// size and segmentation offload for every connection; the defaults
    /// and the measurements behind them are in [`QuicTuning`].
    pub quic: QuicTuning,
}

impl TransportConfig {
    /// A config with the documented defaults.
    pub fn new(secret_key: SecretKey, network_key: Option<NetworkKey>, listen: SocketAddr) -> Self {
        Self {
            secret_key,
            network_key,
            listen,
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(30),
            dial_timeout: Duration::from_secs(10),
            relay: false,
            relay_limits: RelayLimits::default(),
            traversal: true,
            public_addr: None,
            port_map: PortMapConfig::default(),
            birthday: true,
            quic: QuicTuning::default(),
        }
    }
}
