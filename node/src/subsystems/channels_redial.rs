//! When to dial the owners this node's subscriptions and publishing
//! sessions wait for. Sans-IO: the driver reports a lost owner
//! ([`OwnerDials::handle_lost`]), connections, dial outcomes and owners
//! nothing waits for any more, with `now`; it dials what
//! [`OwnerDials::poll_dial`] returns and sleeps until
//! [`OwnerDials::poll_timeout`].
//!
//! Each owner runs transport/core's [`Redial`] policy: the first dial at
//! once, then a backoff from [`REDIAL_MIN`] doubling to [`REDIAL_MAX`],
//! each wait jittered downwards (never past the cap); a connection resets
//! it; a dial refused for the peer's identity, or the transport closing,
//! stops it. Addresses come from the owner's member announcement in the
//! ledger; with none, the dial goes through a relay.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use relay_proto::NodeId;
use relay_transport::DialErrorKind;
use relay_transport_core::redial::{DialFailure, Redial, RedialConfig};

/// First wait after a failed dial.
pub const REDIAL_MIN: Duration = Duration::from_millis(500);
/// Longest wait between dials.
pub const REDIAL_MAX: Duration = Duration::from_secs(30);
/// Share of each wait taken off at random.
pub const REDIAL_JITTER_PERCENT: u32 = 25;
/// Most owners redialed at once (each is one entry; links per peer are
/// bounded elsewhere).
pub const MAX_OWNERS: usize = 1024;

/// Stands for "no address: through a relay" inside [`Redial`], which dials
/// only when it has an address.
const VIA_RELAY: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// The dial to make: `owner`, at `addr`, or through a relay when `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dial {
    /// Whom to dial.
    pub owner: NodeId,
    /// Where; `None` means through a relay that serves us.
    pub addr: Option<SocketAddr>,
}

/// Redial state per owner (see the module docs).
#[derive(Debug, Default)]
pub struct OwnerDials {
    owners: HashMap<NodeId, Redial>,
}

fn config() -> RedialConfig {
    RedialConfig {
        min: REDIAL_MIN,
        max: REDIAL_MAX,
        jitter_percent: REDIAL_JITTER_PERCENT,
    }
}

fn addrs_or_relay(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    if addrs.is_empty() {
        vec![VIA_RELAY]
    } else {
        addrs
    }
}

/// How a failed dial counts for redialing.
pub fn failure_of(kind: DialErrorKind) -> DialFailure {
    match kind {
        DialErrorKind::EndpointClosed => DialFailure::Closed,
        DialErrorKind::PeerKeyMismatch | DialErrorKind::NetworkKeyMismatch => DialFailure::Identity,
        _ => DialFailure::Other,
    }
}

impl OwnerDials {
    /// No owner to dial.
    pub fn new() -> Self {
        Self::default()
    }

    /// Links wait for `owner`, which is not connected: dial it at once
    /// (if not already redialing it) at `addrs`, then back off.
    pub fn handle_lost(&mut self, owner: NodeId, addrs: Vec<SocketAddr>, now: Instant) {
        if let Some(r) = self.owners.get_mut(&owner) {
            r.set_addrs(addrs_or_relay(addrs));
            return;
        }
        if self.owners.len() >= MAX_OWNERS {
            return;
        }
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&owner.as_bytes()[..8]);
        let redial = Redial::new(
            config(),
            addrs_or_relay(addrs),
            u64::from_le_bytes(seed),
            now,
        );
        self.owners.insert(owner, redial);
    }

    /// `owner` is connected: nothing to dial until it is lost again.
    pub fn handle_connected(&mut self, owner: &NodeId) {
        self.owners.remove(owner);
    }

    /// Nothing waits for `owner` any more.
    pub fn forget(&mut self, owner: &NodeId) {
        self.owners.remove(owner);
    }

    /// A dial to `owner` failed with `kind`: wait longer, or give up.
    pub fn handle_dial_failed(&mut self, owner: &NodeId, kind: DialErrorKind, now: Instant) {
        let failure = failure_of(kind);
        let Some(r) = self.owners.get_mut(owner) else {
            return;
        };
        let _ = r.handle_dial_failed(now, failure);
        if failure == DialFailure::Identity {
            // A relay or another address reaches the same wrong key.
            self.owners.remove(owner);
        }
    }

    /// The next dial due at `now`, if any.
    pub fn poll_dial(&mut self, now: Instant) -> Option<Dial> {
        self.owners.iter_mut().find_map(|(owner, r)| {
            r.poll_dial(now).map(|addr| Dial {
                owner: *owner,
                addr: (addr != VIA_RELAY).then_some(addr),
            })
        })
    }

    /// When the next dial is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.owners.values().filter_map(Redial::poll_timeout).min()
    }

    /// Owners being redialed.
    pub fn owners(&self) -> Vec<NodeId> {
        self.owners.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    fn id(n: u8) -> NodeId {
        SecretKey::from_bytes(&[n; 32]).node_id()
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn dials_at_once_then_backs_off_capped_and_jittered() {
        let t0 = Instant::now();
        let mut d = OwnerDials::new();
        let owner = id(1);
        assert_eq!(d.poll_dial(t0), None);
        d.handle_lost(owner, vec![addr(1), addr(2)], t0);
        assert_eq!(
            d.poll_dial(t0),
            Some(Dial {
                owner,
                addr: Some(addr(1))
            })
        );
        // Dialing: nothing more until it fails.
        assert_eq!(d.poll_dial(t0), None);
        assert_eq!(d.poll_timeout(), None);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..12 {
            d.handle_dial_failed(&owner, DialErrorKind::Timeout, now);
            let due = d.poll_timeout().unwrap();
            waits.push(due - now);
            assert_eq!(d.poll_dial(due - Duration::from_millis(1)), None);
            now = due;
            assert!(d.poll_dial(now).is_some());
        }
        // Addresses in turn.
        assert!(waits.iter().all(|w| *w <= REDIAL_MAX));
        let floor = |base: Duration| base - base * REDIAL_JITTER_PERCENT / 100;
        assert!(waits[0] >= floor(REDIAL_MIN) && waits[0] <= REDIAL_MIN);
        assert!(waits[1] >= floor(REDIAL_MIN * 2));
        assert!(waits[11] >= floor(REDIAL_MAX));
    }

    #[test]
    fn a_connection_or_forgetting_stops_and_identity_gives_up() {
        let t0 = Instant::now();
        let mut d = OwnerDials::new();
        let (a, b, c) = (id(1), id(2), id(3));
        for o in [a, b, c] {
            d.handle_lost(o, vec![addr(1)], t0);
        }
        d.handle_connected(&a);
        d.forget(&b);
        assert_eq!(d.owners(), vec![c]);
        assert_eq!(d.poll_dial(t0).map(|x| x.owner), Some(c));
        d.handle_dial_failed(&c, DialErrorKind::PeerKeyMismatch, t0);
        assert!(d.owners().is_empty());
        assert_eq!(d.poll_timeout(), None);
        // Lost again: at once.
        d.handle_lost(a, vec![addr(1)], t0);
        assert!(d.poll_dial(t0).is_some());
        d.handle_dial_failed(&a, DialErrorKind::EndpointClosed, t0);
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn without_addresses_the_dial_goes_through_a_relay() {
        let t0 = Instant::now();
        let mut d = OwnerDials::new();
        d.handle_lost(id(1), vec![], t0);
        assert_eq!(
            d.poll_dial(t0),
            Some(Dial {
                owner: id(1),
                addr: None
            })
        );
        // An announcement arrives: the next dial uses it.
        d.handle_lost(id(1), vec![addr(9)], t0);
        d.handle_dial_failed(&id(1), DialErrorKind::NoRelay, t0);
        let due = d.poll_timeout().unwrap();
        assert_eq!(d.poll_dial(due).and_then(|x| x.addr), Some(addr(9)));
    }
}
