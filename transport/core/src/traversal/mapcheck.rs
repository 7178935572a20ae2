//! The mapping check: whether our NAT maps per destination, learned from
//! a single public peer (RFC 5780's alternate-port test).
//!
//! Classification by observers (`nat`) needs two observers on different
//! IPs, and a mesh built from one public relay's ticket has one. So a node
//! asks a directly connected peer that it reaches at that peer's own
//! address (an *observer*: usually its relay) for a second UDP port of the
//! observer's, and probes both of the observer's ports from its one
//! socket:
//!
//! 1. **Ask.** `MappingCheck { tx }` over the authenticated control
//!    channel; resent every `request_retry`, `request_attempts` times.
//! 2. **Port.** The observer answers `MappingPort { tx, port }` with its
//!    alternate port, or `None` when it does not offer checks to us.
//! 3. **Probe.** We send one `BINDING` probe to the observer's main
//!    address and one to `observer_ip:port`, both from our main socket.
//!    Each reply (the same 81 bytes) carries the address that port saw us
//!    at. Unanswered probes are resent every `probe_retry`,
//!    `probe_attempts` times.
//! 4. **Verdict.** Both seen at our own address: open. Both seen at one
//!    ip:port: our NAT kept the mapping for a second destination port
//!    (endpoint-independent, or address-dependent: one observer IP cannot
//!    tell these apart). Two different addresses: address-and-port-
//!    dependent mapping (symmetric).
//!
//! A failed check (refused, unanswered) excludes that observer and the next
//! one is tried; with none left the check is retried after `retry_min`,
//! doubling up to `retry_max`. A result is refreshed every `recheck` and
//! at once after our address changed.
//!
//! The observer's side, [`OfferBudget`]: an offer is made only to a
//! connected peer that sees us at our own address (so `ip:port` is where
//! it will reach the alternate port), within a token bucket per peer
//! (`offer_burst`, one back per `offer_refill`). An offer lets the
//! alternate port answer that peer's `BINDING` probes for `offer_window`,
//! at most `offer_answers` times; every other frame on the port is dropped
//! without a reply. A resent `MappingCheck` with the same id is answered
//! again free of charge while its offer lives. State is kept only for
//! connected peers, at most [`MAX_OFFERS`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::RngCore;
use relay_proto::wire::probe::TX_LEN;
use relay_proto::NodeId;

use super::birthday::PortId;

/// The probe-port id of our alternate port (the driver opens it and
/// reports its number with `Traversal::handle_alt_port`). Birthday and
/// binding-lifetime ports count up from 0 and never reach it.
pub const ALT_PORT: PortId = PortId::MAX;

/// Tunables of the mapping check, with documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingCheckConfig {
    /// Whether we run checks and offer them. Default true.
    pub enabled: bool,
    /// Spacing of `MappingCheck` resends. Default 1 s.
    pub request_retry: Duration,
    /// `MappingCheck` messages per check. Default 3.
    pub request_attempts: u32,
    /// Spacing of probe resends. Default 500 ms.
    pub probe_retry: Duration,
    /// Probe rounds per check. Default 3.
    pub probe_attempts: u32,
    /// A result is refreshed after this long. Default 10 min.
    pub recheck: Duration,
    /// First retry after no observer could check. Default 15 s.
    pub retry_min: Duration,
    /// Longest retry delay. Default 30 min.
    pub retry_max: Duration,
    /// Observer side: offers a peer may burst. Default 4.
    pub offer_burst: u32,
    /// Observer side: one offer credit back per this. Default 30 s.
    pub offer_refill: Duration,
    /// Observer side: how long the alternate port answers a peer after an
    /// offer. Default 5 s.
    pub offer_window: Duration,
    /// Observer side: answers per offer. Default 6.
    pub offer_answers: u32,
}

impl Default for MappingCheckConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            request_retry: Duration::from_secs(1),
            request_attempts: 3,
            probe_retry: Duration::from_millis(500),
            probe_attempts: 3,
            recheck: Duration::from_secs(600),
            retry_min: Duration::from_secs(15),
            retry_max: Duration::from_secs(1800),
            offer_burst: 4,
            offer_refill: Duration::from_secs(30),
            offer_window: Duration::from_secs(5),
            offer_answers: 6,
        }
    }
}

/// What a check asks the agent to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapCheckOut {
    /// `MappingCheck { tx }` to `to`.
    Ask {
        /// The observer.
        to: NodeId,
        /// The check's id.
        tx: [u8; TX_LEN],
    },
    /// A `BINDING` probe with id `tx` from our main socket to `dst`.
    Probe {
        /// The observer (whose key seals it).
        to: NodeId,
        /// One of its two ports.
        dst: SocketAddr,
        /// The probe's id.
        tx: [u8; TX_LEN],
    },
}

/// A finished check: where the observer's two ports saw our socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapCheckResult {
    /// The observer.
    pub observer: NodeId,
    /// Its IP (both ports are on it).
    pub observer_ip: IpAddr,
    /// Where its main port saw us.
    pub main: SocketAddr,
    /// Where its alternate port saw us.
    pub alt: SocketAddr,
}

impl MapCheckResult {
    /// Whether our NAT gave the second destination port the same mapping.
    pub fn same_mapping(&self) -> bool {
        self.main == self.alt
    }
}

/// A peer that may check for us: connected, and reached directly at
/// `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckObserver {
    /// The peer.
    pub node: NodeId,
    /// Its main address (the connection's direct path).
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Probing {
    main_dst: SocketAddr,
    alt_dst: SocketAddr,
    tx_main: [u8; TX_LEN],
    tx_alt: [u8; TX_LEN],
    main: Option<SocketAddr>,
    alt: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Asking,
    Probing(Probing),
}

#[derive(Debug, Clone, Copy)]
struct Running {
    observer: CheckObserver,
    tx: [u8; TX_LEN],
    phase: Phase,
    attempts: u32,
    next: Instant,
}

/// The asking side of mapping checks. Sans-IO.
#[derive(Debug)]
pub struct MappingProbe {
    config: MappingCheckConfig,
    running: Option<Running>,
    /// When the next check is due; `None`: as soon as an observer is
    /// available.
    due: Option<Instant>,
    /// Observers that refused or did not answer, skipped until the next
    /// retry round.
    excluded: BTreeSet<NodeId>,
    backoff: Duration,
    last: Option<MapCheckResult>,
    checks: u64,
    failures: u64,
}

impl MappingProbe {
    /// A checker; the first check is due once an observer is available.
    pub fn new(config: MappingCheckConfig) -> Self {
        let backoff = config.retry_min;
        Self {
            config,
            running: None,
            due: None,
            excluded: BTreeSet::new(),
            backoff,
            last: None,
            checks: 0,
            failures: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MappingCheckConfig {
        &self.config
    }

    /// The newest result.
    pub fn last(&self) -> Option<MapCheckResult> {
        self.last
    }

    /// Checks finished, and checks that failed.
    pub fn counts(&self) -> (u64, u64) {
        (self.checks, self.failures)
    }

    /// Whether `peer` is skipped as an observer for now.
    pub fn is_excluded(&self, peer: &NodeId) -> bool {
        self.excluded.contains(peer)
    }

    /// The observer of the running check.
    pub fn running_observer(&self) -> Option<NodeId> {
        self.running.map(|r| r.observer.node)
    }

    /// Whether a check should start now (none runs and one is due).
    pub fn due(&self, now: Instant) -> bool {
        self.config.enabled && self.running.is_none() && self.due.is_none_or(|t| now >= t)
    }

    /// Starts a check with `observer`.
    pub fn start(
        &mut self,
        now: Instant,
        observer: CheckObserver,
        rng: &mut dyn RngCore,
        out: &mut Vec<MapCheckOut>,
    ) {
        let mut tx = [0u8; TX_LEN];
        rng.fill_bytes(&mut tx);
        self.running = Some(Running {
            observer,
            tx,
            phase: Phase::Asking,
            attempts: 1,
            next: now + self.config.request_retry,
        });
        out.push(MapCheckOut::Ask {
            to: observer.node,
            tx,
        });
    }

    /// A check is due and no observer is available: try again later.
    pub fn no_observer(&mut self, now: Instant) {
        if self.excluded.is_empty() {
            // Nobody to ask yet: wait for one (`observer_available`).
            self.due = Some(now + self.config.retry_min);
            return;
        }
        self.excluded.clear();
        self.due = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(self.config.retry_max);
    }

    /// A peer that could observe connected: a check waiting for one may
    /// start.
    pub fn observer_available(&mut self, now: Instant) {
        if self.last.is_none() && self.excluded.is_empty() {
            self.due = self.due.map(|t| t.min(now));
        }
    }

    /// Our address changed: check again, one `request_retry` later (the
    /// observers have seen our new address by then).
    pub fn recheck_now(&mut self, now: Instant) {
        self.running = None;
        self.last = None;
        self.excluded.clear();
        self.backoff = self.config.retry_min;
        self.due = Some(now + self.config.request_retry);
    }

    /// `MappingPort { tx, port }` from `from`.
    pub fn handle_port(
        &mut self,
        now: Instant,
        from: &NodeId,
        tx: &[u8; TX_LEN],
        port: Option<u16>,
        rng: &mut dyn RngCore,
        out: &mut Vec<MapCheckOut>,
    ) {
        let Some(run) = self.running.as_mut() else {
            return;
        };
        if run.observer.node != *from || run.tx != *tx || run.phase != Phase::Asking {
            return;
        }
        let Some(port) = port else {
            self.fail(now);
            return;
        };
        let mut tx_main = [0u8; TX_LEN];
        let mut tx_alt = [0u8; TX_LEN];
        rng.fill_bytes(&mut tx_main);
        rng.fill_bytes(&mut tx_alt);
        let probing = Probing {
            main_dst: run.observer.addr,
            alt_dst: SocketAddr::new(run.observer.addr.ip(), port),
            tx_main,
            tx_alt,
            main: None,
            alt: None,
        };
        run.phase = Phase::Probing(probing);
        run.attempts = 1;
        run.next = now + self.config.probe_retry;
        let to = run.observer.node;
        out.push(MapCheckOut::Probe {
            to,
            dst: probing.main_dst,
            tx: tx_main,
        });
        out.push(MapCheckOut::Probe {
            to,
            dst: probing.alt_dst,
            tx: tx_alt,
        });
    }

    /// A `BINDING` reply from `from` at `src` with id `tx`, saying it saw
    /// us at `seen`. Returns whether it belonged to the check, and the
    /// result once both halves are in.
    pub fn handle_reply(
        &mut self,
        now: Instant,
        from: &NodeId,
        src: SocketAddr,
        tx: &[u8; TX_LEN],
        seen: SocketAddr,
    ) -> (bool, Option<MapCheckResult>) {
        let Some(run) = self.running.as_mut() else {
            return (false, None);
        };
        if run.observer.node != *from {
            return (false, None);
        }
        let Phase::Probing(p) = &mut run.phase else {
            return (false, None);
        };
        if *tx == p.tx_main && src == p.main_dst {
            p.main = Some(seen);
        } else if *tx == p.tx_alt && src == p.alt_dst {
            p.alt = Some(seen);
        } else {
            return (false, None);
        }
        let (Some(main), Some(alt)) = (p.main, p.alt) else {
            return (true, None);
        };
        let result = MapCheckResult {
            observer: run.observer.node,
            observer_ip: run.observer.addr.ip(),
            main,
            alt,
        };
        self.running = None;
        self.last = Some(result);
        self.checks += 1;
        self.excluded.clear();
        self.backoff = self.config.retry_min;
        self.due = Some(now + self.config.recheck);
        (true, Some(result))
    }

    /// Resends and gives up on what went unanswered.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<MapCheckOut>) {
        let Some(run) = self.running.as_mut() else {
            return;
        };
        if now < run.next {
            return;
        }
        let (limit, retry) = match run.phase {
            Phase::Asking => (self.config.request_attempts, self.config.request_retry),
            Phase::Probing(_) => (self.config.probe_attempts, self.config.probe_retry),
        };
        if run.attempts >= limit {
            self.fail(now);
            return;
        }
        run.attempts += 1;
        run.next = now + retry;
        let to = run.observer.node;
        match run.phase {
            Phase::Asking => out.push(MapCheckOut::Ask { to, tx: run.tx }),
            Phase::Probing(p) => {
                if p.main.is_none() {
                    out.push(MapCheckOut::Probe {
                        to,
                        dst: p.main_dst,
                        tx: p.tx_main,
                    });
                }
                if p.alt.is_none() {
                    out.push(MapCheckOut::Probe {
                        to,
                        dst: p.alt_dst,
                        tx: p.tx_alt,
                    });
                }
            }
        }
    }

    /// The next instant [`Self::handle_timeout`] or a due check has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.running {
            Some(run) => Some(run.next),
            None if self.config.enabled => self.due,
            None => None,
        }
    }

    /// `peer` disconnected or is no longer reached directly: a check
    /// with it is void, and it may be asked again later.
    pub fn observer_lost(&mut self, peer: &NodeId) {
        if self.running_observer() == Some(*peer) {
            self.running = None;
        }
        self.excluded.remove(peer);
    }

    fn fail(&mut self, now: Instant) {
        if let Some(run) = self.running.take() {
            self.excluded.insert(run.observer.node);
            self.failures += 1;
        }
        // The next observer, if any, at once.
        self.due = Some(now);
    }
}

/// Observer side: peers tracked at most (only connected ones are).
pub const MAX_OFFERS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Offer {
    tx: [u8; TX_LEN],
    until: Instant,
    answers: u32,
}

/// The observer side of mapping checks: who may ask, and whose probes
/// the alternate port answers (see the module docs). Sans-IO.
#[derive(Debug)]
pub struct OfferBudget {
    burst: u32,
    refill: Duration,
    window: Duration,
    answers: u32,
    buckets: BTreeMap<NodeId, (Duration, Instant)>,
    offers: BTreeMap<NodeId, Offer>,
}

/// Why an offer was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferRefusal {
    /// The peer is over its budget: no answer at all.
    Budget,
}

impl OfferBudget {
    /// A budget from the configuration.
    pub fn new(config: &MappingCheckConfig) -> Self {
        Self {
            burst: config.offer_burst,
            refill: config.offer_refill,
            window: config.offer_window,
            answers: config.offer_answers,
            buckets: BTreeMap::new(),
            offers: BTreeMap::new(),
        }
    }

    /// `peer` asks with id `tx`: Ok when an offer is (or still is) made.
    pub fn offer(
        &mut self,
        now: Instant,
        peer: NodeId,
        tx: [u8; TX_LEN],
    ) -> Result<(), OfferRefusal> {
        if let Some(o) = self.offers.get(&peer) {
            if o.tx == tx && now < o.until {
                return Ok(());
            }
        }
        let full = self.refill * self.burst;
        if !self.buckets.contains_key(&peer) && self.buckets.len() >= MAX_OFFERS {
            return Err(OfferRefusal::Budget);
        }
        let (credit, last) = self.buckets.entry(peer).or_insert((full, now));
        *credit = (*credit + now.saturating_duration_since(*last)).min(full);
        *last = now;
        if self.refill.is_zero() || *credit < self.refill {
            return Err(OfferRefusal::Budget);
        }
        *credit -= self.refill;
        self.offers.insert(
            peer,
            Offer {
                tx,
                until: now + self.window,
                answers: self.answers,
            },
        );
        Ok(())
    }

    /// A `BINDING` probe from `peer` on the alternate port: whether to
    /// answer it (takes one answer of its offer).
    pub fn answer(&mut self, now: Instant, peer: &NodeId) -> bool {
        let Some(o) = self.offers.get_mut(peer) else {
            return false;
        };
        if now >= o.until || o.answers == 0 {
            self.offers.remove(peer);
            return false;
        }
        o.answers -= 1;
        true
    }

    /// `peer` disconnected.
    pub fn forget(&mut self, peer: &NodeId) {
        self.buckets.remove(peer);
        self.offers.remove(peer);
    }

    /// Peers tracked.
    pub fn len(&self) -> usize {
        self.buckets.len().max(self.offers.len())
    }

    /// Whether no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use relay_proto::SecretKey;

    fn id(n: u8) -> NodeId {
        SecretKey::from_bytes(&[n; 32]).node_id()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const MAIN: &str = "198.51.100.1:7000";
    const ALT: &str = "198.51.100.1:7001";

    fn observer() -> CheckObserver {
        CheckObserver {
            node: id(1),
            addr: sa(MAIN),
        }
    }

    /// Starts a check and answers its ask with port 7001; returns the two
    /// probes' ids (main, alt).
    fn probing(
        c: &mut MappingProbe,
        now: Instant,
        rng: &mut StdRng,
    ) -> ([u8; TX_LEN], [u8; TX_LEN]) {
        let mut out = Vec::new();
        assert!(c.due(now));
        c.start(now, observer(), rng, &mut out);
        let [MapCheckOut::Ask { to, tx }] = out[..] else {
            panic!("{out:?}");
        };
        assert_eq!(to, id(1));
        out.clear();
        c.handle_port(now, &id(1), &tx, Some(7001), rng, &mut out);
        let [MapCheckOut::Probe {
            dst: d1, tx: t1, ..
        }, MapCheckOut::Probe {
            dst: d2, tx: t2, ..
        }] = out[..]
        else {
            panic!("{out:?}");
        };
        assert_eq!((d1, d2), (sa(MAIN), sa(ALT)));
        (t1, t2)
    }

    #[test]
    fn a_check_asks_probes_both_ports_and_reports() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        let mut c = MappingProbe::new(MappingCheckConfig::default());
        let (tm, ta) = probing(&mut c, t0, &mut rng);
        // A reply from the wrong port, or with the other id, is not ours.
        assert_eq!(
            c.handle_reply(t0, &id(1), sa(ALT), &tm, sa("203.0.113.1:40000")),
            (false, None)
        );
        assert_eq!(
            c.handle_reply(t0, &id(2), sa(MAIN), &tm, sa("203.0.113.1:40000")),
            (false, None)
        );
        assert_eq!(
            c.handle_reply(t0, &id(1), sa(MAIN), &tm, sa("203.0.113.1:40000")),
            (true, None)
        );
        let (mine, result) = c.handle_reply(t0, &id(1), sa(ALT), &ta, sa("203.0.113.1:40001"));
        assert!(mine);
        let result = result.unwrap();
        assert_eq!(result.main, sa("203.0.113.1:40000"));
        assert_eq!(result.alt, sa("203.0.113.1:40001"));
        assert!(!result.same_mapping());
        assert_eq!(c.last(), Some(result));
        assert_eq!(c.counts(), (1, 0));
        // Next one after `recheck`.
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(600)));
        assert!(!c.due(t0 + Duration::from_secs(599)));
        assert!(c.due(t0 + Duration::from_secs(600)));
    }

    #[test]
    fn lost_asks_and_probes_are_resent_then_the_observer_is_skipped() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(2);
        let mut c = MappingProbe::new(MappingCheckConfig::default());
        let mut out = Vec::new();
        c.start(t0, observer(), &mut rng, &mut out);
        let mut asks = out.len();
        let mut t = t0;
        while let Some(next) = c.poll_timeout().filter(|_| c.running_observer().is_some()) {
            t = next;
            out.clear();
            c.handle_timeout(t, &mut out);
            asks += out.len();
        }
        assert_eq!(asks, 3, "request_attempts asks in all");
        assert_eq!(t, t0 + Duration::from_secs(3));
        assert!(c.is_excluded(&id(1)));
        assert_eq!(c.counts(), (0, 1));
        // Nobody else: retry after 15 s, then 30 s.
        assert!(c.due(t));
        c.no_observer(t);
        assert!(!c.is_excluded(&id(1)));
        assert_eq!(c.poll_timeout(), Some(t + Duration::from_secs(15)));

        // Probes: only the half still missing is resent.
        let mut c = MappingProbe::new(MappingCheckConfig::default());
        let (tm, _) = probing(&mut c, t0, &mut rng);
        c.handle_reply(t0, &id(1), sa(MAIN), &tm, sa("203.0.113.1:40000"));
        out.clear();
        c.handle_timeout(t0 + Duration::from_millis(500), &mut out);
        assert!(
            matches!(out[..], [MapCheckOut::Probe { dst, .. }] if dst == sa(ALT)),
            "{out:?}"
        );
        out.clear();
        c.handle_timeout(t0 + Duration::from_millis(1000), &mut out);
        assert_eq!(out.len(), 1);
        out.clear();
        c.handle_timeout(t0 + Duration::from_millis(1500), &mut out);
        assert!(out.is_empty());
        assert!(c.is_excluded(&id(1)));
    }

    #[test]
    fn a_refusal_skips_the_observer_at_once() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(3);
        let mut c = MappingProbe::new(MappingCheckConfig::default());
        let mut out = Vec::new();
        c.start(t0, observer(), &mut rng, &mut out);
        let [MapCheckOut::Ask { tx, .. }] = out[..] else {
            panic!()
        };
        // Another id is ignored; the right one with `None` refuses.
        c.handle_port(t0, &id(1), &[9; TX_LEN], Some(7001), &mut rng, &mut out);
        assert_eq!(out.len(), 1);
        c.handle_port(t0, &id(1), &tx, None, &mut rng, &mut out);
        assert_eq!(out.len(), 1);
        assert!(c.is_excluded(&id(1)));
        assert!(c.due(t0));
        // Losing the observer makes it eligible again.
        c.observer_lost(&id(1));
        assert!(!c.is_excluded(&id(1)));
    }

    #[test]
    fn an_address_change_rechecks() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(4);
        let mut c = MappingProbe::new(MappingCheckConfig::default());
        let (tm, ta) = probing(&mut c, t0, &mut rng);
        let seen = sa("203.0.113.1:40000");
        c.handle_reply(t0, &id(1), sa(MAIN), &tm, seen);
        let (_, r) = c.handle_reply(t0, &id(1), sa(ALT), &ta, seen);
        assert!(r.unwrap().same_mapping());
        let t1 = t0 + Duration::from_secs(60);
        c.recheck_now(t1);
        assert_eq!(c.last(), None);
        assert!(!c.due(t1));
        assert!(c.due(t1 + Duration::from_secs(1)));
    }

    #[test]
    fn disabled_never_runs() {
        let c = MappingProbe::new(MappingCheckConfig {
            enabled: false,
            ..MappingCheckConfig::default()
        });
        assert!(!c.due(Instant::now()));
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn offers_are_budgeted_windowed_and_counted() {
        let t0 = Instant::now();
        let config = MappingCheckConfig::default();
        let mut b = OfferBudget::new(&config);
        let peer = id(5);
        // Nothing is answered without an offer.
        assert!(!b.answer(t0, &peer));
        for i in 0..4u8 {
            assert_eq!(b.offer(t0, peer, [i; TX_LEN]), Ok(()));
        }
        // A resend of the live offer's id is free; a new id is over budget.
        assert_eq!(b.offer(t0, peer, [3; TX_LEN]), Ok(()));
        assert_eq!(b.offer(t0, peer, [9; TX_LEN]), Err(OfferRefusal::Budget));
        // One credit back after 30 s.
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(b.offer(t1, peer, [10; TX_LEN]), Ok(()));
        assert_eq!(b.offer(t1, peer, [11; TX_LEN]), Err(OfferRefusal::Budget));
        // At most 6 answers, within 5 s.
        for _ in 0..6 {
            assert!(b.answer(t1, &peer));
        }
        assert!(!b.answer(t1, &peer));
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(b.offer(t2, peer, [12; TX_LEN]), Ok(()));
        assert!(!b.answer(t2 + Duration::from_secs(5), &peer));
        b.forget(&peer);
        assert!(b.is_empty());
    }

    #[test]
    fn offer_state_is_bounded() {
        let t0 = Instant::now();
        let mut b = OfferBudget::new(&MappingCheckConfig::default());
        for i in 0..MAX_OFFERS as u32 {
            let key = SecretKey::from_bytes(&{
                let mut k = [7u8; 32];
                k[..4].copy_from_slice(&i.to_le_bytes());
                k
            });
            assert_eq!(b.offer(t0, key.node_id(), [0; TX_LEN]), Ok(()));
        }
        assert_eq!(b.len(), MAX_OFFERS);
        assert_eq!(b.offer(t0, id(200), [0; TX_LEN]), Err(OfferRefusal::Budget));
        assert_eq!(b.len(), MAX_OFFERS);
    }
}
