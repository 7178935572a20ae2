//! Observed addresses and NAT classification.
//!
//! Peers tell us which address they see our socket at (our *reflexive*
//! address). From those observations we classify our NAT:
//!
//! - **unknown**: fewer than two observers on different IPs, and no
//!   mapping check (below);
//! - **open**: every observer sees our own bind address;
//! - **cone**: every observer sees the same external ip:port
//!   (endpoint-independent mapping, RFC 4787 §4.1);
//! - **symmetric**: observers on different IPs see different external
//!   addresses (endpoint-dependent mapping).
//!
//! Only the latest observation per observer counts, and for several
//! observers on one IP only the newest one (one IP is one destination to a
//! NAT that maps per address). Observations expire after a TTL, the table is
//! bounded, and the classification is recomputed whenever an observation
//! changes and on a periodic timer. A configured public address pins the
//! result to open and skips classification.
//!
//! **Rebinding.** When our NAT rebinds (its mapping gets a new port), the
//! observers learn the new address one by one, and some (a peer that fell
//! back to a relay) never do. Until then the old and the new address sit
//! side by side and a cone NAT would look symmetric. So a *change* (an
//! observer reporting an address other than its previous one) sets aside
//! every view that is older than the change and disagrees with it: those
//! were made before the mapping moved. A view that is itself a change less
//! than [`REBIND_EPISODE`] older counts (both saw the same rebinding, as
//! the observers of a symmetric NAT do). If fewer than two observer IPs
//! remain, the previous verdict stands, with the newest address as the
//! reflexive one.
//!
//! **One observer.** A mapping check (`mapcheck`) is a pair of views from
//! one observer IP: its main port's and its alternate port's. With fewer
//! than two observer IPs it decides alone: both at our bind address,
//! open; one address, cone; two, symmetric. With two or more observer IPs
//! those decide, and a check that saw two addresses still makes the
//! verdict symmetric (the mapping changed with the destination port).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use relay_proto::wire::traversal::NatType;
use relay_proto::NodeId;

use super::error::{TraversalError, TraversalErrorKind};
use super::mapcheck::MapCheckResult;

/// Observers remembered at most; the oldest is evicted beyond this.
pub const MAX_OBSERVERS: usize = 32;
/// Changes of our observed address less than this apart belong to one
/// rebinding of our NAT (see the module docs).
pub const REBIND_EPISODE: Duration = Duration::from_secs(30);

/// The classifier's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NatReport {
    /// NAT type.
    pub nat: NatType,
    /// Our reflexive address: the common one for open/cone, the newest
    /// observation otherwise.
    pub reflex_addr: Option<SocketAddr>,
}

/// One observer's latest view of us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// The observer's IP (the destination our NAT mapped for).
    pub observer_ip: IpAddr,
    /// The address it sees us at.
    pub observed: SocketAddr,
    /// Our local address the observed traffic left from.
    pub local: SocketAddr,
    /// When it was reported (last; a repeat of the same address counts).
    pub at: Instant,
    /// When this observer first reported this address.
    pub since: Instant,
    /// Whether it replaced a different address from the same observer (a
    /// change, e.g. after our NAT rebound).
    pub changed: bool,
}

/// A mapping check's two views, as the classifier keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingView {
    /// The check.
    pub result: MapCheckResult,
    /// Our local address the probes left from.
    pub local: SocketAddr,
    /// When it finished.
    pub at: Instant,
}

/// Classifies our NAT from observations. Sans-IO.
#[derive(Debug)]
pub struct NatClassifier {
    public_addr: Option<SocketAddr>,
    ttl: Duration,
    interval: Duration,
    reflex_timeout: Duration,
    observations: BTreeMap<NodeId, Observation>,
    report: NatReport,
    next_reclassify: Option<Instant>,
    reflex_deadline: Option<Instant>,
    started: bool,
    /// Observations older than this were made before our address
    /// changed (see [`Self::relearn`]).
    stale_before: Option<Instant>,
    /// The newest mapping check (see the module docs).
    check: Option<MappingView>,
}

impl NatClassifier {
    /// A classifier; `public_addr` pins the result.
    pub fn new(
        public_addr: Option<SocketAddr>,
        interval: Duration,
        ttl: Duration,
        reflex_timeout: Duration,
    ) -> Self {
        let report = match public_addr {
            Some(addr) => NatReport {
                nat: NatType::Open,
                reflex_addr: Some(addr),
            },
            None => NatReport::default(),
        };
        Self {
            public_addr,
            ttl,
            interval,
            reflex_timeout,
            observations: BTreeMap::new(),
            report,
            next_reclassify: None,
            reflex_deadline: None,
            started: false,
            stale_before: None,
            check: None,
        }
    }

    /// Arms the timers on first use.
    pub fn start(&mut self, now: Instant) {
        if self.started {
            return;
        }
        self.started = true;
        if self.public_addr.is_none() {
            self.reflex_deadline = Some(now + self.reflex_timeout);
            self.next_reclassify = Some(now + self.interval);
        }
    }

    /// The current verdict.
    pub fn report(&self) -> NatReport {
        self.report
    }

    /// Every live observation, by observer.
    pub fn observations(&self) -> impl Iterator<Item = (&NodeId, &Observation)> {
        self.observations.iter()
    }

    /// Records that `observer` (at `observer_ip`) sees our socket, bound at
    /// `local`, as `observed`. Returns the new verdict if it changed.
    pub fn handle_observation(
        &mut self,
        now: Instant,
        observer: NodeId,
        observer_ip: IpAddr,
        observed: SocketAddr,
        local: SocketAddr,
    ) -> Option<NatReport> {
        self.start(now);
        self.reflex_deadline = None;
        let previous = self.observations.get(&observer);
        let (since, changed) = match previous {
            Some(p) if p.observed == observed => (p.since, p.changed),
            Some(_) => (now, true),
            None => (now, false),
        };
        let obs = Observation {
            observer_ip,
            observed,
            local,
            at: now,
            since,
            changed,
        };
        self.observations.insert(observer, obs);
        if let Some(since) = self.stale_before.filter(|s| now >= *s) {
            // A fresh view after our address changed: views from before
            // on another IP are from the old network. (Views on the same
            // IP may differ in port behind a symmetric NAT; an observer
            // that saw our port change re-reports anyway.)
            self.observations
                .retain(|_, o| o.at >= since || o.observed.ip() == observed.ip());
        }
        while self.observations.len() > MAX_OBSERVERS {
            let oldest = self
                .observations
                .iter()
                .min_by_key(|(_, o)| o.at)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => self.observations.remove(&id),
                None => break,
            };
        }
        self.reclassify()
    }

    /// The newest mapping check that still counts.
    pub fn mapping_check(&self) -> Option<MappingView> {
        self.check
    }

    /// A mapping check finished: our socket, bound at `local`, was seen at
    /// `result.main` and `result.alt` by one observer's two ports. Returns
    /// the new verdict if it changed.
    pub fn handle_mapping_check(
        &mut self,
        now: Instant,
        result: MapCheckResult,
        local: SocketAddr,
    ) -> Option<NatReport> {
        self.start(now);
        self.reflex_deadline = None;
        self.check = Some(MappingView {
            result,
            local,
            at: now,
        });
        self.reclassify()
    }

    /// Our own address changed at `now`: every observation so far is
    /// suspect. Each is kept until a fresh one (made from `now` on) shows
    /// another IP, so observers that still see us where they did (a NAT
    /// that kept our mapping) keep counting, and views from the old
    /// network never mix with fresh ones into a false "symmetric".
    pub fn relearn(&mut self, now: Instant) {
        self.stale_before = Some(now);
        // A check is one instant's pair of views: made on the old network,
        // it says nothing of the new one (a new check follows).
        self.check = None;
    }

    /// Forgets an observer (its connection is gone).
    pub fn remove_observer(&mut self, observer: &NodeId) -> Option<NatReport> {
        let had_check = self.check.is_some_and(|c| c.result.observer == *observer);
        if had_check {
            self.check = None;
        }
        if self.observations.remove(observer).is_none() && !had_check {
            return None;
        }
        self.reclassify()
    }

    /// Periodic work: expiry, re-classification and the reflex timeout.
    /// Returns a changed verdict and/or a `reflex-timeout` error.
    pub fn handle_timeout(&mut self, now: Instant) -> (Option<NatReport>, Option<TraversalError>) {
        let mut error = None;
        if self.reflex_deadline.is_some_and(|d| now >= d) {
            self.reflex_deadline = None;
            error = Some(TraversalError::new(
                TraversalErrorKind::ReflexTimeout,
                format!(
                    "no peer reported our address within {} s",
                    self.reflex_timeout.as_secs()
                ),
            ));
        }
        let mut changed = None;
        if self.next_reclassify.is_some_and(|t| now >= t) {
            self.next_reclassify = Some(now + self.interval);
            let ttl = self.ttl;
            self.observations
                .retain(|_, o| now.saturating_duration_since(o.at) < ttl);
            if self
                .check
                .is_some_and(|c| now.saturating_duration_since(c.at) >= ttl)
            {
                self.check = None;
            }
            changed = self.reclassify();
        }
        (changed, error)
    }

    /// The next instant [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.reflex_deadline, self.next_reclassify) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn reclassify(&mut self) -> Option<NatReport> {
        if self.public_addr.is_some() {
            return None;
        }
        let report = classify(
            self.observations.values(),
            self.check.as_ref(),
            self.report.nat,
        );
        if report == self.report {
            return None;
        }
        self.report = report;
        Some(report)
    }
}

/// Whether `view` was made before a change in `views` that disagrees with
/// it (see the module docs): it predates our NAT's rebinding.
fn set_aside(view: &Observation, views: &[&Observation]) -> bool {
    views.iter().any(|c| {
        c.changed
            && c.observer_ip != view.observer_ip
            && c.observed != view.observed
            && c.since > view.since
            && !(view.changed && c.since.saturating_duration_since(view.since) < REBIND_EPISODE)
    })
}

/// The verdict of a mapping check on its own.
fn check_verdict(check: &MappingView) -> NatReport {
    let r = &check.result;
    let nat = if r.main == check.local && r.alt == check.local {
        NatType::Open
    } else if r.same_mapping() {
        NatType::Cone
    } else {
        NatType::Symmetric
    };
    NatReport {
        nat,
        reflex_addr: Some(r.main),
    }
}

/// The pure classification rule over a set of observations and the newest
/// mapping check; `previous` is the verdict that stands while a rebinding
/// leaves too few current views.
pub fn classify<'a>(
    observations: impl Iterator<Item = &'a Observation>,
    check: Option<&MappingView>,
    previous: NatType,
) -> NatReport {
    let report = classify_views(observations, previous);
    match check {
        // One observer IP (or none): the check decides.
        Some(c) if report.nat == NatType::Unknown => check_verdict(c),
        // A check that saw the mapping change with the destination port.
        Some(c) if !c.result.same_mapping() && report.nat != NatType::Symmetric => NatReport {
            nat: NatType::Symmetric,
            reflex_addr: report.reflex_addr,
        },
        _ => report,
    }
}

fn classify_views<'a>(
    observations: impl Iterator<Item = &'a Observation>,
    previous: NatType,
) -> NatReport {
    // Newest observation per observer IP.
    let mut per_ip: BTreeMap<IpAddr, &Observation> = BTreeMap::new();
    let mut newest: Option<&Observation> = None;
    for obs in observations {
        if newest.is_none_or(|n| obs.at > n.at) {
            newest = Some(obs);
        }
        let slot = per_ip.entry(obs.observer_ip).or_insert(obs);
        if obs.at > slot.at {
            *slot = obs;
        }
    }
    let newest_addr = newest.map(|o| o.observed);
    let all: Vec<&Observation> = per_ip.into_values().collect();
    let views: Vec<&Observation> = all
        .iter()
        .copied()
        .filter(|v| !set_aside(v, &all))
        .collect();
    if views.len() < all.len() && views.len() < 2 {
        // A rebinding still settling: the verdict stands, at the newest
        // address.
        let current = views.iter().max_by_key(|v| v.since).map(|v| v.observed);
        return NatReport {
            nat: previous,
            reflex_addr: current.or(newest_addr),
        };
    }
    if views.len() < 2 {
        return NatReport {
            nat: NatType::Unknown,
            reflex_addr: newest_addr,
        };
    }
    if views.iter().all(|o| o.observed == o.local) {
        return NatReport {
            nat: NatType::Open,
            reflex_addr: newest_addr,
        };
    }
    let first = views[0].observed;
    if views.iter().all(|o| o.observed == first) {
        return NatReport {
            nat: NatType::Cone,
            reflex_addr: Some(first),
        };
    }
    NatReport {
        nat: NatType::Symmetric,
        reflex_addr: newest_addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    fn id(n: u8) -> NodeId {
        SecretKey::from_bytes(&[n; 32]).node_id()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn classifier() -> NatClassifier {
        NatClassifier::new(
            None,
            Duration::from_secs(60),
            Duration::from_secs(600),
            Duration::from_secs(10),
        )
    }

    const LOCAL: &str = "10.0.0.2:5000";

    #[test]
    fn unknown_until_two_observer_ips() {
        let now = Instant::now();
        let mut c = classifier();
        let r = c.handle_observation(
            now,
            id(1),
            ip("198.51.100.1"),
            sa("203.0.113.1:7000"),
            sa(LOCAL),
        );
        assert_eq!(
            r,
            Some(NatReport {
                nat: NatType::Unknown,
                reflex_addr: Some(sa("203.0.113.1:7000"))
            })
        );
        // A second observer on the same IP does not count.
        let r = c.handle_observation(
            now,
            id(2),
            ip("198.51.100.1"),
            sa("203.0.113.1:7000"),
            sa(LOCAL),
        );
        assert_eq!(r, None);
        assert_eq!(c.report().nat, NatType::Unknown);
    }

    #[test]
    fn cone_open_and_symmetric() {
        let now = Instant::now();
        let mut c = classifier();
        c.handle_observation(
            now,
            id(1),
            ip("198.51.100.1"),
            sa("203.0.113.1:7000"),
            sa(LOCAL),
        );
        let r = c.handle_observation(
            now,
            id(2),
            ip("198.51.100.2"),
            sa("203.0.113.1:7000"),
            sa(LOCAL),
        );
        assert_eq!(
            r,
            Some(NatReport {
                nat: NatType::Cone,
                reflex_addr: Some(sa("203.0.113.1:7000"))
            })
        );

        // A third destination sees another port: the mapping depends on
        // the destination, symmetric.
        let later = now + Duration::from_secs(1);
        let r = c.handle_observation(
            later,
            id(3),
            ip("198.51.100.3"),
            sa("203.0.113.1:7001"),
            sa(LOCAL),
        );
        assert_eq!(
            r,
            Some(NatReport {
                nat: NatType::Symmetric,
                reflex_addr: Some(sa("203.0.113.1:7001"))
            })
        );

        let mut open = classifier();
        let me = "198.51.100.7:5000";
        open.handle_observation(now, id(1), ip("198.51.100.1"), sa(me), sa(me));
        let r = open.handle_observation(now, id(2), ip("203.0.113.50"), sa(me), sa(me));
        assert_eq!(r.map(|r| r.nat), Some(NatType::Open));
    }

    /// Reports `addr` from observer `n` (on its own IP) at `t` seconds.
    fn see(c: &mut NatClassifier, t0: Instant, t: u64, n: u8, addr: &str) -> Option<NatReport> {
        c.handle_observation(
            t0 + Duration::from_secs(t),
            id(n),
            IpAddr::from([198, 51, 100, n]),
            sa(addr),
            sa(LOCAL),
        )
    }

    fn cone(addr: &str) -> Option<NatReport> {
        Some(NatReport {
            nat: NatType::Cone,
            reflex_addr: Some(sa(addr)),
        })
    }

    #[test]
    fn a_rebinding_cone_stays_cone_while_observers_catch_up() {
        let t0 = Instant::now();
        let mut c = classifier();
        see(&mut c, t0, 0, 1, "203.0.113.1:7000");
        assert_eq!(
            see(&mut c, t0, 0, 2, "203.0.113.1:7000"),
            cone("203.0.113.1:7000")
        );
        // The NAT rebinds. Observer 1 sees the new port first: observer
        // 2's older view is set aside, cone stands, the reflexive address
        // moves.
        assert_eq!(
            see(&mut c, t0, 100, 1, "203.0.113.1:7100"),
            cone("203.0.113.1:7100")
        );
        // Observer 2 catches up, seconds later: nothing changes.
        assert_eq!(see(&mut c, t0, 103, 2, "203.0.113.1:7100"), None);
        assert_eq!(c.report(), cone("203.0.113.1:7100").unwrap());
        // Both count again: a third destination at another port is
        // symmetric.
        let r = see(&mut c, t0, 110, 3, "203.0.113.1:7200");
        assert_eq!(r.map(|r| r.nat), Some(NatType::Symmetric));
    }

    #[test]
    fn an_observer_that_never_catches_up_does_not_make_it_symmetric() {
        let t0 = Instant::now();
        let mut c = classifier();
        see(&mut c, t0, 0, 1, "203.0.113.1:7000");
        see(&mut c, t0, 0, 2, "203.0.113.1:7000");
        see(&mut c, t0, 100, 1, "203.0.113.1:7100");
        // Observer 2 (say, a peer now relayed) never reports again; the
        // periodic re-classification keeps cone until its view expires.
        while let Some(t) = c
            .poll_timeout()
            .filter(|t| *t < t0 + Duration::from_secs(590))
        {
            let (r, _) = c.handle_timeout(t);
            assert_eq!(r, None, "at {:?}", t - t0);
        }
        assert_eq!(c.report(), cone("203.0.113.1:7100").unwrap());
        // A repeat of its old view (a re-read, not a new report) changes
        // nothing either.
        assert_eq!(see(&mut c, t0, 595, 2, "203.0.113.1:7000"), None);
        // A new observer that agrees with the new address confirms cone; one
        // that sees yet another port would make it symmetric.
        assert_eq!(see(&mut c, t0, 596, 3, "203.0.113.1:7100"), None);
        let r = see(&mut c, t0, 597, 4, "203.0.113.1:7300");
        assert_eq!(r.map(|r| r.nat), Some(NatType::Symmetric));
    }

    #[test]
    fn a_rebinding_symmetric_nat_stays_symmetric() {
        let t0 = Instant::now();
        let mut c = classifier();
        see(&mut c, t0, 0, 1, "203.0.113.1:7000");
        let r = see(&mut c, t0, 0, 2, "203.0.113.1:7001");
        assert_eq!(r.map(|r| r.nat), Some(NatType::Symmetric));
        // Every flow gets a new port; the observers report a few seconds
        // apart (one rebinding) and disagree: still symmetric throughout.
        let r = see(&mut c, t0, 100, 1, "203.0.113.1:8000");
        assert_eq!(r.map(|r| r.nat), Some(NatType::Symmetric));
        let r = see(&mut c, t0, 104, 2, "203.0.113.1:8001");
        assert_eq!(r.map(|r| r.nat), Some(NatType::Symmetric));
        assert_eq!(c.report().nat, NatType::Symmetric);
        assert_eq!(c.report().reflex_addr, Some(sa("203.0.113.1:8001")));
    }

    #[test]
    fn expiry_and_removal_reclassify() {
        let now = Instant::now();
        let mut c = classifier();
        c.handle_observation(
            now,
            id(1),
            ip("198.51.100.1"),
            sa("203.0.113.1:7000"),
            sa(LOCAL),
        );
        c.handle_observation(
            now + Duration::from_secs(300),
            id(2),
            ip("198.51.100.2"),
            sa("203.0.113.1:7000"),
            sa(LOCAL),
        );
        assert_eq!(c.report().nat, NatType::Cone);
        // At 660 s the first observation (at 0 s) is past its 600 s TTL.
        let mut t = now;
        let mut changed = None;
        while t < now + Duration::from_secs(700) {
            t = c.poll_timeout().unwrap();
            let (r, _) = c.handle_timeout(t);
            if r.is_some() {
                changed = r;
                break;
            }
        }
        assert_eq!(changed.map(|r| r.nat), Some(NatType::Unknown));
        assert_eq!(c.remove_observer(&id(2)), Some(NatReport::default()));
    }

    #[test]
    fn reflex_timeout_fires_once_without_observations() {
        let now = Instant::now();
        let mut c = classifier();
        c.start(now);
        let (_, err) = c.handle_timeout(now + Duration::from_secs(10));
        assert_eq!(err.map(|e| e.kind), Some(TraversalErrorKind::ReflexTimeout));
        let (_, err) = c.handle_timeout(now + Duration::from_secs(20));
        assert_eq!(err, None);
    }

    #[test]
    fn public_addr_pins_open() {
        let now = Instant::now();
        let pinned = sa("198.51.100.9:4433");
        let mut c = NatClassifier::new(
            Some(pinned),
            Duration::from_secs(60),
            Duration::from_secs(600),
            Duration::from_secs(10),
        );
        c.start(now);
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(
            c.handle_observation(
                now,
                id(1),
                ip("198.51.100.1"),
                sa("203.0.113.1:1"),
                sa(LOCAL)
            ),
            None
        );
        assert_eq!(
            c.handle_observation(
                now,
                id(2),
                ip("198.51.100.2"),
                sa("203.0.113.1:2"),
                sa(LOCAL)
            ),
            None
        );
        assert_eq!(
            c.report(),
            NatReport {
                nat: NatType::Open,
                reflex_addr: Some(pinned)
            }
        );
    }

    #[test]
    fn relearn_drops_stale_views_as_fresh_ones_disagree() {
        let t0 = Instant::now();
        let mut c = classifier();
        let (p0, p1, p2) = (ip("203.0.113.10"), ip("203.0.113.11"), ip("203.0.113.12"));
        let old = sa("198.51.100.10:7000");
        let new = sa("198.51.100.12:9000");
        c.handle_observation(t0, id(1), p0, old, sa(LOCAL));
        c.handle_observation(t0, id(2), p1, old, sa(LOCAL));
        c.handle_observation(t0, id(3), p2, old, sa(LOCAL));
        assert_eq!(c.report().reflex_addr, Some(old));
        let t1 = t0 + Duration::from_secs(30);
        c.relearn(t1);
        // The first fresh view drops the stale ones (no false symmetric).
        let r = c.handle_observation(t1, id(1), p0, new, sa("10.3.0.2:5000"));
        assert_eq!(
            r,
            Some(NatReport {
                nat: NatType::Unknown,
                reflex_addr: Some(new)
            })
        );
        assert_eq!(c.observations().count(), 1);
        let r = c.handle_observation(t1, id(2), p1, new, sa("10.3.0.2:5000"));
        assert_eq!(
            r,
            Some(NatReport {
                nat: NatType::Cone,
                reflex_addr: Some(new)
            })
        );

        // A NAT that kept our mapping: stale views that agree stay.
        let mut kept = classifier();
        kept.handle_observation(t0, id(1), p0, old, sa(LOCAL));
        kept.handle_observation(t0, id(2), p1, old, sa(LOCAL));
        kept.relearn(t1);
        assert_eq!(
            kept.handle_observation(t1, id(1), p0, old, sa("10.1.0.3:5000")),
            None
        );
        assert_eq!(kept.observations().count(), 2);
        assert_eq!(kept.report().nat, NatType::Cone);
    }

    fn check(main: &str, alt: &str) -> MapCheckResult {
        MapCheckResult {
            observer: id(1),
            observer_ip: ip("198.51.100.1"),
            main: sa(main),
            alt: sa(alt),
        }
    }

    #[test]
    fn one_observer_and_a_mapping_check_classify() {
        let now = Instant::now();
        let seen = "203.0.113.1:7000";
        for (alt, want) in [
            ("203.0.113.1:7000", NatType::Cone),
            ("203.0.113.1:7001", NatType::Symmetric),
        ] {
            let mut c = classifier();
            c.handle_observation(now, id(1), ip("198.51.100.1"), sa(seen), sa(LOCAL));
            assert_eq!(c.report().nat, NatType::Unknown);
            let r = c.handle_mapping_check(now, check(seen, alt), sa(LOCAL));
            assert_eq!(
                r,
                Some(NatReport {
                    nat: want,
                    reflex_addr: Some(sa(seen))
                })
            );
            // The check goes with its observer.
            assert_eq!(
                c.remove_observer(&id(1)).map(|r| r.nat),
                Some(NatType::Unknown)
            );
        }
        // Both ports see our own address: open.
        let me = "198.51.100.7:5000";
        let mut c = classifier();
        let r = c.handle_mapping_check(now, check(me, me), sa(me));
        assert_eq!(r.map(|r| r.nat), Some(NatType::Open));
    }

    #[test]
    fn more_observers_still_count_and_a_split_check_means_symmetric() {
        let now = Instant::now();
        let mut c = classifier();
        c.handle_observation(
            now,
            id(1),
            ip("198.51.100.1"),
            sa("203.0.113.1:7000"),
            sa(LOCAL),
        );
        c.handle_mapping_check(
            now,
            check("203.0.113.1:7000", "203.0.113.1:7000"),
            sa(LOCAL),
        );
        assert_eq!(c.report().nat, NatType::Cone);
        // An address-dependent NAT keeps the port for a second port of one
        // IP (the check says cone); a second observer IP shows the truth.
        let r = c.handle_observation(
            now,
            id(2),
            ip("198.51.100.2"),
            sa("203.0.113.1:7100"),
            sa(LOCAL),
        );
        assert_eq!(r.map(|r| r.nat), Some(NatType::Symmetric));

        // Two observer IPs agree, but the check saw the port change with
        // the destination port: symmetric.
        let mut c = classifier();
        c.handle_observation(
            now,
            id(1),
            ip("198.51.100.1"),
            sa("203.0.113.1:7000"),
            sa(LOCAL),
        );
        c.handle_observation(
            now,
            id(2),
            ip("198.51.100.2"),
            sa("203.0.113.1:7000"),
            sa(LOCAL),
        );
        assert_eq!(c.report().nat, NatType::Cone);
        let r = c.handle_mapping_check(
            now,
            check("203.0.113.1:7000", "203.0.113.1:7002"),
            sa(LOCAL),
        );
        assert_eq!(r.map(|r| r.nat), Some(NatType::Symmetric));
    }

    #[test]
    fn a_check_is_dropped_on_relearn_and_expires() {
        let t0 = Instant::now();
        let mut c = classifier();
        c.handle_observation(
            t0,
            id(1),
            ip("198.51.100.1"),
            sa("203.0.113.1:7000"),
            sa(LOCAL),
        );
        c.handle_mapping_check(t0, check("203.0.113.1:7000", "203.0.113.1:7000"), sa(LOCAL));
        assert_eq!(c.report().nat, NatType::Cone);
        c.relearn(t0 + Duration::from_secs(1));
        assert_eq!(c.mapping_check(), None);

        let mut c = classifier();
        c.handle_mapping_check(t0, check("203.0.113.1:7000", "203.0.113.1:7000"), sa(LOCAL));
        let mut changed = None;
        while changed.is_none() {
            let t = c.poll_timeout().unwrap();
            assert!(t <= t0 + Duration::from_secs(700));
            changed = c.handle_timeout(t).0;
        }
        assert_eq!(changed.map(|r| r.nat), Some(NatType::Unknown));
    }

    #[test]
    fn observer_table_is_bounded() {
        let now = Instant::now();
        let mut c = classifier();
        for i in 0..(MAX_OBSERVERS as u8 + 10) {
            c.handle_observation(
                now + Duration::from_millis(i as u64),
                id(i + 1),
                IpAddr::from([198, 51, 100, i]),
                sa("203.0.113.1:7000"),
                sa(LOCAL),
            );
        }
        assert_eq!(c.observations().count(), MAX_OBSERVERS);
    }
}
