//! Life of an authenticated connection: registration in the peer table
//! (with the duplicate tie-break), forwarding what the peer opens or sends
//! into the accept queue (datagrams: application ones only, dropped and
//! counted when the queue is full, so a slow reader never holds up control
//! messages; control ones go to the connection's [`ControlChannel`] and
//! [`super::control`]), watching for migration and close, and the events
//! that go with each step.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use relay_proto::wire::control::{ControlMsg, DATAGRAM_APP, DATAGRAM_CONTROL, DATAGRAM_RELIABLE};
use relay_proto::NodeId;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::channel::ControlChannel;
use super::peers::{new_wins, LiveConn};
use super::{closed_error, control, paths, Shared};
use crate::noise;
use crate::{
    DialError, DialErrorKind, Incoming, PathKind, PeerEvent, CLOSE_DUPLICATE, CLOSE_PEER_GONE,
    CLOSE_SHUTDOWN,
};

/// How often a connection is checked for a peer-initiated migration (the
/// peer's packets arriving from a new real address).
const MIGRATION_CHECK: Duration = Duration::from_secs(1);

/// A new connection from a peer lost the tie-break to the one we hold. The
/// peer may have restarted (a crash sends no close), leaving ours stale
/// until our next packet draws its stateless reset, up to a keep-alive
/// later. Send one packet on ours now, the address announcement it had
/// (harmless to a live peer), so a stale one is reset within an RTT and
/// redialled at once.
fn probe_stale(shared: &Shared, current: &quinn::Connection) {
    let addr = shared
        .socket
        .path(&current.remote_address())
        .and_then(|p| p.direct_addr());
    if let Some(addr) = addr {
        control::send_unreliable(current, &ControlMsg::ObservedAddr { addr });
    }
}

/// Enters a freshly authenticated connection into the peer table.
///
/// Returns `Ok` when afterwards a connection to that peer exists: this one,
/// or the one that beat it in the tie-break (the loser is closed with
/// [`CLOSE_DUPLICATE`]).
pub(crate) fn register(
    shared: &Arc<Shared>,
    conn: quinn::Connection,
    outbound: bool,
) -> Result<NodeId, DialError> {
    let Some(peer) = noise::peer_node_id(&conn) else {
        conn.close(0u32.into(), b"identity");
        return Err(DialError::new(
            DialErrorKind::Transport,
            "handshake ended without a peer identity",
        ));
    };
    if peer == shared.node_id {
        conn.close(0u32.into(), b"self");
        return Err(DialError::new(
            DialErrorKind::InvalidAddress,
            "connected to ourselves",
        ));
    }
    let mapped = conn.remote_address();
    let channel = Arc::new(ControlChannel::new(
        conn.clone(),
        shared.channel_counters.clone(),
    ));
    let live = LiveConn::new(conn.clone(), outbound, channel.clone());
    let (kept, replaced, current) = {
        let mut table = shared.table();
        if table.closed {
            drop(table);
            conn.close(quinn::VarInt::from_u32(CLOSE_SHUTDOWN), b"shutdown");
            return Err(closed_error());
        }
        let entry = table.peers.entry(peer).or_default();
        let current = entry.live().map(|c| (c.conn.clone(), c.outbound));
        let keep = match &current {
            Some((_, current_outbound)) => {
                new_wins(&shared.node_id, &peer, *current_outbound, outbound)
            }
            None => true,
        };
        if keep {
            shared.socket.adopt(&mapped, peer);
            (true, entry.conn.replace(live), None)
        } else {
            (false, None, current.map(|(c, _)| c))
        }
    };
    let duplicate = quinn::VarInt::from_u32(CLOSE_DUPLICATE);
    if !kept {
        tracing::debug!(peer = %peer.fmt_short(), outbound, "duplicate connection lost the tie-break");
        conn.close(duplicate, b"duplicate");
        if let Some(current) = current {
            probe_stale(shared, &current);
        }
        return Ok(peer);
    }
    if let Some(old) = replaced.filter(LiveConn::is_alive) {
        tracing::debug!(peer = %peer.fmt_short(), "replacing a duplicate connection");
        old.conn.close(duplicate, b"duplicate");
    }

    let path = shared.socket.path(&mapped);
    let remote_addr = path.and_then(|p| p.direct_addr());
    let via = path.as_ref().and_then(paths::relay_of);
    tracing::info!(peer = %peer.fmt_short(), outbound, remote = ?remote_addr, via = ?via.map(|v| v.fmt_short()), "connected");
    let incoming = shared.incoming_sender();
    if let Some(tx) = &incoming {
        tokio::spawn(forward_bi(shared.clone(), conn.clone(), peer, tx.clone()));
        tokio::spawn(forward_uni(shared.clone(), conn.clone(), peer, tx.clone()));
    }
    tokio::spawn(channel.clone().run(shared.shutdown.subscribe()));
    tokio::spawn(forward_datagrams(
        shared.clone(),
        channel.clone(),
        peer,
        incoming,
    ));
    tokio::spawn(control::announce(shared.clone(), peer, channel));
    tokio::spawn(watch(shared.clone(), peer, conn));
    shared.emit(PeerEvent::Connected {
        node_id: peer,
        path: path.map_or(PathKind::None, |p| p.kind()),
        remote_addr,
        generation: crate::events::next_generation(),
    });
    Ok(peer)
}

/// Hands `incoming` to the stream hook, if one is installed; what it
/// leaves (or everything, without a hook) goes to the accept queue.
/// `false` once the queue is closed.
async fn forward(shared: &Shared, tx: &mpsc::Sender<Incoming>, incoming: Incoming) -> bool {
    // The hook runs outside the lock: what it calls may run a protocol's
    // work at once.
    let hook = shared
        .stream_hook
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let left = match hook {
        Some(hook) => hook(incoming),
        None => Some(incoming),
    };
    match left {
        Some(incoming) => tx.send(incoming).await.is_ok(),
        None => true,
    }
}

async fn forward_bi(
    shared: Arc<Shared>,
    conn: quinn::Connection,
    from: NodeId,
    tx: mpsc::Sender<Incoming>,
) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        if !forward(&shared, &tx, Incoming::Bi { from, send, recv }).await {
            break;
        }
    }
}

async fn forward_uni(
    shared: Arc<Shared>,
    conn: quinn::Connection,
    from: NodeId,
    tx: mpsc::Sender<Incoming>,
) {
    while let Ok(recv) = conn.accept_uni().await {
        if !forward(&shared, &tx, Incoming::Uni { from, recv }).await {
            break;
        }
    }
}

/// Splits the connection's datagrams by prefix: application datagrams
/// (prefix stripped) go to the accept queue without waiting (dropped and
/// counted when it is full or gone), control frames to the control
/// channel, anything else is dropped.
async fn forward_datagrams(
    shared: Arc<Shared>,
    channel: Arc<ControlChannel>,
    from: NodeId,
    mut tx: Option<mpsc::Sender<Incoming>>,
) {
    let conn = channel.conn().clone();
    while let Ok(data) = conn.read_datagram().await {
        match data.first() {
            Some(&DATAGRAM_APP) => {
                let Some(sender) = &tx else {
                    continue;
                };
                let data: Bytes = data.slice(1..);
                match sender.try_send(Incoming::Datagram { from, data }) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        shared
                            .channel_counters
                            .app_datagrams_dropped
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::trace!(peer = %from.fmt_short(), "application datagram dropped: accept queue full");
                    }
                    Err(TrySendError::Closed(_)) => tx = None,
                }
            }
            Some(&DATAGRAM_RELIABLE) => {
                for msg in channel.receive(&data[1..]) {
                    control::dispatch(&shared, from, &channel, msg);
                }
            }
            Some(&DATAGRAM_CONTROL) => {
                control::handle_unreliable(&shared, from, &channel, &data[1..]);
            }
            _ => {
                tracing::debug!(peer = %from.fmt_short(), "datagram without a known prefix dropped")
            }
        }
    }
}

/// Watches one registered connection until it closes.
async fn watch(shared: Arc<Shared>, peer: NodeId, conn: quinn::Connection) {
    let id = conn.stable_id();
    let mut mapped = conn.remote_address();
    // A dialed connection's remote never moves in quinn: the socket must
    // recognize its peer's packets from a rebound NAT (see `rebind`).
    let followed = conn.side().is_client().then_some(mapped);
    if let Some(followed) = followed {
        shared.socket.follow_rebinding(followed);
    }
    let mut rebinding = super::rebind::Follower::default();
    let mut tick = tokio::time::interval(MIGRATION_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        tokio::select! {
            reason = conn.closed() => break reason,
            _ = tick.tick() => {
                let now = conn.remote_address();
                if now != mapped {
                    mapped = now;
                    migrated(&shared, peer, id, now);
                }
                rebinding.check(&shared, peer, &conn);
            }
        }
    };
    if let Some(followed) = followed {
        shared.socket.unfollow_rebinding(&followed);
    }
    let note = {
        let table = shared.table();
        table
            .peers
            .get(&peer)
            .and_then(|e| e.conn.as_ref())
            .filter(|c| c.conn.stable_id() == id)
            .and_then(LiveConn::close_note)
    };
    if closed(&shared, peer, id, mapped, &reason, note) {
        shared
            .observed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&peer);
        crate::relay::client::on_relay_lost(&*shared, peer);
        if let Some(relay) = &shared.relay_server {
            relay.client_left(&*shared, peer).await;
        }
    }
}

/// Closes the connection to `node` with [`CLOSE_PEER_GONE`], reporting
/// `note` as the reason.
pub(crate) fn close_with_note(shared: &Shared, node: &NodeId, note: String) {
    let Some(live) = shared.live(node) else {
        return;
    };
    tracing::info!(peer = %node.fmt_short(), reason = %note, "closing");
    live.set_close_note(note);
    live.conn
        .close(quinn::VarInt::from_u32(CLOSE_PEER_GONE), b"peer-gone");
}

/// The peer moved to a new real address and quinn followed it (a new mapped
/// address): make it the peer's address and report the new path.
fn migrated(shared: &Shared, peer: NodeId, id: usize, mapped: SocketAddr) {
    {
        let table = shared.table();
        let current = table
            .peers
            .get(&peer)
            .and_then(|e| e.conn.as_ref())
            .filter(|c| c.conn.stable_id() == id);
        let Some(current) = current else {
            return;
        };
        current.count_path_change();
        shared.socket.adopt(&mapped, peer);
    }
    let path = shared.socket.path(&mapped);
    if let (Some(relay), Some(path)) = (&shared.relay_server, path) {
        relay.update_path(&peer, path);
    }
    let remote_addr = path.and_then(|p| p.direct_addr());
    tracing::info!(peer = %peer.fmt_short(), remote = ?remote_addr, "peer migrated");
    shared.emit(PeerEvent::PathChanged {
        node_id: peer,
        path: path.map_or(PathKind::None, |p| p.kind()),
        remote_addr,
    });
}

/// A registered connection closed: update the table, wake the redialer,
/// report it. Returns whether it was the peer's current connection.
fn closed(
    shared: &Shared,
    peer: NodeId,
    id: usize,
    mapped: SocketAddr,
    reason: &quinn::ConnectionError,
    note: Option<String>,
) -> bool {
    let was_current = {
        let mut table = shared.table();
        let current = table
            .peers
            .get(&peer)
            .and_then(|e| e.conn.as_ref())
            .is_some_and(|c| c.conn.stable_id() == id);
        if current {
            let mut idle = false;
            if let Some(entry) = table.peers.get_mut(&peer) {
                entry.conn = None;
                if let Some(persistent) = &entry.persistent {
                    persistent.wake.notify_one();
                }
                idle = entry.is_idle();
            }
            if idle {
                table.peers.remove(&peer);
                shared.socket.demote_node(&peer);
            }
        } else {
            shared.socket.demote_retired(&mapped);
        }
        current
    };
    if was_current {
        let reason = match (reason, note) {
            (quinn::ConnectionError::LocallyClosed, Some(note)) => note,
            (reason, _) => describe(reason),
        };
        tracing::info!(peer = %peer.fmt_short(), %reason, "disconnected");
        shared.emit(PeerEvent::Disconnected {
            node_id: peer,
            reason,
        });
    }
    was_current
}

/// A connection error as `kind: detail`.
pub(crate) fn describe(e: &quinn::ConnectionError) -> String {
    use quinn::ConnectionError as E;
    match e {
        E::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(CLOSE_SHUTDOWN) => {
            "peer-shutdown: the peer shut down".to_owned()
        }
        E::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(CLOSE_DUPLICATE) => {
            "duplicate: replaced by the connection the tie-break kept".to_owned()
        }
        E::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(CLOSE_PEER_GONE) => {
            "peer-gone: the peer lost every relayed path to this node".to_owned()
        }
        E::ApplicationClosed(c) => format!("peer-closed: application code {}", c.error_code),
        E::LocallyClosed => "local-close: closed by this node".to_owned(),
        E::TimedOut => "timeout: nothing heard within the idle timeout".to_owned(),
        E::Reset => "reset: the peer reset the connection".to_owned(),
        E::ConnectionClosed(c) => format!("transport: the peer closed with {c}"),
        E::TransportError(t) => format!("transport: {t}"),
        E::VersionMismatch => "version-mismatch: no common QUIC version".to_owned(),
        E::CidsExhausted => "transport: connection IDs exhausted".to_owned(),
    }
}
