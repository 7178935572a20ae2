//! Runs the [`RecentPeers`] core in a running node: reads the store at
//! start, feeds it connection events, carries out its dials (one
//! [`Transport::connect`] each, in its own task) and saves (on the
//! blocking pool, one at a time). Only I/O and the clock live here.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use relay_proto::NodeId;
use relay_transport::{PeerEvent, Transport};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::recent_peers::{RecentAction, RecentPeers};
use crate::recent_peers_store::RecentPeersStore;

/// Outcomes of dials in flight, at most (one per planned peer).
const OUTCOMES: usize = 64;
/// Longest sleep without anything due.
const IDLE: Duration = Duration::from_secs(3600);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn now_std() -> std::time::Instant {
    Instant::now().into_std()
}

/// Runs until the transport closes. `events` is a subscription taken
/// before the node dialed anyone; `configured` are the peers the node
/// dials anyway (`--peer`, `bootstrap.json`), which this leaves alone.
pub async fn run(
    transport: Transport,
    mut events: broadcast::Receiver<PeerEvent>,
    store: RecentPeersStore,
    configured: HashSet<NodeId>,
) {
    let me = transport.node_id();
    let saved = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.load()).await
    };
    let saved = match saved {
        Ok(Ok(saved)) => saved,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "recent peers not read; not dialing them");
            Vec::new()
        }
        Err(_) => Vec::new(),
    };
    let mut core = RecentPeers::default();
    core.handle_start(now_std(), unix_now(), saved, |peer| {
        *peer == me || configured.contains(peer)
    });
    let dialing = core.dialing().count();
    if dialing > 0 {
        tracing::info!(peers = dialing, "dialing peers we were connected to before");
    }
    let (done, mut outcomes) = mpsc::channel::<(NodeId, bool)>(OUTCOMES);
    loop {
        while let Some(action) = core.poll_action(now_std()) {
            match action {
                RecentAction::Dial { peer, addr } => {
                    tracing::debug!(peer = %peer.fmt_short(), %addr, "dialing a peer we were connected to before");
                    let (transport, done) = (transport.clone(), done.clone());
                    tokio::spawn(async move {
                        let result = transport.connect(peer, addr).await;
                        if let Err(e) = &result {
                            tracing::debug!(peer = %peer.fmt_short(), %addr, error = %e, "recent peer not reached");
                        }
                        let _ = done.send((peer, result.is_ok())).await;
                    });
                }
                RecentAction::Save(list) => save(&store, list).await,
            }
        }
        // Without a deadline, events and outcomes wake us; an hour is
        // only an upper bound.
        let deadline = core
            .poll_timeout()
            .map_or_else(|| Instant::now() + IDLE, Instant::from_std);
        tokio::select! {
            event = events.recv() => match event {
                Ok(PeerEvent::Connected { node_id, remote_addr, .. })
                | Ok(PeerEvent::PathChanged { node_id, remote_addr, .. }) => {
                    core.handle_connected(now_std(), unix_now(), node_id, remote_addr);
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
            Some((peer, ok)) = outcomes.recv() => {
                if !ok {
                    core.handle_dial_failed(now_std(), &peer);
                }
            }
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
    if let Some(list) = core.handle_shutdown() {
        save(&store, list).await;
    }
}

async fn save(store: &RecentPeersStore, list: Vec<crate::recent_peers::RecentPeer>) {
    let store = store.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.save(list)).await {
        tracing::warn!(error = %e, "recent peers not saved");
    }
}
