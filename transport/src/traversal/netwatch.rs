//! The IO half of address-change detection (the logic is `roam`): which
//! destination the driver samples our local address towards, and the
//! sample itself; also our concrete local address towards an observer.
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
//!
//! The sockets are tokio's: these run inside the driver task and must not
//! block it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use relay_proto::NodeId;
use tokio::net::UdpSocket;

use crate::handles::TraversalHost;

/// The IP our local address is sampled towards (see the module docs).
pub(crate) fn destination(shared: &dyn TraversalHost, peers: &[NodeId]) -> Option<IpAddr> {
    let direct_ip = |node: &NodeId| {
        shared
            .live(node)
            .and_then(|l| shared.socket().path(&l.mapped()))
            .and_then(|p| p.direct_addr())
            .map(|a| a.ip().to_canonical())
    };
    let mut relays = shared.registered_relays();
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
pub(crate) async fn source_ip(bound: SocketAddr, dest: IpAddr) -> Option<IpAddr> {
    if !bound.ip().is_unspecified() {
        return UdpSocket::bind(SocketAddr::new(bound.ip(), 0))
            .await
            .ok()
            .map(|_| bound.ip().to_canonical());
    }
    let dest = dest.to_canonical();
    let any: IpAddr = match dest {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0)).await.ok()?;
    socket.connect(SocketAddr::new(dest, 9)).await.ok()?;
    let ip = socket.local_addr().ok()?.ip().to_canonical();
    (!ip.is_unspecified()).then_some(ip)
}

/// Our concrete local address for traffic to `observer`: the bound one,
/// or, bound to a wildcard, the source IP the kernel would pick (a
/// connected UDP socket; no packet is sent) with the bound port.
pub(crate) async fn local_towards(bound: SocketAddr, observer: IpAddr) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let ip = source_ip(bound, observer).await.unwrap_or(bound.ip());
    SocketAddr::new(ip, bound.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn source_ip_is_concrete_or_none() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        assert_eq!(source_ip(any, lo).await, Some(lo));
        let bound: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            source_ip(bound, "127.0.0.9".parse().unwrap()).await,
            Some(lo)
        );
        // An address this host does not have (TEST-NET-1) cannot be bound.
        let gone: SocketAddr = "192.0.2.77:4000".parse().unwrap();
        assert_eq!(source_ip(gone, lo).await, None);
    }

    #[tokio::test]
    async fn local_address_is_concrete() {
        let bound: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            local_towards(bound, "127.0.0.2".parse().unwrap()).await,
            bound
        );
        let any: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        let local = local_towards(any, "127.0.0.1".parse().unwrap()).await;
        assert_eq!(local, "127.0.0.1:4000".parse().unwrap());
    }
}
