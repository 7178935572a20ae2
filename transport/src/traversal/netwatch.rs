//! The IO half of address-change detection (the logic is `roam`): which
//! destination the driver samples our local address towards, and the
//! sample itself.
//!
//! - The destination is a relay we are registered with (lowest NodeId
//!   first) on a direct path, else a peer on a direct path; one fixed
//!   destination, so a multi-homed host that reaches different peers
//!   through different interfaces is never taken for a moving one.
//! - The sample is the source IP the kernel picks towards it: a UDP
//!   socket connected to it, which sends nothing. Bound to a specific IP
//!   instead of a wildcard, the sample is that IP while it can still be
//!   bound, else "none" (the address vanished; the socket is unusable
//!   until it comes back).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use relay_proto::NodeId;

use crate::endpoint::Shared;

/// The IP our local address is sampled towards (see the module docs).
pub(crate) fn destination(shared: &Shared, peers: &[NodeId]) -> Option<IpAddr> {
    let direct_ip = |node: &NodeId| {
        shared
            .live(node)
            .and_then(|l| shared.socket.path(&l.mapped()))
            .and_then(|p| p.direct_addr())
            .map(|a| a.ip().to_canonical())
    };
    let mut relays = shared
        .relays
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .registered();
    relays.sort();
    if let Some(ip) = relays.iter().find_map(direct_ip) {
        return Some(ip);
    }
    let mut peers = peers.to_vec();
    peers.sort();
    peers.iter().find_map(direct_ip)
}

/// The source IP our socket, bound at `bound`, uses towards `dest` now
/// (see the module docs); `None` when there is none.
pub(crate) fn source_ip(bound: SocketAddr, dest: IpAddr) -> Option<IpAddr> {
    if !bound.ip().is_unspecified() {
        return UdpSocket::bind(SocketAddr::new(bound.ip(), 0))
            .ok()
            .map(|_| bound.ip().to_canonical());
    }
    let dest = dest.to_canonical();
    let any: IpAddr = match dest {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0)).ok()?;
    socket.connect(SocketAddr::new(dest, 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip().to_canonical();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ip_is_concrete_or_none() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        assert_eq!(source_ip(any, lo), Some(lo));
        let bound: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(source_ip(bound, "127.0.0.9".parse().unwrap()), Some(lo));
        // An address this host does not have (TEST-NET-1) cannot be bound.
        let gone: SocketAddr = "192.0.2.77:4000".parse().unwrap();
        assert_eq!(source_ip(gone, lo), None);
    }
}
