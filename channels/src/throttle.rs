//! Per-peer throttling of authentication failures. Each peer may fail
//! [`FAILURE_BURST`] token checks at once and then one every
//! [`FAILURE_REFILL_MS`]; past that, its links are denied `throttled`
//! before any signature is checked. At most [`MAX_TRACKED`] peers are
//! remembered; a peer whose allowance is full again is forgotten.

use std::collections::HashMap;

use relay_proto::NodeId;

use crate::rate::Bucket;

/// Failures a peer may have in a burst.
pub const FAILURE_BURST: u64 = 5;
/// One more failure allowed per this many milliseconds.
pub const FAILURE_REFILL_MS: u64 = 2000;
/// Most peers remembered.
pub const MAX_TRACKED: usize = 4096;

/// The failure allowance of every peer that failed lately.
#[derive(Debug, Default)]
pub struct Throttle {
    peers: HashMap<NodeId, Bucket>,
    throttled: u64,
}

fn bucket(now_ms: u64) -> Bucket {
    // `Bucket` counts per second; FAILURE_REFILL_MS is at least a second.
    Bucket::new(1, FAILURE_BURST, now_ms).slowed(FAILURE_REFILL_MS / 1000)
}

impl Throttle {
    /// Whether `peer` may try to authenticate now.
    pub fn allows(&mut self, peer: &NodeId, now_ms: u64) -> bool {
        let ok = self.peers.get_mut(peer).is_none_or(|b| b.has(now_ms));
        if !ok {
            self.throttled += 1;
        }
        ok
    }

    /// `peer` failed a check.
    pub fn failed(&mut self, peer: &NodeId, now_ms: u64) {
        if !self.peers.contains_key(peer) && self.peers.len() >= MAX_TRACKED {
            self.peers.retain(|_, b| !b.is_full(now_ms));
            if self.peers.len() >= MAX_TRACKED {
                // Every tracked peer is failing: the newcomer starts with
                // no allowance rather than evicting a failing peer.
                return;
            }
        }
        self.peers
            .entry(*peer)
            .or_insert_with(|| bucket(now_ms))
            .take(now_ms);
    }

    /// Checks refused as throttled so far.
    pub fn throttled(&self) -> u64 {
        self.throttled
    }

    /// Peers remembered.
    pub fn tracked(&self) -> usize {
        self.peers.len()
    }
}
