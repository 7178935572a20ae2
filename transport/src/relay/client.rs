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
//!
//! Every decision above (when to register, which relay, where a path goes)
//! is the sans-IO [`RelayClientCore`]'s; this file reads the path socket
//! and the peer table, sends, moves paths, and wakes dials.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use relay_proto::wire::control::{GoneReason, RefuseReason, RelayLimitsMsg};
use relay_proto::NodeId;
use tokio::sync::Notify;

use crate::handles::RelayClientHost;
use crate::relay::auth::FrameKeys;
use crate::relay::client_core::{GoneAction, RelayClientCore};
use crate::relay::ConnectionKeys;
use crate::socket::Path;
use crate::{DialError, DialErrorKind, PeerEvent};

/// The endpoint, as the relay client sees it.
type Host = dyn RelayClientHost<Clients = RelayClients>;

/// The relays we know (the core) and the wake-ups of the relayed dials in
/// progress.
#[derive(Debug, Default)]
pub(crate) struct RelayClients {
    core: RelayClientCore,
    /// Fired when no relay reaches the dialed peer.
    dials: HashMap<NodeId, Arc<Notify>>,
}

impl RelayClients {
    /// Relays that confirmed our registration.
    pub(crate) fn registered(&self) -> Vec<NodeId> {
        self.core.registered()
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
    let register = clients(shared)
        .core
        .handle_offer(Instant::now(), relay, new_keys);
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
    let new = clients(shared)
        .core
        .handle_registered(Instant::now(), relay, limits);
    take_keys(shared, relay, conn);
    if !new {
        return;
    }
    tracing::info!(relay = %relay.fmt_short(), rate = limits.rate_bytes_per_sec, "registered with relay");
    changed(shared);
    // Paths left on a relay that is gone move here.
    for (node, path) in shared.relayed_peers() {
        if let Path::Relayed { relay: old } = path {
            if clients(shared).core.adopts(&old) {
                move_to(shared, node, relay);
            }
        }
    }
}

/// A relay refused to serve us.
pub(crate) fn on_refused(shared: &Host, relay: NodeId, reason: RefuseReason) {
    tracing::debug!(relay = %relay.fmt_short(), reason = reason.as_str(), "relay refused registration");
    let known = clients(shared).core.handle_refused(Instant::now(), relay);
    shared.socket().remove_relay(&relay);
    if known {
        changed(shared);
    }
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
    let lost = clients(shared).core.handle_lost(&relay);
    shared.socket().remove_relay(&relay);
    let Some(alt) = lost else {
        return;
    };
    changed(shared);
    tracing::info!(relay = %relay.fmt_short(), "relay lost");
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
    let carried = relay_of(shared, &node) == Some(relay);
    let (action, dial) = {
        let mut c = clients(shared);
        let action = c.core.handle_peer_gone(relay, &node, carried);
        (action, c.dials.get(&node).cloned())
    };
    let Some(action) = action else {
        tracing::debug!(from = %relay.fmt_short(), "peer-gone from a node we do not use as a relay; ignored");
        return;
    };
    tracing::debug!(relay = %relay.fmt_short(), peer = %node.fmt_short(), reason = reason.as_str(), "peer gone");
    shared.emit(PeerEvent::PeerGone {
        node_id: node,
        relay,
        reason: reason.as_str().to_owned(),
    });
    match action {
        GoneAction::Report => return,
        GoneAction::MoveTo(alt) => {
            tracing::debug!(peer = %node.fmt_short(), to = %alt.fmt_short(), "trying another relay");
            move_to(shared, node, alt);
            return;
        }
        GoneAction::FailDial => {
            if let Some(unreachable) = dial {
                unreachable.notify_one();
            }
            return;
        }
        GoneAction::Close => {}
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
            (c.core.pick_for_dial(node), c.core.pending())
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
    let mut c = clients(shared);
    c.core.start_dial(node);
    c.dials.insert(node, unreachable.clone());
    unreachable
}

/// The relayed dial to `node` ended.
pub(crate) fn end_dial(shared: &Host, node: &NodeId) {
    let mut c = clients(shared);
    c.core.end_dial(node);
    c.dials.remove(node);
}
