//! Store tests: cursors across restarts, retention, damage, full disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use relay_proto::ledger::body::{
    NatType, NodeAnnouncement, PathOutcome, TokenRevocation, TraversalOutcome,
};
use relay_proto::SecretKey;

use super::*;
use crate::testutil::temp_dir;

pub(super) fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

fn announce(port: u16) -> Body {
    Body::NodeAnnouncement(NodeAnnouncement {
        addrs: vec![std::net::SocketAddr::from(([192, 0, 2, 1], port))],
        nat: NatType::Cone,
        relay: false,
        version: "0.1.0".into(),
        member_proof: None,
    })
}

pub(super) fn event(n: u32) -> Body {
    Body::TraversalOutcome(TraversalOutcome {
        peer: key(200).node_id(),
        outcome: PathOutcome::Relayed,
        time_to_direct_ms: None,
        why: format!("attempt {n}"),
        birthday_packets: n,
    })
}

fn revocation(expires: u64) -> Body {
    Body::TokenRevocation(TokenRevocation {
        token_id: [expires as u8; 32],
        expires_unix_ms: expires,
        reason: String::new(),
    })
}

fn all(store: &Store) -> Vec<StoredEntry> {
    store.read(None, usize::MAX, &Filter::default()).unwrap()
}

#[test]
fn cursors_and_feeds_survive_reopen() {
    let dir = temp_dir("ledger-reopen");
    let k = key(1);
    {
        let store = Store::open(&dir).unwrap();
        store
            .append_local(&k, &[(1, event(1)), (2, event(2))])
            .unwrap();
        store.append_local(&k, &[(3, announce(1))]).unwrap();
        let got = all(&store);
        assert_eq!(
            got.iter()
                .map(|s| (s.cursor.0, s.entry.seq))
                .collect::<Vec<_>>(),
            vec![(1, 1), (2, 2), (3, 3)]
        );
        assert_eq!(store.last_cursor().unwrap(), Cursor(3));
    }
    let store = Store::open(&dir).unwrap();
    assert_eq!(all(&store).len(), 3);
    let more = store.append_local(&k, &[(4, event(4))]).unwrap();
    assert_eq!(more[0].cursor, Cursor(4));
    assert_eq!(more[0].entry.seq, 4);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, 4);
    let after = store.read(Some(Cursor(2)), 10, &Filter::default()).unwrap();
    assert_eq!(after.len(), 2);
    let only_ann = store
        .read(
            None,
            10,
            &Filter {
                origin: Some(k.node_id()),
                kind: Some(EntryKind::NodeAnnouncement),
            },
        )
        .unwrap();
    assert_eq!(only_ann.len(), 1);
    assert_eq!(
        store.origin(&k.node_id()).unwrap().unwrap().frontier_hash,
        more[0].entry.hash()
    );
}

#[test]
fn state_kinds_keep_the_latest_per_key() {
    let dir = temp_dir("ledger-latest");
    let k = key(2);
    let store = Store::open(&dir).unwrap();
    let first = store.append_local(&k, &[(1, announce(1))]).unwrap();
    store
        .append_local(&k, &[(2, announce(2)), (3, event(1))])
        .unwrap();
    let kinds: Vec<u64> = all(&store).iter().map(|s| s.entry.seq).collect();
    assert_eq!(kinds, vec![2, 3], "the first announcement was superseded");
    // A replica that gets the old announcement late does not store it.
    let other = Store::open(&temp_dir("ledger-latest-2")).unwrap();
    let e2 = store.entry(&k.node_id(), 2).unwrap().unwrap();
    other
        .insert_verified(&k.node_id(), std::slice::from_ref(&e2), (2, e2.hash()))
        .unwrap();
    let stored = other
        .insert_verified(&k.node_id(), &[first[0].entry.clone()], (2, e2.hash()))
        .unwrap();
    assert!(stored.is_empty());
    assert_eq!(all(&other).len(), 1);
}

#[test]
fn events_keep_a_count_and_an_age_bound_and_revocations_their_expiry() {
    let dir = temp_dir("ledger-events");
    let k = key(3);
    let retention = Retention {
        max_events: 3,
        max_event_age_ms: 1000,
    };
    let store = Store::open_with(&dir, retention).unwrap();
    let items: Vec<(u64, Body)> = (1..=5).map(|i| (i * 100, event(i as u32))).collect();
    store.append_local(&k, &items).unwrap();
    let seqs: Vec<u64> = all(&store).iter().map(|s| s.entry.seq).collect();
    assert_eq!(seqs, vec![3, 4, 5]);
    store
        .append_local(&k, &[(600, revocation(5_000)), (700, revocation(50_000))])
        .unwrap();
    // At t=1350 events older than 350 go (seq 3 at ts 300).
    assert_eq!(store.compact(1_350).unwrap(), 1);
    // At t=10_000 every event is too old and the first token has expired.
    assert_eq!(store.compact(10_000).unwrap(), 3);
    let left: Vec<u64> = all(&store).iter().map(|s| s.entry.seq).collect();
    assert_eq!(left, vec![7]);
    // The frontier is unaffected by retention.
    assert_eq!(store.origin(&k.node_id()).unwrap().unwrap().frontier, 7);
    let range = store.range(&k.node_id(), 1, 100, 1 << 20).unwrap().unwrap();
    assert_eq!(
        (range.from_seq, range.to_seq, range.entries.len()),
        (1, 7, 1)
    );
}

#[test]
fn cursors_never_go_back_when_the_newest_entries_are_dropped() {
    let dir = temp_dir("ledger-cursor-floor");
    let k = key(4);
    let retention = Retention {
        max_events: 100,
        max_event_age_ms: 1000,
    };
    {
        let store = Store::open_with(&dir, retention).unwrap();
        let items: Vec<(u64, Body)> = (1..=3).map(|i| (i * 100, event(i as u32))).collect();
        store.append_local(&k, &items).unwrap();
        assert_eq!(store.last_cursor().unwrap(), Cursor(3));
        // Every entry, the newest (highest cursor) included, ages out.
        assert_eq!(store.compact(10_000).unwrap(), 3);
        assert!(all(&store).is_empty());
        assert_eq!(store.last_cursor().unwrap(), Cursor(3));
        let next = store.append_local(&k, &[(20_000, event(4))]).unwrap();
        assert_eq!(next[0].cursor, Cursor(4));
        assert_eq!(store.compact(100_000).unwrap(), 1);
    }
    // The counter survives a restart with no cursor row left.
    let store = Store::open_with(&dir, retention).unwrap();
    assert_eq!(store.last_cursor().unwrap(), Cursor(4));
    let next = store.append_local(&k, &[(200_000, event(5))]).unwrap();
    assert_eq!(next[0].cursor, Cursor(5));
}

#[test]
fn verify_reports_bad_signatures_and_forks() {
    let dir = temp_dir("ledger-verify");
    let k = key(4);
    let store = Store::open(&dir).unwrap();
    let stored = store.append_local(&k, &[(1, event(1))]).unwrap();
    let mut bad = Entry::sign(&k, 2, stored[0].entry.hash(), 2, &event(2)).unwrap();
    bad.ts_unix_ms += 1;
    store
        .insert_verified(&k.node_id(), &[bad.clone()], (2, bad.hash()))
        .unwrap();
    let other = Entry::sign(&k, 2, stored[0].entry.hash(), 9, &event(9)).unwrap();
    store.record_fork(&[bad, other]).unwrap();
    let report = store.verify().unwrap();
    assert_eq!(report.bad_signatures, vec![(k.node_id(), 2)]);
    assert_eq!(report.forks, vec![(k.node_id(), vec![2])]);
    assert!(!report.is_ok());
    assert_eq!(store.fork_evidence(&k.node_id()).unwrap().len(), 2);
    assert!(matches!(
        store.append_local(&k, &[(3, event(3))]),
        Err(LedgerError::Forked(_))
    ));
    assert!(store.forgive(&k.node_id()).unwrap());
    assert!(store.append_local(&k, &[(3, event(3))]).is_ok());
    assert_eq!(store.stats().unwrap().forks, 0);
}

fn digest(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    ring::digest::digest(&ring::digest::SHA256, &bytes)
        .as_ref()
        .to_vec()
}

#[test]
fn damaged_files_are_refused_and_left_untouched() {
    // Not a database at all.
    let dir = temp_dir("ledger-garbage");
    let path = dir.join(FILE_NAME);
    std::fs::write(&path, b"definitely not a ledger, just some bytes").unwrap();
    let before = digest(&path);
    let err = Store::open(&dir).unwrap_err();
    assert_eq!(err.kind(), "ledger-corrupt", "{err}");
    assert!(err.to_string().starts_with("ledger-corrupt: "));
    assert_eq!(digest(&path), before);

    // Empty (truncated to nothing).
    std::fs::write(&path, b"").unwrap();
    assert_eq!(Store::open(&dir).unwrap_err().kind(), "ledger-corrupt");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

    // A real ledger cut in half.
    let dir = temp_dir("ledger-truncated");
    let path = dir.join(FILE_NAME);
    {
        let store = Store::open(&dir).unwrap();
        let k = key(5);
        for i in 0..50u64 {
            store.append_local(&k, &[(i, event(i as u32))]).unwrap();
        }
    }
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let before = digest(&path);
    let err = Store::open(&dir).unwrap_err();
    assert_eq!(err.kind(), "ledger-corrupt", "{err}");
    assert_eq!(
        digest(&path),
        before,
        "a file it could not read was modified"
    );
}

/// A file backend that fails like a full disk once the file would grow past
/// `cap` bytes.
#[derive(Debug)]
struct TinyDisk {
    inner: redb::backends::FileBackend,
    cap: Arc<AtomicU64>,
}

impl TinyDisk {
    fn full() -> std::io::Error {
        std::io::Error::from_raw_os_error(28)
    }
}

impl redb::StorageBackend for TinyDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        if len > self.cap.load(Ordering::Relaxed) {
            return Err(Self::full());
        }
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        if offset + data.len() as u64 > self.cap.load(Ordering::Relaxed) {
            return Err(Self::full());
        }
        self.inner.write(offset, data)
    }
}

#[test]
fn a_full_disk_is_a_typed_error_and_loses_nothing_acknowledged() {
    let dir = temp_dir("ledger-full");
    let path = dir.join(FILE_NAME);
    let k = key(6);
    let cap = Arc::new(AtomicU64::new(u64::MAX));
    let mut acked = Vec::new();
    {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        let backend = TinyDisk {
            inner: redb::backends::FileBackend::new(file).unwrap(),
            cap: cap.clone(),
        };
        let store = Store::open_backend(backend, &path, false, Retention::default()).unwrap();
        // Leave room for a little growth, then fill it.
        cap.store(
            std::fs::metadata(&path).unwrap().len() + 64 * 1024,
            Ordering::Relaxed,
        );
        let big = Body::ServiceRegistration(relay_proto::ledger::body::ServiceRegistration {
            name: "svc".into(),
            withdrawn: false,
            spec: vec![7; 8000],
        });
        let mut err = None;
        for i in 0..10_000u64 {
            let body = if i % 2 == 0 {
                event(i as u32)
            } else {
                big.clone()
            };
            match store.append_local(&k, &[(i, body)]) {
                Ok(s) => acked.push(s[0].entry.seq),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let err = err.expect("the tiny disk filled up");
        assert_eq!(err.kind(), "ledger-disk-full", "{err}");
        assert!(!acked.is_empty());
    }
    let store = Store::open(&dir).unwrap();
    let state = store.origin(&k.node_id()).unwrap().unwrap();
    assert_eq!(state.frontier, *acked.last().unwrap());
    for seq in &acked {
        // Registrations of one name supersede each other: only the latest
        // is kept; events all are.
        if seq % 2 == 1 {
            assert!(
                store.entry(&k.node_id(), *seq).unwrap().is_some(),
                "seq {seq}"
            );
        }
    }
    assert!(store.verify().unwrap().is_ok());
    // And it keeps working once space is back.
    assert!(store.append_local(&k, &[(1, event(1))]).is_ok());
}

#[test]
fn a_stored_frontier_at_the_end_of_the_sequence_space_is_corrupt_not_a_panic() {
    let dir = temp_dir("ledger-frontier-max");
    let store = Store::open(&dir).unwrap();
    let k = key(7);
    let damaged = OriginState {
        frontier: u64::MAX,
        frontier_hash: EntryHash([1; 32]),
        forked: false,
    };
    let txn = store.db.begin_write().unwrap();
    txn.open_table(ORIGINS)
        .unwrap()
        .insert(k.node_id().as_bytes(), &damaged.encode())
        .unwrap();
    txn.commit().unwrap();
    let err = store.append_local(&k, &[(1, event(1))]).unwrap_err();
    assert_eq!(err.kind(), "ledger-corrupt", "{err}");
}

#[test]
fn a_stored_cursor_at_u64_max_is_corrupt_not_a_panic() {
    let dir = temp_dir("ledger-cursor-max");
    let store = Store::open(&dir).unwrap();
    let txn = store.db.begin_write().unwrap();
    txn.open_table(CURSORS)
        .unwrap()
        .insert(u64::MAX, &[0u8; 40])
        .unwrap();
    txn.commit().unwrap();
    let err = store.append_local(&key(8), &[(1, event(1))]).unwrap_err();
    assert_eq!(err.kind(), "ledger-corrupt", "{err}");
}

#[test]
fn verify_survives_a_row_whose_entry_has_the_last_sequence_number() {
    let dir = temp_dir("ledger-verify-seq-max");
    let store = Store::open(&dir).unwrap();
    let k = key(9);
    let last = Entry::sign(&k, u64::MAX, EntryHash([2; 32]), 1, &event(1)).unwrap();
    let next = Entry::sign(&k, 2, EntryHash([3; 32]), 2, &event(2)).unwrap();
    let txn = store.db.begin_write().unwrap();
    {
        let mut t = txn.open_table(ENTRIES).unwrap();
        // Damage: the row keyed seq 1 holds an entry numbered u64::MAX.
        for (seq, entry) in [(1u64, &last), (2, &next)] {
            let mut row = seq.to_be_bytes().to_vec();
            row.extend_from_slice(&entry.encode());
            t.insert(&entry_key(&k.node_id(), seq), row.as_slice())
                .unwrap();
        }
    }
    txn.commit().unwrap();
    let report = store.verify().unwrap();
    assert_eq!(report.entries, 2);
}
