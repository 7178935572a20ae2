//! The transport control channel on each connection (contract: QUIC
//! datagrams prefixed `0x00`, carrying a postcard [`ControlMsg`]; see
//! `relay_proto::wire::control`).
//!
//! - [`handle`] dispatches what a peer sent: observed addresses, relay
//!   offers and registration, peer-gone reports, traversal messages.
//! - [`announce`] runs for each connection: it tells the peer the address
//!   we observe for it (on connect, again as soon as its path changes,
//!   repeated a few times since datagrams may be lost) and, on a relaying node, offers
//!   relaying until the peer registers (repeated with backoff).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use relay_proto::wire::control::{ControlMsg, RefuseReason};
use relay_proto::NodeId;
use tokio::sync::broadcast;

use super::Shared;
use crate::relay::client;
use crate::PeerEvent;

/// First delay between announcements; doubles up to [`ANNOUNCE_MAX`].
const ANNOUNCE_MIN: Duration = Duration::from_millis(250);
/// Longest delay between announcements.
const ANNOUNCE_MAX: Duration = Duration::from_secs(4);
/// How often an observed address is sent after each change.
const OBSERVED_REPEATS: u32 = 3;

/// Sends one control message on a connection; failures (no datagram
/// support, connection lost) are only logged: control messages are
/// unreliable by contract.
pub(crate) fn send(conn: &quinn::Connection, msg: &ControlMsg) {
    match msg.encode_datagram() {
        Ok(bytes) => {
            if let Err(e) = conn.send_datagram(Bytes::from(bytes)) {
                tracing::trace!(msg = msg.name(), error = %e, "control message not sent");
            }
        }
        Err(e) => tracing::warn!(msg = msg.name(), error = %e, "control message not encodable"),
    }
}

/// Sends a control message to a connected peer (dropped if none).
pub(crate) fn send_to(shared: &Shared, node: &NodeId, msg: &ControlMsg) -> bool {
    match shared.live(node) {
        Some(live) => {
            send(&live.conn, msg);
            true
        }
        None => false,
    }
}

/// Handles one control datagram body (prefix stripped) from `peer`.
pub(crate) fn handle(shared: &Arc<Shared>, peer: NodeId, conn: &quinn::Connection, body: &[u8]) {
    let msg = match ControlMsg::decode(body) {
        Ok(msg) => msg,
        Err(e) => {
            tracing::debug!(peer = %peer.fmt_short(), error = %e, "bad control message");
            return;
        }
    };
    tracing::trace!(peer = %peer.fmt_short(), msg = msg.name(), "control message");
    match msg {
        ControlMsg::ObservedAddr { addr } => observed(shared, peer, addr),
        ControlMsg::RelayOffer { .. } => {
            if client::on_offer(shared, peer, conn) {
                send(conn, &ControlMsg::RelayRegister);
            }
        }
        ControlMsg::RelayRegister => {
            let reply = match &shared.relay_server {
                Some(relay) => relay.register(shared, peer, conn),
                None => ControlMsg::RelayRefused {
                    reason: RefuseReason::Disabled,
                },
            };
            send(conn, &reply);
        }
        ControlMsg::RelayRegistered { limits } => client::on_registered(shared, peer, conn, limits),
        ControlMsg::RelayRefused { reason } => client::on_refused(shared, peer, reason),
        ControlMsg::PeerGone { node_id, reason } => {
            client::on_peer_gone(shared, peer, node_id, reason);
        }
        ControlMsg::Traversal(msg) => {
            if shared.traversal_tx.try_send((peer, msg)).is_err() {
                tracing::trace!(peer = %peer.fmt_short(), "traversal message dropped (unclaimed or full)");
            }
        }
    }
}

/// `peer` tells us the address it observes for us.
fn observed(shared: &Shared, peer: NodeId, addr: SocketAddr) {
    let changed = shared
        .observed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(peer, addr)
        != Some(addr);
    if changed {
        tracing::debug!(peer = %peer.fmt_short(), %addr, "peer observes us at");
        shared.emit(PeerEvent::ObservedAddr {
            node_id: peer,
            addr,
        });
    }
}

/// Announces to `peer` until the connection closes (see the module docs).
pub(crate) async fn announce(shared: Arc<Shared>, peer: NodeId, conn: quinn::Connection) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut events = shared.events.subscribe();
    let mut delay = ANNOUNCE_MIN;
    let mut last: Option<SocketAddr> = None;
    let mut repeats = 0;
    loop {
        let now = shared
            .socket
            .path(&conn.remote_address())
            .and_then(|p| p.direct_addr());
        if now != last {
            last = now;
            repeats = OBSERVED_REPEATS;
            delay = ANNOUNCE_MIN;
        }
        if let (Some(addr), true) = (now, repeats > 0) {
            send(&conn, &ControlMsg::ObservedAddr { addr });
            repeats -= 1;
        }
        if let Some(relay) = &shared.relay_server {
            if !relay.is_client(&peer) {
                send(
                    &conn,
                    &ControlMsg::RelayOffer {
                        limits: relay.limits().to_msg(),
                    },
                );
            }
        }
        // Wake early when the peer's path changes (it moved, e.g. its own
        // address changed): it learns its new address at once.
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = conn.closed() => return,
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = &mut sleep => break,
                event = events.recv() => match event {
                    Ok(PeerEvent::PathChanged { node_id, .. }) if node_id == peer => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                    _ => {}
                },
            }
        }
        delay = (delay * 2).min(ANNOUNCE_MAX);
    }
}
