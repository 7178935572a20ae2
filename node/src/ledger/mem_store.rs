//! An in-memory [`ReplicaStore`] for simulations and tests: the same
//! contract as the redb store (frontiers, ranges, fork evidence, cursors),
//! without retention or durability.

use std::collections::BTreeMap;

use relay_proto::ledger::{Body, Entry, EntryHash, VectorItem};
use relay_proto::{NodeId, SecretKey};

use super::cursor::Cursor;
use super::error::LedgerError;
use super::replica::ReplicaStore;
use super::store::{OriginState, RangeRead, StoredEntry};

/// See the module docs.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    entries: BTreeMap<(NodeId, u64), Entry>,
    origins: BTreeMap<NodeId, OriginState>,
    forks: Vec<Entry>,
    next_cursor: u64,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends to `secret`'s own feed.
    pub fn append(
        &mut self,
        secret: &SecretKey,
        ts_unix_ms: u64,
        body: &Body,
    ) -> Result<StoredEntry, LedgerError> {
        let origin = secret.node_id();
        let state = self.origins.get(&origin).copied().unwrap_or(OriginState {
            frontier: 0,
            frontier_hash: EntryHash::ZERO,
            forked: false,
        });
        if state.forked {
            return Err(LedgerError::Forked(origin));
        }
        let entry = Entry::sign(
            secret,
            state.frontier + 1,
            state.frontier_hash,
            ts_unix_ms,
            body,
        )?;
        let frontier = (entry.seq, entry.hash());
        let mut stored = self.insert_verified(&origin, &[entry], frontier)?;
        stored
            .pop()
            .ok_or(LedgerError::Io("append stored nothing".into()))
    }

    /// Every stored entry, by origin and seq.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Number of stored entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The fork evidence kept.
    pub fn fork_evidence(&self) -> &[Entry] {
        &self.forks
    }

    /// Clears an origin's fork flag.
    pub fn forgive(&mut self, origin: &NodeId) -> bool {
        match self.origins.get_mut(origin) {
            Some(s) if s.forked => {
                s.forked = false;
                true
            }
            _ => false,
        }
    }
}

impl ReplicaStore for MemStore {
    fn vector(&self) -> Result<Vec<VectorItem>, LedgerError> {
        Ok(self
            .origins
            .iter()
            .filter(|(_, s)| s.frontier > 0)
            .map(|(o, s)| VectorItem {
                origin: *o,
                seq: s.frontier,
                hash: s.frontier_hash,
            })
            .collect())
    }

    fn origin(&self, origin: &NodeId) -> Result<Option<OriginState>, LedgerError> {
        Ok(self.origins.get(origin).copied())
    }

    fn entry(&self, origin: &NodeId, seq: u64) -> Result<Option<Entry>, LedgerError> {
        Ok(self.entries.get(&(*origin, seq)).cloned())
    }

    fn range(
        &self,
        origin: &NodeId,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Option<RangeRead>, LedgerError> {
        let Some(state) = self.origins.get(origin) else {
            return Ok(None);
        };
        if from_seq == 0 || from_seq > state.frontier {
            return Ok(None);
        }
        let mut entries: Vec<Entry> = Vec::new();
        let mut bytes = 0;
        let mut to_seq = state.frontier;
        for (_, e) in self
            .entries
            .range((*origin, from_seq)..=(*origin, state.frontier))
        {
            if !entries.is_empty()
                && (entries.len() >= max_entries || bytes + e.encoded_len() > max_bytes)
            {
                to_seq = e.seq - 1;
                break;
            }
            bytes += e.encoded_len();
            entries.push(e.clone());
        }
        Ok(Some(RangeRead {
            from_seq,
            to_seq,
            entries,
        }))
    }

    fn insert_verified(
        &mut self,
        origin: &NodeId,
        entries: &[Entry],
        frontier: (u64, EntryHash),
    ) -> Result<Vec<StoredEntry>, LedgerError> {
        let mut out = Vec::new();
        for e in entries {
            if self.entries.contains_key(&(*origin, e.seq)) {
                continue;
            }
            self.next_cursor += 1;
            self.entries.insert((*origin, e.seq), e.clone());
            out.push(StoredEntry {
                cursor: Cursor(self.next_cursor),
                entry: e.clone(),
            });
        }
        let state = self.origins.entry(*origin).or_insert(OriginState {
            frontier: 0,
            frontier_hash: EntryHash::ZERO,
            forked: false,
        });
        if frontier.0 > state.frontier {
            state.frontier = frontier.0;
            state.frontier_hash = frontier.1;
        }
        Ok(out)
    }

    fn record_fork(&mut self, evidence: &[Entry]) -> Result<(), LedgerError> {
        for e in evidence {
            if !self.forks.contains(e) {
                self.forks.push(e.clone());
            }
            let state = self.origins.entry(e.origin).or_insert(OriginState {
                frontier: 0,
                frontier_hash: EntryHash::ZERO,
                forked: true,
            });
            state.forked = true;
        }
        Ok(())
    }
}
