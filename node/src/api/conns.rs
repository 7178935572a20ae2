//! The bound on open connections, and who makes room (sans-IO: the server
//! passes the time in).
//!
//! Each connection is either **busy** (a request is being answered, or a
//! stream is open) or **waiting** (idle between requests, or still sending
//! its head). When the table is full, a new connection evicts the one that
//! has waited longest; busy connections are never evicted. Only when every
//! connection is busy is the new one refused. So idle or slow connections,
//! however many, never keep the operator out; what a connection may hold
//! while busy is bounded by the request timeouts and the stream limit.

use std::collections::HashMap;
use std::time::Instant;

/// A connection's id in the table.
pub type ConnId = u64;

/// The answer to a new connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<T> {
    /// Serve it; close the evicted one (its value is returned) first.
    Admitted {
        /// The new connection's id.
        id: ConnId,
        /// The connection that made room, if one had to.
        evicted: Option<T>,
    },
    /// Every connection is busy: refuse the new one.
    Full,
}

#[derive(Debug)]
struct Entry<T> {
    value: T,
    busy: u32,
    /// When it last became waiting (admitted or finished a request).
    waiting_since: Instant,
}

/// Open connections, each with a value (its cancellation handle).
#[derive(Debug)]
pub struct ConnTable<T> {
    max: usize,
    next: ConnId,
    entries: HashMap<ConnId, Entry<T>>,
}

impl<T> ConnTable<T> {
    /// A table of at most `max` connections (at least 1).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            next: 0,
            entries: HashMap::new(),
        }
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none are open.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Admits a new connection at `now`, evicting the longest-waiting one if
    /// the table is full.
    pub fn admit(&mut self, now: Instant, value: T) -> Admit<T> {
        let mut evicted = None;
        if self.entries.len() >= self.max {
            let oldest = self
                .entries
                .iter()
                .filter(|(_, e)| e.busy == 0)
                .min_by_key(|(id, e)| (e.waiting_since, **id))
                .map(|(id, _)| *id);
            match oldest.and_then(|id| self.entries.remove(&id)) {
                Some(entry) => evicted = Some(entry.value),
                None => return Admit::Full,
            }
        }
        let id = self.next;
        self.next += 1;
        self.entries.insert(
            id,
            Entry {
                value,
                busy: 0,
                waiting_since: now,
            },
        );
        Admit::Admitted { id, evicted }
    }

    /// A request (or stream) started on `id`.
    pub fn begin(&mut self, id: ConnId) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.busy += 1;
        }
    }

    /// A request (or stream) on `id` ended at `now`.
    pub fn end(&mut self, id: ConnId, now: Instant) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.busy = e.busy.saturating_sub(1);
            if e.busy == 0 {
                e.waiting_since = now;
            }
        }
    }

    /// `id` closed.
    pub fn remove(&mut self, id: ConnId) -> Option<T> {
        self.entries.remove(&id).map(|e| e.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id<T>(a: Admit<T>) -> (ConnId, Option<T>) {
        match a {
            Admit::Admitted { id, evicted } => (id, evicted),
            Admit::Full => panic!("full"),
        }
    }

    #[test]
    fn full_table_evicts_the_longest_waiting() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut table = ConnTable::new(3);
        let (a, _) = id(table.admit(s(0), "a"));
        let (b, _) = id(table.admit(s(1), "b"));
        let (_c, _) = id(table.admit(s(2), "c"));
        // `a` is busy, so `b` waited longest.
        table.begin(a);
        let (_d, evicted) = id(table.admit(s(3), "d"));
        assert_eq!(evicted, Some("b"));
        assert_eq!(table.len(), 3);
        assert!(table.remove(b).is_none());
        // `a` finishes at 10: now `c` (waiting since 2) goes first, then `d`.
        table.end(a, s(10));
        assert_eq!(id(table.admit(s(11), "e")).1, Some("c"));
        assert_eq!(id(table.admit(s(12), "f")).1, Some("d"));
        assert_eq!(id(table.admit(s(13), "g")).1, Some("a"));
    }

    #[test]
    fn all_busy_is_full() {
        let now = Instant::now();
        let mut table = ConnTable::new(2);
        let (a, _) = id(table.admit(now, 1));
        let (b, _) = id(table.admit(now, 2));
        table.begin(a);
        table.begin(b);
        assert_eq!(table.admit(now, 3), Admit::Full);
        table.end(b, now);
        assert_eq!(id(table.admit(now, 3)).1, Some(2));
    }

    #[test]
    fn many_waiting_connections_never_fill_it() {
        let t0 = Instant::now();
        let mut table = ConnTable::new(256);
        for i in 0..500u64 {
            let _ = id(table.admit(t0 + Duration::from_millis(i), i));
        }
        assert_eq!(table.len(), 256);
        let (op, evicted) = id(table.admit(t0 + Duration::from_secs(1), 999));
        assert!(evicted.is_some());
        table.begin(op);
        assert_eq!(table.len(), 256);
    }
}
