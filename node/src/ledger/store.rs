//! The ledger's storage: one redb file, `DIR/ledger.redb`.
//!
//! Tables (keys are big-endian so that byte order is seq order):
//!
//! | table | key | value |
//! |-------|-----|-------|
//! | `entries` | origin, seq | cursor, entry wire form |
//! | `cursors` | cursor | origin, seq |
//! | `origins` | origin | frontier seq, frontier hash, forked flag |
//! | `kinds` | origin, kind, seq | entry ts (retention and counts) |
//! | `latest` | origin, kind, retention key | seq of the latest entry |
//! | `forks` | origin, seq, hash | entry wire form (evidence) |
//! | `counts` | origin, kind | entries of an event kind |
//! | `meta` | name | u64 (`next_cursor`, `schema`) |
//! | `journal` | cursor | entry wire form (own appends not yet indexed) |
//!
//! The next cursor is one above the highest `cursors` row (or `journal`
//! row), or `meta`'s `next_cursor` if that is higher; `meta` is written only
//! when the highest cursor row is removed.
//!
//! **The journal.** This node's own appends are committed as one `journal`
//! row each, the smallest durable commit redb can make; the index tables
//! are written for up to [`JOURNAL_MAX`] journaled appends at once, in the
//! next transaction that needs them: any read (a commit without fsync,
//! made durable by the next durable commit), any other write, or the append
//! that would overfill the journal. Each move is one transaction, so a
//! crash leaves every row either in the journal or in the index tables,
//! never both and never neither; on open the journal is read back and moved
//! by the next transaction. See [`super::journal`].
//!
//! Every write that acknowledges something is one transaction committed
//! with [`redb::Durability::Immediate`]: when it returns, it survives a
//! crash or power loss. A failed write (full disk included) commits nothing.
//!
//! **Damage.** An existing file that is empty, too short or lacks redb's
//! magic is refused as `ledger-corrupt` before redb opens it. After open, a
//! read pass decodes every entry; any failure is `ledger-corrupt` and the
//! file is left as it is (this module never truncates, re-initialises or
//! rewrites a file it could not read). redb's own crash recovery (roll back
//! to the last durable commit) is the only thing that writes to an existing
//! file before that pass.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use relay_proto::ledger::body::RetentionClass;
use relay_proto::ledger::{Body, Entry, EntryHash, EntryKind, VectorItem};
use relay_proto::NodeId;

use super::cursor::Cursor;
use super::error::LedgerError;
use super::journal::{Journal, JournalRow, JOURNAL_MAX};
use super::nonce_pool::LocalSigner;
use super::retention::Retention;

/// The database file name inside the data dir.
pub const FILE_NAME: &str = "ledger.redb";
const SCHEMA: u64 = 1;
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

const ENTRIES: TableDefinition<&[u8; 40], &[u8]> = TableDefinition::new("entries");
const CURSORS: TableDefinition<u64, &[u8; 40]> = TableDefinition::new("cursors");
const ORIGINS: TableDefinition<&[u8; 32], &[u8; 41]> = TableDefinition::new("origins");
const KINDS: TableDefinition<&[u8; 41], u64> = TableDefinition::new("kinds");
const LATEST: TableDefinition<&[u8], u64> = TableDefinition::new("latest");
const FORKS: TableDefinition<&[u8; 72], &[u8]> = TableDefinition::new("forks");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const COUNTS: TableDefinition<&[u8; 33], u64> = TableDefinition::new("counts");
const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");

/// An entry as stored here, with its local cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Where it sits in this node's ledger.
    pub cursor: Cursor,
    /// The entry.
    pub entry: Entry,
}

/// Which entries [`Store::read`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this origin.
    pub origin: Option<NodeId>,
    /// Only this kind.
    pub kind: Option<EntryKind>,
}

impl Filter {
    fn matches(&self, origin: &NodeId, kind: EntryKind) -> bool {
        self.origin.is_none_or(|o| &o == origin) && self.kind.is_none_or(|k| k == kind)
    }
}

/// What this node knows of one origin's feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginState {
    /// Highest seq up to which everything that still exists is stored.
    pub frontier: u64,
    /// Hash of the entry at the frontier.
    pub frontier_hash: EntryHash,
    /// Two different entries with one seq were seen; new entries of this
    /// origin are refused until an operator forgives it.
    pub forked: bool,
}

impl OriginState {
    fn encode(&self) -> [u8; 41] {
        let mut out = [0u8; 41];
        out[..8].copy_from_slice(&self.frontier.to_be_bytes());
        out[8..40].copy_from_slice(&self.frontier_hash.0);
        out[40] = u8::from(self.forked);
        out
    }

    fn decode(b: &[u8; 41]) -> Self {
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[..8]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[8..40]);
        Self {
            frontier: u64::from_be_bytes(seq),
            frontier_hash: EntryHash(hash),
            forked: b[40] != 0,
        }
    }
}

/// Entries of one origin read for replication: all stored entries in
/// `from_seq..=to_seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeRead {
    /// First seq covered.
    pub from_seq: u64,
    /// Last seq covered.
    pub to_seq: u64,
    /// The entries.
    pub entries: Vec<Entry>,
}

/// Totals for `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerStats {
    /// Origins with a feed here.
    pub origins: u64,
    /// Entries stored.
    pub entries: u64,
    /// Bytes of stored entries (wire form).
    pub bytes: u64,
    /// Origins flagged as forked.
    pub forks: u64,
}

/// The result of [`Store::verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Origins checked.
    pub origins: u64,
    /// Entries whose signature does not verify.
    pub bad_signatures: Vec<(NodeId, u64)>,
    /// Entries whose prev_hash does not match the stored predecessor.
    pub broken_links: Vec<(NodeId, u64)>,
    /// Forked origins, with the seqs that have evidence.
    pub forks: Vec<(NodeId, Vec<u64>)>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.bad_signatures.is_empty() && self.broken_links.is_empty() && self.forks.is_empty()
    }
}

/// The redb-backed store. Safe to share between threads: redb runs one
/// write transaction at a time and any number of readers.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
    retention: Retention,
    /// The `journal` table's rows; held as the write lock of every write.
    journal: Mutex<Journal>,
    /// Whether the journal may hold rows (read without the lock, so that
    /// a read does not wait for a commit when nothing is journaled).
    journaled: AtomicBool,
}

fn entry_key(origin: &NodeId, seq: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(origin.as_bytes());
    k[32..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn kind_key(origin: &NodeId, kind: EntryKind, seq: u64) -> [u8; 41] {
    let mut k = [0u8; 41];
    k[..32].copy_from_slice(origin.as_bytes());
    k[32] = kind.code();
    k[33..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn count_key(origin: &[u8; 32], kind: EntryKind) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[..32].copy_from_slice(origin);
    k[32] = kind.code();
    k
}

fn split_entry_key(k: &[u8; 40]) -> ([u8; 32], u64) {
    let mut o = [0u8; 32];
    o.copy_from_slice(&k[..32]);
    let mut s = [0u8; 8];
    s.copy_from_slice(&k[32..]);
    (o, u64::from_be_bytes(s))
}

impl Store {
    /// Opens (or creates) `dir/ledger.redb` with the default retention.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        Self::open_with(dir, Retention::default())
    }

    /// Opens (or creates) `dir/ledger.redb`.
    pub fn open_with(dir: &Path, retention: Retention) -> Result<Self, LedgerError> {
        let path = dir.join(FILE_NAME);
        let existed = check_existing(&path)?;
        let db = Database::builder()
            .create(&path)
            .map_err(|e| LedgerError::from_redb(&path, e))?;
        Self::finish_open(db, path, existed, retention)
    }

    /// Opens a store on a custom redb backend (tests: simulated disks).
    pub fn open_backend(
        backend: impl redb::StorageBackend,
        name: &Path,
        existed: bool,
        retention: Retention,
    ) -> Result<Self, LedgerError> {
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(|e| LedgerError::from_redb(name, e))?;
        Self::finish_open(db, name.to_owned(), existed, retention)
    }

    fn finish_open(
        db: Database,
        path: PathBuf,
        existed: bool,
        retention: Retention,
    ) -> Result<Self, LedgerError> {
        let store = Self {
            db,
            path,
            retention,
            journal: Mutex::new(Journal::default()),
            journaled: AtomicBool::new(false),
        };
        if existed {
            let rows = store.check_readable()?;
            store.journaled.store(!rows.is_empty(), Ordering::Release);
            store.lock_journal().extend(rows);
        } else {
            store.create_tables()?;
        }
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl Fn(redb::Error) -> LedgerError + '_ {
        move |e| LedgerError::from_redb(&self.path, e)
    }

    fn create_tables(&self) -> Result<(), LedgerError> {
        let e = self.err();
        let txn = self.begin_write(Durability::Immediate)?;
        {
            txn.open_table(JOURNAL).map_err(|x| e(x.into()))?;
            txn.open_table(ENTRIES).map_err(|x| e(x.into()))?;
            txn.open_table(CURSORS).map_err(|x| e(x.into()))?;
            txn.open_table(ORIGINS).map_err(|x| e(x.into()))?;
            txn.open_table(KINDS).map_err(|x| e(x.into()))?;
            txn.open_table(LATEST).map_err(|x| e(x.into()))?;
            txn.open_table(FORKS).map_err(|x| e(x.into()))?;
            txn.open_table(COUNTS).map_err(|x| e(x.into()))?;
            let mut meta = txn.open_table(META).map_err(|x| e(x.into()))?;
            meta.insert("schema", SCHEMA).map_err(|x| e(x.into()))?;
            meta.insert("next_cursor", 1).map_err(|x| e(x.into()))?;
        }
        txn.commit().map_err(|x| e(x.into()))
    }

    /// Reads every table of an existing file; any failure is
    /// `ledger-corrupt` and nothing is written. Returns the journal's rows.
    fn check_readable(&self) -> Result<Vec<JournalRow>, LedgerError> {
        let corrupt = |d: String| LedgerError::corrupt(&self.path, d);
        let txn = self.db.begin_read().map_err(|x| corrupt(x.to_string()))?;
        let meta = txn.open_table(META).map_err(|x| corrupt(x.to_string()))?;
        let schema = meta
            .get("schema")
            .map_err(|x| corrupt(x.to_string()))?
            .map(|v| v.value());
        if schema != Some(SCHEMA) {
            return Err(corrupt(format!("unknown ledger schema {schema:?}")));
        }
        let entries = txn
            .open_table(ENTRIES)
            .map_err(|x| corrupt(x.to_string()))?;
        for row in entries.iter().map_err(|x| corrupt(x.to_string()))? {
            let (k, v) = row.map_err(|x| corrupt(x.to_string()))?;
            let (origin, seq) = split_entry_key(k.value());
            let entry = decode_stored(v.value()).map_err(corrupt)?.1;
            if entry.origin.as_bytes() != &origin || entry.seq != seq {
                return Err(corrupt(format!("entry row seq {seq} holds another entry")));
            }
        }
        for def in [CURSORS] {
            let t = txn.open_table(def).map_err(|x| corrupt(x.to_string()))?;
            for row in t.iter().map_err(|x| corrupt(x.to_string()))? {
                row.map_err(|x| corrupt(x.to_string()))?;
            }
        }
        let t = txn
            .open_table(ORIGINS)
            .map_err(|x| corrupt(x.to_string()))?;
        for row in t.iter().map_err(|x| corrupt(x.to_string()))? {
            row.map_err(|x| corrupt(x.to_string()))?;
        }
        let lens = [
            txn.open_table(KINDS).and_then(|t| Ok(t.len()?)),
            txn.open_table(LATEST).and_then(|t| Ok(t.len()?)),
            txn.open_table(FORKS).and_then(|t| Ok(t.len()?)),
            txn.open_table(COUNTS).and_then(|t| Ok(t.len()?)),
        ];
        for len in lens {
            len.map_err(|x| corrupt(x.to_string()))?;
        }
        // A file written before the journal existed has no such table.
        let journal = match txn.open_table(JOURNAL) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(x) => return Err(corrupt(x.to_string())),
        };
        let mut rows: Vec<JournalRow> = Vec::new();
        for row in journal.iter().map_err(|x| corrupt(x.to_string()))? {
            let (k, v) = row.map_err(|x| corrupt(x.to_string()))?;
            let entry = Entry::decode(v.value())
                .map_err(|x| corrupt(format!("journal row {}: {x}", k.value())))?;
            if let Some(prev) = rows.iter().rev().find(|r| r.entry.origin == entry.origin) {
                if prev.entry.seq.checked_add(1) != Some(entry.seq) || prev.hash != entry.prev_hash
                {
                    return Err(corrupt(format!(
                        "journal row {} does not follow the one before it",
                        k.value()
                    )));
                }
            }
            rows.push(JournalRow {
                cursor: k.value(),
                hash: entry.hash(),
                entry,
            });
        }
        Ok(rows)
    }

    fn begin_write(&self, durability: Durability) -> Result<WriteTransaction, LedgerError> {
        let mut txn = self.db.begin_write().map_err(|x| self.err()(x.into()))?;
        txn.set_durability(durability)
            .map_err(|x| LedgerError::Io(x.to_string()))?;
        Ok(txn)
    }

    /// The journal, which is also the lock every write holds.
    fn lock_journal(&self) -> MutexGuard<'_, Journal> {
        // The journal changes only after a commit, in one call that cannot
        // panic half-way: a poisoned lock still holds a consistent copy.
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens the tables of a write and moves the journal into them.
    fn tables<'t>(
        &self,
        txn: &'t WriteTransaction,
        journal: &Journal,
    ) -> Result<Tables<'t>, LedgerError> {
        let e = self.err();
        let mut t = Tables::open(txn).map_err(&e)?;
        if journal.is_empty() {
            return Ok(t);
        }
        let mut dropped = false;
        let mut frontiers: Vec<(NodeId, u64, EntryHash)> = Vec::new();
        for row in journal.rows() {
            let entry = &row.entry;
            if !t.has(&entry.origin, entry.seq).map_err(&e)? {
                dropped |= t
                    .insert_at(entry, row.cursor, self.retention)
                    .map_err(&e)?
                    .is_none();
            }
            match frontiers.iter_mut().find(|f| f.0 == entry.origin) {
                Some(f) => *f = (entry.origin, entry.seq, row.hash),
                None => frontiers.push((entry.origin, entry.seq, row.hash)),
            }
        }
        for (origin, seq, hash) in frontiers {
            let mut state = t.origin(&origin).map_err(&e)?.unwrap_or(OriginState {
                frontier: 0,
                frontier_hash: EntryHash::ZERO,
                forked: false,
            });
            if seq > state.frontier {
                state.frontier = seq;
                state.frontier_hash = hash;
                t.set_origin(&origin, state).map_err(&e)?;
            }
        }
        if dropped {
            // A journaled cursor left no row: keep the counter above it.
            t.meta
                .insert("next_cursor", t.next_cursor)
                .map_err(|x| e(x.into()))?;
        }
        let mut jt = txn.open_table(JOURNAL).map_err(|x| e(x.into()))?;
        jt.retain(|_, _| false).map_err(|x| e(x.into()))?;
        Ok(t)
    }

    /// After the commit of a transaction that opened [`Store::tables`]:
    /// the journal's rows are in the index tables now.
    fn moved(&self, journal: &mut Journal) {
        journal.clear();
        self.journaled.store(false, Ordering::Release);
    }

    /// Moves the journal into the index tables, without fsync: the move is
    /// made durable by the next durable commit, and until then a crash
    /// leaves the rows in the journal.
    fn move_journal(&self) -> Result<(), LedgerError> {
        let mut journal = self.lock_journal();
        if journal.is_empty() {
            return Ok(());
        }
        let txn = self.begin_write(Durability::None)?;
        drop(self.tables(&txn, &journal)?);
        txn.commit().map_err(|x| self.err()(x.into()))?;
        self.moved(&mut journal);
        Ok(())
    }

    /// Appends entries to `secret`'s own feed in one durable commit, one
    /// per `(ts_unix_ms, body)`. All or nothing.
    pub fn append_local<S: LocalSigner + ?Sized>(
        &self,
        signer: &S,
        items: &[(u64, Body)],
    ) -> Result<Vec<StoredEntry>, LedgerError> {
        let mut journal = self.lock_journal();
        if journal.len() + items.len() <= JOURNAL_MAX {
            return self.append_journaled(signer, items, &mut journal);
        }
        let e = self.err();
        let origin = signer.node_id();
        let txn = self.begin_write(Durability::Immediate)?;
        let mut out = Vec::with_capacity(items.len());
        {
            let mut t = self.tables(&txn, &journal)?;
            let mut state = t.origin(&origin).map_err(&e)?.unwrap_or(OriginState {
                frontier: 0,
                frontier_hash: EntryHash::ZERO,
                forked: false,
            });
            if state.forked {
                return Err(LedgerError::Forked(origin));
            }
            for (ts, body) in items {
                // A frontier is at most the entries stored; u64::MAX comes
                // only from a damaged file.
                let seq = state.frontier.checked_add(1).ok_or_else(|| {
                    LedgerError::corrupt(&self.path, "own feed's frontier is at u64::MAX")
                })?;
                let sign = |m: &[u8]| signer.sign(m);
                let entry = Entry::sign_by(origin, sign, seq, state.frontier_hash, *ts, body)?;
                state.frontier = entry.seq;
                state.frontier_hash = entry.hash();
                if let Some(cursor) = t.insert(&entry, self.retention).map_err(&e)? {
                    out.push(StoredEntry { cursor, entry });
                }
            }
            t.set_origin(&origin, state).map_err(&e)?;
        }
        txn.commit().map_err(|x| e(x.into()))?;
        self.moved(&mut journal);
        Ok(out)
    }

    /// [`Store::append_local`] into the journal: one row per entry, one
    /// durable commit, no index table written.
    fn append_journaled<S: LocalSigner + ?Sized>(
        &self,
        signer: &S,
        items: &[(u64, Body)],
        journal: &mut Journal,
    ) -> Result<Vec<StoredEntry>, LedgerError> {
        let e = self.err();
        let origin = signer.node_id();
        let txn = self.begin_write(Durability::Immediate)?;
        let mut rows = Vec::with_capacity(items.len());
        {
            // The journal's tail of this origin, when there is one, gives
            // the frontier; and then the origin is not forked: its append
            // passed the check below, and every write that could flag a
            // fork (any but a journaled append) empties the journal first.
            let tail = journal
                .rows()
                .iter()
                .rev()
                .find(|r| r.entry.origin == origin);
            let (mut seq, mut hash) = match tail {
                Some(r) => (r.entry.seq, r.hash),
                None => {
                    let origins = txn.open_table(ORIGINS).map_err(|x| e(x.into()))?;
                    let stored = origins
                        .get(origin.as_bytes())
                        .map_err(|x| e(x.into()))?
                        .map(|v| OriginState::decode(v.value()));
                    match stored {
                        Some(s) if s.forked => return Err(LedgerError::Forked(origin)),
                        Some(s) => (s.frontier, s.frontier_hash),
                        None => (0, EntryHash::ZERO),
                    }
                }
            };
            let mut cursor = match journal.last() {
                Some(r) => r.cursor.checked_add(1).ok_or_else(|| {
                    LedgerError::corrupt(&self.path, "the cursor counter is at u64::MAX")
                })?,
                None => {
                    let meta = txn.open_table(META).map_err(|x| e(x.into()))?;
                    let cursors = txn.open_table(CURSORS).map_err(|x| e(x.into()))?;
                    next_cursor(&meta, &cursors).map_err(&e)?
                }
            };
            let mut jt = txn.open_table(JOURNAL).map_err(|x| e(x.into()))?;
            for (ts, body) in items {
                let next = seq.checked_add(1).ok_or_else(|| {
                    LedgerError::corrupt(&self.path, "the feed's frontier is at u64::MAX")
                })?;
                let entry = Entry::sign_by(origin, |m| signer.sign(m), next, hash, *ts, body)?;
                let wire = entry.encode();
                seq = entry.seq;
                hash = EntryHash::of_wire(&wire);
                jt.insert(cursor, wire.as_slice())
                    .map_err(|x| e(x.into()))?;
                rows.push(JournalRow {
                    cursor,
                    entry,
                    hash,
                });
                cursor = cursor.saturating_add(1);
            }
        }
        txn.commit().map_err(|x| e(x.into()))?;
        let out = rows
            .iter()
            .map(|r| StoredEntry {
                cursor: Cursor(r.cursor),
                entry: r.entry.clone(),
            })
            .collect();
        journal.extend(rows);
        self.journaled.store(true, Ordering::Release);
        Ok(out)
    }

    /// Stores verified entries of one origin (the replica checked their
    /// signatures and chain) and moves the origin's frontier to
    /// `frontier`. Entries already present are skipped; entries that
    /// retention drops at once (an older state than the one stored) are not
    /// stored. Returns what was stored. One durable commit.
    pub fn insert_verified(
        &self,
        origin: &NodeId,
        entries: &[Entry],
        frontier: (u64, EntryHash),
    ) -> Result<Vec<StoredEntry>, LedgerError> {
        let e = self.err();
        let mut journal = self.lock_journal();
        let txn = self.begin_write(Durability::Immediate)?;
        let mut out = Vec::with_capacity(entries.len());
        {
            let mut t = self.tables(&txn, &journal)?;
            let mut state = t.origin(origin).map_err(&e)?.unwrap_or(OriginState {
                frontier: 0,
                frontier_hash: EntryHash::ZERO,
                forked: false,
            });
            for entry in entries {
                if t.has(origin, entry.seq).map_err(&e)? {
                    continue;
                }
                if let Some(cursor) = t.insert(entry, self.retention).map_err(&e)? {
                    out.push(StoredEntry {
                        cursor,
                        entry: entry.clone(),
                    });
                }
            }
            if frontier.0 > state.frontier {
                state.frontier = frontier.0;
                state.frontier_hash = frontier.1;
            }
            t.set_origin(origin, state).map_err(&e)?;
        }
        txn.commit().map_err(|x| e(x.into()))?;
        self.moved(&mut journal);
        Ok(out)
    }

    /// Keeps `evidence` (two or more different entries with one origin and
    /// seq) and flags the origin as forked. One durable commit.
    pub fn record_fork(&self, evidence: &[Entry]) -> Result<(), LedgerError> {
        let e = self.err();
        let mut journal = self.lock_journal();
        let txn = self.begin_write(Durability::Immediate)?;
        {
            let mut forks = txn.open_table(FORKS).map_err(|x| e(x.into()))?;
            let mut t = self.tables(&txn, &journal)?;
            for entry in evidence {
                let mut key = [0u8; 72];
                key[..40].copy_from_slice(&entry_key(&entry.origin, entry.seq));
                key[40..].copy_from_slice(&entry.hash().0);
                forks
                    .insert(&key, entry.encode().as_slice())
                    .map_err(|x| e(x.into()))?;
                let mut state = t.origin(&entry.origin).map_err(&e)?.unwrap_or(OriginState {
                    frontier: 0,
                    frontier_hash: EntryHash::ZERO,
                    forked: true,
                });
                state.forked = true;
                t.set_origin(&entry.origin, state).map_err(&e)?;
            }
        }
        txn.commit().map_err(|x| e(x.into()))?;
        self.moved(&mut journal);
        Ok(())
    }

    /// Clears an origin's fork flag (the operator's `ledger forgive`). The
    /// evidence stays. Returns whether the origin was flagged.
    pub fn forgive(&self, origin: &NodeId) -> Result<bool, LedgerError> {
        let e = self.err();
        let mut journal = self.lock_journal();
        let txn = self.begin_write(Durability::Immediate)?;
        let was;
        {
            let mut t = self.tables(&txn, &journal)?;
            let Some(mut state) = t.origin(origin).map_err(&e)? else {
                return Ok(false);
            };
            was = state.forked;
            state.forked = false;
            t.set_origin(origin, state).map_err(&e)?;
        }
        txn.commit().map_err(|x| e(x.into()))?;
        self.moved(&mut journal);
        Ok(was)
    }

    /// A read transaction that sees every acknowledged append: the journal
    /// is moved into the index tables first.
    fn read_txn(&self) -> Result<redb::ReadTransaction, LedgerError> {
        if self.journaled.load(Ordering::Acquire) {
            self.move_journal()?;
        }
        self.db.begin_read().map_err(|x| self.err()(x.into()))
    }

    /// What this node knows of `origin`.
    pub fn origin(&self, origin: &NodeId) -> Result<Option<OriginState>, LedgerError> {
        let e = self.err();
        let txn = self.read_txn()?;
        let t = txn.open_table(ORIGINS).map_err(|x| e(x.into()))?;
        let v = t.get(origin.as_bytes()).map_err(|x| e(x.into()))?;
        Ok(v.map(|v| OriginState::decode(v.value())))
    }

    /// Every origin with its state.
    pub fn origins(&self) -> Result<Vec<(NodeId, OriginState)>, LedgerError> {
        let e = self.err();
        let txn = self.read_txn()?;
        let t = txn.open_table(ORIGINS).map_err(|x| e(x.into()))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|x| e(x.into()))? {
            let (k, v) = row.map_err(|x| e(x.into()))?;
            let origin = NodeId::from_bytes(k.value())
                .map_err(|_| LedgerError::corrupt(&self.path, "invalid origin key"))?;
            out.push((origin, OriginState::decode(v.value())));
        }
        Ok(out)
    }

    /// The version vector: frontier and its hash per origin.
    pub fn vector(&self) -> Result<Vec<VectorItem>, LedgerError> {
        Ok(self
            .origins()?
            .into_iter()
            .filter(|(_, s)| s.frontier > 0)
            .map(|(origin, s)| VectorItem {
                origin,
                seq: s.frontier,
                hash: s.frontier_hash,
            })
            .collect())
    }

    /// The stored entry `seq` of `origin`.
    pub fn entry(&self, origin: &NodeId, seq: u64) -> Result<Option<Entry>, LedgerError> {
        let e = self.err();
        let txn = self.read_txn()?;
        let t = txn.open_table(ENTRIES).map_err(|x| e(x.into()))?;
        let v = t.get(&entry_key(origin, seq)).map_err(|x| e(x.into()))?;
        match v {
            None => Ok(None),
            Some(v) => Ok(Some(
                decode_stored(v.value())
                    .map_err(|d| LedgerError::corrupt(&self.path, d))?
                    .1,
            )),
        }
    }

    /// Stored entries of `origin` from `from_seq`, at most `max_entries` and
    /// about `max_bytes` (at least one entry), for replication. `None` if
    /// nothing from `from_seq` up to the frontier exists here.
    pub fn range(
        &self,
        origin: &NodeId,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Option<RangeRead>, LedgerError> {
        let Some(state) = self.origin(origin)? else {
            return Ok(None);
        };
        if from_seq == 0 || from_seq > state.frontier {
            return Ok(None);
        }
        let e = self.err();
        let txn = self.read_txn()?;
        let t = txn.open_table(ENTRIES).map_err(|x| e(x.into()))?;
        let lo = entry_key(origin, from_seq);
        let hi = entry_key(origin, state.frontier);
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        let mut to_seq = state.frontier;
        for row in t.range::<&[u8; 40]>(&lo..=&hi).map_err(|x| e(x.into()))? {
            let (_, v) = row.map_err(|x| e(x.into()))?;
            let entry = decode_stored_of(v.value(), Some(origin))
                .map_err(|d| LedgerError::corrupt(&self.path, d))?
                .1;
            if !entries.is_empty()
                && (entries.len() >= max_entries || bytes + entry.encoded_len() > max_bytes)
            {
                to_seq = entry.seq - 1;
                break;
            }
            bytes += entry.encoded_len();
            entries.push(entry);
        }
        Ok(Some(RangeRead {
            from_seq,
            to_seq,
            entries,
        }))
    }

    /// Entries stored after `after` (all if `None`), in cursor order, at most
    /// `limit`, that match `filter`.
    pub fn read(
        &self,
        after: Option<Cursor>,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<StoredEntry>, LedgerError> {
        let e = self.err();
        let txn = self.read_txn()?;
        let cursors = txn.open_table(CURSORS).map_err(|x| e(x.into()))?;
        let entries = txn.open_table(ENTRIES).map_err(|x| e(x.into()))?;
        let start = after.map_or(0, |c| c.0.saturating_add(1));
        let mut out = Vec::new();
        for row in cursors.range(start..).map_err(|x| e(x.into()))? {
            if out.len() >= limit {
                break;
            }
            let (_, key) = row.map_err(|x| e(x.into()))?;
            let key = *key.value();
            if let Some(o) = &filter.origin {
                if &key[..32] != o.as_bytes() {
                    continue;
                }
            }
            let v = entries
                .get(&key)
                .map_err(|x| e(x.into()))?
                .ok_or_else(|| LedgerError::corrupt(&self.path, "cursor without entry"))?;
            // Skipped before decoding (which checks every key in the entry):
            // reading the members scans past every event.
            if let (Some(kind), Some(code)) = (filter.kind, stored_kind_code(v.value())) {
                if code != kind.code() {
                    continue;
                }
            }
            let (cursor, entry) =
                decode_stored(v.value()).map_err(|d| LedgerError::corrupt(&self.path, d))?;
            if filter.matches(&entry.origin, entry.kind) {
                out.push(StoredEntry { cursor, entry });
            }
        }
        Ok(out)
    }

    /// The latest cursor issued (0 if none).
    pub fn last_cursor(&self) -> Result<Cursor, LedgerError> {
        let e = self.err();
        let txn = self.read_txn()?;
        let meta = txn.open_table(META).map_err(|x| e(x.into()))?;
        let cursors = txn.open_table(CURSORS).map_err(|x| e(x.into()))?;
        let next = next_cursor(&meta, &cursors).map_err(&e)?;
        Ok(Cursor(next.saturating_sub(1)))
    }

    /// Applies the age bounds of retention (events older than the bound,
    /// revocations whose token expired). Returns how many entries were
    /// dropped. The count bounds apply on insert.
    pub fn compact(&self, now_unix_ms: u64) -> Result<u64, LedgerError> {
        let e = self.err();
        let mut doomed = Vec::new();
        {
            let txn = self.read_txn()?;
            let kinds = txn.open_table(KINDS).map_err(|x| e(x.into()))?;
            let entries = txn.open_table(ENTRIES).map_err(|x| e(x.into()))?;
            let cutoff = now_unix_ms.saturating_sub(self.retention.max_event_age_ms);
            for row in kinds.iter().map_err(|x| e(x.into()))? {
                let (k, ts) = row.map_err(|x| e(x.into()))?;
                let k = *k.value();
                let Some(kind) = EntryKind::from_code(k[32]) else {
                    continue;
                };
                let mut ek = [0u8; 40];
                ek[..32].copy_from_slice(&k[..32]);
                ek[32..].copy_from_slice(&k[33..]);
                let drop = match kind.retention() {
                    RetentionClass::Event => ts.value() < cutoff,
                    RetentionClass::UntilExpiry => {
                        let Some(v) = entries.get(&ek).map_err(|x| e(x.into()))? else {
                            continue;
                        };
                        let entry = decode_stored(v.value())
                            .map_err(|d| LedgerError::corrupt(&self.path, d))?
                            .1;
                        matches!(entry.body(), Ok(Body::TokenRevocation(r)) if r.expires_unix_ms < now_unix_ms)
                    }
                    RetentionClass::LatestPerKey => false,
                };
                if drop {
                    doomed.push((ek, kind));
                }
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut journal = self.lock_journal();
        let txn = self.begin_write(Durability::Immediate)?;
        {
            let mut t = self.tables(&txn, &journal)?;
            for (ek, kind) in &doomed {
                t.remove(ek, *kind).map_err(&e)?;
            }
        }
        txn.commit().map_err(|x| e(x.into()))?;
        self.moved(&mut journal);
        Ok(doomed.len() as u64)
    }

    /// Totals for `status`.
    pub fn stats(&self) -> Result<LedgerStats, LedgerError> {
        let e = self.err();
        let txn = self.read_txn()?;
        let entries = txn.open_table(ENTRIES).map_err(|x| e(x.into()))?;
        let origins = self.origins()?;
        let bytes = entries.stats().map_err(|x| e(x.into()))?.stored_bytes();
        Ok(LedgerStats {
            origins: origins.len() as u64,
            entries: entries.len().map_err(|x| e(x.into()))?,
            bytes,
            forks: origins.iter().filter(|(_, s)| s.forked).count() as u64,
        })
    }

    /// Re-checks every stored entry's signature and every link to a stored
    /// predecessor, and lists forks with their evidence.
    pub fn verify(&self) -> Result<VerifyReport, LedgerError> {
        let e = self.err();
        let txn = self.read_txn()?;
        let t = txn.open_table(ENTRIES).map_err(|x| e(x.into()))?;
        let mut report = VerifyReport::default();
        let mut prev: Option<Entry> = None;
        for row in t.iter().map_err(|x| e(x.into()))? {
            let (_, v) = row.map_err(|x| e(x.into()))?;
            let entry = decode_stored(v.value())
                .map_err(|d| LedgerError::corrupt(&self.path, d))?
                .1;
            report.entries += 1;
            if entry.verify_signature().is_err() {
                report.bad_signatures.push((entry.origin, entry.seq));
            }
            match &prev {
                Some(p) if p.origin == entry.origin => {
                    if p.seq.checked_add(1) == Some(entry.seq) && !p.links_to(&entry) {
                        report.broken_links.push((entry.origin, entry.seq));
                    }
                }
                _ => report.origins += 1,
            }
            prev = Some(entry);
        }
        let forks = txn.open_table(FORKS).map_err(|x| e(x.into()))?;
        let flagged: Vec<NodeId> = self
            .origins()?
            .into_iter()
            .filter(|(_, s)| s.forked)
            .map(|(o, _)| o)
            .collect();
        for origin in flagged {
            let mut lo = [0u8; 72];
            lo[..32].copy_from_slice(origin.as_bytes());
            let mut hi = [0xffu8; 72];
            hi[..32].copy_from_slice(origin.as_bytes());
            let mut seqs = Vec::new();
            for row in forks
                .range::<&[u8; 72]>(&lo..=&hi)
                .map_err(|x| e(x.into()))?
            {
                let (k, _) = row.map_err(|x| e(x.into()))?;
                let mut s = [0u8; 8];
                s.copy_from_slice(&k.value()[32..40]);
                let seq = u64::from_be_bytes(s);
                if seqs.last() != Some(&seq) {
                    seqs.push(seq);
                }
            }
            report.forks.push((origin, seqs));
        }
        Ok(report)
    }

    /// The fork evidence kept for `origin`.
    pub fn fork_evidence(&self, origin: &NodeId) -> Result<Vec<Entry>, LedgerError> {
        let e = self.err();
        let txn = self.read_txn()?;
        let forks = txn.open_table(FORKS).map_err(|x| e(x.into()))?;
        let mut lo = [0u8; 72];
        lo[..32].copy_from_slice(origin.as_bytes());
        let mut hi = [0xffu8; 72];
        hi[..32].copy_from_slice(origin.as_bytes());
        let mut out = Vec::new();
        for row in forks
            .range::<&[u8; 72]>(&lo..=&hi)
            .map_err(|x| e(x.into()))?
        {
            let (_, v) = row.map_err(|x| e(x.into()))?;
            out.push(
                Entry::decode(v.value())
                    .map_err(|d| LedgerError::corrupt(&self.path, d.to_string()))?,
            );
        }
        Ok(out)
    }
}

/// Refuses an existing file that cannot be a redb database. Returns
/// whether the file existed.
fn check_existing(path: &Path) -> Result<bool, LedgerError> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(LedgerError::from_io(path, &e)),
    };
    let mut head = [0u8; 9];
    match file.read_exact(&mut head) {
        Ok(()) if head == REDB_MAGIC => Ok(true),
        Ok(()) => Err(LedgerError::corrupt(
            path,
            "not a ledger database (bad magic)",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(LedgerError::corrupt(
            path,
            "file is empty or truncated before its header",
        )),
        Err(e) => Err(LedgerError::from_io(path, &e)),
    }
}

/// Where a stored row (cursor, then the entry's encoding: origin, seq,
/// prev_hash, ts, kind, ...) holds the kind's code.
const ROW_KIND_AT: usize = 8 + 32 + 8 + 32 + 8;

/// The kind code of a stored row, without decoding it.
fn stored_kind_code(v: &[u8]) -> Option<u8> {
    v.get(ROW_KIND_AT).copied()
}

/// Splits a stored row into cursor and entry.
fn decode_stored(v: &[u8]) -> Result<(Cursor, Entry), String> {
    decode_stored_of(v, None)
}

/// [`decode_stored`] for a row keyed by `origin` (already a valid key):
/// its origin bytes are compared instead of decompressed again, which
/// costs a field inversion per entry (the bulk of reading a range).
fn decode_stored_of(v: &[u8], origin: Option<&NodeId>) -> Result<(Cursor, Entry), String> {
    if v.len() < 8 {
        return Err("entry row shorter than its cursor".into());
    }
    let (c, rest) = v.split_at(8);
    let mut cb = [0u8; 8];
    cb.copy_from_slice(c);
    let mut r = relay_proto::ledger::codec::Reader::new(rest);
    let entry = Entry::read_of(&mut r, origin)
        .and_then(|e| r.finish().map(|()| e).map_err(Into::into))
        .map_err(|e| format!("stored entry: {e}"))?;
    Ok((Cursor(u64::from_be_bytes(cb)), entry))
}

/// The next cursor to issue: one above the highest cursor row, or the
/// `next_cursor` floor in `meta` if that is higher (it is written only when
/// the highest cursor row is removed, so that cursors never go back).
/// Deriving it saves writing `meta` on every insert.
fn next_cursor(
    meta: &impl ReadableTable<&'static str, u64>,
    cursors: &impl ReadableTable<u64, &'static [u8; 40]>,
) -> Result<u64, redb::Error> {
    let floor = meta.get("next_cursor")?.map_or(1, |v| v.value());
    let above_last = match cursors.last()? {
        None => 1,
        // Cursors count up from 1, one per entry stored: u64::MAX comes
        // only from a damaged file.
        Some((k, _)) => k
            .value()
            .checked_add(1)
            .ok_or_else(|| redb::Error::Corrupted("the highest cursor is u64::MAX".into()))?,
    };
    Ok(floor.max(above_last))
}

/// The tables one write transaction touches.
struct Tables<'t> {
    entries: redb::Table<'t, &'static [u8; 40], &'static [u8]>,
    cursors: redb::Table<'t, u64, &'static [u8; 40]>,
    origins: redb::Table<'t, &'static [u8; 32], &'static [u8; 41]>,
    kinds: redb::Table<'t, &'static [u8; 41], u64>,
    latest: redb::Table<'t, &'static [u8], u64>,
    counts: redb::Table<'t, &'static [u8; 33], u64>,
    meta: redb::Table<'t, &'static str, u64>,
    next_cursor: u64,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, redb::Error> {
        let meta = txn.open_table(META)?;
        let cursors = txn.open_table(CURSORS)?;
        let next_cursor = next_cursor(&meta, &cursors)?;
        Ok(Self {
            entries: txn.open_table(ENTRIES)?,
            cursors,
            origins: txn.open_table(ORIGINS)?,
            kinds: txn.open_table(KINDS)?,
            latest: txn.open_table(LATEST)?,
            counts: txn.open_table(COUNTS)?,
            meta,
            next_cursor,
        })
    }

    fn origin(&self, origin: &NodeId) -> Result<Option<OriginState>, redb::Error> {
        Ok(self
            .origins
            .get(origin.as_bytes())?
            .map(|v| OriginState::decode(v.value())))
    }

    fn set_origin(&mut self, origin: &NodeId, state: OriginState) -> Result<(), redb::Error> {
        self.origins.insert(origin.as_bytes(), &state.encode())?;
        Ok(())
    }

    fn has(&self, origin: &NodeId, seq: u64) -> Result<bool, redb::Error> {
        Ok(self.entries.get(&entry_key(origin, seq))?.is_some())
    }

    /// Stores one entry under the retention rules, with the next cursor;
    /// `None` if retention drops it at once.
    fn insert(
        &mut self,
        entry: &Entry,
        retention: Retention,
    ) -> Result<Option<Cursor>, redb::Error> {
        self.insert_at(entry, self.next_cursor, retention)
    }

    /// [`Tables::insert`] with a cursor issued before (a journaled append).
    fn insert_at(
        &mut self,
        entry: &Entry,
        cursor: u64,
        retention: Retention,
    ) -> Result<Option<Cursor>, redb::Error> {
        // Only state-like kinds need the body (for their key); the entry
        // was validated when it was decoded or signed.
        let rkey = match entry.kind.retention() {
            RetentionClass::LatestPerKey => match entry.body() {
                Ok(b) => b.retention_key(),
                Err(_) => return Ok(None),
            },
            RetentionClass::Event | RetentionClass::UntilExpiry => None,
        };
        if let Some(rkey) = rkey {
            let mut lk = Vec::with_capacity(33 + rkey.len());
            lk.extend_from_slice(entry.origin.as_bytes());
            lk.push(entry.kind.code());
            lk.extend_from_slice(&rkey);
            let old = self.latest.get(lk.as_slice())?.map(|v| v.value());
            match old {
                Some(old) if old >= entry.seq => return Ok(None),
                Some(old) => self.remove(&entry_key(&entry.origin, old), entry.kind)?,
                None => {}
            }
            self.latest.insert(lk.as_slice(), entry.seq)?;
        }
        // The new cursor row is now the highest: it carries the counter
        // (see `next_cursor`), so `meta` is not written.
        let above = cursor
            .checked_add(1)
            .ok_or_else(|| redb::Error::Corrupted("the cursor counter is at u64::MAX".into()))?;
        self.next_cursor = self.next_cursor.max(above);
        let key = entry_key(&entry.origin, entry.seq);
        let mut row = Vec::with_capacity(8 + entry.encoded_len());
        row.extend_from_slice(&cursor.to_be_bytes());
        row.extend_from_slice(&entry.encode());
        self.entries.insert(&key, row.as_slice())?;
        self.cursors.insert(cursor, &key)?;
        self.kinds.insert(
            &kind_key(&entry.origin, entry.kind, entry.seq),
            entry.ts_unix_ms,
        )?;
        if entry.kind.retention() == RetentionClass::Event {
            let ck = count_key(entry.origin.as_bytes(), entry.kind);
            let count = self
                .counts
                .get(&ck)?
                .map_or(0, |v| v.value())
                .saturating_add(1);
            self.counts.insert(&ck, count)?;
            if count > retention.max_events {
                let lo = kind_key(&entry.origin, entry.kind, 0);
                let hi = kind_key(&entry.origin, entry.kind, u64::MAX);
                let oldest = match self.kinds.range::<&[u8; 41]>(&lo..=&hi)?.next() {
                    Some(row) => Some(*row?.0.value()),
                    None => None,
                };
                if let Some(k) = oldest {
                    let mut ek = [0u8; 40];
                    ek[..32].copy_from_slice(&k[..32]);
                    ek[32..].copy_from_slice(&k[33..]);
                    self.remove(&ek, entry.kind)?;
                }
            }
        }
        Ok(Some(Cursor(cursor)))
    }

    fn remove(&mut self, key: &[u8; 40], kind: EntryKind) -> Result<(), redb::Error> {
        let cursor = self.entries.remove(key)?.and_then(|v| {
            let v = v.value();
            let mut c = [0u8; 8];
            c.copy_from_slice(v.get(..8)?);
            Some(u64::from_be_bytes(c))
        });
        if let Some(c) = cursor {
            self.cursors.remove(c)?;
            // Removing the highest cursor row would let the counter go back:
            // keep it in `meta` then.
            if self
                .cursors
                .last()?
                .is_none_or(|(last, _)| last.value() < c)
            {
                self.meta.insert("next_cursor", self.next_cursor)?;
            }
        }
        let (origin, seq) = split_entry_key(key);
        let mut kk = [0u8; 41];
        kk[..32].copy_from_slice(&origin);
        kk[32] = kind.code();
        kk[33..].copy_from_slice(&seq.to_be_bytes());
        let removed = self.kinds.remove(&kk)?.is_some();
        if removed && kind.retention() == RetentionClass::Event {
            let ck = count_key(&origin, kind);
            let count = self.counts.get(&ck)?.map_or(0, |v| v.value());
            self.counts.insert(&ck, count.saturating_sub(1))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "store_journal_tests.rs"]
mod journal_tests;
