//! The channels subsystem's driver: the only async part. It moves the
//! hub's frames (streams to each peer, datagrams for best-effort
//! deliveries, loopback inside the hub), reads peers' streams and
//! datagrams, follows connection events (a reconnect resumes links by
//! sequence) and the ledger (revocations), and runs the owner's timers.
//! Policy lives in the cores; the driver decides nothing.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use relay_proto::ledger::{Body, EntryKind};
use relay_proto::wire::channel::ChannelFrame;
use relay_transport::mux::{reset_bi, ProtocolRx, RESET_BAD_FRAME};
use relay_transport::{Incoming, Mux, NodeId, PeerEvent};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

use super::channels_hub::Hub;
use super::channels_wire::{
    encode, read_from_peer, send_datagram, write_to_peer, WireCounters, WriterEnded, WRITER_QUEUE,
};
use crate::ledger::{Filter, Ledger, StoredEntry};

/// Frames handled per turn before the driver flushes.
const FRAME_BATCH: usize = 512;
/// Longest sleep when no timer is due.
const IDLE: Duration = Duration::from_secs(3600);

/// The current time, unix ms.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Locks the hub (a poisoned lock still holds consistent core state: the
/// cores never panic midway).
pub fn lock(hub: &Mutex<Hub>) -> std::sync::MutexGuard<'_, Hub> {
    hub.lock().unwrap_or_else(|e| e.into_inner())
}

struct Writer {
    generation: u64,
    tx: mpsc::Sender<Vec<u8>>,
}

struct Driver {
    mux: Mux,
    hub: Arc<Mutex<Hub>>,
    counters: Arc<WireCounters>,
    writers: HashMap<NodeId, Writer>,
    generations: HashMap<NodeId, u64>,
    ended_tx: mpsc::Sender<WriterEnded>,
    frames_tx: mpsc::Sender<(NodeId, ChannelFrame)>,
    tasks: JoinSet<()>,
}

impl Driver {
    fn flush(&mut self) {
        let out = lock(&self.hub).drain_out(unix_ms());
        for t in out {
            if !t.reliable {
                send_datagram(&self.mux, t.peer, &t.frame, &self.counters);
                continue;
            }
            let Some(bytes) = encode(&t.frame) else {
                continue;
            };
            let generation = self.generations.get(&t.peer).copied().unwrap_or(0);
            let writer = self.writers.entry(t.peer).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(WRITER_QUEUE);
                self.tasks.spawn(write_to_peer(
                    self.mux.clone(),
                    t.peer,
                    generation,
                    rx,
                    self.ended_tx.clone(),
                    self.counters.clone(),
                ));
                Writer { generation, tx }
            });
            if writer.tx.try_send(bytes).is_err() {
                // The peer does not keep up with far more than its
                // credit allows: treat the connection as lost; links
                // resume when it is back.
                tracing::debug!(peer = %t.peer.fmt_short(), "channels writer full");
                let peer = t.peer;
                self.writers.remove(&peer);
                lock(&self.hub).peer_down(&peer);
            }
        }
    }

    fn incoming(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Uni { from, recv } => {
                self.tasks.spawn(read_from_peer(
                    from,
                    recv,
                    self.frames_tx.clone(),
                    self.counters.clone(),
                ));
            }
            Incoming::Bi {
                mut send, mut recv, ..
            } => reset_bi(&mut send, &mut recv, RESET_BAD_FRAME),
            Incoming::Datagram { from, data } => match ChannelFrame::decode(&data) {
                Ok(frame) => {
                    self.counters.frames_in.fetch_add(1, Relaxed);
                    lock(&self.hub).handle_frame(unix_ms(), from, frame);
                }
                Err(_) => {
                    self.counters.bad_frames.fetch_add(1, Relaxed);
                }
            },
        }
    }

    fn peer_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Connected {
                node_id,
                generation,
                ..
            } => {
                let previous = self.generations.insert(node_id, generation);
                match self.writers.get_mut(&node_id) {
                    Some(w) if w.generation == 0 => w.generation = generation,
                    _ => {}
                }
                if previous.is_some_and(|g| g != generation) {
                    if self
                        .writers
                        .get(&node_id)
                        .is_some_and(|w| w.generation != generation)
                    {
                        self.writers.remove(&node_id);
                    }
                    lock(&self.hub).peer_reset(&node_id);
                }
            }
            PeerEvent::Disconnected { node_id, .. } => {
                self.writers.remove(&node_id);
                lock(&self.hub).peer_down(&node_id);
            }
            _ => {}
        }
    }

    fn writer_ended(&mut self, ended: WriterEnded) {
        if self
            .writers
            .get(&ended.peer)
            .is_some_and(|w| w.generation == ended.generation)
        {
            // Links over it are lost; they resume when a new connection
            // comes up (a new generation), not in a loop of failing dials.
            self.writers.remove(&ended.peer);
            lock(&self.hub).peer_down(&ended.peer);
        }
    }
}

/// Feeds a revocation the ledger stored to the hub.
pub fn apply_entry(hub: &Mutex<Hub>, stored: &StoredEntry) {
    let e = &stored.entry;
    if e.kind != EntryKind::TokenRevocation {
        return;
    }
    if let Ok(Body::TokenRevocation(r)) = e.body() {
        let ended = lock(hub).revoke(r.token_id, e.origin);
        if ended > 0 {
            tracing::info!(links = ended, "channels: links ended by a revocation");
        }
    }
}

/// Loads what the ledger already holds: revocations.
pub fn load(ledger: &Ledger, hub: &Mutex<Hub>) {
    let filter = Filter {
        origin: None,
        kind: Some(EntryKind::TokenRevocation),
    };
    match ledger.read(None, usize::MAX, &filter) {
        Ok(entries) => entries.iter().for_each(|s| apply_entry(hub, s)),
        Err(e) => tracing::warn!(error = %e, "channels: reading revocations failed"),
    }
}

/// Runs the driver until the mux closes.
pub async fn drive(
    mux: Mux,
    ledger: Ledger,
    hub: Arc<Mutex<Hub>>,
    wake: Arc<Notify>,
    mut rx: ProtocolRx,
    counters: Arc<WireCounters>,
) {
    let mut events = mux.transport().subscribe();
    let mut stored = ledger.subscribe();
    load(&ledger, &hub);
    let (ended_tx, mut ended_rx) = mpsc::channel(64);
    let (frames_tx, mut frames_rx) = mpsc::channel(1024);
    let mut d = Driver {
        mux,
        hub: hub.clone(),
        counters,
        writers: HashMap::new(),
        generations: HashMap::new(),
        ended_tx,
        frames_tx,
        tasks: JoinSet::new(),
    };
    loop {
        d.flush();
        let due = lock(&hub).poll_timeout();
        let sleep = due.map_or(IDLE, |t| Duration::from_millis(t.saturating_sub(unix_ms())));
        // Connection events first: a reconnect must drop the old
        // connection's links before frames of the new one reopen them.
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Ok(e) => d.peer_event(e),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            entry = stored.recv() => match entry {
                Ok(s) => apply_entry(&d.hub, &s),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => load(&ledger, &d.hub),
                Err(_) => return,
            },
            Some(ended) = ended_rx.recv() => d.writer_ended(ended),
            incoming = rx.next() => match incoming {
                Some(i) => d.incoming(i),
                None => return,
            },
            Some((from, frame)) = frames_rx.recv() => {
                let mut hub = lock(&d.hub);
                let now = unix_ms();
                hub.handle_frame(now, from, frame);
                for _ in 1..FRAME_BATCH {
                    match frames_rx.try_recv() {
                        Ok((from, frame)) => hub.handle_frame(now, from, frame),
                        Err(_) => break,
                    }
                }
            }
            () = wake.notified() => {}
            () = tokio::time::sleep(sleep) => lock(&d.hub).handle_timeout(unix_ms()),
            Some(_) = d.tasks.join_next(), if !d.tasks.is_empty() => {}
        }
    }
}
