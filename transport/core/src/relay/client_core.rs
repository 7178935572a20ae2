//! The relay client's decisions, sans-IO: which peers relay for us, when
//! to (re-)register with them, which relay carries a relayed path, and
//! where a path goes when its relay is lost or reports its peer gone.
//!
//! The driver (`client`) feeds offers, confirmations, refusals, losses
//! and peer-gone reports with `handle_*` (with `now` where time matters)
//! and carries out the answers: send a registration, move a path, fail a
//! dial, close a connection. No sockets, no clock, no tokio.
//!
//! ## Decisions and constants (see [`RelayClientConfig`])
//!
//! - A peer that offers relaying is a candidate; we register at once.
//!   While unconfirmed, repeated offers (the relay repeats them until we
//!   register) re-register no more often than a backoff that starts at
//!   `register_min` (1 s) and doubles to `register_max` (30 s). An offer
//!   over a new connection (new frame keys) re-registers at once.
//! - A relay that refuses us is forgotten and not registered with again
//!   for `refused_min` (10 s), doubling to `register_max` per refusal in a
//!   row; a confirmation clears that.
//! - A relayed path uses the first registered relay (lowest NodeId) that
//!   is not excluded; dials exclude the peer itself and every relay that
//!   already reported it unknown.
//! - A lost relay's paths move to the first other registered relay at
//!   once (failover); with none, they stay and wait, and the next relay
//!   that registers adopts every path left on a relay we no longer have.
//! - A relay that reports a peer gone moves that peer's path (when it ran
//!   there) to another relay not tried yet; with none, a dial in progress
//!   fails as unreachable and a live connection is closed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use relay_proto::wire::control::RelayLimitsMsg;
use relay_proto::NodeId;

/// The constants of [`RelayClientCore`] (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayClientConfig {
    /// First wait before registering again with an unconfirmed relay.
    pub register_min: Duration,
    /// Longest wait between registrations, and after refusals.
    pub register_max: Duration,
    /// First wait before registering again with a relay that refused.
    pub refused_min: Duration,
}

impl Default for RelayClientConfig {
    fn default() -> Self {
        Self {
            register_min: Duration::from_secs(1),
            register_max: Duration::from_secs(30),
            refused_min: Duration::from_secs(10),
        }
    }
}

/// What we know of one relay.
#[derive(Debug, Clone, Copy)]
struct Relay {
    registered: bool,
    limits: Option<RelayLimitsMsg>,
    /// Earliest time to register again while unconfirmed.
    next_register: Instant,
    /// Wait after the next registration while unconfirmed.
    backoff: Duration,
}

/// A relay that refused us.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    until: Instant,
    backoff: Duration,
}

/// What to do when a relay reports a peer gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneAction {
    /// Report it; the peer's path does not run through that relay.
    Report,
    /// Report it and move the peer's path to this relay.
    MoveTo(NodeId),
    /// Report it and fail the dial in progress: no relay reaches the peer.
    FailDial,
    /// Report it and close the connection: no relay reaches the peer.
    Close,
}

/// The relay client's state of one node (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct RelayClientCore {
    config: RelayClientConfig,
    relays: BTreeMap<NodeId, Relay>,
    refused: BTreeMap<NodeId, Refusal>,
    /// Relayed dials in progress and the relays that did not know the
    /// peer.
    dials: BTreeMap<NodeId, BTreeSet<NodeId>>,
}

impl RelayClientCore {
    /// A core with `config`.
    pub fn new(config: RelayClientConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Relays that confirmed our registration, lowest NodeId first.
    pub fn registered(&self) -> Vec<NodeId> {
        self.relays
            .iter()
            .filter(|(_, r)| r.registered)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether `relay` confirmed our registration.
    pub fn is_registered(&self, relay: &NodeId) -> bool {
        self.relays.get(relay).is_some_and(|r| r.registered)
    }

    /// Whether `relay` is a relay we know (registered or not).
    pub fn knows(&self, relay: &NodeId) -> bool {
        self.relays.contains_key(relay)
    }

    /// The limits `relay` announced, once registered.
    pub fn limits(&self, relay: &NodeId) -> Option<RelayLimitsMsg> {
        self.relays.get(relay).and_then(|r| r.limits)
    }

    /// Whether a registration awaits confirmation.
    pub fn pending(&self) -> bool {
        self.relays.values().any(|r| !r.registered)
    }

    /// The first registered relay not excluded.
    pub fn pick(&self, exclude: impl Fn(&NodeId) -> bool) -> Option<NodeId> {
        self.relays
            .iter()
            .find(|(id, r)| r.registered && !exclude(id))
            .map(|(id, _)| *id)
    }

    /// `relay` offers relaying; `new_keys` when over another connection
    /// than the one it knows us by. Returns whether to register now.
    pub fn handle_offer(&mut self, now: Instant, relay: NodeId, new_keys: bool) -> bool {
        if self.refused.get(&relay).is_some_and(|r| now < r.until) {
            return false;
        }
        let min = self.config.register_min;
        let max = self.config.register_max;
        let entry = self.relays.entry(relay).or_insert(Relay {
            registered: false,
            limits: None,
            next_register: now,
            backoff: min,
        });
        if new_keys {
            entry.next_register = now + entry.backoff;
            return true;
        }
        if entry.registered || now < entry.next_register {
            return false;
        }
        entry.next_register = now + entry.backoff;
        entry.backoff = entry.backoff.saturating_mul(2).min(max);
        true
    }

    /// `relay` confirmed our registration. Returns whether it is newly
    /// registered (then paths left on lost relays move to it: see
    /// [`Self::adopts`]).
    pub fn handle_registered(
        &mut self,
        now: Instant,
        relay: NodeId,
        limits: RelayLimitsMsg,
    ) -> bool {
        self.refused.remove(&relay);
        let entry = self.relays.entry(relay).or_insert(Relay {
            registered: false,
            limits: None,
            next_register: now,
            backoff: self.config.register_min,
        });
        let new = !entry.registered;
        entry.registered = true;
        entry.limits = Some(limits);
        entry.backoff = self.config.register_min;
        new
    }

    /// `relay` refused to serve us: forget it, and hold off registering
    /// with it again. Returns whether it was known.
    pub fn handle_refused(&mut self, now: Instant, relay: NodeId) -> bool {
        let config = self.config;
        let backoff = match self.refused.get(&relay) {
            Some(r) => r.backoff.saturating_mul(2).min(config.register_max),
            None => config.refused_min.min(config.register_max),
        };
        self.refused.insert(
            relay,
            Refusal {
                until: now + backoff,
                backoff,
            },
        );
        self.relays.remove(&relay).is_some()
    }

    /// Our connection to `relay` closed. `None` when it was no relay of
    /// ours; else the relay its paths fail over to, if any.
    pub fn handle_lost(&mut self, relay: &NodeId) -> Option<Option<NodeId>> {
        self.relays.remove(relay)?;
        Some(self.pick(|id| id == relay))
    }

    /// Whether a path left on `old` moves to a newly registered relay:
    /// `old` is no registered relay of ours any more.
    pub fn adopts(&self, old: &NodeId) -> bool {
        !self.is_registered(old)
    }

    /// The relay for a new relayed dial to `node`, if one is registered.
    pub fn pick_for_dial(&self, node: &NodeId) -> Option<NodeId> {
        self.pick(|id| id == node)
    }

    /// A relayed dial to `node` starts.
    pub fn start_dial(&mut self, node: NodeId) {
        self.dials.insert(node, BTreeSet::new());
    }

    /// The relayed dial to `node` ended.
    pub fn end_dial(&mut self, node: &NodeId) {
        self.dials.remove(node);
    }

    /// `relay` reports `node` gone; `carried` says whether `node`'s path
    /// runs through `relay` now. `None`: `relay` is no relay of ours, so
    /// the report is ignored.
    pub fn handle_peer_gone(
        &mut self,
        relay: NodeId,
        node: &NodeId,
        carried: bool,
    ) -> Option<GoneAction> {
        if !self.relays.contains_key(&relay) {
            return None;
        }
        if !carried {
            return Some(GoneAction::Report);
        }
        let tried = self.dials.get_mut(node).map(|t| {
            t.insert(relay);
            t.clone()
        });
        let alt = self.pick(|id| *id == relay || tried.as_ref().is_some_and(|t| t.contains(id)));
        Some(match (alt, tried) {
            (Some(alt), _) => GoneAction::MoveTo(alt),
            (None, Some(_)) => GoneAction::FailDial,
            (None, None) => GoneAction::Close,
        })
    }
}

#[cfg(test)]
#[path = "client_core_tests.rs"]
mod tests;
