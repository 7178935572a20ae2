//! Peers to dial again after a restart: which, when, and how often.
//!
//! A node that crashed (`kill -9`, a power cut) leaves its peers holding
//! connections to a process that is gone. They learn of it when one of
//! their packets draws the restarted node's stateless reset, at their next
//! keep-alive (5 s by default), unless the restarted node dials them: its
//! new connection makes a peer send on its stale one at once, the reset
//! comes back within an RTT and the pair is reconnected well within 2 s.
//! A node that dials nobody by configuration (a public relay whose clients
//! dialed it) would otherwise leave every client waiting for its
//! keep-alive. So the node remembers the peers it was connected to, at the
//! address it saw them at ([`crate::recent_peers_store`]), and dials them
//! once more when it starts.
//!
//! Sans-IO: the driver ([`crate::recent_peers_driver`]) feeds the saved
//! list at start and connection facts with `handle_*`, carries out what
//! [`RecentPeers::poll_action`] asks (a dial, a save) and wakes at
//! [`RecentPeers::poll_timeout`]. Every input carries `now` (monotonic) and,
//! where something is remembered across restarts, `unix` (wall-clock
//! seconds).
//!
//! Decisions (constants in [`RecentConfig`]):
//!
//! - **Which.** Saved peers seen within `max_age` (7 days), most recent
//!   first, at most `max_dials` (16), never one the node dials anyway
//!   (`--peer`, `bootstrap.json`: the caller leaves them out) nor itself.
//!   Only direct addresses are remembered: a relayed peer has none of its
//!   own, and the relay it went through is remembered itself.
//! - **When.** At once at start. A failed dial is retried after
//!   `first_retry` (250 ms), doubling up to `max_retry` (4 s), `attempts`
//!   (4) times in all; a peer that connects (either way) is done.
//! - **Remembering.** Every connection with a direct address updates its
//!   peer's entry (`last_seen`, address). The list is saved `save_delay`
//!   (1 s) after the first change since the last save, so that a crash
//!   soon after a connection still finds it, without a write per event.
//!   It keeps the `max_peers` (64) most recently seen.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay_proto::NodeId;
use serde::{Deserialize, Serialize};

/// The constants of [`RecentPeers`] (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentConfig {
    /// Peers remembered at most.
    pub max_peers: usize,
    /// Peers dialed at start at most.
    pub max_dials: usize,
    /// Saved peers older than this (seconds) are not dialed.
    pub max_age_s: u64,
    /// Dial attempts per peer at start.
    pub attempts: u32,
    /// Delay before the second attempt.
    pub first_retry: Duration,
    /// Longest delay between attempts.
    pub max_retry: Duration,
    /// Delay from a change to its save.
    pub save_delay: Duration,
}

impl Default for RecentConfig {
    fn default() -> Self {
        Self {
            max_peers: 64,
            max_dials: 16,
            max_age_s: 7 * 24 * 3600,
            attempts: 4,
            first_retry: Duration::from_millis(250),
            max_retry: Duration::from_secs(4),
            save_delay: Duration::from_secs(1),
        }
    }
}

/// One remembered peer (an entry of `DIR/recent_peers.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentPeer {
    /// The peer's identity (canonical text in JSON).
    #[serde(with = "crate::bootstrap::node_id_text")]
    pub node_id: NodeId,
    /// The direct address we last saw it at.
    pub addr: SocketAddr,
    /// When (Unix seconds) we last connected to it there.
    pub last_seen: u64,
}

/// Something the driver should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecentAction {
    /// Dial `peer` at `addr` once; report the outcome.
    Dial {
        /// The peer.
        peer: NodeId,
        /// Where.
        addr: SocketAddr,
    },
    /// Write this list to the store.
    Save(Vec<RecentPeer>),
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    addr: SocketAddr,
    /// Attempts made.
    tried: u32,
    /// When the next attempt is due; `None` while one runs.
    next: Option<Instant>,
    backoff: Duration,
}

/// The recent-peers core of one node (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct RecentPeers {
    config: RecentConfig,
    known: BTreeMap<NodeId, RecentPeer>,
    plans: BTreeMap<NodeId, Plan>,
    save_at: Option<Instant>,
    actions: VecDeque<RecentAction>,
}

impl RecentPeers {
    /// A core with `config` and nothing remembered.
    pub fn new(config: RecentConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The node starts: `saved` is what the store held; `skip` says which
    /// peers are dialed anyway (configured peers, ourselves). Plans a dial
    /// of each recent one, due at once.
    pub fn handle_start(
        &mut self,
        now: Instant,
        unix: u64,
        saved: Vec<RecentPeer>,
        skip: impl Fn(&NodeId) -> bool,
    ) {
        for peer in saved {
            let newer = self
                .known
                .get(&peer.node_id)
                .is_none_or(|k| k.last_seen < peer.last_seen);
            if newer {
                self.known.insert(peer.node_id, peer);
            }
        }
        self.trim();
        let mut due: Vec<&RecentPeer> = self
            .known
            .values()
            .filter(|p| unix.saturating_sub(p.last_seen) <= self.config.max_age_s)
            .filter(|p| !skip(&p.node_id))
            .collect();
        due.sort_by_key(|p| std::cmp::Reverse(p.last_seen));
        for peer in due.into_iter().take(self.config.max_dials) {
            self.plans.insert(
                peer.node_id,
                Plan {
                    addr: peer.addr,
                    tried: 0,
                    next: Some(now),
                    backoff: self.config.first_retry,
                },
            );
        }
    }

    /// A connection to `peer` is up (either direction), at the direct
    /// address `addr` when it has one: remember it, stop dialing it.
    pub fn handle_connected(
        &mut self,
        now: Instant,
        unix: u64,
        peer: NodeId,
        addr: Option<SocketAddr>,
    ) {
        self.plans.remove(&peer);
        let Some(addr) = addr else {
            return;
        };
        let entry = RecentPeer {
            node_id: peer,
            addr,
            last_seen: unix,
        };
        let changed = self
            .known
            .get(&peer)
            .is_none_or(|k| k.addr != addr || k.last_seen != unix);
        if changed {
            self.known.insert(peer, entry);
            self.trim();
            self.save_at.get_or_insert(now + self.config.save_delay);
        }
    }

    /// A dial [`Self::poll_action`] asked for failed.
    pub fn handle_dial_failed(&mut self, now: Instant, peer: &NodeId) {
        let (attempts, max) = (self.config.attempts, self.config.max_retry);
        let Some(plan) = self.plans.get_mut(peer) else {
            return;
        };
        if plan.tried >= attempts {
            self.plans.remove(peer);
            return;
        }
        plan.next = Some(now + plan.backoff);
        plan.backoff = plan.backoff.saturating_mul(2).min(max);
    }

    /// The next thing to do at `now`.
    pub fn poll_action(&mut self, now: Instant) -> Option<RecentAction> {
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        if self.save_at.is_some_and(|t| t <= now) {
            self.save_at = None;
            return Some(RecentAction::Save(self.list()));
        }
        let (peer, plan) = self
            .plans
            .iter_mut()
            .find(|(_, p)| p.next.is_some_and(|t| t <= now))?;
        plan.next = None;
        plan.tried += 1;
        Some(RecentAction::Dial {
            peer: *peer,
            addr: plan.addr,
        })
    }

    /// The node stops: the list to save if it changed since the last
    /// save (a save still waiting for its delay).
    pub fn handle_shutdown(&mut self) -> Option<Vec<RecentPeer>> {
        self.save_at.take().map(|_| self.list())
    }

    /// When [`Self::poll_action`] has something next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.plans
            .values()
            .filter_map(|p| p.next)
            .chain(self.save_at)
            .min()
    }

    /// The peers being dialed.
    pub fn dialing(&self) -> impl Iterator<Item = &NodeId> {
        self.plans.keys()
    }

    /// Everything remembered, most recent first.
    pub fn list(&self) -> Vec<RecentPeer> {
        let mut list: Vec<RecentPeer> = self.known.values().cloned().collect();
        list.sort_by_key(|p| std::cmp::Reverse(p.last_seen));
        list
    }

    /// Keeps the `max_peers` most recently seen.
    fn trim(&mut self) {
        let max = self.config.max_peers;
        if self.known.len() <= max {
            return;
        }
        let keep: Vec<RecentPeer> = self.list().into_iter().take(max).collect();
        self.known = keep.into_iter().map(|p| (p.node_id, p)).collect();
    }
}

#[cfg(test)]
#[path = "recent_peers_tests.rs"]
mod tests;
