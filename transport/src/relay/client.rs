//! The client side of relaying: which connected peers relay for us, and
//! what happens to relayed paths when relays come and go.
//!
//! - Every connected peer that offers relaying (`RelayOffer` on the control
//!   channel) is a relay candidate: we accept relay-recv frames from it and
//!   register (`RelayRegister`); once it confirms (`RelayRegistered`) it may
//!   carry our relayed paths. Nothing needs configuring beyond having the
//!   relay among our peers. Frames both ways are authenticated with keys
//!   from the connection the offer came on (see [`crate::relay::auth`]);
//!   an offer on a new connection re-registers under its keys.
//! - A dial by NodeId alone picks a registered relay ([`pick_for_dial`]);
//!   if that relay answers "unknown peer", the dial moves to the next
//!   relay, and fails with `peer-not-reachable` when none is left.
//! - When a relay goes away, every path relayed through it moves to
//!   another registered relay (failover) under the live connection: no new
//!   handshake. With no other relay the path stays and the connection waits
//!   (its idle timeout decides); a relay registered later takes such
//!   orphaned paths over.
//! - When a relay reports a peer gone, a [`crate::PeerEvent::PeerGone`] is
//!   emitted; a connection relayed through that relay moves to another
//!   relay, or, with none left, is closed with reason `peer-gone: ...`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, MutexGuard};

use relay_proto::wire::control::{GoneReason, RefuseReason, RelayLimitsMsg};
use relay_proto::NodeId;
use tokio::sync::Notify;

use crate::handles::RelayClientHost;
use crate::relay::auth::FrameKeys;
use crate::relay::ConnectionKeys;
use crate::socket::Path;
use crate::{DialError, DialErrorKind, PeerEvent};

/// The endpoint, as the relay client sees it.
type Host = dyn RelayClientHost<Clients = RelayClients>;

#[derive(Debug, Clone, Copy)]
struct RelayState {
    registered: bool,
    limits: Option<RelayLimitsMsg>,
}

/// A dial through relays in progress.
#[derive(Debug)]
struct RelayDial {
    tried: HashSet<NodeId>,
    unreachable: Arc<Notify>,
}

/// The relays we know and the relayed dials in progress.
#[derive(Debug, Default)]
pub(crate) struct RelayClients {
    relays: BTreeMap<NodeId, RelayState>,
    dials: HashMap<NodeId, RelayDial>,
}

impl RelayClients {
    /// The first registered relay not excluded.
    fn pick(&self, exclude: impl Fn(&NodeId) -> bool) -> Option<NodeId> {
        self.relays
            .iter()
            .find(|(id, s)| s.registered && !exclude(id))
            .map(|(id, _)| *id)
    }

    /// Relays that confirmed our registration.
    pub(crate) fn registered(&self) -> Vec<NodeId> {
        self.relays
            .iter()
            .filter(|(_, s)| s.registered)
            .map(|(id, _)| *id)
            .collect()
    }

    fn pending(&self) -> bool {
        self.relays.values().any(|s| !s.registered)
    }
}

fn clients(shared: &Host) -> MutexGuard<'_, RelayClients> {
    shared.relay_clients()
}

fn changed(shared: &Host) {
    shared
        .relays_changed()
        .send_modify(|v| *v = v.wrapping_add(1));
}

/// Takes the frame keys of our connection to `relay` (see
/// [`crate::relay::auth`]); returns whether they are new (another
/// connection than the one the relay knows us by).
fn take_keys(shared: &Host, relay: NodeId, conn: &quinn::Connection) -> bool {
    match FrameKeys::from_connection(conn) {
        Some(keys) => shared.socket().add_relay(relay, keys),
        None => {
            tracing::debug!(relay = %relay.fmt_short(), "no frame keys from the relay connection");
            false
        }
    }
}

/// A peer offers relaying over `conn`: accept its relay-recv frames
/// (authenticated with `conn`'s keys) and register. Returns whether to
/// send a registration (not yet registered, or registered over another
/// connection).
pub(crate) fn on_offer(shared: &Host, relay: NodeId, conn: &quinn::Connection) -> bool {
    let new_keys = take_keys(shared, relay, conn);
    let register = {
        let mut c = clients(shared);
        let state = c.relays.entry(relay).or_insert(RelayState {
            registered: false,
            limits: None,
        });
        !state.registered || new_keys
    };
    if register {
        changed(shared);
    }
    register
}

/// A relay confirmed our registration over `conn`.
pub(crate) fn on_registered(
    shared: &Host,
    relay: NodeId,
    conn: &quinn::Connection,
    limits: RelayLimitsMsg,
) {
    let new = {
        let mut c = clients(shared);
        let state = c.relays.entry(relay).or_insert(RelayState {
            registered: false,
            limits: None,
        });
        let new = !state.registered;
        state.registered = true;
        state.limits = Some(limits);
        new
    };
    take_keys(shared, relay, conn);
    if !new {
        return;
    }
    tracing::info!(relay = %relay.fmt_short(), rate = limits.rate_bytes_per_sec, "registered with relay");
    changed(shared);
    // Paths left on a relay that is gone move here.
    let registered: HashSet<NodeId> = clients(shared).registered().into_iter().collect();
    for (node, path) in shared.relayed_peers() {
        if let Path::Relayed { relay: old } = path {
            if !registered.contains(&old) {
                move_to(shared, node, relay);
            }
        }
    }
}

/// A relay refused to serve us.
pub(crate) fn on_refused(shared: &Host, relay: NodeId, reason: RefuseReason) {
    tracing::debug!(relay = %relay.fmt_short(), reason = reason.as_str(), "relay refused registration");
    forget(shared, &relay);
}

fn forget(shared: &Host, relay: &NodeId) -> bool {
    let known = clients(shared).relays.remove(relay).is_some();
    shared.socket().remove_relay(relay);
    if known {
        changed(shared);
    }
    known
}

/// Moves `node`'s path onto `relay`, live or still dialing.
fn move_to(shared: &Host, node: NodeId, relay: NodeId) {
    let path = Path::Relayed { relay };
    if shared.change_path(node, path).is_err() {
        if let Some(mapped) = shared.socket().mapped_addr(&node) {
            shared.socket().set_path(&mapped, path);
        }
    }
}

/// The relay carrying `node`'s path now, if any.
fn relay_of(shared: &Host, node: &NodeId) -> Option<NodeId> {
    let mapped = shared.socket().mapped_addr(node)?;
    match shared.socket().path(&mapped)? {
        Path::Relayed { relay } => Some(relay),
        Path::Direct(_) => None,
    }
}

/// Our connection to a relay closed: move every path it carried.
pub(crate) fn on_relay_lost(shared: &Host, relay: NodeId) {
    if !forget(shared, &relay) {
        return;
    }
    tracing::info!(relay = %relay.fmt_short(), "relay lost");
    let alt = clients(shared).pick(|id| *id == relay);
    // Live connections, dials, and inbound handshakes still in progress.
    for (mapped, node) in shared.socket().relayed_through(&relay) {
        let Some(alt) = alt else {
            tracing::info!(peer = ?node.map(|n| n.fmt_short()), "relay lost and no other relay; waiting");
            continue;
        };
        let live = node.filter(|n| shared.live(n).is_some_and(|l| l.mapped() == mapped));
        match live {
            Some(node) => {
                tracing::info!(peer = %node.fmt_short(), from = %relay.fmt_short(), to = %alt.fmt_short(), "relay failover");
                move_to(shared, node, alt);
            }
            None => {
                shared
                    .socket()
                    .set_path(&mapped, Path::Relayed { relay: alt });
            }
        }
    }
}

/// A relay reports `node` gone.
pub(crate) fn on_peer_gone(shared: &Host, relay: NodeId, node: NodeId, reason: GoneReason) {
    if !clients(shared).relays.contains_key(&relay) {
        tracing::debug!(from = %relay.fmt_short(), "peer-gone from a node we do not use as a relay; ignored");
        return;
    }
    tracing::debug!(relay = %relay.fmt_short(), peer = %node.fmt_short(), reason = reason.as_str(), "peer gone");
    shared.emit(PeerEvent::PeerGone {
        node_id: node,
        relay,
        reason: reason.as_str().to_owned(),
    });
    if relay_of(shared, &node) != Some(relay) {
        return;
    }
    let (alt, dial) = {
        let mut c = clients(shared);
        let tried = c.dials.get_mut(&node).map(|d| {
            d.tried.insert(relay);
            d.tried.clone()
        });
        let alt = c.pick(|id| *id == relay || tried.as_ref().is_some_and(|t| t.contains(id)));
        let dial = c.dials.get(&node).map(|d| d.unreachable.clone());
        (alt, dial)
    };
    if let Some(alt) = alt {
        tracing::debug!(peer = %node.fmt_short(), to = %alt.fmt_short(), "trying another relay");
        move_to(shared, node, alt);
        return;
    }
    if let Some(unreachable) = dial {
        unreachable.notify_one();
        return;
    }
    let note = format!(
        "peer-gone: {} {} relay {} and no other relay reaches it",
        node.fmt_short(),
        if reason == GoneReason::Left {
            "left"
        } else {
            "is unknown to"
        },
        relay.fmt_short()
    );
    shared.close_with_note(&node, note);
}

/// A registered relay for a dial to `node`, waiting (until the dial
/// timeout) for a pending registration if none is registered yet.
pub(crate) async fn pick_for_dial(shared: &Host, node: &NodeId) -> Result<NodeId, DialError> {
    let mut version = shared.relays_changed().subscribe();
    let deadline = tokio::time::Instant::now() + shared.dial_timeout();
    loop {
        let (pick, pending) = {
            let c = clients(shared);
            (c.pick(|id| id == node), c.pending())
        };
        if let Some(relay) = pick {
            return Ok(relay);
        }
        let no_relay = || {
            DialError::new(
                DialErrorKind::NoRelay,
                format!("no connected relay to reach {} through", node.fmt_short()),
            )
        };
        if !pending {
            return Err(no_relay());
        }
        match tokio::time::timeout_at(deadline, version.changed()).await {
            Ok(Ok(())) => {}
            _ => return Err(no_relay()),
        }
    }
}

/// Registers a relayed dial to `node`; the returned notify fires when no
/// relay reaches it.
pub(crate) fn start_dial(shared: &Host, node: NodeId) -> Arc<Notify> {
    let unreachable = Arc::new(Notify::new());
    clients(shared).dials.insert(
        node,
        RelayDial {
            tried: HashSet::new(),
            unreachable: unreachable.clone(),
        },
    );
    unreachable
}

/// The relayed dial to `node` ended.
pub(crate) fn end_dial(shared: &Host, node: &NodeId) {
    clients(shared).dials.remove(node);
}
