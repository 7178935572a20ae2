//! Outbound dials and persistent peers.
//!
//! - [`connect`] dials a peer once. Concurrent calls for the same peer share
//!   one dial (so one node never races itself into duplicate connections),
//!   the dial runs in its own task (so a caller giving up cannot leave the
//!   table half-updated), and a failure removes every trace: no peer entry,
//!   no mapped address, no connection.
//! - [`add_peer`] keeps a peer connected: it dials now and, whenever the
//!   connection is lost, redials as the sans-IO [`Redial`] policy says
//!   (jittered exponential backoff from `reconnect_min` to
//!   `reconnect_max`, reset after each success, addresses in turn, at once
//!   after a stateless reset; see `redial`).
//!
//! A dial goes to a known address ([`Route::Addr`]) or, with only the
//! NodeId known, through a registered relay ([`Route::Relay`]; see
//! `relay::client`): the first bytes then flow over the relay at once, and
//! traversal may later move the live connection to a direct path with
//! `Transport::set_path`.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use relay_proto::NodeId;
use tokio::sync::{watch, Notify};

use super::failures::HandshakeFailure;
use super::peers::{DialStatus, Persistent};
use super::redial::{DialFailure, Disconnect, Redial, RedialConfig};
use super::{closed_error, conn, Shared};
use crate::noise;
use crate::relay::client as relays;
use crate::{DialError, DialErrorKind};

/// Where a dial goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Straight to this address.
    Addr(SocketAddr),
    /// Through a registered relay.
    Relay,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Addr(addr) => write!(f, "{addr}"),
            Self::Relay => f.write_str("a relay"),
        }
    }
}

/// Dials `node` once, or joins the dial already running; `Ok` when a
/// connection to `node` exists.
pub(crate) async fn connect(
    shared: &Arc<Shared>,
    node: NodeId,
    route: Route,
) -> Result<(), DialError> {
    if node == shared.node_id {
        return Err(DialError::new(
            DialErrorKind::InvalidAddress,
            "cannot dial ourselves",
        ));
    }
    let mut status = {
        let mut table = shared.table();
        if table.closed {
            return Err(closed_error());
        }
        let entry = table.peers.entry(node).or_default();
        if entry.live().is_some() {
            return Ok(());
        }
        match &entry.dial {
            Some(status) => status.clone(),
            None => {
                let (tx, rx) = watch::channel(None);
                entry.dial = Some(rx.clone());
                tokio::spawn(run_dial(shared.clone(), node, route, tx));
                rx
            }
        }
    };
    let result = match status.wait_for(Option::is_some).await {
        Ok(result) => result.clone(),
        Err(_) => None,
    };
    result.unwrap_or_else(|| Err(lost_dial()))
}

fn lost_dial() -> DialError {
    DialError::new(
        DialErrorKind::Transport,
        "the dial task ended without a result",
    )
}

/// Runs one dial to completion and publishes the result.
async fn run_dial(shared: Arc<Shared>, node: NodeId, route: Route, tx: watch::Sender<DialStatus>) {
    let result = match dial_once(&shared, node, route).await {
        Ok(Some(conn)) => conn::register(&shared, conn, true).map(|_| ()),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    let result = {
        let mut table = shared.table();
        let mut forget = false;
        let result = match table.peers.get_mut(&node) {
            Some(entry) => {
                let ours = entry
                    .dial
                    .as_ref()
                    .is_some_and(|rx| rx.same_channel(&tx.subscribe()));
                if ours {
                    entry.dial = None;
                }
                let result = match result {
                    // Lost this dial, but a connection exists (the peer's).
                    Err(_) if entry.live().is_some() => Ok(()),
                    other => other,
                };
                forget = result.is_err() && entry.is_idle();
                result
            }
            None => result,
        };
        if forget {
            table.peers.remove(&node);
            shared.socket.forget_node(&node);
        }
        result
    };
    match &result {
        Ok(()) => {
            shared.failures().clear(&node);
            tracing::debug!(peer = %node.fmt_short(), to = %route, "dial done");
        }
        Err(e) => dial_failed(&shared, node, route, e),
    }
    let _ = tx.send(Some(result));
}

/// A dial failed: handshake failures are recorded (the peer's `why` in
/// status) and the ones that need an operator (keys, versions, refusals)
/// are logged as one warning per peer per period.
fn dial_failed(shared: &Shared, node: NodeId, route: Route, e: &DialError) {
    let handshake = matches!(
        e.kind,
        DialErrorKind::PeerKeyMismatch
            | DialErrorKind::NetworkKeyMismatch
            | DialErrorKind::VersionMismatch
            | DialErrorKind::Refused
            | DialErrorKind::Timeout
            | DialErrorKind::Transport
    );
    if !handshake {
        tracing::debug!(peer = %node.fmt_short(), to = %route, error = %e, "dial failed");
        return;
    }
    let failure = HandshakeFailure {
        kind: e.kind,
        detail: e.detail.clone(),
        peer: Some(node),
        addr: match route {
            Route::Addr(addr) => Some(addr),
            Route::Relay => None,
        },
        outbound: true,
        at: SystemTime::now(),
    };
    let warn = shared.failures().record(Instant::now(), failure)
        && !matches!(e.kind, DialErrorKind::Timeout | DialErrorKind::Transport);
    if warn {
        tracing::warn!(peer = %node.fmt_short(), to = %route, kind = %e.kind, "handshake failed: {e}");
    } else {
        tracing::debug!(peer = %node.fmt_short(), to = %route, error = %e, "dial failed");
    }
}

/// One QUIC dial. `Ok(None)`: a connection appeared meanwhile, nothing
/// dialed.
async fn dial_once(
    shared: &Shared,
    node: NodeId,
    route: Route,
) -> Result<Option<quinn::Connection>, DialError> {
    let addr = match route {
        Route::Addr(addr) => addr,
        Route::Relay => return dial_relayed(shared, node).await,
    };
    if addr.port() == 0 || addr.ip().is_unspecified() || !shared.socket.can_reach(&addr) {
        return Err(DialError::new(
            DialErrorKind::InvalidAddress,
            format!(
                "cannot dial {addr} from {}",
                shared.socket.real_local_addr()
            ),
        ));
    }
    let mapped = {
        let table = shared.table();
        if table.peers.get(&node).and_then(|e| e.live()).is_some() {
            return Ok(None);
        }
        // Mapping under the table lock: registration cannot slip in between.
        shared.socket.map_outbound(node, addr)
    };
    tracing::debug!(peer = %node.fmt_short(), %addr, "dialing");
    handshake(shared, node, mapped, &addr.to_string(), None).await
}

/// Dials `node` through a registered relay.
async fn dial_relayed(
    shared: &Shared,
    node: NodeId,
) -> Result<Option<quinn::Connection>, DialError> {
    let relay = relays::pick_for_dial(shared, &node).await?;
    let unreachable = relays::start_dial(shared, node);
    let mapped = {
        let table = shared.table();
        if table.peers.get(&node).and_then(|e| e.live()).is_some() {
            drop(table);
            relays::end_dial(shared, &node);
            return Ok(None);
        }
        shared.socket.map_outbound_relayed(node, relay)
    };
    tracing::debug!(peer = %node.fmt_short(), relay = %relay.fmt_short(), "dialing through relay");
    let what = format!("{} through relay {}", node.fmt_short(), relay.fmt_short());
    let result = handshake(shared, node, mapped, &what, Some(&unreachable)).await;
    relays::end_dial(shared, &node);
    result
}

/// Runs the QUIC handshake to `mapped` and checks the peer's identity.
/// `unreachable` fires when no relay reaches the peer.
async fn handshake(
    shared: &Shared,
    node: NodeId,
    mapped: SocketAddr,
    what: &str,
    unreachable: Option<&Notify>,
) -> Result<Option<quinn::Connection>, DialError> {
    let connecting = shared
        .endpoint
        .connect_with(shared.quic.client(), mapped, &node.to_string())
        .map_err(connect_error)?;
    let timeout = shared.config.dial_timeout;
    let gone = async {
        match unreachable {
            Some(n) => n.notified().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(timeout, connecting) => outcome,
        () = gone => {
            return Err(DialError::new(
                DialErrorKind::PeerNotReachable,
                format!("no relay reaches {what}"),
            ))
        }
    };
    let conn = match outcome {
        Err(_) => {
            return Err(DialError::new(
                DialErrorKind::Timeout,
                format!("no handshake with {what} within {timeout:?}"),
            ))
        }
        Ok(Err(e)) => {
            let kind = noise::classify_connect_error(&e);
            let mismatch = matches!(
                kind,
                DialErrorKind::PeerKeyMismatch | DialErrorKind::NetworkKeyMismatch
            );
            if mismatch && noise::failed_remotely(&e) {
                // The responder detected it; our session did not count it.
                shared
                    .noise_stats
                    .handshake_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
            return Err(DialError::new(kind, describe_failure(kind, &e)));
        }
        Ok(Ok(conn)) => conn,
    };
    if noise::peer_node_id(&conn) != Some(node) {
        shared
            .noise_stats
            .handshake_failures
            .fetch_add(1, Ordering::Relaxed);
        conn.close(0u32.into(), b"identity");
        return Err(DialError::new(
            DialErrorKind::PeerKeyMismatch,
            "the peer authenticated as another node",
        ));
    }
    Ok(Some(conn))
}

/// The detail of a failed handshake: what the kind means for the
/// operator, then quinn's own words.
fn describe_failure(kind: DialErrorKind, e: &quinn::ConnectionError) -> String {
    match kind {
        DialErrorKind::PeerKeyMismatch => {
            format!("the peer does not hold the key of the NodeId dialed ({e})")
        }
        DialErrorKind::NetworkKeyMismatch => {
            format!("the peer holds another mesh network key ({e})")
        }
        _ => e.to_string(),
    }
}

/// quinn refused to start the dial.
fn connect_error(e: quinn::ConnectError) -> DialError {
    use quinn::ConnectError as E;
    let kind = match &e {
        E::EndpointStopping => DialErrorKind::EndpointClosed,
        E::InvalidServerName(_) | E::InvalidRemoteAddress(_) => DialErrorKind::InvalidAddress,
        E::UnsupportedVersion => DialErrorKind::VersionMismatch,
        E::CidsExhausted | E::NoDefaultClientConfig => DialErrorKind::Transport,
    };
    DialError::new(kind, e.to_string())
}

/// Relay first when a relay other than `node` serves us, else `addr`.
pub(crate) async fn connect_best(
    shared: &Arc<Shared>,
    node: NodeId,
    addr: Option<SocketAddr>,
) -> Result<(), DialError> {
    let relays = shared
        .relays
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .registered();
    let via_relay = relays.iter().any(|r| *r != node);
    match (via_relay, addr) {
        (true, None) | (false, None) => connect(shared, node, Route::Relay).await,
        (false, Some(addr)) => connect(shared, node, Route::Addr(addr)).await,
        (true, Some(addr)) => match connect(shared, node, Route::Relay).await {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind,
                    DialErrorKind::PeerNotReachable | DialErrorKind::NoRelay
                ) =>
            {
                connect(shared, node, Route::Addr(addr)).await
            }
            Err(e) => Err(e),
        },
    }
}

/// Makes `node` persistent (or replaces its addresses) and starts its redial
/// task if it has none. Each attempt dials the next address in turn.
pub(crate) fn add_peer(shared: &Arc<Shared>, node: NodeId, addrs: Vec<SocketAddr>) {
    if node == shared.node_id {
        tracing::warn!("add_peer: ignoring our own NodeId");
        return;
    }
    if addrs.is_empty() {
        tracing::warn!(peer = %node.fmt_short(), "add_peer: no address given");
        return;
    }
    let start = {
        let mut table = shared.table();
        if table.closed {
            return;
        }
        let entry = table.peers.entry(node).or_default();
        match &mut entry.persistent {
            Some(persistent) => {
                persistent.addrs = addrs.clone();
                false
            }
            None => {
                entry.persistent = Some(Persistent {
                    addrs: addrs.clone(),
                    wake: Arc::new(Notify::new()),
                });
                true
            }
        }
    };
    if start {
        tracing::debug!(peer = %node.fmt_short(), ?addrs, "persistent peer added");
        tokio::spawn(keep_connected(shared.clone(), node));
    }
}

/// Share of each redial delay taken off at random (see `redial`).
const REDIAL_JITTER_PERCENT: u32 = 20;

/// What a failed dial means for redialing.
fn failure_of(kind: DialErrorKind) -> DialFailure {
    match kind {
        DialErrorKind::EndpointClosed => DialFailure::Closed,
        DialErrorKind::PeerKeyMismatch | DialErrorKind::NetworkKeyMismatch => DialFailure::Identity,
        _ => DialFailure::Other,
    }
}

/// The clock the redial policy runs on (tokio's, so that tests on a
/// paused clock control it).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The redial loop of one persistent peer: reads the table and the
/// clock, dials and waits as its [`Redial`] says.
async fn keep_connected(shared: Arc<Shared>, node: NodeId) {
    let mut shutdown = shared.shutdown.subscribe();
    let config = RedialConfig {
        min: shared.config.reconnect_min,
        max: shared.config.reconnect_max,
        jitter_percent: REDIAL_JITTER_PERCENT,
    };
    let mut redial: Option<Redial> = None;
    let mut addrs_seen: Vec<SocketAddr> = Vec::new();
    loop {
        let (addrs, wake, live) = {
            let table = shared.table();
            if table.closed {
                return;
            }
            let Some(entry) = table.peers.get(&node) else {
                return;
            };
            let Some(persistent) = &entry.persistent else {
                return;
            };
            (
                persistent.addrs.clone(),
                persistent.wake.clone(),
                entry.live().map(|l| l.conn.clone()),
            )
        };
        let redial =
            redial.get_or_insert_with(|| Redial::new(config, addrs.clone(), rand::random(), now()));
        if addrs != addrs_seen {
            redial.set_addrs(addrs.clone());
            addrs_seen = addrs;
        }
        if let Some(conn) = live {
            redial.handle_connected();
            tokio::select! {
                _ = wake.notified() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let why = match conn.close_reason() {
                Some(quinn::ConnectionError::Reset) => Disconnect::Reset,
                _ => Disconnect::Other,
            };
            redial.handle_disconnected(now(), why);
            continue;
        }
        let Some(due) = redial.poll_timeout() else {
            if redial.is_stopped() {
                return;
            }
            // Connected a moment ago and lost already.
            redial.handle_disconnected(now(), Disconnect::Other);
            continue;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let Some(addr) = redial.poll_dial(now()) else {
            return;
        };
        let mut result = connect(&shared, node, Route::Addr(addr)).await;
        if let Err(e) = &result {
            let relays = shared
                .relays
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .registered();
            if redial.try_relay(failure_of(e.kind), relays.iter().any(|r| *r != node)) {
                tracing::debug!(peer = %node.fmt_short(), error = %e, "direct redial failed; trying a relay");
                result = connect(&shared, node, Route::Relay).await;
            }
        }
        match result {
            Ok(()) => redial.handle_connected(),
            Err(e) => match redial.handle_dial_failed(now(), failure_of(e.kind)) {
                Some(next) => {
                    tracing::debug!(peer = %node.fmt_short(), error = %e, retry_in = ?next, "redial failed");
                }
                None => return,
            },
        }
    }
}
