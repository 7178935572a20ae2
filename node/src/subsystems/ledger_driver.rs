//! The ledger subsystem's driver: the only async part. It reads the clock,
//! the transport's peer events, the ledger streams and the ledger's own
//! stored entries, feeds them to [`LedgerCore`] (off the runtime, since
//! each call may touch redb) and writes what the core returns. Every
//! [`REACHABILITY_CHECK`] it also hands traversal's reasons to the
//! [`OutcomeTracker`] and the relay server's closed sessions to the
//! [`SessionRecorder`], and appends what they return. Policy lives in the
//! core, [`Announcer`], the tracker and the recorder: the driver decides
//! nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use relay_proto::ledger::{Body, EntryKind, MemberProof};
use relay_transport::mux::{reset_bi, ProtocolRx, RESET_BAD_FRAME};
use relay_transport::{Incoming, Mux, NodeId, PathKind, PeerEvent, PeerState, Transport};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;

use super::ledger::Counters;
use super::ledger_announce::{announcement, Announcer, Reachability};
use super::ledger_core::{LedgerCore, TRANSMIT_BATCH};
use super::ledger_outcomes::OutcomeTracker;
use super::ledger_sessions::SessionRecorder;
use super::ledger_wire::{read_from_peer, write_to_peer, WireEvent, WRITER_QUEUE, WRITE_STALL};
use crate::ledger::{Ledger, LedgerError, StoredEntry};

/// How often the driver looks at the node's addresses and NAT type.
pub const REACHABILITY_CHECK: Duration = Duration::from_secs(2);
/// How often the store drops what retention no longer keeps.
pub const COMPACT_EVERY: Duration = Duration::from_secs(3600);
/// The version a node announces.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Most event entries (relay sessions, traversal outcomes) appended per
/// check.
pub const EVENTS_PER_CHECK: usize = 64;

/// What the node tells the ledger about itself right now.
pub fn reachability(transport: &Transport) -> Reachability {
    let snapshot = transport.traversal_snapshot();
    Reachability {
        listen: transport.local_addrs(),
        reflexive: snapshot.nat.reflex_addr,
        observed: transport
            .observed_addrs()
            .into_iter()
            .map(|(_, a)| a)
            .collect(),
        nat: snapshot.nat.nat,
        relay: transport.relay_status().enabled,
    }
}

/// Runs `f` on the core off the async runtime.
async fn on_core<T, F>(core: &Arc<Mutex<LedgerCore>>, f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce(&mut LedgerCore) -> T + Send + 'static,
{
    let core = core.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = core.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut c)
    })
    .await
    .ok()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct Writer {
    generation: u64,
    tx: mpsc::Sender<Vec<u8>>,
}

/// The driver's state.
struct Driver {
    mux: Mux,
    ledger: Ledger,
    core: Arc<Mutex<LedgerCore>>,
    counters: Arc<Counters>,
    writers: HashMap<NodeId, Writer>,
    wire_tx: mpsc::Sender<WireEvent>,
    tasks: JoinSet<()>,
    /// This node's membership proof, in every announcement.
    proof: Option<MemberProof>,
    outcomes: OutcomeTracker,
    sessions: SessionRecorder,
}

impl Driver {
    fn note(&self, result: Option<Result<(), LedgerError>>, what: &str) {
        self.counters.sync_stats(&self.core);
        if let Some(Err(e)) = result {
            tracing::warn!(error = %e, "ledger: {what} failed");
        }
    }

    fn birthday_total(&self) -> u64 {
        self.mux
            .transport()
            .traversal_snapshot()
            .stats
            .birthday_packets
    }

    /// A peer's connection is on `path` now.
    fn path(&mut self, peer: NodeId, path: PathKind) {
        let birthday = self.birthday_total();
        self.outcomes
            .handle_path(Instant::now(), peer, path, birthday);
    }

    async fn connected(&mut self, peer: NodeId, generation: u64) {
        if peer == self.ledger.node_id()
            || self
                .writers
                .get(&peer)
                .is_some_and(|w| w.generation == generation)
        {
            return;
        }
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        self.writers.insert(peer, Writer { generation, tx });
        self.tasks.spawn(write_to_peer(
            self.mux.clone(),
            peer,
            generation,
            rx,
            self.wire_tx.clone(),
        ));
        let now = Instant::now();
        let r = on_core(&self.core, move |c| c.peer_connected(now, peer)).await;
        self.note(r, "peer connected");
    }

    async fn disconnected(&mut self, peer: NodeId) {
        self.writers.remove(&peer);
        self.outcomes.handle_disconnected(&peer);
        let r = on_core(&self.core, move |c| {
            c.peer_disconnected(&peer);
            Ok(())
        })
        .await;
        self.note(r, "peer disconnected");
    }

    async fn message(&mut self, from: NodeId, bytes: Vec<u8>) {
        let now = Instant::now();
        let r = on_core(&self.core, move |c| {
            c.message(now, from, &bytes).map(|_| ())
        })
        .await;
        self.note(r, "handling a message");
    }

    /// An entry reached the store (ours or replicated).
    async fn stored(&mut self, s: StoredEntry) {
        let own = self.ledger.node_id();
        if s.entry.origin == own {
            let r = on_core(&self.core, move |c| {
                c.appended(std::slice::from_ref(&s));
                Ok(())
            })
            .await;
            self.note(r, "scheduling an append");
        } else if s.entry.kind == EntryKind::NodeAnnouncement {
            if let Ok(Body::NodeAnnouncement(a)) = s.entry.body() {
                if let Some(addr) = a.addrs.first() {
                    self.mux.remember_addr(s.entry.origin, *addr);
                }
            }
        }
    }

    async fn timeout(&mut self) {
        let now = Instant::now();
        let r = on_core(&self.core, move |c| c.timeout(now)).await;
        self.note(r, "the anti-entropy tick");
    }

    /// Sends what the core has queued, writer by writer.
    async fn flush(&mut self) {
        loop {
            let Some(batch) = on_core(&self.core, LedgerCore::poll_transmits).await else {
                return;
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "ledger: reading entries to send failed");
                    return;
                }
            };
            let full = batch.len() == TRANSMIT_BATCH;
            for t in batch {
                let Some(w) = self.writers.get(&t.peer) else {
                    continue;
                };
                let sent = tokio::time::timeout(WRITE_STALL, w.tx.send(t.bytes)).await;
                if !matches!(sent, Ok(Ok(()))) {
                    tracing::debug!(peer = %t.peer.fmt_short(), "ledger writer stalled or gone");
                    self.disconnected(t.peer).await;
                }
            }
            if !full {
                return;
            }
        }
    }

    /// The periodic check: announce this node if needed, record events,
    /// refresh the per-peer lag.
    async fn check(&mut self, announcer: &mut Announcer) {
        let Some(state) = on_core(&self.core, |c| c.own_state()).await else {
            return;
        };
        let (frontier, ahead) = match state {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "ledger: reading our feed failed");
                return;
            }
        };
        self.announce(announcer, frontier, ahead).await;
        self.gather_events();
        // Events follow this node's first announcement (its membership
        // proof leads its feed) and never fork a feed being re-synced.
        if frontier > 0 && !ahead {
            self.append_events().await;
        }
        if let Some(Ok(lags)) = on_core(&self.core, |c| c.lags()).await {
            self.counters.set_lags(lags);
        }
    }

    async fn announce(&mut self, announcer: &mut Announcer, frontier: u64, ahead: bool) {
        let now = Instant::now();
        let current = announcement(&reachability(self.mux.transport()), VERSION, self.proof);
        let Some(a) = announcer.poll(now, &current, frontier, ahead) else {
            return;
        };
        match self.ledger.append(Body::NodeAnnouncement(a.clone())).await {
            Ok(cursor) => {
                tracing::info!(cursor = %cursor, addrs = ?a.addrs, "ledger: announced this node");
                self.counters.appended();
                announcer.appended(now, a);
            }
            Err(e) => tracing::warn!(error = %e, "ledger: announcing this node failed"),
        }
    }

    /// Traversal's reasons and the relay server's closed sessions.
    fn gather_events(&mut self) {
        let now = Instant::now();
        let transport = self.mux.transport();
        let snapshot = transport.traversal_snapshot();
        self.outcomes
            .handle_why(now, &snapshot.why, snapshot.stats.birthday_packets);
        for ev in transport.relay_sessions() {
            self.sessions.handle_closed(now, &ev);
        }
        self.counters
            .set_events_dropped(self.outcomes.dropped() + self.sessions.dropped());
    }

    async fn append_events(&mut self) {
        let now = Instant::now();
        let mut bodies = Vec::new();
        while bodies.len() < EVENTS_PER_CHECK {
            match self.outcomes.poll_outcome(now) {
                Some(o) => bodies.push(Body::TraversalOutcome(o)),
                None => break,
            }
        }
        while bodies.len() < EVENTS_PER_CHECK {
            match self.sessions.poll_session(now) {
                Some(s) => bodies.push(Body::RelaySession(s)),
                None => break,
            }
        }
        // All at once: they share one group commit.
        let mut appends = JoinSet::new();
        for body in bodies {
            let ledger = self.ledger.clone();
            appends.spawn(async move {
                let kind = body.kind();
                (kind, ledger.append(body).await)
            });
        }
        while let Some(done) = appends.join_next().await {
            let Ok((kind, result)) = done else {
                continue;
            };
            match result {
                Ok(_) => {
                    self.counters.appended();
                    self.counters.event_appended(kind);
                }
                Err(e) => tracing::warn!(error = %e, %kind, "ledger: recording an event failed"),
            }
        }
    }

    async fn compact(&mut self) {
        let now = unix_ms();
        let r = on_core(&self.core, move |c| {
            c.ledger().store().compact(now).map(|_| ())
        })
        .await;
        self.note(r, "compaction");
    }
}

/// Runs the ledger's replication and announcements until the mux closes.
pub async fn drive(
    mux: Mux,
    ledger: Ledger,
    core: Arc<Mutex<LedgerCore>>,
    mut rx: ProtocolRx,
    counters: Arc<Counters>,
) {
    let transport = mux.transport().clone();
    let mut events = transport.subscribe();
    let mut stored = ledger.subscribe();
    let (wire_tx, mut wire_rx) = mpsc::channel(64);
    let mut d = Driver {
        mux,
        ledger: ledger.clone(),
        core,
        counters,
        writers: HashMap::new(),
        wire_tx,
        tasks: JoinSet::new(),
        proof: transport
            .network_key()
            .map(|k| MemberProof::new(&k, &ledger.node_id())),
        outcomes: OutcomeTracker::new(),
        sessions: SessionRecorder::new(),
    };

    // Members already in the ledger can be dialed.
    if let Ok(members) = crate::ledger::members(ledger.store()) {
        for m in members {
            if m.node_id != ledger.node_id() {
                if let Some(addr) = m.addrs.first() {
                    d.mux.remember_addr(m.node_id, *addr);
                }
            }
        }
    }
    let last = on_core(&d.core, |c| c.own_announcement())
        .await
        .and_then(Result::ok)
        .flatten();
    let mut announcer = Announcer::new(Instant::now(), last);
    // Peers connected before we subscribed (generation 0: any later
    // `Connected` replaces it).
    for p in transport.peers() {
        if p.state == PeerState::Connected {
            d.connected(p.node_id, 0).await;
            d.path(p.node_id, p.path);
        }
    }
    d.flush().await;

    let mut check = tokio::time::interval(REACHABILITY_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut compact = tokio::time::interval(COMPACT_EVERY);
    compact.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let timer = on_core(&d.core, |c| c.poll_timeout()).await.flatten();
        let sleep = async {
            match timer {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(PeerEvent::Connected { node_id, generation, path, .. }) => {
                    d.connected(node_id, generation).await;
                    d.path(node_id, path);
                }
                Ok(PeerEvent::PathChanged { node_id, path, .. }) => d.path(node_id, path),
                Ok(PeerEvent::Disconnected { node_id, .. }) => d.disconnected(node_id).await,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            incoming = rx.next_stream() => match incoming {
                Some(Incoming::Uni { from, recv }) => {
                    d.tasks.spawn(read_from_peer(from, recv, d.wire_tx.clone()));
                }
                Some(Incoming::Bi { mut send, mut recv, .. }) => {
                    reset_bi(&mut send, &mut recv, RESET_BAD_FRAME);
                }
                Some(Incoming::Datagram { .. }) => {}
                None => break,
            },
            Some(ev) = wire_rx.recv() => match ev {
                WireEvent::Message { from, bytes } => d.message(from, bytes).await,
                WireEvent::WriterFailed { peer, generation } => {
                    if d.writers.get(&peer).is_some_and(|w| w.generation == generation) {
                        d.disconnected(peer).await;
                    }
                }
            },
            s = stored.recv() => match s {
                Ok(s) => d.stored(s).await,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Our own entries are offered again by anti-entropy.
                    tracing::debug!(missed = n, "ledger subscription lagged");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            () = sleep => d.timeout().await,
            _ = check.tick() => d.check(&mut announcer).await,
            _ = compact.tick() => d.compact().await,
            Some(_) = d.tasks.join_next(), if !d.tasks.is_empty() => {}
        }
        d.flush().await;
    }
    d.writers.clear();
    d.tasks.shutdown().await;
}
