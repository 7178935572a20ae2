//! `relay-node invite`: build a join ticket holding this node's NodeId, the
//! addresses where it can be reached, and the mesh network key. The ticket is
//! a secret: whoever has it can join the mesh.
//!
//! Addresses come from `--addr`, or else from the running node's bound
//! addresses (asked over the local API). A wildcard bind (`0.0.0.0`,
//! `[::]`) is expanded to this host's preferred outbound interface address,
//! found by "connecting" a UDP socket to a documentation address and reading
//! its local address (no packet is sent); if none is found, loopback is used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use relay_proto::Ticket;
use thiserror::Error;

use crate::api::client::{ApiClient, ClientError};
use crate::datadir::DataDir;
use crate::keystore::{self, LoadKeyError};

/// Building a ticket failed.
#[derive(Debug, Error)]
pub enum InviteError {
    /// The keys could not be loaded.
    #[error(transparent)]
    Key(#[from] LoadKeyError),
    /// No `--addr` and no running node to ask.
    #[error("no-addresses: no relay-node is running for data dir {dir}; start it with `relay-node run` or pass --addr HOST:PORT")]
    NoAddresses {
        /// The data directory.
        dir: String,
    },
    /// Asking the running node failed.
    #[error(transparent)]
    Control(ClientError),
}

impl InviteError {
    /// The stable kind.
    pub fn kind(&self) -> &str {
        match self {
            Self::Key(e) => e.kind(),
            Self::NoAddresses { .. } => "no-addresses",
            Self::Control(e) => e.kind(),
        }
    }
}

/// Builds the ticket for `dir`.
pub fn invite(dir: &DataDir, addrs: Vec<SocketAddr>) -> Result<Ticket, InviteError> {
    let keys = keystore::load_keys(dir)?;
    let addrs = if addrs.is_empty() {
        let status = match ApiClient::connect(dir).and_then(|mut c| c.status()) {
            Ok(status) => status,
            Err(ClientError::NotRunning { .. }) => {
                return Err(InviteError::NoAddresses {
                    dir: dir.to_string(),
                })
            }
            Err(e) => return Err(InviteError::Control(e)),
        };
        let bound: Vec<SocketAddr> = status
            .listen
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        expand_addrs(&bound, &Probe)
    } else {
        dedup(addrs)
    };
    Ok(Ticket {
        node_id: keys.node_id(),
        addrs,
        network_key: keys.network_key,
    })
}

/// Finds this host's preferred outbound address per IP family.
pub trait LocalIpProbe {
    /// The local IPv4 address used to reach the internet, if any.
    fn ipv4(&self) -> Option<IpAddr>;
    /// The local IPv6 address used to reach the internet, if any.
    fn ipv6(&self) -> Option<IpAddr>;
}

/// The real probe: a connected (never used) UDP socket.
#[derive(Debug, Clone, Copy)]
pub struct Probe;

impl LocalIpProbe for Probe {
    fn ipv4(&self) -> Option<IpAddr> {
        probe(
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            SocketAddr::new(Ipv4Addr::new(192, 0, 2, 1).into(), 9),
        )
    }

    fn ipv6(&self) -> Option<IpAddr> {
        probe(
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
            SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(), 9),
        )
    }
}

fn probe(bind: SocketAddr, target: SocketAddr) -> Option<IpAddr> {
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// Replaces wildcard binds by concrete addresses with the same port.
pub fn expand_addrs(bound: &[SocketAddr], probe: &dyn LocalIpProbe) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for addr in bound {
        let port = addr.port();
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                let ip = probe.ipv4().unwrap_or(Ipv4Addr::LOCALHOST.into());
                out.push(SocketAddr::new(ip, port));
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                // A `[::]` socket is usually dual-stack: offer both families.
                let found: Vec<IpAddr> =
                    [probe.ipv6(), probe.ipv4()].into_iter().flatten().collect();
                if found.is_empty() {
                    out.push(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port));
                }
                out.extend(found.into_iter().map(|ip| SocketAddr::new(ip, port)));
            }
            _ => out.push(*addr),
        }
    }
    dedup(out)
}

fn dedup(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for a in addrs {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Option<IpAddr>, Option<IpAddr>);
    impl LocalIpProbe for Fixed {
        fn ipv4(&self) -> Option<IpAddr> {
            self.0
        }
        fn ipv6(&self) -> Option<IpAddr> {
            self.1
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn wildcard_expansion() {
        let lan = Fixed(
            Some("10.1.2.3".parse().unwrap()),
            Some("2001:db8::5".parse().unwrap()),
        );
        assert_eq!(
            expand_addrs(&[sa("0.0.0.0:7420")], &lan),
            vec![sa("10.1.2.3:7420")]
        );
        assert_eq!(
            expand_addrs(&[sa("[::]:1")], &lan),
            vec![sa("[2001:db8::5]:1"), sa("10.1.2.3:1")]
        );
        let none = Fixed(None, None);
        assert_eq!(
            expand_addrs(&[sa("0.0.0.0:7420")], &none),
            vec![sa("127.0.0.1:7420")]
        );
        assert_eq!(expand_addrs(&[sa("[::]:7")], &none), vec![sa("[::1]:7")]);
        // Concrete binds are kept as they are, duplicates dropped.
        assert_eq!(
            expand_addrs(&[sa("127.0.0.1:5"), sa("127.0.0.1:5")], &none),
            vec![sa("127.0.0.1:5")]
        );
    }

    #[test]
    fn real_probe_never_returns_loopback() {
        if let Some(ip) = Probe.ipv4() {
            assert!(!ip.is_loopback() && !ip.is_unspecified());
        }
    }

    #[test]
    fn not_running_without_addrs() {
        let root = crate::testutil::temp_dir("invite");
        let dir = DataDir::new(root.join("d"));
        crate::init::init(&dir, None).unwrap();
        let err = invite(&dir, vec![]).unwrap_err();
        assert_eq!(err.kind(), "no-addresses");
        let ticket = invite(&dir, vec![sa("127.0.0.1:9"), sa("127.0.0.1:9")]).unwrap();
        assert_eq!(ticket.addrs, vec![sa("127.0.0.1:9")]);
        assert_eq!(
            ticket.node_id,
            crate::keystore::load_identity(&dir).unwrap().node_id()
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
