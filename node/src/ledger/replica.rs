//! The sans-IO replication core: what to send each connected peer and what
//! to do with what it sends. No sockets, no clock, no tokio: the driver
//! feeds it `now`, connection events and message bytes, and pulls
//! messages with [`Replica::poll_transmit`] and the next timer with
//! [`Replica::poll_timeout`].
//!
//! ## Protocol (messages in `relay_proto::ledger::wire`)
//!
//! - **Connect.** Both sides send `Hello` with their version vector
//!   (origin -> frontier seq and hash). Each side then streams, per origin,
//!   everything from the peer's frontier + 1 up to its own frontier, in
//!   `Entries` batches of at most [`ReplicaConfig::batch_entries`] entries
//!   and [`ReplicaConfig::batch_bytes`] bytes.
//! - **Live push.** Whatever this node stores (its own appends and entries
//!   replicated from others) is scheduled for every connected peer whose
//!   known frontier is behind, so entries travel transitively.
//! - **Anti-entropy.** Every [`ReplicaConfig::anti_entropy`] each side sends
//!   `Hello` again; the peer's vector replaces what this side believed it
//!   had, and whatever was lost is sent again.
//! - **Gaps.** An `Entries` range that starts beyond this node's frontier + 1
//!   is dropped and answered with `Want { frontier + 1 }` (at most once per
//!   origin per [`ReplicaConfig::want_interval`]).
//!
//! ## Verification before storage
//!
//! Every entry is checked before it is stored. Within a batch, entries are
//! split into runs in which each entry's `prev_hash` is the hash of the one
//! before (the first entry of the first run must link to the stored
//! frontier). Only the **last** entry of each run has its signature
//! verified: it signs the hash of its predecessor, which covers the
//! predecessor's bytes and signature and so on down the run, so a valid
//! head signature authenticates the whole run (SHA-256 collision
//! resistance). A run starts afresh only at a seq gap the sender declared by
//! the range (entries retention dropped there).
//!
//! Rejected and counted ([`ReplicaStats`]): a bad signature (`tampered`),
//! an entry whose `prev_hash` does not match its predecessor
//! (`broken_chain`; if its own signature is valid the origin signed two
//! different predecessors, so the peer is asked for its version of the
//! predecessor and the fork shows up with evidence), an origin the
//! membership predicate refuses (`not_member`), an origin flagged as forked
//! (`forked_origin`), over the per-peer limits (`rate_limited`),
//! undecodable messages (`malformed`).
//!
//! ## Membership
//!
//! Whose feeds are accepted is a [`Membership`] (for a running node,
//! [`super::membership::MeshMembers`]: an origin is a member once a
//! validly signed announcement of it carries its membership proof). An
//! `Entries` message of an origin not yet a member is accepted only if it
//! carries such an announcement itself; before streaming a feed to a peer
//! that holds nothing of it, the replica sends the origin's proving
//! announcement on its own, so the proof arrives ahead of the feed even
//! when it sits beyond the first batch.
//!
//! ## Forks
//!
//! Two different, validly signed entries with one origin and seq are a fork:
//! both are kept as evidence, the origin is flagged, this node's version is
//! sent to the peer (so it holds the evidence too), and no new entry of the
//! origin is accepted until an operator forgives it (docs/LEDGER.md).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use relay_proto::ledger::wire::{LedgerMsg, MAX_BATCH, MAX_VECTOR, PROTOCOL_VERSION};
use relay_proto::ledger::{Entry, EntryHash, EntryKind, VectorItem};
use relay_proto::NodeId;

use super::error::LedgerError;
use super::limits::{PeerLimits, TokenBucket};
use super::membership::Membership;
use super::store::{OriginState, RangeRead, StoredEntry};

/// What the replica needs from storage. Implemented by
/// [`super::Ledger`] (redb) and [`super::MemStore`] (simulations).
pub trait ReplicaStore {
    /// Frontier and hash per origin.
    fn vector(&self) -> Result<Vec<VectorItem>, LedgerError>;
    /// What is known of one origin.
    fn origin(&self, origin: &NodeId) -> Result<Option<OriginState>, LedgerError>;
    /// One stored entry.
    fn entry(&self, origin: &NodeId, seq: u64) -> Result<Option<Entry>, LedgerError>;
    /// Stored entries of `origin` from `from_seq` (see `Store::range`).
    fn range(
        &self,
        origin: &NodeId,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Option<RangeRead>, LedgerError>;
    /// Stores verified entries and moves the frontier.
    fn insert_verified(
        &mut self,
        origin: &NodeId,
        entries: &[Entry],
        frontier: (u64, EntryHash),
    ) -> Result<Vec<StoredEntry>, LedgerError>;
    /// Keeps fork evidence and flags the origin.
    fn record_fork(&mut self, evidence: &[Entry]) -> Result<(), LedgerError>;
}

/// Replication tuning (defaults documented in docs/LEDGER.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// Most entries per `Entries` message.
    pub batch_entries: usize,
    /// Soft bound on bytes per `Entries` message (one entry always fits).
    pub batch_bytes: usize,
    /// Period of the anti-entropy `Hello`.
    pub anti_entropy: Duration,
    /// Least time between two `Want`s for one origin to one peer, and
    /// between two served `Want`s for one origin from one peer.
    pub want_interval: Duration,
    /// Inbound limits per peer.
    pub limits: PeerLimits,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            batch_entries: MAX_BATCH,
            batch_bytes: 256 * 1024,
            anti_entropy: Duration::from_secs(30),
            want_interval: Duration::from_secs(2),
            limits: PeerLimits::default(),
        }
    }
}

/// Counters, all monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaStats {
    /// Entries received in `Entries` messages.
    pub received: u64,
    /// Entries stored from peers.
    pub replicated: u64,
    /// Entries sent.
    pub sent: u64,
    /// Entries whose signature failed.
    pub tampered: u64,
    /// Entries that did not link to their predecessor.
    pub broken_chain: u64,
    /// Entries of origins that are not members.
    pub not_member: u64,
    /// Entries of origins flagged as forked.
    pub forked_origin: u64,
    /// Messages dropped over the per-peer limits.
    pub rate_limited: u64,
    /// Messages that did not decode (or had an unknown version).
    pub malformed: u64,
    /// Ranges dropped because they started beyond the frontier + 1.
    pub out_of_order: u64,
    /// Forks detected.
    pub forks: u64,
    /// Storage failures while handling messages.
    pub store_errors: u64,
}

/// A message for the driver to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// To whom.
    pub peer: NodeId,
    /// The encoded [`LedgerMsg`].
    pub bytes: Vec<u8>,
}

/// How far a peer and this node are apart, in seqs summed over origins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    /// Entries the peer lacks from us (as far as we know).
    pub peer_lacks: u64,
    /// Entries we lack from the peer (as of its last Hello and pushes).
    pub we_lack: u64,
}

#[derive(Debug)]
struct Peer {
    /// What we believe the peer's frontier is, per origin.
    known: HashMap<NodeId, u64>,
    /// Ranges to send: origin -> next seq to send.
    sending: BTreeMap<NodeId, u64>,
    wants_sent: HashMap<NodeId, Instant>,
    wants_served: HashMap<NodeId, Instant>,
    entries_bucket: TokenBucket,
    bytes_bucket: TokenBucket,
    /// Origins whose proof this peer was sent on this connection.
    proved: HashSet<NodeId>,
}

/// A plain membership predicate: is this NodeId a mesh member?
pub type MemberFn = Box<dyn Fn(&NodeId) -> bool + Send>;

/// The replication core. See the module docs.
pub struct Replica {
    config: ReplicaConfig,
    members: Box<dyn Membership>,
    peers: BTreeMap<NodeId, Peer>,
    outbox: VecDeque<(NodeId, LedgerMsg)>,
    next_anti_entropy: Option<Instant>,
    rr: Option<NodeId>,
    stats: ReplicaStats,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("peers", &self.peers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// A replica with no peers. `is_member` decides whose feeds are
    /// accepted (nothing to admit or prove: simulations and tests).
    pub fn new(config: ReplicaConfig, is_member: MemberFn) -> Self {
        Self::with_membership(config, Box::new(is_member))
    }

    /// A replica with no peers whose feeds `members` decides.
    pub fn with_membership(config: ReplicaConfig, members: Box<dyn Membership>) -> Self {
        Self {
            config,
            members,
            peers: BTreeMap::new(),
            outbox: VecDeque::new(),
            next_anti_entropy: None,
            rr: None,
            stats: ReplicaStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> ReplicaStats {
        self.stats
    }

    /// Connected peers.
    pub fn peers(&self) -> impl Iterator<Item = &NodeId> {
        self.peers.keys()
    }

    /// A peer connected: send it our version vector.
    pub fn handle_peer_connected<S: ReplicaStore>(
        &mut self,
        now: Instant,
        peer: NodeId,
        store: &S,
    ) -> Result<(), LedgerError> {
        let limits = self.config.limits;
        self.peers.insert(
            peer,
            Peer {
                known: HashMap::new(),
                sending: BTreeMap::new(),
                wants_sent: HashMap::new(),
                wants_served: HashMap::new(),
                entries_bucket: TokenBucket::new(limits.entries_per_sec, limits.burst_entries),
                bytes_bucket: TokenBucket::new(limits.bytes_per_sec, limits.burst_bytes),
                proved: HashSet::new(),
            },
        );
        if self.next_anti_entropy.is_none() {
            self.next_anti_entropy = Some(now + self.config.anti_entropy);
        }
        let hello = self.hello(store)?;
        self.outbox.push_back((peer, hello));
        Ok(())
    }

    /// A peer went away: forget what was queued for it.
    pub fn handle_peer_disconnected(&mut self, peer: &NodeId) {
        self.peers.remove(peer);
        self.outbox.retain(|(p, _)| p != peer);
        if self.peers.is_empty() {
            self.next_anti_entropy = None;
        }
    }

    fn hello<S: ReplicaStore>(&self, store: &S) -> Result<LedgerMsg, LedgerError> {
        let mut vector = store.vector()?;
        vector.retain(|v| self.members.is_member(&v.origin));
        vector.truncate(MAX_VECTOR);
        Ok(LedgerMsg::Hello {
            version: PROTOCOL_VERSION,
            vector,
        })
    }

    /// Entries were stored here (a local append, or entries replicated
    /// from a peer): schedule them for every peer that is behind.
    pub fn handle_stored(&mut self, stored: &[StoredEntry]) {
        for s in stored {
            if s.entry.kind == EntryKind::NodeAnnouncement {
                self.members.admit(&s.entry);
            }
            let (origin, seq) = (s.entry.origin, s.entry.seq);
            for peer in self.peers.values_mut() {
                let known = peer.known.get(&origin).copied().unwrap_or(0);
                if known < seq {
                    let next = peer.sending.entry(origin).or_insert(known + 1);
                    *next = (*next).min(known + 1);
                }
            }
        }
    }

    /// The anti-entropy timer, if any peer is connected.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_anti_entropy
    }

    /// Time passed: on the anti-entropy tick, send every peer a `Hello`.
    pub fn handle_timeout<S: ReplicaStore>(
        &mut self,
        now: Instant,
        store: &S,
    ) -> Result<(), LedgerError> {
        let Some(at) = self.next_anti_entropy else {
            return Ok(());
        };
        if now < at {
            return Ok(());
        }
        self.next_anti_entropy = Some(now + self.config.anti_entropy);
        let hello = self.hello(store)?;
        let peers: Vec<NodeId> = self.peers.keys().copied().collect();
        for peer in peers {
            if !self
                .outbox
                .iter()
                .any(|(p, m)| p == &peer && matches!(m, LedgerMsg::Hello { .. }))
            {
                self.outbox.push_back((peer, hello.clone()));
            }
        }
        Ok(())
    }

    /// The next message to send, if any. Control messages first, then
    /// entry batches round-robin over peers.
    pub fn poll_transmit<S: ReplicaStore>(
        &mut self,
        store: &S,
    ) -> Result<Option<Transmit>, LedgerError> {
        if let Some((peer, msg)) = self.outbox.pop_front() {
            return Ok(Some(Transmit {
                peer,
                bytes: msg.encode(),
            }));
        }
        let order: Vec<NodeId> = {
            let start = self.rr;
            let mut after: Vec<NodeId> = self
                .peers
                .keys()
                .filter(|p| start.is_none_or(|s| **p > s))
                .copied()
                .collect();
            after.extend(
                self.peers
                    .keys()
                    .filter(|p| start.is_some_and(|s| **p <= s)),
            );
            after
        };
        for peer_id in order {
            while let Some(peer) = self.peers.get_mut(&peer_id) {
                let Some((&origin, &from)) = peer.sending.iter().next() else {
                    break;
                };
                let read = store.range(
                    &origin,
                    from,
                    self.config.batch_entries.min(MAX_BATCH),
                    self.config.batch_bytes,
                )?;
                let Some(RangeRead {
                    from_seq,
                    to_seq,
                    entries,
                }) = read
                else {
                    peer.sending.remove(&origin);
                    continue;
                };
                let frontier = store.origin(&origin)?.map_or(0, |s| s.frontier);
                if to_seq >= frontier {
                    peer.sending.remove(&origin);
                } else {
                    peer.sending.insert(origin, to_seq + 1);
                }
                let known = peer.known.entry(origin).or_insert(0);
                let proof = if *known == 0 && peer.proved.insert(origin) {
                    self.members
                        .proof(&origin)
                        .filter(|p| p.seq < from_seq || p.seq > to_seq)
                } else {
                    None
                };
                *known = (*known).max(to_seq);
                self.stats.sent += entries.len() as u64;
                self.rr = Some(peer_id);
                let msg = LedgerMsg::Entries {
                    origin,
                    from_seq,
                    to_seq,
                    entries,
                };
                let msg = match proof {
                    // The proof goes first, the batch right after it.
                    Some(p) => {
                        self.outbox.push_front((peer_id, msg));
                        LedgerMsg::Entries {
                            origin,
                            from_seq: p.seq,
                            to_seq: p.seq,
                            entries: vec![p],
                        }
                    }
                    None => msg,
                };
                return Ok(Some(Transmit {
                    peer: peer_id,
                    bytes: msg.encode(),
                }));
            }
        }
        Ok(None)
    }

    /// A connected peer whose frontier for `origin` is ahead of ours, if
    /// any. For this node's own origin after a recovery: do not append
    /// until this is `None`, or the node forks its own feed.
    pub fn peer_ahead_on<S: ReplicaStore>(
        &self,
        origin: &NodeId,
        store: &S,
    ) -> Result<Option<NodeId>, LedgerError> {
        let ours = store.origin(origin)?.map_or(0, |s| s.frontier);
        Ok(self
            .peers
            .iter()
            .find(|(_, p)| p.known.get(origin).is_some_and(|s| *s > ours))
            .map(|(id, _)| *id))
    }

    /// How far `peer` and this node are apart.
    pub fn lag<S: ReplicaStore>(&self, peer: &NodeId, store: &S) -> Result<Lag, LedgerError> {
        let ours = Self::frontiers(store)?;
        Ok(self
            .peers
            .get(peer)
            .map_or_else(Lag::default, |p| Self::lag_of(p, &ours)))
    }

    /// How far each connected peer and this node are apart (one read of
    /// our vector for all of them).
    pub fn lags<S: ReplicaStore>(&self, store: &S) -> Result<Vec<(NodeId, Lag)>, LedgerError> {
        let ours = Self::frontiers(store)?;
        Ok(self
            .peers
            .iter()
            .map(|(id, p)| (*id, Self::lag_of(p, &ours)))
            .collect())
    }

    fn frontiers<S: ReplicaStore>(store: &S) -> Result<HashMap<NodeId, u64>, LedgerError> {
        Ok(store
            .vector()?
            .into_iter()
            .map(|v| (v.origin, v.seq))
            .collect())
    }

    fn lag_of(p: &Peer, ours: &HashMap<NodeId, u64>) -> Lag {
        let mut lag = Lag::default();
        for (origin, seq) in ours {
            let theirs = p.known.get(origin).copied().unwrap_or(0);
            lag.peer_lacks += seq.saturating_sub(theirs);
        }
        for (origin, theirs) in &p.known {
            let seq = ours.get(origin).copied().unwrap_or(0);
            lag.we_lack += theirs.saturating_sub(seq);
        }
        lag
    }

    /// A message from `peer`. Returns the entries stored because of it (the
    /// driver hands them to subscribers; the replica already scheduled them
    /// for other peers). Errors are storage failures only; bad input is
    /// counted and dropped.
    pub fn handle_message<S: ReplicaStore>(
        &mut self,
        now: Instant,
        peer: NodeId,
        bytes: &[u8],
        store: &mut S,
    ) -> Result<Vec<StoredEntry>, LedgerError> {
        if !self.peers.contains_key(&peer) {
            return Ok(Vec::new());
        }
        let msg = match LedgerMsg::decode(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed += 1;
                return Ok(Vec::new());
            }
        };
        let result = match msg {
            LedgerMsg::Hello { version, vector } => self
                .on_hello(peer, version, vector, store)
                .map(|()| Vec::new()),
            LedgerMsg::Want { origin, from_seq } => {
                self.on_want(now, peer, origin, from_seq);
                Ok(Vec::new())
            }
            LedgerMsg::Entries {
                origin,
                from_seq,
                to_seq,
                entries,
            } => self.on_entries(
                now,
                peer,
                origin,
                from_seq,
                to_seq,
                entries,
                bytes.len(),
                store,
            ),
        };
        if result.is_err() {
            self.stats.store_errors += 1;
        }
        result
    }

    fn on_hello<S: ReplicaStore>(
        &mut self,
        peer_id: NodeId,
        version: u8,
        vector: Vec<VectorItem>,
        store: &S,
    ) -> Result<(), LedgerError> {
        if version != PROTOCOL_VERSION {
            self.stats.malformed += 1;
            return Ok(());
        }
        let ours = store.vector()?;
        let Some(peer) = self.peers.get_mut(&peer_id) else {
            return Ok(());
        };
        peer.known.clear();
        let mut probes = Vec::new();
        for item in &vector {
            if !self.members.is_member(&item.origin) {
                continue;
            }
            peer.known.insert(item.origin, item.seq);
        }
        let by_origin: HashMap<NodeId, &VectorItem> =
            vector.iter().map(|v| (v.origin, v)).collect();
        for mine in ours {
            if !self.members.is_member(&mine.origin) {
                continue;
            }
            let theirs = by_origin.get(&mine.origin);
            let their_seq = theirs.map_or(0, |v| v.seq);
            if mine.seq > their_seq {
                let next = peer.sending.entry(mine.origin).or_insert(their_seq + 1);
                *next = (*next).min(their_seq + 1);
            } else if let Some(t) = theirs {
                let known_hashes = t.hash != EntryHash::ZERO && mine.hash != EntryHash::ZERO;
                if t.seq == mine.seq && known_hashes && t.hash != mine.hash {
                    // Same frontier, different entry: fetch theirs as evidence.
                    probes.push((mine.origin, mine.seq));
                }
            }
        }
        for (origin, seq) in probes {
            self.outbox.push_back((
                peer_id,
                LedgerMsg::Want {
                    origin,
                    from_seq: seq,
                },
            ));
        }
        Ok(())
    }

    fn on_want(&mut self, now: Instant, peer_id: NodeId, origin: NodeId, from_seq: u64) {
        if !self.members.is_member(&origin) {
            self.stats.not_member += 1;
            return;
        }
        let interval = self.config.want_interval;
        let Some(peer) = self.peers.get_mut(&peer_id) else {
            return;
        };
        if let Some(last) = peer.wants_served.get(&origin) {
            if now.saturating_duration_since(*last) < interval {
                self.stats.rate_limited += 1;
                return;
            }
        }
        peer.wants_served.insert(origin, now);
        let next = peer.sending.entry(origin).or_insert(from_seq);
        *next = (*next).min(from_seq);
    }

    fn want(&mut self, now: Instant, peer_id: NodeId, origin: NodeId, from_seq: u64) {
        let interval = self.config.want_interval;
        let Some(peer) = self.peers.get_mut(&peer_id) else {
            return;
        };
        if let Some(last) = peer.wants_sent.get(&origin) {
            if now.saturating_duration_since(*last) < interval {
                return;
            }
        }
        peer.wants_sent.insert(origin, now);
        self.outbox
            .push_back((peer_id, LedgerMsg::Want { origin, from_seq }));
    }

    /// Whether `entries` (of an origin not yet a member) carry a validly
    /// signed announcement that proves the origin a member; admits it.
    fn admit_from(&mut self, entries: &[Entry]) -> bool {
        entries
            .iter()
            .filter(|e| e.kind == EntryKind::NodeAnnouncement)
            .any(|e| e.verify_signature().is_ok() && self.members.admit(e))
    }

    #[allow(clippy::too_many_arguments)]
    fn on_entries<S: ReplicaStore>(
        &mut self,
        now: Instant,
        peer_id: NodeId,
        origin: NodeId,
        from_seq: u64,
        to_seq: u64,
        entries: Vec<Entry>,
        wire_len: usize,
        store: &mut S,
    ) -> Result<Vec<StoredEntry>, LedgerError> {
        let n = entries.len() as u64;
        {
            let Some(peer) = self.peers.get_mut(&peer_id) else {
                return Ok(Vec::new());
            };
            let len = wire_len as u64;
            if !peer.entries_bucket.has(now, n) || !peer.bytes_bucket.has(now, len) {
                self.stats.rate_limited += 1;
                return Ok(Vec::new());
            }
            peer.entries_bucket.take(n);
            peer.bytes_bucket.take(len);
        }
        self.stats.received += n;
        let unproven = !self.members.is_member(&origin);
        if unproven && !self.admit_from(&entries) {
            self.stats.not_member += n;
            return Ok(Vec::new());
        }
        if let Some(peer) = self.peers.get_mut(&peer_id) {
            let known = peer.known.entry(origin).or_insert(0);
            *known = (*known).max(to_seq);
        }
        let state = store.origin(&origin)?.unwrap_or(OriginState {
            frontier: 0,
            frontier_hash: EntryHash::ZERO,
            forked: false,
        });
        if state.forked {
            self.stats.forked_origin += n;
            return Ok(Vec::new());
        }
        // Saturating: a frontier is at most the entries stored, u64::MAX
        // only from a damaged store (append_local reports that one).
        let next_seq = state.frontier.saturating_add(1);
        if from_seq > next_seq {
            if unproven {
                // A proof sent ahead of the feed, which follows.
                return Ok(Vec::new());
            }
            self.stats.out_of_order += 1;
            self.want(now, peer_id, origin, next_seq);
            return Ok(Vec::new());
        }
        // Entries we already cover: identical, or evidence of a fork.
        for e in entries.iter().filter(|e| e.seq <= state.frontier) {
            if let Some(stored) = store.entry(&origin, e.seq)? {
                if stored != *e {
                    if e.verify_signature().is_err() {
                        self.stats.tampered += 1;
                        return Ok(Vec::new());
                    }
                    store.record_fork(&[stored.clone(), e.clone()])?;
                    self.stats.forks += 1;
                    // Show the peer our version: it holds the evidence too.
                    self.outbox.push_back((
                        peer_id,
                        LedgerMsg::Entries {
                            origin,
                            from_seq: stored.seq,
                            to_seq: stored.seq,
                            entries: vec![stored],
                        },
                    ));
                    return Ok(Vec::new());
                }
            }
        }
        // New entries: verify run heads, stop at the first problem.
        let fresh: Vec<Entry> = entries
            .into_iter()
            .filter(|e| e.seq > state.frontier)
            .collect();
        let mut accepted: Vec<Entry> = Vec::with_capacity(fresh.len());
        let mut run_start = 0usize;
        let mut anchor = (state.frontier, state.frontier_hash);
        let mut stop = false;
        let mut i = 0usize;
        while i <= fresh.len() {
            let boundary = match fresh.get(i) {
                None => true,
                Some(e) if e.seq == anchor.0 + 1 => {
                    let unknown = anchor.0 > 0 && anchor.1 == EntryHash::ZERO;
                    if unknown || e.prev_hash == anchor.1 {
                        false
                    } else {
                        // The chain breaks here: close the run first.
                        stop = true;
                        true
                    }
                }
                // A gap the sender declared: a new run starts.
                Some(_) => true,
            };
            if boundary {
                if i > run_start {
                    let head = &fresh[i - 1];
                    if head.verify_signature().is_err() {
                        self.stats.tampered += 1;
                        break;
                    }
                    accepted.extend_from_slice(&fresh[run_start..i]);
                }
                if stop {
                    if let Some(e) = fresh.get(i) {
                        self.stats.broken_chain += 1;
                        if e.verify_signature().is_ok() && e.seq > 1 {
                            // The origin signed another predecessor: fetch
                            // the peer's version of it as fork evidence.
                            self.want(now, peer_id, origin, e.seq - 1);
                        }
                    }
                    break;
                }
                run_start = i;
            }
            if let Some(e) = fresh.get(i) {
                anchor = (e.seq, e.hash());
            }
            i += 1;
        }
        // The frontier moves to the last entry verified, never to a range
        // end no entry backs: an unsigned claim that "nothing exists up to
        // to_seq" would let a peer make this node skip entries for good.
        let frontier = accepted
            .last()
            .map_or((state.frontier, state.frontier_hash), |e| (e.seq, e.hash()));
        if frontier.0 <= state.frontier && accepted.is_empty() {
            return Ok(Vec::new());
        }
        for e in accepted
            .iter()
            .filter(|e| e.kind == EntryKind::NodeAnnouncement)
        {
            // Verified as part of its run: a newer proof replaces the old.
            self.members.admit(e);
        }
        let stored = store.insert_verified(&origin, &accepted, frontier)?;
        self.stats.replicated += stored.len() as u64;
        // Schedule for the other peers (the sender has them).
        let frontier_seq = frontier.0;
        for (pid, peer) in self.peers.iter_mut() {
            let known = peer.known.get(&origin).copied().unwrap_or(0);
            if *pid != peer_id && known < frontier_seq {
                let next = peer.sending.entry(origin).or_insert(known + 1);
                *next = (*next).min(known + 1);
            }
        }
        Ok(stored)
    }
}

#[cfg(test)]
#[path = "replica_tests.rs"]
mod tests;
