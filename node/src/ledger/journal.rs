//! The store's journal: this node's own appends that are durable in the
//! `journal` table but not yet in the index tables (docs/LEDGER.md,
//! "Storage").
//!
//! A lone writer's append is one durable commit of one row, as cheap as
//! the smallest commit redb can do; the five index tables are written for
//! up to [`JOURNAL_MAX`] appends at once, in the next commit that needs
//! them (a read, a replicated insert, or the append that fills the
//! journal). This type is the in-memory copy of that table, kept under the
//! store's write lock: it changes only after the commit that changed the
//! table succeeded.

use relay_proto::ledger::{Entry, EntryHash};

/// Appends held in the journal before the index tables are written. A
/// bound on the rows (and on the memory of their copy here), so that the
/// commit that moves them stays bounded; the higher it is, the fewer appends
/// pay for a move (at 64, one lone writer's append in 65 did, and the
/// one-writer rate showed it).
pub const JOURNAL_MAX: usize = 512;

/// One journaled append.
#[derive(Debug, Clone)]
pub struct JournalRow {
    /// The cursor issued to it when it was appended.
    pub cursor: u64,
    /// The entry.
    pub entry: Entry,
    /// Its hash (the next append's `prev_hash`).
    pub hash: EntryHash,
}

/// The journal's rows in cursor order.
#[derive(Debug, Default)]
pub struct Journal {
    rows: Vec<JournalRow>,
}

impl Journal {
    /// The rows, in cursor order.
    pub fn rows(&self) -> &[JournalRow] {
        &self.rows
    }

    /// Whether nothing is journaled.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// How many appends are journaled.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// The newest journaled append.
    pub fn last(&self) -> Option<&JournalRow> {
        self.rows.last()
    }

    /// Records rows whose commit succeeded.
    pub fn extend(&mut self, rows: impl IntoIterator<Item = JournalRow>) {
        self.rows.extend(rows);
    }

    /// Forgets every row (their commit moved them into the index tables).
    pub fn clear(&mut self) {
        self.rows.clear();
    }
}
