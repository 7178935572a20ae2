//! The transport control channel on each connection (contract: QUIC
//! datagrams prefixed `0x02` carry the reliable channel's frames, `0x00`
//! an unreliable postcard [`ControlMsg`]; see
//! `relay_proto::wire::control`).
//!
//! - [`send_to`] and [`send`] send reliably (through the connection's
//!   [`ControlChannel`]: acknowledged, retransmitted after about an RTT,
//!   delivered in order once); [`send_unreliable`] sends one datagram, for
//!   periodic hints that are repeated anyway.
//! - [`handle_unreliable`] and [`dispatch`] act on what a peer sent:
//!   observed addresses, relay offers and registration, peer-gone reports,
//!   traversal messages.
//! - [`announce`] runs for each connection: it tells the peer the address
//!   we observe for it (on connect and as soon as its path changes, once,
//!   reliably) and, on a relaying node, offers relaying until the peer
//!   registers (the first offer reliably, then repeated unreliably with
//!   backoff).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use relay_proto::wire::control::{ControlMsg, RefuseReason};
use relay_proto::NodeId;
use tokio::sync::broadcast;

use super::channel::ControlChannel;
use super::Shared;
use crate::relay::client;
use crate::PeerEvent;

/// First delay between relay offers; doubles up to [`ANNOUNCE_MAX`].
const ANNOUNCE_MIN: Duration = Duration::from_millis(250);
/// Longest delay between relay offers.
const ANNOUNCE_MAX: Duration = Duration::from_secs(4);

/// Sends one control message as a single unreliable datagram; failures (no
/// datagram support, connection lost) are only logged.
pub(crate) fn send_unreliable(conn: &quinn::Connection, msg: &ControlMsg) {
    match msg.encode_datagram() {
        Ok(bytes) => {
            if let Err(e) = conn.send_datagram(Bytes::from(bytes)) {
                tracing::trace!(msg = msg.name(), error = %e, "control message not sent");
            }
        }
        Err(e) => tracing::warn!(msg = msg.name(), error = %e, "control message not encodable"),
    }
}

/// Sends one control message reliably on a connection's channel. Never
/// waits; a message the channel refuses is logged there and counted.
pub(crate) fn send(channel: &ControlChannel, msg: &ControlMsg) -> bool {
    channel.send(msg).is_ok()
}

/// Sends a control message reliably to a connected peer (dropped if none).
/// Returns whether it was queued.
pub(crate) fn send_to(shared: &Shared, node: &NodeId, msg: &ControlMsg) -> bool {
    match shared.live(node) {
        Some(live) => send(&live.control, msg),
        None => false,
    }
}

/// Handles one unreliable control datagram body (prefix stripped) from
/// `peer`.
pub(crate) fn handle_unreliable(
    shared: &Arc<Shared>,
    peer: NodeId,
    channel: &ControlChannel,
    body: &[u8],
) {
    match ControlMsg::decode(body) {
        Ok(msg) => dispatch(shared, peer, channel, msg),
        Err(e) => tracing::debug!(peer = %peer.fmt_short(), error = %e, "bad control message"),
    }
}

/// Acts on one control message from `peer` (replies go back on
/// `channel`, reliably).
pub(crate) fn dispatch(
    shared: &Arc<Shared>,
    peer: NodeId,
    channel: &ControlChannel,
    msg: ControlMsg,
) {
    tracing::trace!(peer = %peer.fmt_short(), msg = msg.name(), "control message");
    match msg {
        ControlMsg::ObservedAddr { addr } => observed(shared, peer, addr),
        ControlMsg::RelayOffer { .. } => {
            if client::on_offer(&**shared, peer, channel.conn()) {
                send(channel, &ControlMsg::RelayRegister);
            }
        }
        ControlMsg::RelayRegister => {
            let reply = match &shared.relay_server {
                Some(relay) => relay.register(&**shared, peer, channel.conn()),
                None => ControlMsg::RelayRefused {
                    reason: RefuseReason::Disabled,
                },
            };
            send(channel, &reply);
        }
        ControlMsg::RelayRegistered { limits } => {
            client::on_registered(&**shared, peer, channel.conn(), limits)
        }
        ControlMsg::RelayRefused { reason } => client::on_refused(&**shared, peer, reason),
        ControlMsg::PeerGone { node_id, reason } => {
            client::on_peer_gone(&**shared, peer, node_id, reason);
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
pub(crate) async fn announce(shared: Arc<Shared>, peer: NodeId, channel: Arc<ControlChannel>) {
    let conn = channel.conn().clone();
    let mut shutdown = shared.shutdown.subscribe();
    let mut events = shared.events.subscribe();
    let mut delay = ANNOUNCE_MIN;
    let mut last: Option<SocketAddr> = None;
    let mut offered = false;
    loop {
        let now = shared
            .socket
            .path(&conn.remote_address())
            .and_then(|p| p.direct_addr());
        if now != last {
            last = now;
            if let Some(addr) = now {
                send(&channel, &ControlMsg::ObservedAddr { addr });
            }
        }
        let offering = shared
            .relay_server
            .as_ref()
            .filter(|relay| !relay.is_client(&peer));
        if let Some(relay) = offering {
            let offer = ControlMsg::RelayOffer {
                limits: relay.limits().to_msg(),
            };
            if offered {
                send_unreliable(&conn, &offer);
            } else {
                offered = send(&channel, &offer);
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
