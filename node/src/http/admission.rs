//! Which connections the HTTP endpoint takes, sans-IO: at most
//! [`Limits::per_source`] at once from one source (an IPv4 address, or an
//! IPv6 /64), and at most [`Limits::total`] in all. When the endpoint is
//! full, the oldest connection that has not yet sent its request head is
//! evicted to make room, so clients that trickle their heads (or never send
//! one) cannot keep a prompt client out; only when every connection is
//! already being answered is a new one refused.
//!
//! The total cap and the eviction are the local API's connection table
//! ([`ConnTable`]); this adds the per-source cap a TCP endpoint needs. The
//! driver reports each connection's head ([`Admission::head_received`]) and
//! end ([`Admission::closed`]); the state never holds more than `total`
//! entries, whatever clients do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use crate::api::conns::{self, ConnTable};

pub use crate::api::conns::ConnId;

/// The caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections at once, in all.
    pub total: usize,
    /// Most connections at once from one source.
    pub per_source: usize,
}

/// The answer to a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit<T> {
    /// Serve it (as `id`); if `evicted` is set, close that connection (the
    /// one that has waited longest for its head) first: this one takes its
    /// place.
    Accept {
        /// The new connection.
        id: ConnId,
        /// The value of the connection to close now.
        evicted: Option<T>,
    },
    /// Its source already has [`Limits::per_source`] connections.
    SourceFull,
    /// [`Limits::total`] connections are open and every one has sent its head.
    Full,
}

/// Where a connection comes from, for [`Limits::per_source`]: an IPv4
/// address, or the /64 prefix of an IPv6 address (one host usually owns a
/// whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An IPv4 address (IPv4-mapped IPv6 addresses included).
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

impl Source {
    /// The source of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    for (to, from) in prefix.iter_mut().zip(v6.octets()) {
                        *to = from;
                    }
                    Self::V6(prefix)
                }
            },
        }
    }
}

/// The admission state: the local API's connection table (the total cap
/// and who makes room) plus the cap per source. Each connection carries a
/// value (the driver's handle to close it).
#[derive(Debug)]
pub struct Admission<T> {
    table: ConnTable<(Source, T)>,
    per_source: HashMap<Source, usize>,
    per_source_max: usize,
}

impl<T> Admission<T> {
    /// An empty state.
    pub fn new(limits: Limits) -> Self {
        Self {
            table: ConnTable::new(limits.total),
            per_source: HashMap::new(),
            per_source_max: limits.per_source,
        }
    }

    /// Decides on a new connection from `ip` at `now`.
    pub fn admit(&mut self, now: Instant, ip: IpAddr, value: T) -> Admit<T> {
        let source = Source::of(ip);
        if self.per_source.get(&source).copied().unwrap_or(0) >= self.per_source_max {
            return Admit::SourceFull;
        }
        match self.table.admit(now, (source, value)) {
            conns::Admit::Full => Admit::Full,
            conns::Admit::Admitted { id, evicted } => {
                *self.per_source.entry(source).or_insert(0) += 1;
                let evicted = evicted.map(|(source, value)| {
                    self.release(source);
                    value
                });
                Admit::Accept { id, evicted }
            }
        }
    }

    /// Connection `id` has sent its request head: it is no longer evictable.
    pub fn head_received(&mut self, id: ConnId) {
        self.table.begin(id);
    }

    /// Connection `id` ended (a no-op if it was evicted already).
    pub fn closed(&mut self, id: ConnId) {
        if let Some((source, _)) = self.table.remove(id) {
            self.release(source);
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.table.len()
    }

    fn release(&mut self, source: Source) {
        if let Some(count) = self.per_source.get_mut(&source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_source.remove(&source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        total: 4,
        per_source: 2,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Admits `value` from `from`; returns its id and whom it evicted.
    fn admit(
        a: &mut Admission<&'static str>,
        from: &str,
        value: &'static str,
    ) -> (ConnId, Option<&'static str>) {
        match a.admit(Instant::now(), ip(from), value) {
            Admit::Accept { id, evicted } => (id, evicted),
            other => panic!("refused: {other:?}"),
        }
    }

    #[test]
    fn caps_each_source() {
        let mut a = Admission::new(LIMITS);
        let (first, _) = admit(&mut a, "10.0.0.1", "a");
        admit(&mut a, "10.0.0.1", "b");
        assert_eq!(
            a.admit(Instant::now(), ip("10.0.0.1"), "c"),
            Admit::SourceFull
        );
        // The same host seen as IPv4-mapped IPv6 is the same source.
        assert_eq!(
            a.admit(Instant::now(), ip("::ffff:10.0.0.1"), "c"),
            Admit::SourceFull
        );
        admit(&mut a, "10.0.0.2", "d");
        a.closed(first);
        admit(&mut a, "10.0.0.1", "e");
        assert_eq!(a.open(), 3);
    }

    #[test]
    fn ipv6_sources_are_slash_64s() {
        let mut a = Admission::new(LIMITS);
        admit(&mut a, "2001:db8:1:2::1", "a");
        admit(&mut a, "2001:db8:1:2::ffff", "b");
        assert_eq!(
            a.admit(Instant::now(), ip("2001:db8:1:2:abcd::1"), "c"),
            Admit::SourceFull
        );
        admit(&mut a, "2001:db8:1:3::1", "d");
    }

    #[test]
    fn full_evicts_the_oldest_without_a_head() {
        let mut a = Admission::new(LIMITS);
        let (first, _) = admit(&mut a, "10.0.0.1", "first");
        let (second, _) = admit(&mut a, "10.0.0.2", "second");
        admit(&mut a, "10.0.0.3", "third");
        admit(&mut a, "10.0.0.4", "fourth");
        a.head_received(first);
        // `first` is being answered; `second` waited longest for its head.
        assert_eq!(admit(&mut a, "10.0.0.5", "fifth").1, Some("second"));
        assert_eq!(a.open(), 4);
        // The evicted one's end is a no-op and frees nothing twice.
        a.closed(second);
        assert_eq!(a.open(), 4);
        // Its source got its slot back at eviction.
        assert_eq!(admit(&mut a, "10.0.0.2", "sixth").1, Some("third"));
    }

    #[test]
    fn full_of_answered_connections_refuses() {
        let mut a = Admission::new(LIMITS);
        let mut ids = Vec::new();
        for s in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"] {
            let (id, _) = admit(&mut a, s, "x");
            a.head_received(id);
            ids.push(id);
        }
        assert_eq!(a.admit(Instant::now(), ip("10.0.0.5"), "y"), Admit::Full);
        a.closed(ids[2]);
        admit(&mut a, "10.0.0.5", "y");
    }

    #[test]
    fn state_stays_bounded_under_churn() {
        let mut a = Admission::new(LIMITS);
        for i in 0..10_000u32 {
            let octets = i.to_be_bytes();
            let from = IpAddr::from([10, octets[1], octets[2], octets[3]]);
            let _ = a.admit(Instant::now(), from, i);
            assert!(a.open() <= LIMITS.total);
            assert!(a.per_source.len() <= LIMITS.total);
        }
    }
}
