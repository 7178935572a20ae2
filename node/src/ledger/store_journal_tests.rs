//! Store tests for the journal: a lone append writes one row, the index
//! tables follow before any read, and journaled rows survive a crash.

use super::tests::{event, key};
use super::*;
use crate::testutil::temp_dir;

/// Rows of the `journal` and `entries` tables, read without moving the
/// journal.
fn rows(store: &Store) -> (u64, u64) {
    let txn = store.db.begin_read().unwrap();
    let journal = txn.open_table(JOURNAL).unwrap().len().unwrap();
    let entries = txn.open_table(ENTRIES).unwrap().len().unwrap();
    (journal, entries)
}

fn cursors_and_seqs(store: &Store) -> Vec<(u64, u64)> {
    store
        .read(None, usize::MAX, &Filter::default())
        .unwrap()
        .iter()
        .map(|s| (s.cursor.0, s.entry.seq))
        .collect()
}

#[test]
fn a_lone_append_writes_only_the_journal_and_a_read_moves_it() {
    let store = Store::open(&temp_dir("ledger-journal-one")).unwrap();
    let k = key(1);
    let got = store.append_local(&k, &[(1, event(1))]).unwrap();
    assert_eq!((got[0].cursor, got[0].entry.seq), (Cursor(1), 1));
    assert_eq!(rows(&store), (1, 0), "one journal row, no index row");
    store.append_local(&k, &[(2, event(2))]).unwrap();
    assert_eq!(rows(&store), (2, 0));
    assert_eq!(cursors_and_seqs(&store), vec![(1, 1), (2, 2)]);
    assert_eq!(rows(&store), (0, 2), "the read moved the journal");
    let state = store.origin(&k.node_id()).unwrap().unwrap();
    assert_eq!(state.frontier, 2);
    assert_eq!(
        state.frontier_hash,
        store.entry(&k.node_id(), 2).unwrap().unwrap().hash()
    );
}

#[test]
fn a_full_journal_is_moved_by_the_append_that_would_overfill_it() {
    let store = Store::open(&temp_dir("ledger-journal-full")).unwrap();
    let k = key(2);
    let n = JOURNAL_MAX as u64;
    for i in 1..=n {
        store.append_local(&k, &[(i, event(i as u32))]).unwrap();
    }
    assert_eq!(rows(&store), (n, 0));
    let next = store.append_local(&k, &[(n + 1, event(0))]).unwrap();
    assert_eq!(next[0].cursor, Cursor(n + 1));
    assert_eq!(rows(&store), (0, n + 1));
    let want: Vec<(u64, u64)> = (1..=n + 1).map(|i| (i, i)).collect();
    assert_eq!(cursors_and_seqs(&store), want);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn journaled_appends_survive_a_reopen_with_their_cursors_and_chain() {
    let dir = temp_dir("ledger-journal-reopen");
    let k = key(3);
    let acked = {
        let store = Store::open(&dir).unwrap();
        store.append_local(&k, &[(1, event(1))]).unwrap();
        let a = store
            .append_local(&k, &[(2, event(2)), (3, event(3))])
            .unwrap();
        assert_eq!(rows(&store).0, 3, "nothing read: all still journaled");
        a
        // Dropped without a read: as after `kill -9`, only the journal
        // holds these appends.
    };
    let store = Store::open(&dir).unwrap();
    assert_eq!(rows(&store), (3, 0));
    let next = store.append_local(&k, &[(4, event(4))]).unwrap();
    assert_eq!((next[0].cursor, next[0].entry.seq), (Cursor(4), 4));
    assert_eq!(next[0].entry.prev_hash, acked[1].entry.hash());
    assert_eq!(
        cursors_and_seqs(&store),
        vec![(1, 1), (2, 2), (3, 3), (4, 4)]
    );
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn replicated_entries_take_cursors_after_journaled_appends() {
    let store = Store::open(&temp_dir("ledger-journal-mix")).unwrap();
    let other = Store::open(&temp_dir("ledger-journal-mix-src")).unwrap();
    let (mine, theirs) = (key(4), key(5));
    store.append_local(&mine, &[(1, event(1))]).unwrap();
    let remote = other.append_local(&theirs, &[(1, event(9))]).unwrap();
    let e = &remote[0].entry;
    let stored = store
        .insert_verified(&theirs.node_id(), std::slice::from_ref(e), (1, e.hash()))
        .unwrap();
    assert_eq!(stored[0].cursor, Cursor(2));
    store.append_local(&mine, &[(2, event(2))]).unwrap();
    let got: Vec<(u64, NodeId)> = store
        .read(None, 10, &Filter::default())
        .unwrap()
        .iter()
        .map(|s| (s.cursor.0, s.entry.origin))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, mine.node_id()),
            (2, theirs.node_id()),
            (3, mine.node_id())
        ]
    );
}

#[test]
fn a_damaged_journal_row_is_refused_as_corrupt() {
    let dir = temp_dir("ledger-journal-corrupt");
    {
        let store = Store::open(&dir).unwrap();
        store.append_local(&key(6), &[(1, event(1))]).unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.open_table(JOURNAL)
            .unwrap()
            .insert(2, [1u8, 2, 3].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&dir).unwrap_err();
    assert_eq!(err.kind(), "ledger-corrupt", "{err}");
    assert!(err.to_string().contains("journal row 2"), "{err}");
}
