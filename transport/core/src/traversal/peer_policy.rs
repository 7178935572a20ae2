//! Per-peer traversal scheduling: when to ask for an introduction, how
//! long to back off after a failed punch, whether to take a direct path a
//! punch found, which relay to fall back to when it dies, and when a peer
//! that reaches us relayed means our direct path to it is dead.
//!
//! Sans-IO like the rest of traversal: the driver feeds connection facts,
//! punch outcomes and traffic counters with `handle_*`, asks for due
//! introductions with [`PeerPolicy::poll_attempt`], drains
//! [`PeerPolicy::poll_action`], and wakes at [`PeerPolicy::poll_timeout`].
//! No sockets, no clock: every input carries `now`.
//!
//! ## Decisions and constants (see [`PolicyConfig`])
//!
//! - A relayed connection asks for an introduction at once on the dialing
//!   side and `acceptor_delay` (2 s) later on the accepting side, so that
//!   one side asks, not both.
//! - A punch that fails (or an introduction refused at once) is retried
//!   after a backoff that starts at `retry_min` (15 s) and doubles up to
//!   `retry_max` (300 s); a new connection, a direct path found, or an
//!   explicit request starts it over.
//! - A due attempt for a peer whose punch runs, or that has a direct path
//!   already, is checked again `recheck` (1 s) later; one not relayed any
//!   more is dropped.
//! - A punched address is taken when the connection is relayed, or on the
//!   direct address an earlier punch found (the peer's address changed);
//!   a connection already direct elsewhere (dialed by address) keeps its
//!   path and the punched one is forgotten.
//! - A lost direct path falls back to the relay it came from while that
//!   relay still serves us, else to the first registered relay that is not
//!   the peer itself; the next punch follows `retry_after_loss` (2 s)
//!   later, since the usual causes (a NAT that rebound, a peer that moved)
//!   leave a fresh punch good odds.
//! - Traffic counters read by the driver once per tick: receive batches on
//!   the direct path that grew mean the path is busy (no keepalive
//!   needed); relayed packets from a peer we think is direct that grew
//!   mean its side lost the path, so ours is probed at once.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay_proto::NodeId;

/// The constants of [`PeerPolicy`] (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConfig {
    /// How long the accepting side leaves the dialing side to ask first.
    pub acceptor_delay: Duration,
    /// First delay before asking again after a punch failed.
    pub retry_min: Duration,
    /// Longest delay between punch attempts.
    pub retry_max: Duration,
    /// Delay before punching again after a working direct path was lost.
    pub retry_after_loss: Duration,
    /// Delay before checking again a due peer that was busy.
    pub recheck: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            acceptor_delay: Duration::from_secs(2),
            retry_min: Duration::from_secs(15),
            retry_max: Duration::from_secs(300),
            retry_after_loss: Duration::from_secs(2),
            recheck: Duration::from_secs(1),
        }
    }
}

/// Where a peer's live connection runs now, as the driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerPath {
    /// On a direct path to this address.
    Direct(SocketAddr),
    /// Through this relay.
    Relayed(NodeId),
    /// No live connection (or no path known).
    None,
}

/// Whether a due attempt for a peer can go now (the driver's answer to
/// [`PeerPolicy::poll_attempt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Relayed through this relay, no punch running, no direct path.
    Via(NodeId),
    /// A punch runs or a direct path exists: check again later.
    Busy,
    /// Not relayed (direct, or gone): nothing to do.
    NotRelayed,
}

/// An introduction to ask for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The peer to go direct to.
    pub peer: NodeId,
    /// The relay (connected to both) to ask.
    pub relay: NodeId,
}

/// What to do with the direct address a punch found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectMove {
    /// Move the live connection there.
    Move,
    /// The connection is there already.
    Stay,
    /// Keep the connection's own direct path; the traversal core should
    /// forget the punched one.
    Forget,
}

/// Where a connection whose direct path died goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallBack {
    /// The connection is not on that path (any more): nothing to do.
    NotOnPath,
    /// No relay serves us: the connection stays and waits.
    NoRelay,
    /// Move it through this relay.
    Via(NodeId),
}

/// Something the driver should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyAction {
    /// The peer's direct path carried traffic since the last report
    /// (`Traversal::handle_path_activity`).
    PathActive {
        /// The peer.
        peer: NodeId,
    },
    /// The peer reaches us relayed while we think we are direct: probe
    /// the direct path now (`Traversal::suspect_direct_path`).
    SuspectDirect {
        /// The peer.
        peer: NodeId,
    },
}

/// Traffic counters of one peer, read by the driver (cumulative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Traffic {
    /// Receive batches seen on the peer's direct path, if it has one.
    pub direct_rx: Option<u64>,
    /// Relayed packets from the peer while its path is direct, if it is.
    pub relayed_while_direct: Option<u64>,
}

/// What the policy keeps per connected peer.
#[derive(Debug, Clone, Default)]
struct Track {
    /// When to ask for an introduction next (relayed peers).
    next_try: Option<Instant>,
    /// Delay after the next failure.
    backoff: Duration,
    /// The relay a direct path came from (the fallback).
    backup: Option<NodeId>,
    /// Last direct receive counter seen.
    rx: u64,
    /// Last relayed-while-direct counter seen.
    relayed_rx: u64,
    /// The direct address we moved the connection to (a punch's).
    punched: Option<SocketAddr>,
}

/// The per-peer traversal policy of one node (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    config: PolicyConfig,
    peers: BTreeMap<NodeId, Track>,
    actions: VecDeque<PolicyAction>,
}

impl PeerPolicy {
    /// A policy with `config`.
    pub fn new(config: PolicyConfig) -> Self {
        Self {
            config,
            peers: BTreeMap::new(),
            actions: VecDeque::new(),
        }
    }

    /// The constants in use.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The peers tracked (connected).
    pub fn peers(&self) -> impl Iterator<Item = &NodeId> {
        self.peers.keys()
    }

    /// When an introduction for `peer` is due next, if one is planned.
    pub fn next_try(&self, peer: &NodeId) -> Option<Instant> {
        self.peers.get(peer).and_then(|t| t.next_try)
    }

    /// A connection to `peer` is up (`fresh`), or its facts changed:
    /// `relayed` says whether it runs through a relay now, `outbound`
    /// whether we dialed it.
    pub fn handle_connected(
        &mut self,
        now: Instant,
        peer: NodeId,
        relayed: bool,
        outbound: bool,
        fresh: bool,
    ) {
        let config = self.config;
        let track = self.peers.entry(peer).or_default();
        if fresh {
            track.backoff = config.retry_min;
        }
        if relayed && (fresh || track.next_try.is_none()) {
            track.next_try = Some(if outbound {
                now
            } else {
                now + config.acceptor_delay
            });
        }
    }

    /// The connection to `peer` is gone: forget it.
    pub fn handle_disconnected(&mut self, peer: &NodeId) {
        self.peers.remove(peer);
    }

    /// Try to go direct to `peer` now (an explicit request, or a re-punch
    /// after our address changed), with the backoff started over.
    pub fn handle_request(&mut self, now: Instant, peer: NodeId) {
        let track = self.peers.entry(peer).or_default();
        track.next_try = Some(now);
        track.backoff = self.config.retry_min;
    }

    /// A punch towards `peer` failed: ask again after the backoff.
    pub fn handle_punch_failed(&mut self, now: Instant, peer: &NodeId) {
        let max = self.config.retry_max;
        if let Some(track) = self.peers.get_mut(peer) {
            back_off(track, now, max);
        }
    }

    /// The traversal core refused the attempt [`Self::poll_attempt`] gave
    /// (no introducer yet, say): ask again after the backoff.
    pub fn handle_attempt_refused(&mut self, now: Instant, peer: &NodeId) {
        self.handle_punch_failed(now, peer);
    }

    /// The next introduction due at `now`, if any; `ready` tells, for a
    /// due peer, whether its connection can take one.
    pub fn poll_attempt(
        &mut self,
        now: Instant,
        ready: impl Fn(&NodeId) -> Readiness,
    ) -> Option<Attempt> {
        let recheck = self.config.recheck;
        for (peer, track) in &mut self.peers {
            if track.next_try.is_none_or(|t| t > now) {
                continue;
            }
            match ready(peer) {
                Readiness::NotRelayed => track.next_try = None,
                Readiness::Busy => track.next_try = Some(now + recheck),
                Readiness::Via(relay) => {
                    track.next_try = None;
                    return Some(Attempt { peer: *peer, relay });
                }
            }
        }
        None
    }

    /// A punch found `addr` for `peer`, whose connection runs on
    /// `current`: take it or not (see the module docs).
    pub fn handle_direct_found(
        &mut self,
        peer: &NodeId,
        addr: SocketAddr,
        current: PeerPath,
    ) -> DirectMove {
        let retry_min = self.config.retry_min;
        let track = self.peers.get_mut(peer);
        match current {
            PeerPath::Relayed(relay) => {
                if let Some(track) = track {
                    track.backup = Some(relay);
                    track.next_try = None;
                    track.backoff = retry_min;
                }
                DirectMove::Move
            }
            PeerPath::Direct(now) if now == addr => DirectMove::Stay,
            PeerPath::Direct(now) if track.is_some_and(|t| t.punched == Some(now)) => {
                DirectMove::Move
            }
            PeerPath::Direct(_) | PeerPath::None => DirectMove::Forget,
        }
    }

    /// The connection to `peer` moved to the punched address `addr`.
    pub fn handle_moved_direct(&mut self, peer: &NodeId, addr: SocketAddr) {
        if let Some(track) = self.peers.get_mut(peer) {
            track.punched = Some(addr);
        }
    }

    /// The direct path to `peer` at `addr` stopped answering; the
    /// connection runs on `current` and `registered` relays serve us.
    pub fn handle_direct_lost(
        &self,
        peer: &NodeId,
        addr: SocketAddr,
        current: PeerPath,
        registered: &[NodeId],
    ) -> FallBack {
        if current != PeerPath::Direct(addr) {
            return FallBack::NotOnPath;
        }
        let backup = self.peers.get(peer).and_then(|t| t.backup);
        let relay = backup
            .filter(|r| registered.contains(r))
            .or_else(|| registered.iter().copied().find(|r| r != peer));
        match relay {
            Some(relay) => FallBack::Via(relay),
            None => FallBack::NoRelay,
        }
    }

    /// The connection to `peer` fell back to a relay: punch again soon.
    pub fn handle_fell_back(&mut self, now: Instant, peer: &NodeId) {
        let config = self.config;
        if let Some(track) = self.peers.get_mut(peer) {
            track.next_try = Some(now + config.retry_after_loss);
            track.backoff = config.retry_min;
        }
    }

    /// `peer`'s traffic counters, read once per tick.
    pub fn handle_traffic(&mut self, peer: &NodeId, traffic: Traffic) {
        let Some(track) = self.peers.get_mut(peer) else {
            return;
        };
        if let Some(rx) = traffic.direct_rx {
            if rx > track.rx {
                self.actions
                    .push_back(PolicyAction::PathActive { peer: *peer });
            }
            track.rx = rx;
        }
        if let Some(relayed) = traffic.relayed_while_direct {
            if relayed > track.relayed_rx {
                self.actions
                    .push_back(PolicyAction::SuspectDirect { peer: *peer });
            }
            track.relayed_rx = relayed;
        }
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<PolicyAction> {
        self.actions.pop_front()
    }

    /// The earliest due introduction.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers.values().filter_map(|t| t.next_try).min()
    }
}

/// Schedules the next try after the current backoff and doubles it.
fn back_off(track: &mut Track, now: Instant, max: Duration) {
    track.next_try = Some(now + track.backoff);
    track.backoff = track.backoff.saturating_mul(2).min(max);
}

#[cfg(test)]
#[path = "peer_policy_tests.rs"]
mod tests;
