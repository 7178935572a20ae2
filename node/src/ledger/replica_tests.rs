//! Replica tests on simulated time with in-memory stores.

use std::time::{Duration, Instant};

use relay_proto::ledger::body::{PathOutcome, TraversalOutcome};
use relay_proto::ledger::Body;
use relay_proto::SecretKey;

use super::*;
use crate::ledger::MemStore;

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

fn event(n: u32) -> Body {
    Body::TraversalOutcome(TraversalOutcome {
        peer: key(99).node_id(),
        outcome: PathOutcome::Direct,
        time_to_direct_ms: Some(u64::from(n)),
        why: String::new(),
        birthday_packets: n,
    })
}

struct Node {
    id: NodeId,
    key: SecretKey,
    store: MemStore,
    replica: Replica,
}

fn node(n: u8, config: ReplicaConfig) -> Node {
    let k = key(n);
    Node {
        id: k.node_id(),
        key: k,
        store: MemStore::new(),
        replica: Replica::new(config, Box::new(|_| true)),
    }
}

fn small() -> ReplicaConfig {
    ReplicaConfig {
        batch_entries: 7,
        ..ReplicaConfig::default()
    }
}

fn append(n: &mut Node, count: u32) {
    for i in 0..count {
        let s = n.store.append(&n.key, u64::from(i), &event(i)).unwrap();
        n.replica.handle_stored(&[s]);
    }
}

fn connect(now: Instant, nodes: &mut [Node], a: usize, b: usize) {
    let (ia, ib) = (nodes[a].id, nodes[b].id);
    let Node { replica, store, .. } = &mut nodes[a];
    replica.handle_peer_connected(now, ib, store).unwrap();
    let Node { replica, store, .. } = &mut nodes[b];
    replica.handle_peer_connected(now, ia, store).unwrap();
}

/// Delivers every message until all are quiet; returns messages delivered.
fn pump(now: Instant, nodes: &mut [Node]) -> usize {
    let mut delivered = 0;
    loop {
        let mut sent = Vec::new();
        for n in nodes.iter_mut() {
            while let Some(t) = n.replica.poll_transmit(&n.store).unwrap() {
                sent.push((n.id, t));
            }
        }
        if sent.is_empty() {
            return delivered;
        }
        for (from, t) in sent {
            delivered += 1;
            let Some(to) = nodes.iter_mut().find(|n| n.id == t.peer) else {
                continue;
            };
            let Node { replica, store, .. } = to;
            replica.handle_message(now, from, &t.bytes, store).unwrap();
        }
    }
}

fn ids(store: &MemStore) -> Vec<(NodeId, u64)> {
    store.entries().map(|e| (e.origin, e.seq)).collect()
}

#[test]
fn peers_exchange_what_the_other_lacks_in_batches() {
    let now = Instant::now();
    let mut nodes = vec![node(1, small()), node(2, small())];
    append(&mut nodes[0], 30);
    append(&mut nodes[1], 5);
    connect(now, &mut nodes, 0, 1);
    // Before the exchange, the Hellos tell each side who is ahead.
    let (a, b) = (nodes[0].id, nodes[1].id);
    {
        let t = {
            let Node { replica, store, .. } = &mut nodes[0];
            replica.poll_transmit(store).unwrap().unwrap()
        };
        let Node { replica, store, .. } = &mut nodes[1];
        replica.handle_message(now, a, &t.bytes, store).unwrap();
    }
    assert_eq!(
        nodes[1].replica.peer_ahead_on(&a, &nodes[1].store).unwrap(),
        Some(a)
    );
    assert_eq!(
        nodes[1].replica.peer_ahead_on(&b, &nodes[1].store).unwrap(),
        None
    );
    pump(now, &mut nodes);
    assert_eq!(
        nodes[1].replica.peer_ahead_on(&a, &nodes[1].store).unwrap(),
        None
    );
    assert_eq!(nodes[0].store.len(), 35);
    assert_eq!(ids(&nodes[0].store), ids(&nodes[1].store));
    assert_eq!(nodes[1].replica.stats().replicated, 30);
    // 30 entries in batches of 7: 5 messages, each head-verified.
    assert_eq!(nodes[0].replica.stats().sent, 30);
}

#[test]
fn live_appends_travel_transitively() {
    let now = Instant::now();
    let mut nodes = vec![node(1, small()), node(2, small()), node(3, small())];
    connect(now, &mut nodes, 0, 1);
    connect(now, &mut nodes, 1, 2);
    pump(now, &mut nodes);
    append(&mut nodes[0], 3);
    pump(now, &mut nodes);
    assert_eq!(nodes[2].store.len(), 3, "C got A's entries through B");
    let lag = nodes[1].replica.lag(&nodes[2].id, &nodes[1].store).unwrap();
    assert_eq!(lag, Lag::default());
}

fn entries_msg(entries: Vec<Entry>) -> Vec<u8> {
    LedgerMsg::Entries {
        origin: entries[0].origin,
        from_seq: entries[0].seq,
        to_seq: entries[entries.len() - 1].seq,
        entries,
    }
    .encode()
}

fn feed(k: &SecretKey, n: u64) -> Vec<Entry> {
    let mut prev = EntryHash::ZERO;
    (1..=n)
        .map(|seq| {
            let e = Entry::sign(k, seq, prev, seq, &event(seq as u32)).unwrap();
            prev = e.hash();
            e
        })
        .collect()
}

fn receiver() -> (Instant, Node, NodeId) {
    let now = Instant::now();
    let mut n = node(1, small());
    let peer = key(2).node_id();
    let Node { replica, store, .. } = &mut n;
    replica.handle_peer_connected(now, peer, store).unwrap();
    (now, n, peer)
}

#[test]
fn a_tampered_entry_is_rejected_and_counted() {
    let (now, mut n, peer) = receiver();
    let mut entries = feed(&key(5), 4);
    // Tamper with the last entry (the run head): its signature fails.
    entries[3].ts_unix_ms += 1;
    let Node { replica, store, .. } = &mut n;
    let stored = replica
        .handle_message(now, peer, &entries_msg(entries.clone()), store)
        .unwrap();
    assert!(stored.is_empty());
    assert_eq!(replica.stats().tampered, 1);
    // Tampering in the middle breaks the link to the next entry: the run
    // before it is checked through its (tampered) head and refused.
    let mut entries = feed(&key(5), 4);
    entries[1].ts_unix_ms += 1;
    let stored = replica
        .handle_message(now, peer, &entries_msg(entries), store)
        .unwrap();
    assert!(stored.is_empty());
    assert_eq!(replica.stats().tampered, 2);
    assert!(store.is_empty());
    // Garbage is counted too.
    replica
        .handle_message(now, peer, &[2, 0, 1], store)
        .unwrap();
    assert_eq!(replica.stats().malformed, 1);
}

#[test]
fn non_members_and_rate_limits_are_refused_and_counted() {
    let now = Instant::now();
    let outsider = key(6);
    let config = ReplicaConfig {
        limits: PeerLimits {
            entries_per_sec: 1,
            burst_entries: 5,
            ..PeerLimits::default()
        },
        ..small()
    };
    let mut replica = Replica::new(config, Box::new(move |id| *id != outsider.node_id()));
    let mut store = MemStore::new();
    let peer = key(2).node_id();
    replica.handle_peer_connected(now, peer, &store).unwrap();
    let msg = entries_msg(feed(&key(6), 2));
    replica.handle_message(now, peer, &msg, &mut store).unwrap();
    assert_eq!(replica.stats().not_member, 2);
    let msg = entries_msg(feed(&key(7), 4));
    replica.handle_message(now, peer, &msg, &mut store).unwrap();
    assert_eq!(store.len(), 0, "2 + 4 entries exceed the burst of 5");
    assert_eq!(replica.stats().rate_limited, 1);
    let later = now + Duration::from_secs(10);
    replica
        .handle_message(later, peer, &msg, &mut store)
        .unwrap();
    assert_eq!(store.len(), 4);
}

#[test]
fn a_gap_is_answered_with_want() {
    let (now, mut n, peer) = receiver();
    let entries = feed(&key(5), 6);
    let Node { replica, store, .. } = &mut n;
    replica
        .handle_message(now, peer, &entries_msg(entries[3..].to_vec()), store)
        .unwrap();
    assert_eq!(replica.stats().out_of_order, 1);
    let mut wants = Vec::new();
    while let Some(t) = replica.poll_transmit(store).unwrap() {
        wants.push(LedgerMsg::decode(&t.bytes).unwrap());
    }
    assert!(wants.contains(&LedgerMsg::Want {
        origin: key(5).node_id(),
        from_seq: 1
    }));
    replica
        .handle_message(now, peer, &entries_msg(entries), store)
        .unwrap();
    assert_eq!(store.len(), 6);
}

#[test]
fn forks_are_detected_kept_as_evidence_and_stop_the_origin() {
    let now = Instant::now();
    let evil = key(9);
    let common = feed(&evil, 2);
    let a2 = Entry::sign(&evil, 3, common[1].hash(), 30, &event(300)).unwrap();
    let b2 = Entry::sign(&evil, 3, common[1].hash(), 31, &event(301)).unwrap();
    let b3 = Entry::sign(&evil, 4, b2.hash(), 40, &event(400)).unwrap();
    let mut nodes = vec![node(1, small()), node(2, small())];
    let o = evil.node_id();
    let seed = |store: &mut MemStore, es: &[Entry]| {
        let last = es.last().unwrap();
        store
            .insert_verified(&o, es, (last.seq, last.hash()))
            .unwrap();
    };
    seed(
        &mut nodes[0].store,
        &[common[0].clone(), common[1].clone(), a2.clone()],
    );
    seed(
        &mut nodes[1].store,
        &[common[0].clone(), common[1].clone(), b2.clone(), b3.clone()],
    );
    connect(now, &mut nodes, 0, 1);
    pump(now, &mut nodes);
    for n in &nodes {
        let state = n.store.origin(&o).unwrap().unwrap();
        assert!(state.forked, "{:?} flagged the origin", n.id);
        let evidence = n.store.fork_evidence();
        assert!(
            evidence.contains(&a2) && evidence.contains(&b2),
            "both versions kept"
        );
    }
    assert!(nodes[0].replica.stats().broken_chain >= 1);
    // New entries of the forked origin are refused.
    let b4 = Entry::sign(&evil, 5, b3.hash(), 50, &event(500)).unwrap();
    let from = nodes[0].id;
    let Node { replica, store, .. } = &mut nodes[1];
    let before = replica.stats().forked_origin;
    replica
        .handle_message(now, from, &entries_msg(vec![b4]), store)
        .unwrap();
    assert_eq!(replica.stats().forked_origin, before + 1);
}

#[test]
fn anti_entropy_repairs_lost_messages() {
    let now = Instant::now();
    let mut nodes = vec![node(1, small()), node(2, small())];
    connect(now, &mut nodes, 0, 1);
    pump(now, &mut nodes);
    append(&mut nodes[0], 10);
    // Lose everything A sends now.
    {
        let Node { replica, store, .. } = &mut nodes[0];
        while replica.poll_transmit(store).unwrap().is_some() {}
    }
    assert_eq!(nodes[1].store.len(), 0);
    let at = nodes[0].replica.poll_timeout().unwrap();
    assert_eq!(at, now + ReplicaConfig::default().anti_entropy);
    for n in nodes.iter_mut() {
        let Node { replica, store, .. } = n;
        replica.handle_timeout(at, store).unwrap();
    }
    pump(at, &mut nodes);
    assert_eq!(nodes[1].store.len(), 10);
}

#[test]
fn an_empty_range_does_not_move_the_frontier() {
    let (now, mut n, peer) = receiver();
    let origin = key(5).node_id();
    let Node { replica, store, .. } = &mut n;
    let claim = LedgerMsg::Entries {
        origin,
        from_seq: 1,
        to_seq: 1000,
        entries: vec![],
    }
    .encode();
    replica.handle_message(now, peer, &claim, store).unwrap();
    assert_eq!(store.origin(&origin).unwrap().map_or(0, |s| s.frontier), 0);
    // The real entries are still accepted afterwards.
    let entries = feed(&key(5), 3);
    replica
        .handle_message(now, peer, &entries_msg(entries), store)
        .unwrap();
    assert_eq!(store.len(), 3);
    assert_eq!(store.origin(&origin).unwrap().unwrap().frontier, 3);
}

mod membership {
    use super::*;
    use crate::ledger::MeshMembers;
    use relay_proto::ledger::body::{NatType, NodeAnnouncement};
    use relay_proto::ledger::MemberProof;
    use relay_proto::NetworkKey;

    fn mesh_key() -> NetworkKey {
        NetworkKey::from_bytes([77; 32])
    }

    fn announce(k: &SecretKey, proof_key: Option<&NetworkKey>) -> Body {
        Body::NodeAnnouncement(NodeAnnouncement {
            addrs: vec![],
            nat: NatType::Open,
            relay: false,
            version: "v".into(),
            member_proof: proof_key.map(|nk| MemberProof::new(nk, &k.node_id())),
        })
    }

    fn mesh_node(n: u8, config: ReplicaConfig) -> Node {
        let k = key(n);
        let members = MeshMembers::new(Some(mesh_key()), k.node_id());
        Node {
            id: k.node_id(),
            key: k,
            store: MemStore::new(),
            replica: Replica::with_membership(config, Box::new(members)),
        }
    }

    fn add(n: &mut Node, signer: &SecretKey, body: &Body) {
        let s = n.store.append(signer, 1, body).unwrap();
        n.replica.handle_stored(&[s]);
    }

    fn origins(store: &MemStore) -> Vec<NodeId> {
        let mut o: Vec<NodeId> = store.entries().map(|e| e.origin).collect();
        o.dedup();
        o
    }

    #[test]
    fn a_proven_feed_travels_transitively_and_an_unproven_one_is_refused() {
        let now = Instant::now();
        // a - b - c: c is not connected to a. b holds two foreign feeds
        // (as a careless member would): one without a proof, one proven
        // under another mesh's key.
        let mut nodes = vec![
            mesh_node(1, small()),
            node(2, small()),
            mesh_node(3, small()),
        ];
        let a = key(1);
        let (outsider, other_mesh) = (key(8), key(9));
        add(&mut nodes[0], &a, &announce(&a, Some(&mesh_key())));
        append(&mut nodes[0], 3);
        add(&mut nodes[1], &outsider, &announce(&outsider, None));
        add(&mut nodes[1], &outsider, &event(1));
        let foreign = NetworkKey::from_bytes([78; 32]);
        add(
            &mut nodes[1],
            &other_mesh,
            &announce(&other_mesh, Some(&foreign)),
        );
        connect(now, &mut nodes, 0, 1);
        connect(now, &mut nodes, 1, 2);
        pump(now, &mut nodes);
        assert_eq!(origins(&nodes[2].store), vec![a.node_id()]);
        assert_eq!(nodes[2].store.len(), 4, "a's announcement and 3 events");
        assert_eq!(nodes[2].replica.stats().not_member, 3);
        // a refuses them too, and c never offers them on.
        assert_eq!(origins(&nodes[0].store), vec![a.node_id()]);
        assert_eq!(nodes[0].replica.stats().not_member, 3);
    }

    #[test]
    fn the_proof_goes_ahead_of_a_feed_whose_first_batch_lacks_it() {
        let now = Instant::now();
        let mut nodes = vec![mesh_node(1, small()), mesh_node(2, small())];
        let a = key(1);
        // An announcement from before proofs, 10 events, then a proven
        // announcement beyond the first batch of 7.
        add(&mut nodes[0], &a, &announce(&a, None));
        append(&mut nodes[0], 10);
        add(&mut nodes[0], &a, &announce(&a, Some(&mesh_key())));
        append(&mut nodes[0], 2);
        let total = nodes[0].store.len();
        connect(now, &mut nodes, 0, 1);
        pump(now, &mut nodes);
        assert_eq!(nodes[1].store.len(), total);
        let stats = nodes[1].replica.stats();
        assert_eq!((stats.not_member, stats.out_of_order), (0, 0));
    }

    #[test]
    fn after_a_restart_the_proofs_in_the_store_count() {
        let now = Instant::now();
        let mut nodes = vec![mesh_node(1, small()), mesh_node(2, small())];
        let a = key(1);
        add(&mut nodes[0], &a, &announce(&a, Some(&mesh_key())));
        connect(now, &mut nodes, 0, 1);
        pump(now, &mut nodes);
        // Node 2 restarts: its members come back from its store.
        let mut members = MeshMembers::new(Some(mesh_key()), nodes[1].id);
        for e in nodes[1].store.entries() {
            members.admit(e);
        }
        assert!(members.is_member(&a.node_id()));
        nodes[1].replica = Replica::with_membership(small(), Box::new(members));
        append(&mut nodes[0], 2);
        let restarted = nodes[1].id;
        nodes[0].replica.handle_peer_disconnected(&restarted);
        connect(now, &mut nodes, 0, 1);
        pump(now, &mut nodes);
        assert_eq!(nodes[1].store.len(), 3);
    }
}

#[test]
fn lag_counts_what_each_side_lacks_from_the_vectors() {
    let now = Instant::now();
    let mut nodes = vec![node(1, small()), node(2, small())];
    append(&mut nodes[0], 10);
    append(&mut nodes[1], 3);
    let (a, b) = (nodes[0].id, nodes[1].id);
    // Not connected: no lag to report.
    assert_eq!(
        nodes[0].replica.lag(&b, &nodes[0].store).unwrap(),
        Lag::default()
    );
    connect(now, &mut nodes, 0, 1);
    // Deliver only b's Hello to a: a now knows b's vector.
    let hello = {
        let Node { replica, store, .. } = &mut nodes[1];
        replica.poll_transmit(store).unwrap().unwrap()
    };
    {
        let Node { replica, store, .. } = &mut nodes[0];
        replica.handle_message(now, b, &hello.bytes, store).unwrap();
    }
    assert_eq!(
        nodes[0].replica.lag(&b, &nodes[0].store).unwrap(),
        Lag {
            peer_lacks: 10,
            we_lack: 3
        }
    );
    assert_eq!(
        nodes[0].replica.lags(&nodes[0].store).unwrap(),
        vec![(
            b,
            Lag {
                peer_lacks: 10,
                we_lack: 3
            }
        )]
    );
    pump(now, &mut nodes);
    for (i, peer) in [(0, b), (1, a)] {
        assert_eq!(
            nodes[i].replica.lag(&peer, &nodes[i].store).unwrap(),
            Lag::default()
        );
    }
}
