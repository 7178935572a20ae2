//! Address changes ("roaming"): noticing that our own address changed,
//! and the re-punch schedule that follows. Sans-IO.
//!
//! Two signals, both debounced by [`AddressWatch`]:
//!
//! - **the local address**: the source IP the kernel picks towards a
//!   fixed destination (a relay, else a direct peer), sampled by the
//!   driver on its 1 s tick. A new IP counts once `confirm_samples`
//!   samples in a row agree on it. A sample of "no address" (no route,
//!   the interface went away) never counts as a change by itself: the
//!   node waits for the next address, and returning to the old one is no
//!   change at all. A sample towards another destination only moves the
//!   baseline (a multi-homed host may use another interface for it);
//! - **the reflexive IP**: the IP observers see us at. A new IP counts
//!   once two observers on different IPs report it (one, when only one
//!   observer IP has ever reported). Ports are not compared: a symmetric
//!   NAT gives every observer another port, and a port change alone is a
//!   NAT rebinding, not a move.
//!
//! After a reported change nothing more is reported for `hold` (5 s): a
//! local address that flaps back and forth within it is reported once
//! the hold is over, if it still differs from the last one reported.
//! One move is one change: whichever signal confirms it first is
//! reported, and the other signal confirming within the hold (observers
//! that saw us move before our own samples confirmed it, or the other way
//! round) only becomes its new baseline.
//!
//! [`Roaming`] is what the agent does afterwards for the peers that were
//! direct: once a direct path is lost (the agent probes them at once, see
//! `keepalive`), a re-punch is due as soon as an observer has reported
//! our new address (so the introducer hands out the right one), or
//! `fresh_wait` after the change at the latest. A failed re-punch is
//! retried after `retry` (not the usual backoff), up to `attempts` times.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use relay_proto::NodeId;

/// Observer IPs remembered by the reflexive signal, at most.
const MAX_REFLEX_OBSERVERS: usize = 32;

/// Tunables of address-change handling.
#[derive(Debug, Clone)]
pub struct RoamConfig {
    /// Samples in a row that must show a new local IP. Default 2.
    pub confirm_samples: u32,
    /// Observer IPs that must agree on a new reflexive IP. Default 2.
    pub confirm_observers: usize,
    /// Quiet time after a reported change. Default 5 s.
    pub hold: Duration,
    /// Probe interval on a suspect direct path (the keepalive misses
    /// still apply: lost after 3 unanswered). Default 250 ms.
    pub probe_interval: Duration,
    /// Longest wait for an observer to report our new address before
    /// re-punching anyway. Default 5 s.
    pub fresh_wait: Duration,
    /// Delay before retrying a failed re-punch. Default 3 s.
    pub retry: Duration,
    /// Re-punch attempts per peer and change. Default 3.
    pub attempts: u32,
}

impl Default for RoamConfig {
    fn default() -> Self {
        Self {
            confirm_samples: 2,
            confirm_observers: 2,
            hold: Duration::from_secs(5),
            probe_interval: Duration::from_millis(250),
            fresh_wait: Duration::from_secs(5),
            retry: Duration::from_secs(3),
            attempts: 3,
        }
    }
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoamCause {
    /// The local source address towards our relays / peers.
    Local,
    /// The IP observers see us at.
    Reflexive,
}

impl RoamCause {
    /// A stable name for logs and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Reflexive => "reflexive",
        }
    }
}

/// A confirmed change of our own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressChange {
    /// Which signal.
    pub cause: RoamCause,
    /// The address before.
    pub old: IpAddr,
    /// The address now.
    pub new: IpAddr,
}

impl fmt::Display for AddressChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} ({})", self.old, self.new, self.cause.as_str())
    }
}

/// Detects changes of our own address (see the module docs). Sans-IO.
#[derive(Debug)]
pub struct AddressWatch {
    confirm_samples: u32,
    confirm_observers: usize,
    hold: Duration,
    /// The destination the local samples are taken towards.
    dest: Option<IpAddr>,
    /// The confirmed local IP.
    local: Option<IpAddr>,
    /// A different local IP and how many samples in a row showed it.
    pending: Option<(IpAddr, u32)>,
    /// The confirmed reflexive IP.
    reflex: Option<IpAddr>,
    /// The latest reflexive IP per observer IP.
    reports: BTreeMap<IpAddr, (IpAddr, Instant)>,
    /// No change is reported before this.
    quiet_until: Option<Instant>,
    /// What the last reported change was.
    last_cause: Option<RoamCause>,
}

impl AddressWatch {
    /// A watch with these tunables.
    pub fn new(config: &RoamConfig) -> Self {
        Self {
            confirm_samples: config.confirm_samples.max(1),
            confirm_observers: config.confirm_observers.max(1),
            hold: config.hold,
            dest: None,
            local: None,
            pending: None,
            reflex: None,
            reports: BTreeMap::new(),
            quiet_until: None,
            last_cause: None,
        }
    }

    /// The confirmed local IP.
    pub fn local(&self) -> Option<IpAddr> {
        self.local
    }

    /// The confirmed reflexive IP.
    pub fn reflexive(&self) -> Option<IpAddr> {
        self.reflex
    }

    fn quiet(&self, now: Instant) -> bool {
        self.quiet_until.is_some_and(|t| now < t)
    }

    fn report(&mut self, now: Instant, change: AddressChange) -> Option<AddressChange> {
        self.quiet_until = Some(now + self.hold);
        self.last_cause = Some(change.cause);
        Some(change)
    }

    /// One sample of the local source IP towards `dest` (`None`: no
    /// route or no address). Returns a confirmed change.
    pub fn handle_local(
        &mut self,
        now: Instant,
        dest: IpAddr,
        sample: Option<IpAddr>,
    ) -> Option<AddressChange> {
        if self.dest != Some(dest) {
            // Another destination may legitimately use another interface:
            // a new baseline, no change.
            self.dest = Some(dest);
            self.pending = None;
            if sample.is_some() {
                self.local = sample;
            }
            return None;
        }
        let Some(ip) = sample else {
            // Down (no route): wait for the next address.
            self.pending = None;
            return None;
        };
        let Some(old) = self.local else {
            self.local = Some(ip);
            return None;
        };
        if ip == old {
            self.pending = None;
            return None;
        }
        let seen = match self.pending {
            Some((p, n)) if p == ip => n.saturating_add(1),
            _ => 1,
        };
        self.pending = Some((ip, seen));
        if seen < self.confirm_samples {
            return None;
        }
        if self.quiet(now) {
            if self.last_cause == Some(RoamCause::Reflexive) {
                // The same move, noticed by the observers first.
                self.pending = None;
                self.local = Some(ip);
            }
            return None;
        }
        self.pending = None;
        self.local = Some(ip);
        // Every earlier reflexive report came through the old address.
        self.reflex = None;
        self.reports.clear();
        self.report(
            now,
            AddressChange {
                cause: RoamCause::Local,
                old,
                new: ip,
            },
        )
    }

    /// An observer on `observer_ip` sees us at `observed_ip`. Returns a
    /// confirmed change.
    pub fn handle_reflexive(
        &mut self,
        now: Instant,
        observer_ip: IpAddr,
        observed_ip: IpAddr,
    ) -> Option<AddressChange> {
        self.reports.insert(observer_ip, (observed_ip, now));
        while self.reports.len() > MAX_REFLEX_OBSERVERS {
            let oldest = self
                .reports
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(ip, _)| *ip);
            match oldest {
                Some(ip) => self.reports.remove(&ip),
                None => break,
            };
        }
        let Some(old) = self.reflex else {
            self.reflex = Some(observed_ip);
            return None;
        };
        if observed_ip == old {
            return None;
        }
        let agreeing = self
            .reports
            .values()
            .filter(|(ip, _)| *ip == observed_ip)
            .count();
        let need = self.confirm_observers.min(self.reports.len());
        if agreeing < need {
            return None;
        }
        self.reflex = Some(observed_ip);
        if self.quiet(now) {
            return None;
        }
        self.report(
            now,
            AddressChange {
                cause: RoamCause::Reflexive,
                old,
                new: observed_ip,
            },
        )
    }

    /// An observer is gone: its report no longer counts.
    pub fn forget_observer(&mut self, observer_ip: &IpAddr) {
        self.reports.remove(observer_ip);
    }
}

/// Where one peer's re-punch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RepunchState {
    /// Its direct path is being probed; nothing to do unless it is lost.
    Probing,
    /// Lost: re-punch when due (`None`: once fresh or at the deadline).
    Due(Option<Instant>),
    /// A re-punch was asked for; waiting for its outcome.
    Asked,
}

#[derive(Debug, Clone, Copy)]
struct RoamPeer {
    state: RepunchState,
    attempts: u32,
}

/// The re-punch schedule after an address change (see the module docs).
#[derive(Debug)]
pub struct Roaming {
    fresh_wait: Duration,
    retry: Duration,
    attempts: u32,
    /// When the last change happened.
    since: Option<Instant>,
    /// An observer reported our address since the change.
    fresh: bool,
    peers: BTreeMap<NodeId, RoamPeer>,
}

impl Roaming {
    /// A schedule with these tunables.
    pub fn new(config: &RoamConfig) -> Self {
        Self {
            fresh_wait: config.fresh_wait,
            retry: config.retry,
            attempts: config.attempts.max(1),
            since: None,
            fresh: false,
            peers: BTreeMap::new(),
        }
    }

    /// Our address changed at `now`; `direct` are the peers on a direct
    /// path (each is being probed).
    pub fn start(&mut self, now: Instant, direct: impl IntoIterator<Item = NodeId>) {
        self.since = Some(now);
        self.fresh = false;
        for peer in direct {
            self.peers.insert(
                peer,
                RoamPeer {
                    state: RepunchState::Probing,
                    attempts: 0,
                },
            );
        }
    }

    /// An observer reported our address.
    pub fn observed(&mut self) {
        if self.since.is_some() {
            self.fresh = true;
        }
    }

    /// Whether `peer` is being re-punched after an address change.
    pub fn is_tracked(&self, peer: &NodeId) -> bool {
        self.peers.contains_key(peer)
    }

    /// `peer`'s direct path was lost: its re-punch becomes due.
    pub fn lost(&mut self, peer: &NodeId) {
        if let Some(p) = self.peers.get_mut(peer) {
            if p.state == RepunchState::Probing {
                p.state = RepunchState::Due(None);
            }
        }
    }

    /// `peer`'s punch ended; `direct` tells how.
    pub fn settled(&mut self, now: Instant, peer: &NodeId, direct: bool) {
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        if direct || p.attempts >= self.attempts {
            self.peers.remove(peer);
        } else if p.state == RepunchState::Asked {
            p.state = RepunchState::Due(Some(now + self.retry));
        }
    }

    /// `peer` disconnected.
    pub fn forget(&mut self, peer: &NodeId) {
        self.peers.remove(peer);
    }

    fn due_at(&self, state: RepunchState) -> Option<Instant> {
        match state {
            RepunchState::Due(Some(at)) => Some(at),
            RepunchState::Due(None) if self.fresh => self.since,
            RepunchState::Due(None) => self.since.map(|s| s + self.fresh_wait),
            RepunchState::Probing | RepunchState::Asked => None,
        }
    }

    /// The peers whose re-punch is due at `now` (each is then marked as
    /// asked).
    pub fn poll_due(&mut self, now: Instant) -> Vec<NodeId> {
        let due: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| self.due_at(p.state).is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for peer in &due {
            if let Some(p) = self.peers.get_mut(peer) {
                p.state = RepunchState::Asked;
                p.attempts += 1;
            }
        }
        due
    }

    /// The next instant a re-punch is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| self.due_at(p.state))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn peer(n: u8) -> NodeId {
        SecretKey::from_bytes(&[n; 32]).node_id()
    }

    const RELAY: &str = "203.0.113.10";

    /// Samples once a second from `t0`; returns the changes by sample index.
    fn feed(
        w: &mut AddressWatch,
        t0: Instant,
        samples: &[Option<&str>],
    ) -> Vec<(usize, AddressChange)> {
        samples
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let now = t0 + Duration::from_secs(i as u64);
                w.handle_local(now, ip(RELAY), s.map(ip)).map(|c| (i, c))
            })
            .collect()
    }

    #[test]
    fn a_new_local_address_is_reported_once_confirmed() {
        let t0 = Instant::now();
        let mut w = AddressWatch::new(&RoamConfig::default());
        let a = Some("10.1.0.2");
        let b = Some("10.3.0.2");
        // Startup sets the baseline; one sample is not enough; the
        // address gone for a while (no route) is no change.
        let changes = feed(&mut w, t0, &[a, a, None, b, b, b, b]);
        assert_eq!(
            changes,
            vec![(
                4,
                AddressChange {
                    cause: RoamCause::Local,
                    old: ip("10.1.0.2"),
                    new: ip("10.3.0.2"),
                }
            )]
        );
        assert_eq!(w.local(), Some(ip("10.3.0.2")));
    }

    #[test]
    fn a_blip_and_a_return_are_no_change() {
        let t0 = Instant::now();
        let mut w = AddressWatch::new(&RoamConfig::default());
        let a = Some("10.1.0.2");
        let b = Some("10.3.0.2");
        let changes = feed(&mut w, t0, &[a, b, a, None, None, a, b, a, a]);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(w.local(), Some(ip("10.1.0.2")));
    }

    #[test]
    fn flapping_is_held_and_reported_after_the_hold() {
        let t0 = Instant::now();
        let mut w = AddressWatch::new(&RoamConfig::default());
        let a = Some("10.1.0.2");
        let b = Some("10.3.0.2");
        // a -> b at 2; back to a at 4 is within the 5 s hold (until 7):
        // reported at 7, the first sample after it.
        let changes = feed(&mut w, t0, &[a, b, b, a, a, a, a, a, a, a]);
        let at: Vec<(usize, IpAddr)> = changes.iter().map(|(i, c)| (*i, c.new)).collect();
        assert_eq!(at, vec![(2, ip("10.3.0.2")), (7, ip("10.1.0.2"))]);
    }

    #[test]
    fn another_destination_moves_the_baseline_only() {
        let t0 = Instant::now();
        let mut w = AddressWatch::new(&RoamConfig::default());
        for i in 0..3 {
            let now = t0 + Duration::from_secs(i);
            assert_eq!(w.handle_local(now, ip(RELAY), Some(ip("10.1.0.2"))), None);
        }
        for i in 3..6 {
            let now = t0 + Duration::from_secs(i);
            let other = ip("192.0.2.7");
            assert_eq!(w.handle_local(now, other, Some(ip("10.9.0.2"))), None);
        }
        assert_eq!(w.local(), Some(ip("10.9.0.2")));
    }

    #[test]
    fn observers_first_then_the_local_address_is_one_change() {
        let t0 = Instant::now();
        let mut w = AddressWatch::new(&RoamConfig::default());
        let (p0, p1) = (ip("203.0.113.10"), ip("203.0.113.11"));
        assert_eq!(w.handle_local(t0, ip(RELAY), Some(ip("10.1.0.2"))), None);
        w.handle_reflexive(t0, p0, ip("198.51.100.10"));
        w.handle_reflexive(t0, p1, ip("198.51.100.10"));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(w.handle_local(t1, ip(RELAY), None), None);
        w.handle_reflexive(t1, p0, ip("198.51.100.12"));
        let change = w.handle_reflexive(t1, p1, ip("198.51.100.12"));
        assert_eq!(change.map(|c| c.cause), Some(RoamCause::Reflexive));
        for i in 2..20 {
            let now = t0 + Duration::from_secs(i);
            assert_eq!(w.handle_local(now, ip(RELAY), Some(ip("10.3.1.2"))), None);
        }
        assert_eq!(w.local(), Some(ip("10.3.1.2")));
    }

    #[test]
    fn a_reflexive_change_needs_two_observer_ips() {
        let t0 = Instant::now();
        let mut w = AddressWatch::new(&RoamConfig::default());
        let (p0, p1) = (ip("203.0.113.10"), ip("203.0.113.11"));
        let (old, new) = (ip("198.51.100.10"), ip("198.51.100.12"));
        assert_eq!(w.handle_reflexive(t0, p0, old), None);
        assert_eq!(w.handle_reflexive(t0, p1, old), None);
        let t1 = t0 + Duration::from_secs(60);
        // One observer is not enough when two have reported.
        assert_eq!(w.handle_reflexive(t1, p0, new), None);
        // A second observer on the same IP is the same observer IP.
        assert_eq!(w.handle_reflexive(t1, p0, new), None);
        assert_eq!(
            w.handle_reflexive(t1, p1, new),
            Some(AddressChange {
                cause: RoamCause::Reflexive,
                old,
                new
            })
        );
        assert_eq!(w.reflexive(), Some(new));
        // Nothing more for the same address.
        assert_eq!(
            w.handle_reflexive(t1 + Duration::from_secs(9), p0, new),
            None
        );
    }

    #[test]
    fn with_one_observer_its_report_suffices() {
        let t0 = Instant::now();
        let mut w = AddressWatch::new(&RoamConfig::default());
        let p0 = ip("203.0.113.10");
        w.handle_reflexive(t0, p0, ip("198.51.100.10"));
        let change = w.handle_reflexive(t0 + Duration::from_secs(30), p0, ip("198.51.100.12"));
        assert_eq!(change.map(|c| c.new), Some(ip("198.51.100.12")));
    }

    #[test]
    fn a_local_change_resets_the_reflexive_baseline() {
        let t0 = Instant::now();
        let mut w = AddressWatch::new(&RoamConfig::default());
        let (p0, p1) = (ip("203.0.113.10"), ip("203.0.113.11"));
        w.handle_reflexive(t0, p0, ip("198.51.100.10"));
        w.handle_reflexive(t0, p1, ip("198.51.100.10"));
        let changes = feed(
            &mut w,
            t0,
            &[Some("10.1.0.2"), Some("10.3.0.2"), Some("10.3.0.2")],
        );
        assert_eq!(changes.len(), 1);
        // The observers' new reports are the consequence: no second change.
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(w.handle_reflexive(t1, p0, ip("198.51.100.12")), None);
        assert_eq!(w.handle_reflexive(t1, p1, ip("198.51.100.12")), None);
        assert_eq!(w.reflexive(), Some(ip("198.51.100.12")));
    }

    #[test]
    fn repunch_waits_for_a_fresh_observation_or_the_deadline() {
        let t0 = Instant::now();
        let config = RoamConfig::default();
        let mut r = Roaming::new(&config);
        r.start(t0, [peer(1), peer(2)]);
        // Nothing while the paths are being probed.
        assert_eq!(r.poll_timeout(), None);
        r.lost(&peer(1));
        assert_eq!(r.poll_timeout(), Some(t0 + config.fresh_wait));
        assert!(r.poll_due(t0 + Duration::from_secs(1)).is_empty());
        r.observed();
        assert_eq!(r.poll_due(t0 + Duration::from_secs(1)), vec![peer(1)]);
        // Asked: nothing more until its outcome.
        assert!(r.poll_due(t0 + Duration::from_secs(2)).is_empty());
        // A failure is retried after `retry`, up to `attempts` in all.
        let mut asked = 1;
        let mut now = t0 + Duration::from_secs(2);
        loop {
            r.settled(now, &peer(1), false);
            let Some(at) = r.poll_timeout() else { break };
            assert_eq!(at, now + config.retry);
            now = at;
            assert_eq!(r.poll_due(now), vec![peer(1)]);
            asked += 1;
        }
        assert_eq!(asked, config.attempts);
        assert!(!r.is_tracked(&peer(1)));
        // The other peer's path answered: never re-punched.
        assert!(r.is_tracked(&peer(2)));
        assert!(r.poll_due(now + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn repunch_without_fresh_observation_goes_at_the_deadline() {
        let t0 = Instant::now();
        let config = RoamConfig::default();
        let mut r = Roaming::new(&config);
        r.start(t0, [peer(1)]);
        r.lost(&peer(1));
        assert!(r
            .poll_due(t0 + config.fresh_wait - Duration::from_millis(1))
            .is_empty());
        assert_eq!(r.poll_due(t0 + config.fresh_wait), vec![peer(1)]);
        r.settled(t0 + config.fresh_wait, &peer(1), true);
        assert!(!r.is_tracked(&peer(1)));
    }
}
