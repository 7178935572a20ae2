//! Port-mapped candidates in traversal (see `crate::portmap`).
//!
//! - **Publishing.** A node that holds a port mapping tells each peer its
//!   mapped address (`TraversalMsg::PortMapped`). An introducer adds a
//!   side's mapped address to the candidates it hands out only when the
//!   mapped IP is the IP it observes that side at: the anti-reflection
//!   rule still holds (probes can only be aimed at an IP the introducer
//!   sees the requester at), and a mapping on a gateway that is not our
//!   outermost NAT (double NAT) is left out, as it would not work anyway.
//! - **Letting the peer go first.** A gateway that maps our port forwards
//!   inbound packets to it, but a NAT with endpoint-dependent mapping
//!   gives *our own* first packet towards the peer a fresh, random port,
//!   and that outbound flow has the same inside 5-tuple as the peer's
//!   inbound flow through the mapping will have. Linux conntrack resolves
//!   the collision by rewriting the peer's source port on the inbound flow
//!   (we then see the peer at a peer-reflexive alias, and the punch still
//!   works: the lab passes with or without what follows); a gateway that
//!   drops the colliding packet instead would defeat the mapping. So a
//!   node that holds a mapping starts its own scheduled probes one RTT
//!   (the current connection's, clamped to 50 ms..1 s) after the fire
//!   time: the peer's probes arrive first through the mapping, and every
//!   packet we send afterwards to that peer address belongs to the peer's
//!   flow and leaves from the mapped port. Probes from the peer are still
//!   answered at once, and a peer that cannot reach the mapping is probed
//!   normally, one RTT later.
//! - **Trying again.** A mapping that arrives after a punch failed (a
//!   gateway that answered late) is a way in that punch did not have:
//!   every peer whose punch failed gets a `Repunch` at once, and the
//!   request that follows refreshes the introducer's copy of the mapping
//!   before it asks, instead of waiting out the retry backoff (15 s).

use std::net::SocketAddr;
use std::time::Duration;

use relay_proto::wire::traversal::MAX_CANDIDATES;

/// Shortest delay of our own probes while we hold a mapping.
pub const MAPPED_DELAY_MIN: Duration = Duration::from_millis(50);
/// Longest delay of our own probes while we hold a mapping.
pub const MAPPED_DELAY_MAX: Duration = Duration::from_secs(1);

/// Adds a side's `mapped` address to the `candidates` an introducer hands
/// out, when its IP is the `observed` one and there is room.
pub fn add_mapped_candidate(
    candidates: &mut Vec<SocketAddr>,
    observed: Option<SocketAddr>,
    mapped: Option<SocketAddr>,
) {
    let (Some(observed), Some(mapped)) = (observed, mapped) else {
        return;
    };
    if mapped.ip().to_canonical() != observed.ip().to_canonical()
        || candidates.contains(&mapped)
        || candidates.len() >= MAX_CANDIDATES
    {
        return;
    }
    candidates.push(mapped);
}

/// How long after the fire time a node holding a mapping starts its own
/// probes, given the RTT of its connection to the peer.
pub fn mapped_probe_delay(rtt: Duration) -> Duration {
    rtt.clamp(MAPPED_DELAY_MIN, MAPPED_DELAY_MAX)
}

/// Whether `addr` may be a published mapped address.
pub fn valid_mapped(addr: &SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_mapped_addresses_on_the_observed_ip() {
        let mut c = vec![a("198.51.101.10:31000")];
        add_mapped_candidate(
            &mut c,
            Some(a("198.51.101.10:31000")),
            Some(a("198.51.101.10:40000")),
        );
        assert_eq!(c, vec![a("198.51.101.10:31000"), a("198.51.101.10:40000")]);
        // Again: no duplicate.
        add_mapped_candidate(
            &mut c,
            Some(a("198.51.101.10:31000")),
            Some(a("198.51.101.10:40000")),
        );
        assert_eq!(c.len(), 2);
        // Another IP (a reflection attempt, or a double NAT): left out.
        let mut c = vec![a("198.51.101.10:31000")];
        add_mapped_candidate(
            &mut c,
            Some(a("198.51.101.10:31000")),
            Some(a("203.0.113.99:40000")),
        );
        assert_eq!(c.len(), 1);
        // Nothing observed (relayed side): nothing added.
        let mut c = vec![];
        add_mapped_candidate(&mut c, None, Some(a("198.51.101.10:40000")));
        assert!(c.is_empty());
    }

    #[test]
    fn delay_and_validity() {
        assert_eq!(mapped_probe_delay(Duration::ZERO), MAPPED_DELAY_MIN);
        assert_eq!(
            mapped_probe_delay(Duration::from_millis(120)),
            Duration::from_millis(120)
        );
        assert_eq!(mapped_probe_delay(Duration::from_secs(9)), MAPPED_DELAY_MAX);
        assert!(valid_mapped(&a("198.51.101.10:40000")));
        assert!(!valid_mapped(&a("0.0.0.0:40000")));
        assert!(!valid_mapped(&a("198.51.101.10:0")));
        assert!(!valid_mapped(&a("239.255.255.250:1900")));
    }
}
