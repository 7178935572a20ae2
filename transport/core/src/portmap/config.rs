//! Port-mapping settings, with documented defaults.

use std::net::SocketAddr;
use std::time::Duration;

/// A port-mapping protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// Port Control Protocol (RFC 6887), UDP port 5351.
    Pcp,
    /// NAT Port Mapping Protocol (RFC 6886), UDP port 5351.
    NatPmp,
    /// UPnP Internet Gateway Device: SSDP discovery, SOAP over HTTP.
    UpnpIgd,
}

impl Protocol {
    /// Stable text: "pcp" | "nat-pmp" | "upnp-igd".
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pcp => "pcp",
            Self::NatPmp => "nat-pmp",
            Self::UpnpIgd => "upnp-igd",
        }
    }

    /// Parses the stable text.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "pcp" => Some(Self::Pcp),
            "nat-pmp" | "natpmp" => Some(Self::NatPmp),
            "upnp-igd" | "upnp" => Some(Self::UpnpIgd),
            _ => None,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a transport maps its port ([`crate::TransportConfig::port_map`]).
#[derive(Debug, Clone)]
pub struct PortMapConfig {
    /// Map at all. Default true; `run --no-port-map` turns it off. A
    /// transport bound to a loopback address never maps unless
    /// [`Self::gateway`] is set.
    pub enabled: bool,
    /// The PCP / NAT-PMP server. Default: the IPv4 default gateway from
    /// `/proc/net/route`, port 5351. Tests point it at a fake gateway.
    pub gateway: Option<SocketAddr>,
    /// Where SSDP searches go besides the multicast group. Default: the
    /// gateway's IP, port 1900.
    pub ssdp: Option<SocketAddr>,
    /// Send SSDP searches to 239.255.255.250:1900 too. Default true.
    pub ssdp_multicast: bool,
    /// Protocols, in the order they are tried. Default PCP, NAT-PMP,
    /// UPnP-IGD: PCP is the newest and answers fastest, a NAT-PMP-only
    /// gateway tells a PCP client so at once, and UPnP needs the most
    /// round trips.
    pub protocols: Vec<Protocol>,
    /// Lifetime asked for. Default 2 h; renewed at half of what the
    /// gateway grants.
    pub lifetime: Duration,
    /// After every protocol failed, try again after this. Default 5 min.
    pub retry_unavailable: Duration,
    /// How often a NAT-PMP or PCP mapping asks the gateway for its epoch
    /// between renewals, to notice a gateway restart. Default 2 min.
    pub epoch_check: Duration,
}

impl Default for PortMapConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            gateway: None,
            ssdp: None,
            ssdp_multicast: true,
            protocols: vec![Protocol::Pcp, Protocol::NatPmp, Protocol::UpnpIgd],
            lifetime: Duration::from_secs(7200),
            retry_unavailable: Duration::from_secs(300),
            epoch_check: Duration::from_secs(120),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_text_roundtrips() {
        for p in [Protocol::Pcp, Protocol::NatPmp, Protocol::UpnpIgd] {
            assert_eq!(Protocol::parse(p.as_str()), Some(p));
        }
        assert_eq!(Protocol::parse("smtp"), None);
    }
}
