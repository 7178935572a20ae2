//! The introducer: a node connected to both A and B tells each the other's
//! candidates and when to start probing.
//!
//! - **Anti-reflection.** The only candidate it hands out for a side is the
//!   address it observes that side's connection at. A requester cannot make
//!   the introducer point B's probes at a victim.
//! - **Fire time.** Both sides should start probing at the same instant T.
//!   The introducer picks T = now + max(rtt_A, rtt_B) / 2 + margin and tells
//!   each side "fire in T - now - rtt_side / 2": the message itself takes
//!   about half that side's RTT to arrive. The times are relative, so clocks
//!   never need to agree.
//! - **Budget.** Each requester has a token bucket (burst, refill period).
//!   A retry with the same request id is answered again without being
//!   charged. Over budget, the answer is `Rejected { Budget }`. The table
//!   holds one entry per connected requester and is bounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay_proto::wire::traversal::{Introduction, NatType, RejectReason, MAX_FIRE_IN_MS};
use relay_proto::NodeId;

/// Requesters tracked at most (the oldest is dropped beyond this).
pub const MAX_REQUESTERS: usize = 4096;

/// What the introducer knows about one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    /// The side's NodeId.
    pub node: NodeId,
    /// The address the introducer observes its connection at (`None` when
    /// it is reached through a relay).
    pub observed: Option<SocketAddr>,
    /// RTT of the introducer's connection to it.
    pub rtt: Duration,
    /// The NAT type it reported.
    pub nat: NatType,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    credit: Duration,
    last: Instant,
    last_req: Option<u64>,
}

/// Introduction bookkeeping. Sans-IO.
#[derive(Debug)]
pub struct Introducer {
    enabled: bool,
    burst: u32,
    refill: Duration,
    margin: Duration,
    buckets: BTreeMap<NodeId, Bucket>,
}

/// Both halves of an introduction: send `.0` to the requester and `.1` to
/// the target.
pub type IntroductionPair = (Introduction, Introduction);

impl Introducer {
    /// An introducer with a per-requester budget of `burst` introductions,
    /// one credit coming back each `refill`.
    pub fn new(enabled: bool, burst: u32, refill: Duration, margin: Duration) -> Self {
        Self {
            enabled,
            burst: burst.max(1),
            refill,
            margin,
            buckets: BTreeMap::new(),
        }
    }

    /// Forgets a requester (its connection is gone).
    pub fn forget(&mut self, node: &NodeId) {
        self.buckets.remove(node);
    }

    /// Answers `requester`'s request `req` to reach `target` (`None` when
    /// the introducer has no connection to it).
    pub fn handle_request(
        &mut self,
        now: Instant,
        req: u64,
        requester: &Side,
        target: Option<&Side>,
    ) -> Result<IntroductionPair, RejectReason> {
        if !self.enabled {
            return Err(RejectReason::Disabled);
        }
        let target = target.ok_or(RejectReason::NotConnected)?;
        let (Some(req_addr), Some(target_addr)) = (requester.observed, target.observed) else {
            return Err(RejectReason::NoObservedAddr);
        };
        self.charge(now, requester.node, req)?;

        let half_a = requester.rtt / 2;
        let half_b = target.rtt / 2;
        let lead = half_a.max(half_b) + self.margin;
        let fire_ms = |half: Duration| -> u32 {
            let ms = lead.saturating_sub(half).as_millis();
            u32::try_from(ms)
                .unwrap_or(MAX_FIRE_IN_MS)
                .min(MAX_FIRE_IN_MS)
        };
        let to_requester = Introduction {
            req,
            requester: requester.node,
            peer: target.node,
            candidates: vec![target_addr],
            peer_nat: target.nat,
            fire_in_ms: fire_ms(half_a),
        };
        let to_target = Introduction {
            req,
            requester: requester.node,
            peer: requester.node,
            candidates: vec![req_addr],
            peer_nat: requester.nat,
            fire_in_ms: fire_ms(half_b),
        };
        Ok((to_requester, to_target))
    }

    fn charge(&mut self, now: Instant, node: NodeId, req: u64) -> Result<(), RejectReason> {
        let cap = self.refill * self.burst;
        if !self.buckets.contains_key(&node) && self.buckets.len() >= MAX_REQUESTERS {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                self.buckets.remove(&id);
            }
        }
        let bucket = self.buckets.entry(node).or_insert(Bucket {
            credit: cap,
            last: now,
            last_req: None,
        });
        let elapsed = now.saturating_duration_since(bucket.last);
        bucket.credit = (bucket.credit + elapsed).min(cap);
        bucket.last = now;
        if bucket.last_req == Some(req) {
            return Ok(());
        }
        if bucket.credit < self.refill {
            return Err(RejectReason::Budget);
        }
        bucket.credit -= self.refill;
        bucket.last_req = Some(req);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    fn side(n: u8, addr: Option<&str>, rtt_ms: u64) -> Side {
        Side {
            node: SecretKey::from_bytes(&[n; 32]).node_id(),
            observed: addr.map(|a| a.parse().unwrap()),
            rtt: Duration::from_millis(rtt_ms),
            nat: NatType::Cone,
        }
    }

    fn introducer() -> Introducer {
        Introducer::new(true, 2, Duration::from_secs(2), Duration::from_millis(20))
    }

    #[test]
    fn introduces_observed_addresses_with_synchronized_fire() {
        let now = Instant::now();
        let a = side(1, Some("203.0.113.1:1000"), 80);
        let b = side(2, Some("203.0.113.2:2000"), 200);
        let (to_a, to_b) = introducer().handle_request(now, 7, &a, Some(&b)).unwrap();
        assert_eq!(to_a.peer, b.node);
        assert_eq!(to_a.candidates, vec![b.observed.unwrap()]);
        assert_eq!(to_b.peer, a.node);
        assert_eq!(to_b.candidates, vec![a.observed.unwrap()]);
        assert_eq!((to_a.requester, to_b.requester), (a.node, a.node));
        // lead = 100 + 20 ms; A's message takes 40 ms, B's 100 ms.
        assert_eq!(to_a.fire_in_ms, 80);
        assert_eq!(to_b.fire_in_ms, 20);
        // Both fire at the same absolute instant: arrival + fire_in.
        assert_eq!(40 + to_a.fire_in_ms, 100 + to_b.fire_in_ms);
    }

    #[test]
    fn rejects_without_connection_or_observation() {
        let now = Instant::now();
        let a = side(1, Some("203.0.113.1:1000"), 80);
        let relayed = side(2, None, 80);
        let mut i = introducer();
        assert_eq!(
            i.handle_request(now, 1, &a, None),
            Err(RejectReason::NotConnected)
        );
        assert_eq!(
            i.handle_request(now, 1, &a, Some(&relayed)),
            Err(RejectReason::NoObservedAddr)
        );
        let mut off = Introducer::new(false, 2, Duration::from_secs(2), Duration::ZERO);
        assert_eq!(
            off.handle_request(now, 1, &a, Some(&relayed)),
            Err(RejectReason::Disabled)
        );
    }

    #[test]
    fn budget_per_requester_with_free_retries_and_refill() {
        let now = Instant::now();
        let a = side(1, Some("203.0.113.1:1000"), 80);
        let c = side(3, Some("203.0.113.3:3000"), 80);
        let b = side(2, Some("203.0.113.2:2000"), 80);
        let mut i = introducer();
        assert!(i.handle_request(now, 1, &a, Some(&b)).is_ok());
        // A retry of the same request is free.
        assert!(i.handle_request(now, 1, &a, Some(&b)).is_ok());
        assert!(i.handle_request(now, 2, &a, Some(&b)).is_ok());
        assert_eq!(
            i.handle_request(now, 3, &a, Some(&b)),
            Err(RejectReason::Budget)
        );
        // Another requester has its own budget.
        assert!(i.handle_request(now, 1, &c, Some(&b)).is_ok());
        // One refill period gives one introduction back.
        let later = now + Duration::from_secs(2);
        assert!(i.handle_request(later, 4, &a, Some(&b)).is_ok());
        assert_eq!(
            i.handle_request(later, 5, &a, Some(&b)),
            Err(RejectReason::Budget)
        );
    }
}
