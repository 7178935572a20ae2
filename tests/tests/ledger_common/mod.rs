//! A simulated mesh driving the real ledger replication core
//! (`relay_node::ledger::Replica`) on simulated time: seeded latency and
//! loss, partitions, restarts. Shared by `tests/ledger_sim.rs` and the
//! ledger benchmark.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

use relay_node::ledger::{MemStore, Replica, ReplicaConfig, ReplicaStore};
use relay_proto::ledger::body::{PathOutcome, TraversalOutcome};
use relay_proto::ledger::{Body, EntryHash};
use relay_proto::{NodeId, SecretKey};

/// A tiny deterministic PRNG (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability `p_percent` %.
    pub fn chance(&mut self, p_percent: u64) -> bool {
        self.below(100) < p_percent
    }
}

pub struct SimNode {
    pub key: SecretKey,
    pub id: NodeId,
    pub store: MemStore,
    pub replica: Replica,
    pub up: bool,
}

struct InFlight {
    at: Duration,
    n: u64,
    from: usize,
    to: usize,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.n) == (o.at, o.n)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.n).cmp(&(o.at, o.n))
    }
}

/// The mesh: nodes, links, messages in flight, simulated time.
pub struct Mesh {
    pub t0: Instant,
    pub now: Duration,
    pub nodes: Vec<SimNode>,
    /// Links (i < j) that exist in the topology.
    pub links: BTreeSet<(usize, usize)>,
    /// Links cut by a partition.
    pub cut: BTreeSet<(usize, usize)>,
    pub loss_percent: u64,
    pub rng: Rng,
    flight: BinaryHeap<Reverse<InFlight>>,
    n: u64,
    pub config: ReplicaConfig,
    pub delivered: u64,
    pub lost: u64,
    pub appended: u64,
}

/// A `traversal-outcome` body numbered `n`. Its peer's NodeId is derived
/// once (deriving it per call costs a scalar multiplication, which would
/// land inside timed loops).
pub fn event_body(n: u64) -> Body {
    static PEER: std::sync::OnceLock<NodeId> = std::sync::OnceLock::new();
    Body::TraversalOutcome(TraversalOutcome {
        peer: *PEER.get_or_init(|| SecretKey::from_bytes(&[250; 32]).node_id()),
        outcome: if n.is_multiple_of(2) {
            PathOutcome::Direct
        } else {
            PathOutcome::Relayed
        },
        time_to_direct_ms: Some(n),
        why: "sim".into(),
        birthday_packets: 0,
    })
}

fn membership(ids: Vec<NodeId>) -> Box<dyn Fn(&NodeId) -> bool + Send> {
    Box::new(move |id| ids.contains(id))
}

impl Mesh {
    /// `n` nodes; node i links to i+1 and i+3 (mod n): every node has four
    /// neighbours and most pairs are several hops apart.
    pub fn new(n: usize, seed: u64, loss_percent: u64, config: ReplicaConfig) -> Self {
        let keys: Vec<SecretKey> = (0..n)
            .map(|i| {
                let mut seed_bytes = [7u8; 32];
                seed_bytes[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
                SecretKey::from_bytes(&seed_bytes)
            })
            .collect();
        let ids: Vec<NodeId> = keys.iter().map(|k| k.node_id()).collect();
        let nodes = keys
            .into_iter()
            .map(|key| SimNode {
                id: key.node_id(),
                key,
                store: MemStore::new(),
                replica: Replica::new(config, membership(ids.clone())),
                up: true,
            })
            .collect();
        let mut links = BTreeSet::new();
        for i in 0..n {
            for d in [1, 3] {
                let j = (i + d) % n;
                if i != j {
                    links.insert((i.min(j), i.max(j)));
                }
            }
        }
        let mut mesh = Self {
            t0: Instant::now(),
            now: Duration::ZERO,
            nodes,
            links,
            cut: BTreeSet::new(),
            loss_percent,
            rng: Rng::new(seed),
            flight: BinaryHeap::new(),
            n: 0,
            config,
            delivered: 0,
            lost: 0,
            appended: 0,
        };
        let all: Vec<(usize, usize)> = mesh.links.iter().copied().collect();
        for (i, j) in all {
            mesh.connect(i, j);
        }
        mesh
    }

    fn instant(&self) -> Instant {
        self.t0 + self.now
    }

    fn live(&self, i: usize, j: usize) -> bool {
        let k = (i.min(j), i.max(j));
        self.links.contains(&k) && !self.cut.contains(&k) && self.nodes[i].up && self.nodes[j].up
    }

    fn connect(&mut self, i: usize, j: usize) {
        if !self.live(i, j) {
            return;
        }
        let now = self.instant();
        let (idi, idj) = (self.nodes[i].id, self.nodes[j].id);
        let SimNode { replica, store, .. } = &mut self.nodes[i];
        replica.handle_peer_connected(now, idj, store).unwrap();
        let SimNode { replica, store, .. } = &mut self.nodes[j];
        replica.handle_peer_connected(now, idi, store).unwrap();
    }

    fn disconnect(&mut self, i: usize, j: usize) {
        let (idi, idj) = (self.nodes[i].id, self.nodes[j].id);
        self.nodes[i].replica.handle_peer_disconnected(&idj);
        self.nodes[j].replica.handle_peer_disconnected(&idi);
    }

    fn neighbours(&self, i: usize) -> Vec<usize> {
        self.links
            .iter()
            .filter_map(|&(a, b)| {
                if a == i {
                    Some(b)
                } else if b == i {
                    Some(a)
                } else {
                    None
                }
            })
            .collect()
    }

    /// Cuts every link between `group` and the rest.
    pub fn partition(&mut self, group: &[usize]) {
        let pairs: Vec<(usize, usize)> = self
            .links
            .iter()
            .copied()
            .filter(|(a, b)| group.contains(a) != group.contains(b))
            .collect();
        for (a, b) in pairs {
            if self.live(a, b) {
                self.disconnect(a, b);
            }
            self.cut.insert((a, b));
        }
    }

    /// Restores every cut link.
    pub fn heal(&mut self) {
        let cut: Vec<(usize, usize)> = std::mem::take(&mut self.cut).into_iter().collect();
        for (a, b) in cut {
            self.connect(a, b);
        }
    }

    /// Stops node `i`: its connections drop, its replica state is gone,
    /// its store (the file on disk) stays.
    pub fn stop(&mut self, i: usize) {
        for j in self.neighbours(i) {
            if self.live(i, j) {
                self.disconnect(i, j);
            }
        }
        self.nodes[i].up = false;
    }

    /// Starts node `i` again with a fresh replica over its kept store.
    pub fn start(&mut self, i: usize) {
        let ids: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
        self.nodes[i].replica = Replica::new(self.config, membership(ids));
        self.nodes[i].up = true;
        for j in self.neighbours(i) {
            self.connect(i, j);
        }
    }

    /// Node `i` appends one event to its feed.
    pub fn append(&mut self, i: usize) {
        let ts = self.now.as_millis() as u64;
        let n = self.appended;
        let node = &mut self.nodes[i];
        let stored = node.store.append(&node.key, ts, &event_body(n)).unwrap();
        node.replica.handle_stored(&[stored]);
        self.appended += 1;
    }

    /// Collects every node's outgoing messages into flight.
    fn flush(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up {
                continue;
            }
            loop {
                let SimNode { replica, store, .. } = &mut self.nodes[i];
                let Some(t) = replica.poll_transmit(store).unwrap() else {
                    break;
                };
                let Some(j) = self.nodes.iter().position(|n| n.id == t.peer) else {
                    continue;
                };
                if self.rng.chance(self.loss_percent) {
                    self.lost += 1;
                    continue;
                }
                let latency = Duration::from_millis(5 + self.rng.below(45));
                self.n += 1;
                self.flight.push(Reverse(InFlight {
                    at: self.now + latency,
                    n: self.n,
                    from: i,
                    to: j,
                    bytes: t.bytes,
                }));
            }
        }
    }

    /// Runs until simulated time `until`.
    pub fn run_until(&mut self, until: Duration) {
        loop {
            self.flush();
            let next_msg = self.flight.peek().map(|Reverse(m)| m.at);
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| n.up)
                .filter_map(|n| n.replica.poll_timeout())
                .map(|at| at.saturating_duration_since(self.t0))
                .min();
            let next = [next_msg, next_timer].into_iter().flatten().min();
            match next {
                Some(at) if at <= until => self.now = self.now.max(at),
                _ => {
                    self.now = until;
                    return;
                }
            }
            while let Some(Reverse(m)) = self.flight.peek() {
                if m.at > self.now {
                    break;
                }
                let Some(Reverse(m)) = self.flight.pop() else {
                    break;
                };
                // A message on a link that went down since is lost.
                if !self.live(m.from, m.to) {
                    continue;
                }
                self.delivered += 1;
                let now = self.instant();
                let from = self.nodes[m.from].id;
                let SimNode { replica, store, .. } = &mut self.nodes[m.to];
                let stored = replica.handle_message(now, from, &m.bytes, store).unwrap();
                let _ = stored;
            }
            let now = self.instant();
            for node in self.nodes.iter_mut().filter(|n| n.up) {
                let SimNode { replica, store, .. } = node;
                replica.handle_timeout(now, store).unwrap();
            }
        }
    }

    /// The set of (origin, seq, hash) a node holds.
    pub fn entry_set(&self, i: usize) -> BTreeSet<(NodeId, u64, EntryHash)> {
        self.nodes[i]
            .store
            .entries()
            .map(|e| (e.origin, e.seq, e.hash()))
            .collect()
    }

    /// Whether every node holds the same entries, `expected` of them.
    pub fn converged(&self, expected: usize) -> bool {
        let first = self.entry_set(0);
        first.len() == expected && (1..self.nodes.len()).all(|i| self.entry_set(i) == first)
    }

    /// Runs in steps of `step` until converged or `limit`; returns the
    /// simulated time it converged at.
    pub fn run_until_converged(&mut self, step: Duration, limit: Duration) -> Option<Duration> {
        let expected = self.appended as usize;
        while self.now < limit {
            if self.converged(expected) {
                return Some(self.now);
            }
            let next = self.now + step;
            self.run_until(next);
        }
        self.converged(expected).then_some(self.now)
    }

    /// Sum of a counter over every node.
    pub fn total(&self, f: impl Fn(&relay_node::ledger::ReplicaStats) -> u64) -> u64 {
        self.nodes.iter().map(|n| f(&n.replica.stats())).sum()
    }

    /// Frontier of `origin` at node `i`.
    pub fn frontier(&self, i: usize, origin: &NodeId) -> u64 {
        self.nodes[i]
            .store
            .origin(origin)
            .unwrap()
            .map_or(0, |s| s.frontier)
    }
}
