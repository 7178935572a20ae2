//! The public side of most lab set-ups: a relay on public host 0 and,
//! when NAT types matter, a plain node on public host 1 as a second
//! observer (classification needs reflexive reports from two IPs).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::node::{init, LabNode};
use super::topology::Lab;

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
