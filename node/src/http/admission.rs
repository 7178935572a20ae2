//! Which connections the HTTP endpoint takes, sans-IO: at most
//! [`Limits::per_source`] at once from one source (an IPv4 address, or an
//! IPv6 /64), and at most [`Limits::total`] in all. When the endpoint is
//! full, the oldest connection that has not yet sent its request head is
//! evicted to make room, so clients that trickle their heads (or never send
//! one) cannot keep a prompt client out; only when every connection is
//! already being answered is a new one refused.
//!
//! The driver reports each connection's head ([`Admission::head_received`])
//! and end ([`Admission::closed`]); the state never holds more than
//! `total` entries, whatever clients do.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

/// The caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections at once, in all.
    pub total: usize,
    /// Most connections at once from one source.
    pub per_source: usize,
}

/// A connection's handle in the [`Admission`] state.
pub type ConnId = u64;

/// The answer to a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Serve it.
    Accept(ConnId),
    /// Serve it, and close `evict` (the oldest connection still without a
    /// head), whose place it takes.
    AcceptEvicting {
        /// The new connection.
        id: ConnId,
        /// The connection to close now.
        evict: ConnId,
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

#[derive(Debug)]
struct Entry {
    source: Source,
    pending: bool,
}

/// The admission state.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    next: ConnId,
    open: HashMap<ConnId, Entry>,
    per_source: HashMap<Source, usize>,
    /// Connections without a head yet; the smallest id is the oldest.
    pending: BTreeSet<ConnId>,
}

impl Admission {
    /// An empty state.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            next: 0,
            open: HashMap::new(),
            per_source: HashMap::new(),
            pending: BTreeSet::new(),
        }
    }

    /// Decides on a new connection from `ip`.
    pub fn admit(&mut self, ip: IpAddr) -> Admit {
        let source = Source::of(ip);
        if self.per_source.get(&source).copied().unwrap_or(0) >= self.limits.per_source {
            return Admit::SourceFull;
        }
        let evict = if self.open.len() >= self.limits.total {
            let Some(oldest) = self.pending.first().copied() else {
                return Admit::Full;
            };
            self.closed(oldest);
            Some(oldest)
        } else {
            None
        };
        let id = self.next;
        self.next += 1;
        self.open.insert(
            id,
            Entry {
                source,
                pending: true,
            },
        );
        self.pending.insert(id);
        *self.per_source.entry(source).or_insert(0) += 1;
        match evict {
            Some(evict) => Admit::AcceptEvicting { id, evict },
            None => Admit::Accept(id),
        }
    }

    /// Connection `id` has sent its request head: it is no longer evictable.
    pub fn head_received(&mut self, id: ConnId) {
        if let Some(entry) = self.open.get_mut(&id) {
            entry.pending = false;
            self.pending.remove(&id);
        }
    }

    /// Connection `id` ended (a no-op if it was evicted already).
    pub fn closed(&mut self, id: ConnId) {
        let Some(entry) = self.open.remove(&id) else {
            return;
        };
        if entry.pending {
            self.pending.remove(&id);
        }
        if let Some(count) = self.per_source.get_mut(&entry.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_source.remove(&entry.source);
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// Connections open now that have not sent their head.
    pub fn pending(&self) -> usize {
        self.pending.len()
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

    fn id(admit: Admit) -> ConnId {
        match admit {
            Admit::Accept(id) | Admit::AcceptEvicting { id, .. } => id,
            other => panic!("refused: {other:?}"),
        }
    }

    #[test]
    fn caps_each_source() {
        let mut a = Admission::new(LIMITS);
        let first = id(a.admit(ip("10.0.0.1")));
        id(a.admit(ip("10.0.0.1")));
        assert_eq!(a.admit(ip("10.0.0.1")), Admit::SourceFull);
        // The same host seen as IPv4-mapped IPv6 is the same source.
        assert_eq!(a.admit(ip("::ffff:10.0.0.1")), Admit::SourceFull);
        id(a.admit(ip("10.0.0.2")));
        a.closed(first);
        id(a.admit(ip("10.0.0.1")));
        assert_eq!(a.open(), 3);
    }

    #[test]
    fn ipv6_sources_are_slash_64s() {
        let mut a = Admission::new(LIMITS);
        id(a.admit(ip("2001:db8:1:2::1")));
        id(a.admit(ip("2001:db8:1:2::ffff")));
        assert_eq!(a.admit(ip("2001:db8:1:2:abcd::1")), Admit::SourceFull);
        id(a.admit(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn full_evicts_the_oldest_without_a_head() {
        let mut a = Admission::new(LIMITS);
        let ids: Vec<_> = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
            .iter()
            .map(|s| id(a.admit(ip(s))))
            .collect();
        a.head_received(ids[0]);
        // ids[0] is being answered; ids[1] is the oldest without a head.
        assert_eq!(
            a.admit(ip("10.0.0.5")),
            Admit::AcceptEvicting {
                id: 4,
                evict: ids[1]
            }
        );
        assert_eq!((a.open(), a.pending()), (4, 3));
        // The evicted one's end is a no-op and frees nothing twice.
        a.closed(ids[1]);
        assert_eq!(a.open(), 4);
        // Its source got its slot back at eviction.
        id(a.admit(ip("10.0.0.2")));
    }

    #[test]
    fn full_of_answered_connections_refuses() {
        let mut a = Admission::new(LIMITS);
        for s in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"] {
            let id = id(a.admit(ip(s)));
            a.head_received(id);
        }
        assert_eq!(a.admit(ip("10.0.0.5")), Admit::Full);
        a.closed(2);
        id(a.admit(ip("10.0.0.5")));
    }

    #[test]
    fn state_stays_bounded_under_churn() {
        let mut a = Admission::new(LIMITS);
        for i in 0..10_000u32 {
            let octets = i.to_be_bytes();
            let _ = a.admit(IpAddr::from([10, octets[1], octets[2], octets[3]]));
            assert!(a.open() <= LIMITS.total);
            assert!(a.per_source.len() <= LIMITS.total);
        }
    }
}
