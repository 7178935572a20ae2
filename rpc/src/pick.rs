//! Discovery's last step: picking the node a call goes to among those that
//! serve the service.
//!
//! 1. Nodes excluded by the caller (already tried) and nodes whose breaker
//!    refuses calls are skipped.
//! 2. Of the rest, only the best path tier is kept: this node itself, then
//!    nodes on a direct path, then relayed ones, then nodes with no
//!    connection yet.
//! 3. The [`Strategy`] picks within the tier: round-robin, least latency
//!    (smoothed RTT; unknown RTT last), or a sticky key (rendezvous
//!    hashing: one key keeps its node while that node stays eligible).

use std::time::{Duration, Instant};

use relay_proto::NodeId;

use crate::breaker::Breakers;

/// The path to a candidate, in preference order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Path {
    /// This node serves it.
    Local,
    /// A direct path.
    Direct,
    /// Through a relay.
    Relayed,
    /// Not connected yet.
    Unknown,
}

impl Path {
    /// "local" | "direct" | "relayed" | "unknown".
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Direct => "direct",
            Self::Relayed => "relayed",
            Self::Unknown => "unknown",
        }
    }
}

/// A node serving the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The node.
    pub node: NodeId,
    /// Its path.
    pub path: Path,
    /// Its smoothed RTT, if measured.
    pub rtt: Option<Duration>,
}

/// How to pick within the best tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Each call the next node.
    #[default]
    RoundRobin,
    /// The lowest RTT.
    LeastLatency,
    /// The node this key hashes to.
    Sticky(u64),
}

/// Picks nodes; keeps the round-robin position.
#[derive(Debug, Clone, Default)]
pub struct Picker {
    next: u64,
}

impl Picker {
    /// A picker at position 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The node for a call at `now`, or `None` when every candidate is
    /// excluded or refused by its breaker.
    pub fn pick(
        &mut self,
        now: Instant,
        strategy: Strategy,
        candidates: &[Candidate],
        exclude: &[NodeId],
        breakers: &Breakers,
    ) -> Option<NodeId> {
        let eligible = |c: &&Candidate| !exclude.contains(&c.node) && breakers.allows(now, &c.node);
        let best = candidates.iter().filter(eligible).map(|c| c.path).min()?;
        let in_tier = |c: &&Candidate| eligible(c) && c.path == best;
        // One node in the best tier (the usual case) is picked without
        // gathering the tier; round-robin still moves on.
        let mut alone = candidates.iter().filter(in_tier);
        if let (Some(only), None) = (alone.next(), alone.next()) {
            if strategy == Strategy::RoundRobin {
                self.next = self.next.wrapping_add(1);
            }
            return Some(only.node);
        }
        let mut tier: Vec<&Candidate> = candidates.iter().filter(in_tier).collect();
        tier.sort_by_key(|c| c.node);
        let chosen = match strategy {
            Strategy::RoundRobin => {
                // `tier` holds at least the candidate `best` came from;
                // checked anyway, so an empty one is `None`, not a panic.
                let i = self.next.checked_rem(tier.len() as u64)? as usize;
                self.next = self.next.wrapping_add(1);
                *tier.get(i)?
            }
            Strategy::LeastLatency => tier
                .iter()
                .min_by_key(|c| c.rtt.unwrap_or(Duration::MAX))
                .copied()?,
            Strategy::Sticky(key) => tier
                .iter()
                .max_by_key(|c| rendezvous(key, &c.node))
                .copied()?,
        };
        Some(chosen.node)
    }
}

/// FNV-1a of the key and the node: the rendezvous weight.
fn rendezvous(key: u64, node: &NodeId) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.to_be_bytes().iter().chain(node.as_bytes().iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A sticky key from text (FNV-1a), for `Strategy::Sticky`.
pub fn sticky_key(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerConfig;
    use relay_proto::SecretKey;

    fn id(n: u8) -> NodeId {
        SecretKey::from_bytes(&[n; 32]).node_id()
    }

    fn cand(n: u8, path: Path, rtt_ms: u64) -> Candidate {
        Candidate {
            node: id(n),
            path,
            rtt: Some(Duration::from_millis(rtt_ms)),
        }
    }

    #[test]
    fn direct_is_preferred_over_relayed_even_when_slower() {
        let t = Instant::now();
        let b = Breakers::default();
        let c = [cand(1, Path::Relayed, 1), cand(2, Path::Direct, 50)];
        let mut p = Picker::new();
        for s in [
            Strategy::RoundRobin,
            Strategy::LeastLatency,
            Strategy::Sticky(9),
        ] {
            for _ in 0..4 {
                assert_eq!(p.pick(t, s, &c, &[], &b), Some(id(2)));
            }
        }
        // Relayed when the direct one is excluded.
        assert_eq!(
            p.pick(t, Strategy::RoundRobin, &c, &[id(2)], &b),
            Some(id(1))
        );
        assert_eq!(
            p.pick(t, Strategy::RoundRobin, &c, &[id(1), id(2)], &b),
            None
        );
    }

    #[test]
    fn round_robin_least_latency_and_sticky() {
        let t = Instant::now();
        let b = Breakers::default();
        let c = [
            cand(1, Path::Direct, 30),
            cand(2, Path::Direct, 10),
            cand(3, Path::Direct, 20),
        ];
        let mut p = Picker::new();
        let mut seen: Vec<NodeId> = (0..6)
            .map(|_| p.pick(t, Strategy::RoundRobin, &c, &[], &b).unwrap())
            .collect();
        assert_eq!(seen[..3], seen[3..]);
        seen.truncate(3);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 3);
        assert_eq!(p.pick(t, Strategy::LeastLatency, &c, &[], &b), Some(id(2)));
        let k = Strategy::Sticky(sticky_key("user-42"));
        let first = p.pick(t, k, &c, &[], &b).unwrap();
        for _ in 0..5 {
            assert_eq!(p.pick(t, k, &c, &[], &b), Some(first));
        }
        // Keys spread over nodes.
        let spread: std::collections::HashSet<_> = (0..64)
            .map(|i| p.pick(t, Strategy::Sticky(i), &c, &[], &b).unwrap())
            .collect();
        assert_eq!(spread.len(), 3);
    }

    #[test]
    fn open_breakers_are_skipped() {
        let t = Instant::now();
        let mut b = Breakers::new(BreakerConfig {
            failure_threshold: 1,
            ..BreakerConfig::default()
        });
        b.record(t, id(2), true);
        let c = [cand(1, Path::Relayed, 5), cand(2, Path::Direct, 5)];
        let mut p = Picker::new();
        assert_eq!(p.pick(t, Strategy::RoundRobin, &c, &[], &b), Some(id(1)));
        let later = t + Duration::from_secs(5);
        assert_eq!(
            p.pick(later, Strategy::RoundRobin, &c, &[], &b),
            Some(id(2))
        );
    }
}
