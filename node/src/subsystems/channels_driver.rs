//! The channels subsystem's driver: the only async part. It moves the
//! hub's frames (streams to each peer, datagrams for best-effort
//! deliveries, loopback inside the hub), reads peers' streams and
//! datagrams, follows connection events (a reconnect resumes links by
//! sequence; an owner our links wait for is redialed with the backoff of
//! [`super::channels_redial`]) and the node's revocation set (a new revocation ends the
//! links it covers), and runs the owner's timers.
//! Policy lives in the cores; the driver decides nothing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use relay_channels::Transmit;
use relay_proto::wire::channel::ChannelFrame;
use relay_transport::mux::{reset_bi, ProtocolRx, RESET_BAD_FRAME};
use relay_transport::{DialErrorKind, Incoming, Mux, NodeId, PeerEvent};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

use super::channels_hub::Hub;
use super::channels_outbox::Outbox;
use super::channels_redial::OwnerDials;
use super::channels_wire::{
    read_from_peer, send_datagram, write_to_peer, WireCounters, WriterEnded,
};
use crate::ledger::Ledger;
use crate::revocations::Revoked;
use crate::revocations_set::RevocationSet;

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

/// One peer's stream writer: its outbox, and the frames held back (in
/// order) while the outbox is full. Dropping it closes the outbox (the
/// writer finishes the stream after what is buffered).
struct Writer {
    generation: u64,
    outbox: Arc<Outbox>,
    held: VecDeque<ChannelFrame>,
}

impl Writer {
    /// Queues `frames` behind any held ones, encoding what fits straight
    /// into the outbox (one lock for the run).
    fn push(&mut self, frames: impl Iterator<Item = ChannelFrame>, counters: &WireCounters) {
        let outbox = &self.outbox;
        let mut append = outbox.append();
        let mut sent = 0;
        for frame in frames {
            if !self.held.is_empty() {
                self.held.push_back(frame);
                continue;
            }
            match append.push(&frame) {
                Ok(true) => sent += 1,
                Ok(false) => self.held.push_back(frame),
                Err(e) => tracing::debug!(error = %e, "channels frame not sent"),
            }
        }
        drop(append);
        counters.frames_out.fetch_add(sent, Relaxed);
    }

    /// Moves held frames into the outbox while it has room.
    fn move_held(&mut self, counters: &WireCounters) {
        if self.held.is_empty() {
            return;
        }
        let outbox = &self.outbox;
        let mut append = outbox.append();
        let mut sent = 0;
        while let Some(frame) = self.held.front() {
            match append.push(frame) {
                Ok(true) => sent += 1,
                Ok(false) => break,
                Err(e) => tracing::debug!(error = %e, "channels frame not sent"),
            }
            self.held.pop_front();
        }
        drop(append);
        counters.frames_out.fetch_add(sent, Relaxed);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.outbox.close();
    }
}

struct Driver {
    mux: Mux,
    ledger: Ledger,
    hub: Arc<Mutex<Hub>>,
    /// When to dial owners our links wait for.
    dials: OwnerDials,
    /// Owners whose links went down and wait for a connection.
    down: HashSet<NodeId>,
    dialed_tx: mpsc::Sender<(NodeId, Result<(), DialErrorKind>)>,
    counters: Arc<WireCounters>,
    writers: HashMap<NodeId, Writer>,
    generations: HashMap<NodeId, u64>,
    ended_tx: mpsc::Sender<WriterEnded>,
    frames_tx: mpsc::Sender<(NodeId, Vec<ChannelFrame>)>,
    /// Wakes the driver (writers: room again in an outbox).
    wake: Arc<Notify>,
    tasks: JoinSet<()>,
    /// The hub's outgoing frames of one flush (kept for its allocation).
    out: Vec<Transmit>,
}

impl Driver {
    fn flush(&mut self) {
        // Frames held back for room go first, in order.
        for w in self.writers.values_mut() {
            w.move_held(&self.counters);
        }
        let mut buf = std::mem::take(&mut self.out);
        lock(&self.hub).drain_out_into(unix_ms(), &mut buf);
        let mut out = buf.drain(..).peekable();
        while let Some(t) = out.next() {
            if !t.reliable {
                send_datagram(&self.mux, t.peer, &t.frame, &self.counters);
                continue;
            }
            let peer = t.peer;
            let generation = self.generations.get(&peer).copied().unwrap_or(0);
            let writer = self.writers.entry(peer).or_insert_with(|| {
                let outbox = Arc::new(Outbox::default());
                self.tasks.spawn(write_to_peer(
                    self.mux.clone(),
                    peer,
                    generation,
                    outbox.clone(),
                    self.wake.clone(),
                    self.ended_tx.clone(),
                ));
                Writer {
                    generation,
                    outbox,
                    held: VecDeque::new(),
                }
            });
            // This frame and the reliable ones right after it for the same
            // peer, in one run. A busy peer's frames wait (bounded by the
            // credit its links granted); they are never dropped.
            let run = std::iter::once(t.frame).chain(std::iter::from_fn(|| {
                out.next_if(|n| n.reliable && n.peer == peer)
                    .map(|n| n.frame)
            }));
            writer.push(run, &self.counters);
        }
        drop(out);
        self.out = buf;
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
            Incoming::Datagram { from, data } => match ChannelFrame::decode_shared(&data) {
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
                let changed = previous.is_some_and(|g| g != generation);
                if changed
                    && self
                        .writers
                        .get(&node_id)
                        .is_some_and(|w| w.generation != generation)
                {
                    self.writers.remove(&node_id);
                }
                let was_down = self.down.remove(&node_id);
                self.dials.handle_connected(&node_id);
                if changed || was_down {
                    lock(&self.hub).peer_reset(&node_id);
                }
            }
            PeerEvent::Disconnected { node_id, .. } => {
                self.writers.remove(&node_id);
                self.lost(node_id);
            }
            _ => {}
        }
    }

    /// The connection to `peer` is gone (or unusable): links over it
    /// wait; if ours wait for it as an owner, it is redialed.
    fn lost(&mut self, peer: NodeId) {
        let waits = {
            let mut hub = lock(&self.hub);
            hub.peer_down(&peer);
            hub.waits_for(&peer)
        };
        if waits {
            self.down.insert(peer);
            let addrs = owner_addrs(&self.ledger, &peer);
            self.dials.handle_lost(peer, addrs, now());
        }
    }

    /// Forgets owners nothing waits for; starts the dials that are due.
    fn dial_due(&mut self) {
        {
            let hub = lock(&self.hub);
            for owner in self.dials.owners() {
                if !hub.waits_for(&owner) {
                    self.dials.forget(&owner);
                    self.down.remove(&owner);
                }
            }
        }
        while let Some(dial) = self.dials.poll_dial(now()) {
            tracing::debug!(owner = %dial.owner.fmt_short(), addr = ?dial.addr, "channels: dialing the owner");
            let transport = self.mux.transport().clone();
            let tx = self.dialed_tx.clone();
            self.tasks.spawn(async move {
                let result = transport.connect_best(dial.owner, dial.addr).await;
                let _ = tx.send((dial.owner, result.map_err(|e| e.kind))).await;
            });
        }
    }

    /// A dial of ours ended.
    fn dialed(&mut self, owner: NodeId, result: Result<(), DialErrorKind>) {
        match result {
            // Connected: the transport's `Connected` event resumes the
            // links (resuming here too would open them twice).
            Ok(()) => self.dials.handle_connected(&owner),
            Err(kind) => {
                tracing::debug!(owner = %owner.fmt_short(), error = kind.as_str(), "channels: dialing the owner failed");
                self.dials.handle_dial_failed(&owner, kind, now());
            }
        }
    }

    fn writer_ended(&mut self, ended: WriterEnded) {
        if self
            .writers
            .get(&ended.peer)
            .is_some_and(|w| w.generation == ended.generation)
        {
            // Links over it are lost; they resume when a new connection
            // comes up (ours, redialed with backoff, or the peer's).
            self.writers.remove(&ended.peer);
            self.lost(ended.peer);
        }
    }
}

/// The clock the redial policy runs on (tokio's, so a paused clock
/// controls it).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The addresses `owner` announced in the ledger, best first.
fn owner_addrs(ledger: &Ledger, owner: &NodeId) -> Vec<std::net::SocketAddr> {
    match crate::ledger::members(ledger.store()) {
        Ok(members) => members
            .into_iter()
            .find(|m| m.node_id == *owner)
            .map(|m| m.addrs)
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Ends the live links a revocation covers.
pub fn apply_revocation(hub: &Mutex<Hub>, r: &Revoked) {
    let ended = lock(hub).revoke(r.id.revocation_key(), r.by);
    if ended > 0 {
        tracing::info!(links = ended, "channels: links ended by a revocation");
    }
}

/// Re-checks live links against every revocation the set holds (at start,
/// and after missing announcements).
pub fn sweep(revocations: &RevocationSet, hub: &Mutex<Hub>) {
    for r in revocations.all() {
        apply_revocation(hub, &r);
    }
}

/// Runs the driver until the mux closes.
pub async fn drive(
    mux: Mux,
    ledger: Ledger,
    revocations: RevocationSet,
    hub: Arc<Mutex<Hub>>,
    wake: Arc<Notify>,
    mut rx: ProtocolRx,
    counters: Arc<WireCounters>,
) {
    let mut events = mux.transport().subscribe();
    let mut revoked = revocations.subscribe();
    sweep(&revocations, &hub);
    let (ended_tx, mut ended_rx) = mpsc::channel(64);
    // Each entry is the frames of one stream read (at most 64 KiB).
    let (frames_tx, mut frames_rx) = mpsc::channel(64);
    let (dialed_tx, mut dialed_rx) = mpsc::channel(64);
    let mut d = Driver {
        mux,
        ledger,
        hub: hub.clone(),
        dials: OwnerDials::new(),
        down: HashSet::new(),
        dialed_tx,
        counters,
        writers: HashMap::new(),
        generations: HashMap::new(),
        ended_tx,
        frames_tx,
        wake: wake.clone(),
        tasks: JoinSet::new(),
        out: Vec::new(),
    };
    loop {
        d.flush();
        d.dial_due();
        let due = lock(&hub).poll_timeout();
        let sleep = due.map_or(IDLE, |t| Duration::from_millis(t.saturating_sub(unix_ms())));
        let redial = d
            .dials
            .poll_timeout()
            .map(|t| t.saturating_duration_since(now()));
        let sleep = redial.map_or(sleep, |r| r.min(sleep));
        // Connection events first: a reconnect must drop the old
        // connection's links before frames of the new one reopen them.
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Ok(e) => d.peer_event(e),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            r = revoked.recv() => match r {
                Ok(r) => apply_revocation(&d.hub, &r),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => sweep(&revocations, &d.hub),
                Err(_) => return,
            },
            Some(ended) = ended_rx.recv() => d.writer_ended(ended),
            Some((owner, result)) = dialed_rx.recv() => d.dialed(owner, result),
            incoming = rx.next() => match incoming {
                Some(i) => d.incoming(i),
                None => return,
            },
            Some(first) = frames_rx.recv() => {
                let mut hub = lock(&d.hub);
                let now = unix_ms();
                let mut handled = 0;
                let mut next = Some(first);
                while let Some((from, frames)) = next {
                    handled += frames.len();
                    for frame in frames {
                        hub.handle_frame(now, from, frame);
                    }
                    next = if handled < FRAME_BATCH { frames_rx.try_recv().ok() } else { None };
                }
            }
            () = wake.notified() => {}
            () = tokio::time::sleep(sleep) => lock(&d.hub).handle_timeout(unix_ms()),
            Some(_) = d.tasks.join_next(), if !d.tasks.is_empty() => {}
        }
    }
}
