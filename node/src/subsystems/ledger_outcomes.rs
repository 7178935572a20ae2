//! When this node records a `traversal-outcome`: how an attempt to reach a
//! peer directly settled. Sans-IO: the driver feeds it the transport's path
//! events and traversal's per-peer "why not direct", with `now`.
//!
//! - **An attempt** starts when a peer connects on a relayed path, or a
//!   connected peer falls back to one. A peer that connects directly needs
//!   no traversal and records nothing.
//! - **It settles** `direct` when the path moves to direct
//!   (`time_to_direct_ms` from the attempt's start), or `relayed` when
//!   traversal gives up and reports why (`why`). A relayed attempt stays
//!   open: a later direct path records `direct`, a different `why` records
//!   again. A disconnect ends an unsettled attempt without an entry.
//! - `birthday_packets`: how far the node's birthday-packet counter moved
//!   while the attempt ran (it includes runs for other peers that ran at
//!   the same time).
//! - **Deduplicated and rate-limited per peer**: an outcome equal to the
//!   last one recorded for the peer (same result, same `why`) within
//!   [`REPEAT_AFTER`] is dropped; otherwise at most one outcome per peer per
//!   [`PEER_INTERVAL`] — a newer one waits for the interval and replaces
//!   any that was waiting. At most [`MAX_PEERS`] peers are tracked and
//!   [`MAX_READY`] outcomes wait to be appended; beyond them outcomes are
//!   dropped and counted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use relay_proto::ledger::body::{PathOutcome, TraversalOutcome, MAX_WHY};
use relay_transport::{NodeId, PathKind};

/// Least time between two outcomes recorded for one peer.
pub const PEER_INTERVAL: Duration = Duration::from_secs(60);
/// An outcome equal to the peer's last one is recorded again only after this.
pub const REPEAT_AFTER: Duration = Duration::from_secs(600);
/// Most peers tracked (attempts and recent outcomes) at once.
pub const MAX_PEERS: usize = 4096;
/// Most outcomes waiting to be appended.
pub const MAX_READY: usize = 256;

#[derive(Debug, Clone)]
struct Attempt {
    since: Instant,
    birthday_at_start: u64,
    why: Option<String>,
}

#[derive(Debug, Clone)]
struct Recorded {
    at: Instant,
    outcome: PathOutcome,
    why: String,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct OutcomeTracker {
    attempts: HashMap<NodeId, Attempt>,
    recorded: HashMap<NodeId, Recorded>,
    waiting: BTreeMap<NodeId, TraversalOutcome>,
    ready: VecDeque<TraversalOutcome>,
    dropped: u64,
}

impl OutcomeTracker {
    /// Nothing tracked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Outcomes dropped: duplicates, replaced while waiting, or over a bound.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// `peer`'s connection is on `path` now (a connect or a path change);
    /// `birthday_total` is the node's birthday-packet counter.
    pub fn handle_path(&mut self, now: Instant, peer: NodeId, path: PathKind, birthday_total: u64) {
        match path {
            PathKind::Relayed => {
                if !self.attempts.contains_key(&peer) && self.attempts.len() < MAX_PEERS {
                    self.attempts.insert(
                        peer,
                        Attempt {
                            since: now,
                            birthday_at_start: birthday_total,
                            why: None,
                        },
                    );
                }
            }
            PathKind::Direct => {
                if let Some(a) = self.attempts.remove(&peer) {
                    let ms = now.saturating_duration_since(a.since).as_millis();
                    let outcome = TraversalOutcome {
                        peer,
                        outcome: PathOutcome::Direct,
                        time_to_direct_ms: Some(u64::try_from(ms).unwrap_or(u64::MAX)),
                        why: String::new(),
                        birthday_packets: packets(birthday_total, a.birthday_at_start),
                    };
                    self.settle(now, outcome);
                }
            }
            PathKind::None => {
                self.attempts.remove(&peer);
            }
        }
    }

    /// `peer`'s connection is gone: an unsettled attempt ends unrecorded.
    pub fn handle_disconnected(&mut self, peer: &NodeId) {
        self.attempts.remove(peer);
    }

    /// Traversal's current reasons why peers are not direct.
    pub fn handle_why(
        &mut self,
        now: Instant,
        why: &BTreeMap<NodeId, String>,
        birthday_total: u64,
    ) {
        let mut settled = Vec::new();
        for (peer, a) in self.attempts.iter_mut() {
            let Some(reason) = why.get(peer) else {
                continue;
            };
            if a.why.as_deref() == Some(reason.as_str()) {
                continue;
            }
            a.why = Some(reason.clone());
            let mut reason = reason.clone();
            truncate(&mut reason, MAX_WHY);
            settled.push(TraversalOutcome {
                peer: *peer,
                outcome: PathOutcome::Relayed,
                time_to_direct_ms: None,
                why: reason,
                birthday_packets: packets(birthday_total, a.birthday_at_start),
            });
        }
        for outcome in settled {
            self.settle(now, outcome);
        }
    }

    fn settle(&mut self, now: Instant, outcome: TraversalOutcome) {
        let peer = outcome.peer;
        if let Some(last) = self.recorded.get(&peer) {
            let same = last.outcome == outcome.outcome && last.why == outcome.why;
            if same && now < last.at + REPEAT_AFTER {
                self.dropped += 1;
                return;
            }
            if now < last.at + PEER_INTERVAL {
                if self.waiting.insert(peer, outcome).is_some() {
                    self.dropped += 1;
                }
                return;
            }
        }
        self.record(now, outcome);
    }

    fn record(&mut self, now: Instant, outcome: TraversalOutcome) {
        if self.ready.len() >= MAX_READY {
            self.dropped += 1;
            return;
        }
        if !self.recorded.contains_key(&outcome.peer) && self.recorded.len() >= MAX_PEERS {
            // Forget peers whose last outcome is old enough not to matter.
            self.recorded
                .retain(|_, r| now < r.at + REPEAT_AFTER.max(PEER_INTERVAL));
            if self.recorded.len() >= MAX_PEERS {
                self.dropped += 1;
                return;
            }
        }
        self.recorded.insert(
            outcome.peer,
            Recorded {
                at: now,
                outcome: outcome.outcome,
                why: outcome.why.clone(),
            },
        );
        self.ready.push_back(outcome);
    }

    /// The next outcome to append, if any.
    pub fn poll_outcome(&mut self, now: Instant) -> Option<TraversalOutcome> {
        let due: Vec<NodeId> = self
            .waiting
            .keys()
            .filter(|p| {
                self.recorded
                    .get(*p)
                    .is_none_or(|r| now >= r.at + PEER_INTERVAL)
            })
            .copied()
            .collect();
        for peer in due {
            if let Some(o) = self.waiting.remove(&peer) {
                self.record(now, o);
            }
        }
        self.ready.pop_front()
    }
}

fn packets(total: u64, start: u64) -> u32 {
    u32::try_from(total.saturating_sub(start)).unwrap_or(u32::MAX)
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    fn id(seed: u8) -> NodeId {
        SecretKey::from_bytes(&[seed; 32]).node_id()
    }

    fn drain(t: &mut OutcomeTracker, now: Instant) -> Vec<TraversalOutcome> {
        std::iter::from_fn(|| t.poll_outcome(now)).collect()
    }

    #[test]
    fn a_relayed_peer_that_goes_direct_records_the_time_to_direct() {
        let t0 = Instant::now();
        let mut t = OutcomeTracker::new();
        let p = id(1);
        t.handle_path(t0, p, PathKind::Relayed, 100);
        assert!(drain(&mut t, t0).is_empty());
        t.handle_path(t0 + Duration::from_millis(830), p, PathKind::Direct, 148);
        let got = drain(&mut t, t0 + Duration::from_secs(1));
        assert_eq!(
            got,
            vec![TraversalOutcome {
                peer: p,
                outcome: PathOutcome::Direct,
                time_to_direct_ms: Some(830),
                why: String::new(),
                birthday_packets: 48,
            }]
        );
        // A direct connection from the start needs no traversal.
        t.handle_path(t0, id(2), PathKind::Direct, 0);
        assert!(drain(&mut t, t0).is_empty());
    }

    #[test]
    fn giving_up_records_why_once_and_a_later_direct_path_records_again() {
        let t0 = Instant::now();
        let mut t = OutcomeTracker::new();
        let p = id(1);
        t.handle_path(t0, p, PathKind::Relayed, 0);
        let why: BTreeMap<NodeId, String> = [(p, "symmetric x symmetric".to_string())].into();
        t.handle_why(t0 + Duration::from_secs(5), &why, 0);
        // Seen again on the next check: the same attempt, nothing new.
        t.handle_why(t0 + Duration::from_secs(7), &why, 0);
        let got = drain(&mut t, t0 + Duration::from_secs(7));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].outcome, PathOutcome::Relayed);
        assert_eq!(got[0].why, "symmetric x symmetric");
        assert_eq!(got[0].time_to_direct_ms, None);
        // Direct 10 s after the start: within the peer's interval, so it
        // waits until 60 s after the last outcome.
        t.handle_path(t0 + Duration::from_secs(10), p, PathKind::Direct, 0);
        assert!(drain(&mut t, t0 + Duration::from_secs(30)).is_empty());
        let got = drain(&mut t, t0 + Duration::from_secs(5) + PEER_INTERVAL);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].outcome, PathOutcome::Direct);
        assert_eq!(got[0].time_to_direct_ms, Some(10_000));
    }

    #[test]
    fn a_flapping_peer_is_deduplicated_and_rate_limited() {
        let t0 = Instant::now();
        let mut t = OutcomeTracker::new();
        let p = id(1);
        let mut recorded = 0;
        // Relayed then direct every 2 s for 10 minutes.
        for i in 0..300u64 {
            let now = t0 + Duration::from_secs(2 * i);
            t.handle_path(now, p, PathKind::Relayed, 0);
            t.handle_path(now + Duration::from_secs(1), p, PathKind::Direct, 0);
            recorded += drain(&mut t, now + Duration::from_secs(1)).len();
        }
        // Each direct outcome differs only in time, not in result or why:
        // one per REPEAT_AFTER.
        assert_eq!(recorded, 1);
        assert!(t.dropped() > 250);
        // A disconnect ends an open attempt without an entry.
        t.handle_path(t0, id(3), PathKind::Relayed, 0);
        t.handle_disconnected(&id(3));
        t.handle_path(t0 + Duration::from_secs(1), id(3), PathKind::Direct, 0);
        assert!(drain(&mut t, t0 + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn a_long_why_is_cut_to_the_bound() {
        let t0 = Instant::now();
        let mut t = OutcomeTracker::new();
        let p = id(1);
        t.handle_path(t0, p, PathKind::Relayed, 0);
        let why: BTreeMap<NodeId, String> = [(p, "é".repeat(200))].into();
        t.handle_why(t0, &why, 0);
        let got = drain(&mut t, t0);
        assert!(got[0].why.len() <= MAX_WHY && !got[0].why.is_empty());
    }
}
