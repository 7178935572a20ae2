//! Unit tests of binding-lifetime measurement on simulated time: a small
//! model of one NAT (bindings expire `lifetime` after the last outbound
//! packet) and an observer `rtt / 2` away.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::SeedableRng;
use relay_proto::SecretKey;

use super::*;

fn id(n: u8) -> NodeId {
    SecretKey::from_bytes(&[n; 32]).node_id()
}

const OBSERVER_ADDR: &str = "198.51.100.1:7000";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[derive(Debug)]
enum Delivery {
    Reply { port: PortId, tx: [u8; TX_LEN] },
    CheckProbe { port: PortId, tx: [u8; TX_LEN] },
}

struct Harness {
    p: LifetimeProbe,
    t0: Instant,
    now: Instant,
    rng: StdRng,
    /// `None`: no NAT binding ever expires.
    lifetime: Option<Duration>,
    rtt: Duration,
    last_out: BTreeMap<PortId, Instant>,
    queue: BTreeMap<(Instant, u64), Delivery>,
    seq: u64,
    released: Vec<PortId>,
    opened: BTreeSet<PortId>,
    opens: u32,
    checks: u32,
    drop_opens: u32,
    drop_checks: u32,
    answer_checks: bool,
}

fn mapped(port: PortId) -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 9], 30_000 + port as u16))
}

fn observer() -> Observer {
    Observer {
        node: id(2),
        addr: OBSERVER_ADDR.parse().unwrap(),
        rtt: Duration::from_millis(80),
    }
}

impl Harness {
    fn new(lifetime: Option<Duration>) -> Self {
        let t0 = Instant::now();
        Self {
            p: LifetimeProbe::new(LifetimeConfig::default(), secs(3)),
            t0,
            now: t0,
            rng: StdRng::seed_from_u64(5),
            lifetime,
            rtt: Duration::from_millis(80),
            last_out: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            released: Vec::new(),
            opened: BTreeSet::new(),
            opens: 0,
            checks: 0,
            drop_opens: 0,
            drop_checks: 0,
            answer_checks: true,
        }
    }

    fn push(&mut self, at: Instant, d: Delivery) {
        self.seq += 1;
        self.queue.insert((at, self.seq), d);
    }

    fn apply(&mut self, out: Vec<LifetimeOut>) {
        for o in out {
            match o {
                LifetimeOut::Open { port, dst, tx } => {
                    assert_eq!(dst, observer().addr);
                    self.opens += 1;
                    self.opened.insert(port);
                    self.last_out.insert(port, self.now);
                    if self.drop_opens > 0 {
                        self.drop_opens -= 1;
                        continue;
                    }
                    self.push(self.now + self.rtt, Delivery::Reply { port, tx });
                }
                LifetimeOut::Check { to, tx, addr } => {
                    assert_eq!(to, id(2));
                    self.checks += 1;
                    if self.drop_checks > 0 {
                        self.drop_checks -= 1;
                        continue;
                    }
                    if !self.answer_checks {
                        continue;
                    }
                    let port = PortId::from(addr.port() - 30_000);
                    // The probe reaches our NAT one RTT later.
                    let arrives = self.now + self.rtt;
                    let alive = match (self.lifetime, self.last_out.get(&port)) {
                        (None, Some(_)) => true,
                        (Some(l), Some(out)) => arrives.duration_since(*out) < l,
                        _ => false,
                    };
                    if alive {
                        self.push(arrives, Delivery::CheckProbe { port, tx });
                    }
                }
                LifetimeOut::Release(ports) => {
                    for port in ports {
                        assert!(!self.released.contains(&port), "port {port} released twice");
                        self.released.push(port);
                    }
                }
            }
        }
    }

    fn start(&mut self) {
        let mut out = Vec::new();
        self.p
            .start(self.now, observer(), 100, &mut self.rng, &mut out);
        self.apply(out);
    }

    fn deliver(&mut self, d: Delivery) -> bool {
        let mut out = Vec::new();
        let src: SocketAddr = OBSERVER_ADDR.parse().unwrap();
        let owned = match d {
            Delivery::Reply { port, tx } => self.p.handle_port_frame(
                self.now,
                port,
                &id(2),
                src,
                true,
                &tx,
                mapped(port),
                &mut out,
            ),
            Delivery::CheckProbe { port, tx } => self.p.handle_port_frame(
                self.now,
                port,
                &id(2),
                src,
                false,
                &tx,
                mapped(port),
                &mut out,
            ),
        };
        self.apply(out);
        owned
    }

    /// Runs until the measurement ends (or `limit` of simulated time).
    fn run(&mut self, limit: Duration) {
        while self.p.is_running() && self.now - self.t0 < limit {
            let next_packet = self.queue.keys().next().map(|(t, _)| *t);
            let next = match (next_packet, self.p.poll_timeout()) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).expect("a running measurement has a timer"),
            };
            self.now = self.now.max(next);
            if next_packet.is_some_and(|t| t <= self.now) {
                let (_, d) = self.queue.pop_first().unwrap();
                self.deliver(d);
                continue;
            }
            let mut out = Vec::new();
            self.p.handle_timeout(self.now, &mut out);
            self.apply(out);
        }
    }

    fn all_opened_released(&self) -> bool {
        let released: BTreeSet<PortId> = self.released.iter().copied().collect();
        released == self.opened
    }
}

#[test]
fn ladder_brackets_the_lifetime_and_stops_at_the_first_dead_rung() {
    let mut h = Harness::new(Some(secs(5)));
    h.start();
    assert_eq!(h.p.report().state, LifetimeState::Measuring);
    // Only the pilot opens first.
    assert_eq!(h.opened, BTreeSet::from([100]));
    h.run(secs(600));
    let r = h.p.report();
    assert_eq!(r.state, LifetimeState::Measured);
    assert_eq!(r.lower, Some(secs(4)));
    assert_eq!(r.upper, Some(secs(8)));
    assert_eq!(r.observer, Some(id(2)));
    assert_eq!(r.measurements, 1);
    assert_eq!(h.p.keepalive(), secs(2));
    // Pilot plus 7 rungs, each opened once, each released once.
    assert_eq!(h.opened.len(), 8);
    assert_eq!(h.opens, 8);
    assert!(h.all_opened_released());
    // Pilot, 2 s, 4 s: one check each; 8 s: the check and its resend.
    assert_eq!(h.checks, 5);
    // Done at about 8 s + the wait for the resend, not 128 s.
    assert!(h.now - h.t0 < secs(15), "{:?}", h.now - h.t0);
    // The next measurement is due in 30 min.
    assert_eq!(h.p.poll_timeout(), Some(h.now + secs(30 * 60)));
}

#[test]
fn no_expiry_means_every_rung_alive_and_keepalive_at_the_cap() {
    let mut h = Harness::new(None);
    h.start();
    h.run(secs(600));
    let r = h.p.report();
    assert_eq!(r.state, LifetimeState::Measured);
    assert_eq!(r.lower, Some(secs(128)));
    assert_eq!(r.upper, None);
    assert_eq!(h.p.keepalive(), secs(10));
    assert!(h.all_opened_released());
    assert_eq!(h.checks, 8);
}

#[test]
fn a_binding_shorter_than_the_first_rung_gives_the_minimum_keepalive() {
    let mut h = Harness::new(Some(Duration::from_millis(1500)));
    h.start();
    h.run(secs(600));
    let r = h.p.report();
    assert_eq!((r.lower, r.upper), (Some(Duration::ZERO), Some(secs(2))));
    assert_eq!(h.p.keepalive(), secs(1));
    assert!(h.all_opened_released());
}

#[test]
fn a_lost_check_is_resent_once() {
    let mut h = Harness::new(Some(secs(5)));
    // The pilot's first check is lost; its resend is answered.
    h.drop_checks = 1;
    h.start();
    h.run(secs(600));
    assert_eq!(h.p.report().state, LifetimeState::Measured);
    assert_eq!(h.p.report().lower, Some(secs(4)));
    assert_eq!(h.checks, 6);
}

#[test]
fn an_observer_that_ignores_checks_makes_it_unavailable_after_the_pilot() {
    let mut h = Harness::new(Some(secs(5)));
    h.answer_checks = false;
    h.start();
    h.run(secs(600));
    let r = h.p.report();
    assert_eq!(r.state, LifetimeState::Unavailable);
    assert!(r
        .error
        .as_deref()
        .unwrap()
        .contains("did not answer a binding check"));
    assert_eq!(r.lower, None);
    // Only the pilot port was spent, and released.
    assert_eq!(h.opened, BTreeSet::from([100]));
    assert_eq!(h.checks, 2);
    assert!(h.all_opened_released());
    // The default keepalive holds; a retry comes after 60 s.
    assert_eq!(h.p.keepalive(), secs(3));
    assert!(!h.p.has_result());
    assert_eq!(h.p.poll_timeout(), Some(h.now + secs(60)));
}

#[test]
fn opening_probes_are_resent_then_give_up() {
    let mut h = Harness::new(Some(secs(5)));
    h.drop_opens = 2;
    h.start();
    h.run(secs(600));
    // Two opening probes lost, the third answered: measured all the same.
    assert_eq!(h.p.report().state, LifetimeState::Measured);
    assert_eq!(h.opens, 10);

    let mut h = Harness::new(Some(secs(5)));
    h.drop_opens = 3;
    h.start();
    h.run(secs(600));
    let r = h.p.report();
    assert_eq!(r.state, LifetimeState::Unavailable);
    assert!(r.error.as_deref().unwrap().contains("opening probes"));
    assert_eq!(h.opens, 3);
    assert!(h.all_opened_released());
}

#[test]
fn frames_from_elsewhere_or_with_wrong_ids_do_not_count() {
    let mut h = Harness::new(Some(secs(5)));
    h.start();
    let mut out = Vec::new();
    let src: SocketAddr = OBSERVER_ADDR.parse().unwrap();
    let other: SocketAddr = "198.51.100.9:7000".parse().unwrap();
    // Another sender, another source address, a port it does not own.
    assert!(!h.p.handle_port_frame(
        h.now,
        100,
        &id(3),
        src,
        true,
        &[0; TX_LEN],
        mapped(100),
        &mut out
    ));
    assert!(!h.p.handle_port_frame(
        h.now,
        100,
        &id(2),
        other,
        true,
        &[0; TX_LEN],
        mapped(100),
        &mut out
    ));
    assert!(!h.p.handle_port_frame(
        h.now,
        999,
        &id(2),
        src,
        true,
        &[0; TX_LEN],
        mapped(100),
        &mut out
    ));
    // A reply with the wrong transaction id opens nothing.
    assert!(h.p.handle_port_frame(
        h.now,
        100,
        &id(2),
        src,
        true,
        &[0; TX_LEN],
        mapped(100),
        &mut out
    ));
    assert!(out.iter().all(|o| !matches!(o, LifetimeOut::Check { .. })));
    // A check probe before any check was sent counts for nothing.
    assert!(h.p.handle_port_frame(
        h.now,
        100,
        &id(2),
        src,
        false,
        &[0; TX_LEN],
        mapped(100),
        &mut out
    ));
    assert!(h.p.is_running());
    assert!(h.p.report().lower.is_none());
}

#[test]
fn losing_the_observer_releases_the_ports() {
    let mut h = Harness::new(Some(secs(5)));
    h.start();
    h.run(secs(3));
    assert!(h.p.is_running());
    assert!(h.opened.len() > 1);
    let mut out = Vec::new();
    h.p.observer_lost(h.now, &id(2), &mut out);
    h.apply(out);
    assert!(!h.p.is_running());
    assert!(h.all_opened_released());
    let r = h.p.report();
    assert_eq!(r.state, LifetimeState::Unavailable);
    assert!(r.error.unwrap().contains("went away"));
}

#[test]
fn open_nat_needs_no_measurement_and_a_change_measures_again() {
    let t0 = Instant::now();
    let mut p = LifetimeProbe::new(LifetimeConfig::default(), secs(3));
    p.observer_available(t0);
    assert_eq!(p.poll_timeout(), Some(t0 + secs(5)));
    let mut out = Vec::new();
    p.nat_changed(t0, true, &mut out);
    assert_eq!(p.report().state, LifetimeState::NotNeeded);
    assert_eq!(p.keepalive(), secs(10));
    assert!(p.has_result());
    assert_eq!(p.poll_timeout(), None);
    p.observer_available(t0);
    assert!(!p.due(t0 + secs(60)));
    // Behind a NAT again: measure after the start delay.
    p.nat_changed(t0 + secs(1), false, &mut out);
    assert_eq!(p.report().state, LifetimeState::Pending);
    assert!(p.due(t0 + secs(6)));
    assert_eq!(p.keepalive(), secs(3));
    assert!(out.is_empty());
}

#[test]
fn disabled_never_measures() {
    let t0 = Instant::now();
    let config = LifetimeConfig {
        enabled: false,
        ..LifetimeConfig::default()
    };
    let mut p = LifetimeProbe::new(config, secs(3));
    p.observer_available(t0);
    assert!(!p.due(t0 + secs(3600)));
    assert_eq!(p.poll_timeout(), None);
    assert_eq!(p.report().state, LifetimeState::Disabled);
    assert_eq!(p.keepalive(), secs(3));
}

#[test]
fn keepalive_is_half_the_lower_bound_within_limits() {
    let (min, max) = (secs(1), secs(10));
    assert_eq!(keepalive_for(secs(4), min, max), secs(2));
    assert_eq!(keepalive_for(Duration::ZERO, min, max), secs(1));
    assert_eq!(keepalive_for(secs(128), min, max), secs(10));
    assert_eq!(keepalive_for(secs(16), min, max), secs(8));
}

#[test]
fn check_budget_is_per_peer_and_refills() {
    let t0 = Instant::now();
    let mut b = CheckBudget::new(3, secs(5));
    for _ in 0..3 {
        assert!(b.allow(t0, id(1)));
    }
    assert!(!b.allow(t0, id(1)));
    // Another peer has its own bucket.
    assert!(b.allow(t0, id(2)));
    // One credit back after 5 s.
    assert!(b.allow(t0 + secs(5), id(1)));
    assert!(!b.allow(t0 + secs(5), id(1)));
    b.forget(&id(1));
    assert_eq!(b.len(), 1);
}

// ---- the observer's side, through the agent ----------------------------

mod observer_side {
    use super::*;
    use crate::traversal::{
        ConnectionInfo, ProbeKey, Traversal, TraversalConfig, TraversalMsg, TraversalTransmit,
    };
    use relay_proto::wire::probe::{ProbeFrame, ProbeKind, FLAG_BINDING, PROBE_LEN, TAG_LEN};

    const KEY: [u8; 32] = [42; 32];

    fn observer_core(now: Instant, requester_at: Option<SocketAddr>) -> Traversal {
        let mut core = Traversal::new(id(2), TraversalConfig::default(), [2; 32]);
        core.handle_connection(
            now,
            id(1),
            ConnectionInfo {
                probe_key: KEY,
                observed: requester_at,
                rtt: Duration::from_millis(80),
            },
        );
        while core.poll_transmit().is_some() {}
        core
    }

    fn frames(core: &mut Traversal) -> Vec<(SocketAddr, ProbeFrame)> {
        std::iter::from_fn(|| core.poll_transmit())
            .filter_map(|t| match t {
                TraversalTransmit::Frame { dst, data } => {
                    let bytes: [u8; PROBE_LEN] = data.as_slice().try_into().ok()?;
                    assert!(ProbeKey::new(&KEY).verify(&bytes));
                    Some((dst, ProbeFrame::parse(&bytes).ok()?))
                }
                _ => None,
            })
            .collect()
    }

    fn check(addr: &str) -> TraversalMsg {
        TraversalMsg::BindingCheck {
            tx: [7; TX_LEN],
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn answers_a_check_on_the_observed_ip_with_one_probe() {
        let now = Instant::now();
        let mut core = observer_core(now, Some("203.0.113.9:5000".parse().unwrap()));
        core.handle_control(now, id(1), check("203.0.113.9:31000"));
        let sent = frames(&mut core);
        assert_eq!(sent.len(), 1);
        let (dst, frame) = sent[0];
        assert_eq!(dst, "203.0.113.9:31000".parse().unwrap());
        assert_eq!(frame.kind, ProbeKind::Probe);
        assert_eq!(frame.flags, FLAG_BINDING);
        assert_eq!(frame.tx, [7; TX_LEN]);
        assert_eq!(frame.sender, *id(2).as_bytes());
        assert_eq!(core.stats().binding_checks_answered, 1);
    }

    #[test]
    fn refuses_other_ips_relayed_peers_and_strangers() {
        let now = Instant::now();
        let mut core = observer_core(now, Some("203.0.113.9:5000".parse().unwrap()));
        // Anti-reflection: another IP gets nothing.
        core.handle_control(now, id(1), check("198.51.100.50:31000"));
        assert!(frames(&mut core).is_empty());
        assert_eq!(core.stats().binding_checks_refused, 1);
        // A peer not connected to us is not even counted.
        core.handle_control(now, id(3), check("203.0.113.9:31000"));
        assert!(frames(&mut core).is_empty());
        // A relayed peer: no observed IP, nothing to answer on.
        let mut relayed = observer_core(now, None);
        relayed.handle_control(now, id(1), check("203.0.113.9:31000"));
        assert!(frames(&mut relayed).is_empty());
        assert_eq!(relayed.stats().binding_checks_refused, 1);
    }

    #[test]
    fn checks_are_budgeted_per_peer() {
        let now = Instant::now();
        let mut core = observer_core(now, Some("203.0.113.9:5000".parse().unwrap()));
        let burst = LifetimeConfig::default().check_burst;
        for _ in 0..burst + 10 {
            core.handle_control(now, id(1), check("203.0.113.9:31000"));
        }
        assert_eq!(frames(&mut core).len(), burst as usize);
        assert_eq!(core.stats().binding_checks_refused, 10);
        // Credit comes back with time.
        let later = now + LifetimeConfig::default().check_refill;
        core.handle_control(later, id(1), check("203.0.113.9:31000"));
        assert_eq!(frames(&mut core).len(), 1);
    }

    #[test]
    fn a_binding_probe_gets_a_reply_and_starts_nothing() {
        let now = Instant::now();
        let mut core = observer_core(now, Some("203.0.113.9:5000".parse().unwrap()));
        let probe = ProbeFrame {
            kind: ProbeKind::Probe,
            flags: FLAG_BINDING,
            tx: [3; TX_LEN],
            sender: *id(1).as_bytes(),
            addr: "198.51.100.2:7000".parse().unwrap(),
            tag: [0; TAG_LEN],
        };
        let bytes = ProbeKey::new(&KEY).seal(&probe).unwrap();
        let src: SocketAddr = "203.0.113.9:31001".parse().unwrap();
        assert!(core.handle_frame(now, src, &bytes));
        let sent = frames(&mut core);
        assert_eq!(sent.len(), 1);
        let (dst, reply) = sent[0];
        assert_eq!(dst, src);
        assert_eq!(reply.kind, ProbeKind::Reply);
        assert_eq!(reply.flags, FLAG_BINDING);
        assert_eq!(reply.addr, src);
        assert_eq!(reply.tx, [3; TX_LEN]);
        // No punch session, no control message, nothing pending.
        assert!(!core.is_punching(&id(1)));
        assert_eq!(core.stats().punches_attempted, 0);
        assert!(core.poll_transmit().is_none());
    }
}
