//! The public side of most lab set-ups: a relay on public host 0 and,
//! in the friendlier [`Topology::TwoObservers`], a plain node on public
//! host 1 as a second observer that every site node also gets with
//! `--peer`. [`Topology::TicketOnly`] is the mesh users build from the
//! README: the relay is the only public node and every node joins with
//! its ticket alone (classification then comes from the relay's
//! alternate port, see docs/TRAVERSAL.md).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::node::{init, LabNode};
use super::topology::Lab;

/// Which public nodes a lab set-up runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// The relay and a second public observer on another IP, handed to
    /// every site node with `--peer`.
    TwoObservers,
    /// As users deploy it: one public relay, every node joined only by
    /// `init --join TICKET`, no `--peer`, no other public node.
    TicketOnly,
}

impl Topology {
    /// Both, the users' mesh first.
    pub const ALL: [Topology; 2] = [Topology::TicketOnly, Topology::TwoObservers];

    /// A short name for reports: "ticket-only" | "two-observers".
    pub fn name(self) -> &'static str {
        match self {
            Topology::TwoObservers => "two-observers",
            Topology::TicketOnly => "ticket-only",
        }
    }

    /// The public hosts the lab needs.
    pub fn public_hosts(self) -> usize {
        match self {
            Topology::TwoObservers => 2,
            Topology::TicketOnly => 1,
        }
    }
}

/// The public nodes of one set-up.
#[derive(Debug)]
pub struct PublicSide {
    /// The relay on public host 0.
    pub relay: LabNode,
    /// The second observer on public host 1 ([`Topology::TwoObservers`]).
    pub observer: Option<LabNode>,
    /// The relay's join ticket.
    pub ticket: String,
    /// `NODEID@ADDR` of the observer, for `--peer`.
    observer_peer: Option<String>,
}

impl PublicSide {
    /// Starts the relay (and the observer) for `topology`; data dirs under
    /// `dir`, both listening on `port`.
    pub fn start(
        lab: &Lab,
        bin: &Path,
        dir: &Path,
        topology: Topology,
        port: u16,
        timeout: Duration,
    ) -> Result<Self, String> {
        let (relay, ticket) = start_relay(lab, bin, &dir.join("relay"), port, timeout)?;
        let (observer, observer_peer) = match topology {
            Topology::TicketOnly => (None, None),
            Topology::TwoObservers => {
                let (observer, peer) =
                    start_observer(lab, bin, &dir.join("observer"), &ticket, port, timeout)?;
                (Some(observer), Some(peer))
            }
        };
        Ok(Self {
            relay,
            observer,
            ticket,
            observer_peer,
        })
    }

    /// The extra `run` arguments of a site node: `--peer OBSERVER` with
    /// two observers, nothing ticket-only.
    pub fn site_args(&self) -> Vec<String> {
        match &self.observer_peer {
            Some(peer) => vec!["--peer".to_string(), peer.clone()],
            None => Vec::new(),
        }
    }

    /// The public nodes a site node connects to.
    pub fn nodes(&self) -> Vec<&LabNode> {
        std::iter::once(&self.relay)
            .chain(self.observer.as_ref())
            .collect()
    }
}

/// `relay-node run --relay` on public host 0, listening on `port`, with a
/// data dir at `dir`; returns it with a join ticket for its address.
pub fn start_relay(
    lab: &Lab,
    bin: &Path,
    dir: &Path,
    port: u16,
    timeout: Duration,
) -> Result<(LabNode, String), String> {
    let host = lab.public(0).ok_or("the lab has no public host")?;
    let addr = SocketAddr::new(IpAddr::V4(host.addr), port).to_string();
    init(bin, dir, None)?;
    let relay = LabNode::start(bin, &host.ns, dir, &["--relay", "--listen", &addr], timeout)?;
    let ticket = relay.invite(&addr)?;
    Ok((relay, ticket))
}

/// A plain node (no relaying) on public host 1 that joined with `ticket`:
/// a second observer, on another IP than the relay's. Returns it with the
/// `NODEID@ADDR` form `--peer` takes.
pub fn start_observer(
    lab: &Lab,
    bin: &Path,
    dir: &Path,
    ticket: &str,
    port: u16,
    timeout: Duration,
) -> Result<(LabNode, String), String> {
    let host = lab.public(1).ok_or("the lab has no second public host")?;
    let addr = SocketAddr::new(IpAddr::V4(host.addr), port).to_string();
    init(bin, dir, Some(ticket))?;
    let observer = LabNode::start(bin, &host.ns, dir, &["--listen", &addr], timeout)?;
    let peer = format!("{}@{addr}", observer.id);
    Ok((observer, peer))
}
