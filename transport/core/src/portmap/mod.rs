//! Port mapping: ask the default gateway to forward a UDP port to our
//! socket (PCP, NAT-PMP or UPnP-IGD) and publish the mapped external
//! address as a traversal candidate.
//!
//! The pieces here are sans-IO; the gateway lookup and the driver live in
//! `relay_transport::portmap`:
//!
//! - [`machine`]: [`PortMapper`], the state machine: discovery in a fixed
//!   order (PCP, then NAT-PMP, then UPnP-IGD by default), the request,
//!   renewal at half the lifetime, restart detection from the gateway's
//!   epoch, and release. Driven with `handle_*(now, ..)`, drained with
//!   `poll_transmit` / `poll_event`, woken at `poll_timeout`;
//! - codecs: NAT-PMP and PCP messages live in `relay_proto::wire::{natpmp,
//!   pcp}`; [`ssdp`] (M-SEARCH and its answers), [`http`] (a bounded
//!   HTTP/1.1 client codec), [`xml`] (a tolerant tag extractor) and
//!   [`igd`] (the device description and the SOAP actions);
//! - `gateway` (async side): the default gateway from `/proc/net/route`;
//! - [`epoch`]: gateway restart detection;
//! - `driver` (async side): the task inside a transport: a UDP socket connected to
//!   the gateway's port 5351, one for SSDP, and one short TCP connection
//!   per HTTP request. It hands the mapped address to the traversal core,
//!   which tells every peer (`TraversalMsg::PortMapped`) so introducers
//!   can include it in introductions.
//!
//! With no gateway, or none that answers, the node carries on unmapped:
//! the status reads `port-map-unavailable: ...` and discovery is tried
//! again every [`PortMapConfig::retry_unavailable`]. Nothing here logs at
//! error level.

mod config;
pub mod epoch;
pub mod http;
pub mod igd;
pub mod machine;
pub mod ssdp;
pub mod xml;

pub use config::{PortMapConfig, Protocol};
pub use machine::{Local, PortMapEvent, PortMapTransmit, PortMapper};

use std::net::SocketAddr;
use std::time::Duration;

/// What status and `netcheck` show about port mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMapStatus {
    /// Whether this transport maps at all ([`PortMapConfig::enabled`]).
    pub enabled: bool,
    /// "off" | "discovering" | "mapped" | "unavailable" | "stopped".
    pub state: &'static str,
    /// The protocol that holds the mapping.
    pub protocol: Option<Protocol>,
    /// The mapped external address.
    pub external_addr: Option<SocketAddr>,
    /// Time left on the mapping (`None`: permanent, or no mapping).
    pub expires_in: Option<Duration>,
    /// Why there is no mapping, as `kind: detail` (`port-map-unavailable:
    /// ...`).
    pub error: Option<String>,
}

impl PortMapStatus {
    /// The status of a transport that does not map.
    pub fn off() -> Self {
        Self {
            state: "off",
            ..Self::default()
        }
    }
}
