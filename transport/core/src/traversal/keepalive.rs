//! Keepalives on idle direct paths.
//!
//! A NAT forgets an idle UDP binding after some tens of seconds (RFC 4787
//! asks for at least 2 min, many NATs use 30 s). On a direct path that
//! carried nothing from the peer for `interval` (20 s by default), we send
//! a probe flagged `KEEPALIVE`; the peer's reply refreshes the bindings on
//! both sides. Traffic from the peer on the path (reported by the driver)
//! counts as activity. An unanswered keepalive is a miss; after a miss the
//! next one goes out after `retry` (1 s in the transport), whatever the
//! interval, so a dead path is declared lost `interval + max_misses *
//! retry` after the peer fell silent. The interval follows the measured
//! NAT binding lifetime ([`super::lifetime`], [`Keepalives::set_interval`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngCore;
use relay_proto::wire::probe::{FLAG_KEEPALIVE, TX_LEN};
use relay_proto::NodeId;

use super::punch::ProbeOut;

#[derive(Debug, Clone, Copy)]
struct KeptPath {
    addr: SocketAddr,
    /// When the peer was last heard on the path (or the path started).
    quiet_since: Instant,
    next: Instant,
    outstanding: Option<[u8; TX_LEN]>,
    /// The keepalive before `outstanding`, whose reply still counts (a
    /// round trip may exceed `retry`).
    previous: Option<[u8; TX_LEN]>,
    misses: u32,
    /// Probing at this shorter interval until the path answers
    /// ([`Keepalives::probe_now`]).
    fast: Option<Duration>,
}

/// Keepalive state for every direct path. Sans-IO.
#[derive(Debug)]
pub struct Keepalives {
    interval: Duration,
    retry: Duration,
    max_misses: u32,
    paths: BTreeMap<NodeId, KeptPath>,
}

impl Keepalives {
    /// Keepalives every `interval` of silence; lost after `max_misses`
    /// unanswered ones, each waited for `retry`.
    pub fn new(interval: Duration, retry: Duration, max_misses: u32) -> Self {
        Self {
            interval,
            retry,
            max_misses: max_misses.max(1),
            paths: BTreeMap::new(),
        }
    }

    /// The interval of silence before a keepalive.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Changes the interval; paths waiting out a quiet period are
    /// rescheduled from when they last heard the peer.
    pub fn set_interval(&mut self, interval: Duration) {
        if interval == self.interval {
            return;
        }
        self.interval = interval;
        for path in self.paths.values_mut() {
            if path.outstanding.is_none() {
                path.next = path.quiet_since + interval;
            }
        }
    }

    /// Starts keeping `peer`'s direct path at `addr` alive.
    pub fn insert(&mut self, now: Instant, peer: NodeId, addr: SocketAddr) {
        self.paths.insert(
            peer,
            KeptPath {
                addr,
                quiet_since: now,
                next: now + self.interval,
                outstanding: None,
                previous: None,
                misses: 0,
                fast: None,
            },
        );
    }

    /// The path to `peer` is suspect (our address changed, or the peer
    /// reaches us through a relay): probe it now and every `interval`
    /// until it answers or is lost. Returns whether a path is kept.
    pub fn probe_now(&mut self, now: Instant, peer: &NodeId, interval: Duration) -> bool {
        let Some(path) = self.paths.get_mut(peer) else {
            return false;
        };
        if path.fast.is_none() {
            path.fast = Some(interval.min(self.interval));
            path.next = now;
        }
        true
    }

    /// Stops keeping `peer`'s path.
    pub fn remove(&mut self, peer: &NodeId) {
        self.paths.remove(peer);
    }

    /// Something arrived from `peer` on `addr`: the path is alive.
    pub fn activity(&mut self, now: Instant, peer: &NodeId, addr: Option<SocketAddr>) {
        if let Some(path) = self.paths.get_mut(peer) {
            if addr.is_none_or(|a| a == path.addr) {
                path.quiet_since = now;
                path.next = now + self.interval;
                path.outstanding = None;
                path.previous = None;
                path.misses = 0;
                path.fast = None;
            }
        }
    }

    /// A valid reply from `peer`; returns whether it answered a keepalive.
    pub fn on_reply(
        &mut self,
        now: Instant,
        peer: &NodeId,
        src: SocketAddr,
        tx: &[u8; TX_LEN],
    ) -> bool {
        let Some(path) = self.paths.get_mut(peer) else {
            return false;
        };
        let current = path.outstanding == Some(*tx);
        if path.addr != src
            || !(current || (path.outstanding.is_some() && path.previous == Some(*tx)))
        {
            return false;
        }
        path.outstanding = None;
        path.previous = None;
        path.misses = 0;
        path.quiet_since = now;
        path.next = now + self.interval;
        path.fast = None;
        true
    }

    /// Sends due keepalives into `out` and lost paths into `lost`.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        rng: &mut dyn RngCore,
        out: &mut Vec<(NodeId, ProbeOut)>,
        lost: &mut Vec<(NodeId, SocketAddr)>,
    ) {
        for (peer, path) in &mut self.paths {
            if path.next > now {
                continue;
            }
            if path.outstanding.is_some() {
                path.misses += 1;
                if path.misses >= self.max_misses {
                    lost.push((*peer, path.addr));
                    continue;
                }
            }
            let mut tx = [0u8; TX_LEN];
            rng.fill_bytes(&mut tx);
            path.previous = path.outstanding;
            path.outstanding = Some(tx);
            path.next = now + path.fast.unwrap_or(self.retry);
            out.push((
                *peer,
                ProbeOut {
                    addr: path.addr,
                    tx,
                    flags: FLAG_KEEPALIVE,
                },
            ));
        }
        for (peer, _) in lost.iter() {
            self.paths.remove(peer);
        }
    }

    /// The next instant [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.paths.values().map(|p| p.next).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use relay_proto::SecretKey;

    fn peer() -> NodeId {
        SecretKey::from_bytes(&[4; 32]).node_id()
    }

    #[test]
    fn idle_path_gets_keepalives_and_replies_keep_it() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        let addr: SocketAddr = "203.0.113.4:4000".parse().unwrap();
        let mut k = Keepalives::new(Duration::from_secs(20), Duration::from_secs(1), 3);
        k.insert(t0, peer(), addr);
        assert_eq!(k.poll_timeout(), Some(t0 + Duration::from_secs(20)));
        for round in 1..=10u32 {
            let now = k.poll_timeout().unwrap();
            assert_eq!(now, t0 + Duration::from_secs(20 * u64::from(round)));
            let (mut out, mut lost) = (Vec::new(), Vec::new());
            k.handle_timeout(now, &mut rng, &mut out, &mut lost);
            assert_eq!(out.len(), 1, "round {round}");
            assert_eq!(out[0].1.flags, FLAG_KEEPALIVE);
            assert!(lost.is_empty());
            assert!(!k.on_reply(now, &peer(), "203.0.113.4:1".parse().unwrap(), &out[0].1.tx));
            assert!(k.on_reply(now, &peer(), addr, &out[0].1.tx));
        }
    }

    #[test]
    fn unanswered_keepalives_lose_the_path_and_activity_resets() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(2);
        let addr: SocketAddr = "203.0.113.4:4000".parse().unwrap();
        let mut k = Keepalives::new(Duration::from_secs(20), Duration::from_secs(1), 3);
        k.insert(t0, peer(), addr);
        // Activity postpones the keepalive.
        k.activity(t0 + Duration::from_secs(10), &peer(), Some(addr));
        assert_eq!(k.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        let mut sent = 0;
        let mut lost = Vec::new();
        let mut at = Vec::new();
        while lost.is_empty() {
            let now = k.poll_timeout().unwrap();
            let mut out = Vec::new();
            k.handle_timeout(now, &mut rng, &mut out, &mut lost);
            sent += out.len();
            at.push(now - t0);
        }
        assert_eq!(sent, 3);
        assert_eq!(lost, vec![(peer(), addr)]);
        assert_eq!(k.poll_timeout(), None);
        // After the first miss, retries come every second: lost 3 s after
        // the first keepalive, not 3 intervals.
        let secs: Vec<u64> = at.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, vec![30, 31, 32, 33]);
    }

    #[test]
    fn set_interval_reschedules_quiet_paths() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(3);
        let addr: SocketAddr = "203.0.113.4:4000".parse().unwrap();
        let mut k = Keepalives::new(Duration::from_secs(3), Duration::from_secs(1), 3);
        k.insert(t0, peer(), addr);
        k.activity(t0 + Duration::from_secs(1), &peer(), Some(addr));
        assert_eq!(k.poll_timeout(), Some(t0 + Duration::from_secs(4)));
        // Shorter: counted from the last activity, not from now.
        k.set_interval(Duration::from_millis(1500));
        assert_eq!(k.poll_timeout(), Some(t0 + Duration::from_millis(2500)));
        let now = k.poll_timeout().unwrap();
        let (mut out, mut lost) = (Vec::new(), Vec::new());
        k.handle_timeout(now, &mut rng, &mut out, &mut lost);
        assert_eq!(out.len(), 1);
        // An outstanding keepalive keeps its retry time.
        k.set_interval(Duration::from_secs(8));
        assert_eq!(k.poll_timeout(), Some(now + Duration::from_secs(1)));
        assert!(k.on_reply(now, &peer(), addr, &out[0].1.tx));
        assert_eq!(k.poll_timeout(), Some(now + Duration::from_secs(8)));
        assert_eq!(k.interval(), Duration::from_secs(8));
    }

    #[test]
    fn probe_now_probes_fast_until_answered_or_lost() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(3);
        let addr: SocketAddr = "203.0.113.4:4000".parse().unwrap();
        let fast = Duration::from_millis(250);
        let mut k = Keepalives::new(Duration::from_secs(20), Duration::from_secs(1), 3);
        k.insert(t0, peer(), addr);
        let t1 = t0 + Duration::from_secs(1);
        assert!(k.probe_now(t1, &peer(), fast));
        assert_eq!(k.poll_timeout(), Some(t1));
        // Answered: back to the normal interval.
        let (mut out, mut lost) = (Vec::new(), Vec::new());
        k.handle_timeout(t1, &mut rng, &mut out, &mut lost);
        assert_eq!(k.poll_timeout(), Some(t1 + fast));
        assert!(k.on_reply(t1, &peer(), addr, &out[0].1.tx));
        assert_eq!(k.poll_timeout(), Some(t1 + Duration::from_secs(20)));
        // Unanswered: lost after 3 probes, 3 x 250 ms later.
        let t2 = t1 + Duration::from_secs(2);
        assert!(k.probe_now(t2, &peer(), fast));
        // A second call while probing changes nothing.
        assert!(k.probe_now(t2 + Duration::from_millis(100), &peer(), fast));
        let mut sent = 0;
        let mut lost = Vec::new();
        let mut now = t2;
        while lost.is_empty() {
            now = k.poll_timeout().unwrap();
            let mut out = Vec::new();
            k.handle_timeout(now, &mut rng, &mut out, &mut lost);
            sent += out.len();
        }
        assert_eq!(sent, 3);
        assert_eq!(now, t2 + fast * 3);
        assert!(!k.probe_now(now, &peer(), fast));
    }
}
