//! Birthday-paradox probing: a direct path between a cone NAT and a
//! symmetric NAT.
//!
//! ## Why the usual punch fails
//!
//! Say C sits behind a port-restricted cone (endpoint-independent mapping,
//! address-and-port-dependent filtering) and S behind a symmetric NAT
//! (endpoint-dependent mapping: a fresh random port per destination). The
//! introducer tells S where C is (C's one mapped address `Mc`, the same for
//! every destination), and tells C where S is (the port S's NAT picked
//! towards the *introducer*, useless for anyone else). S's probes to `Mc`
//! leave from a new random port `P` that C has never sent to, so C's NAT
//! drops them; C's probes go to the introducer-facing port, which S's NAT
//! only opens for the introducer. Nobody learns `P`.
//!
//! ## The variant we use
//!
//! With RFC 4787 semantics only one arrangement helps:
//!
//! - **S (symmetric) opens many ports.** It binds `ports` extra UDP sockets
//!   (default 256) and sends one probe from each to `Mc`. Its NAT creates a
//!   mapping per socket, each with a random outside port `p_i`, each
//!   accepting replies from exactly `Mc`. C's NAT drops the probes; they
//!   only exist to open those mappings.
//! - **C (cone) probes random ports.** From its one socket (so every probe
//!   leaves from `Mc`, C's mapping being endpoint-independent) it sends
//!   probes to random ports of S's public IP. A probe to some `p_i` comes
//!   from `Mc`, so S's NAT takes it for a reply and delivers it to socket
//!   `i`; and C's NAT now lets `S_ip:p_i` in, because C has just sent
//!   there. The usual validation and nomination follow on that pair, and
//!   socket `i` carries the connection from then on.
//!
//! With `n` open ports out of a range of `r` and `k` probes the chance of
//! at least one hit is `1 - (1 - n/r)^k`: for 256 ports, 2048 probes and
//! Linux's 64512-port range that is about 99.97% (98.3% with 1024); on
//! average a hit takes `r/n` ≈ 252 probes, so the larger budget costs
//! packets only in the rare run that would have missed.
//!
//! The reverse (C opens many ports, S probes at random) does not work
//! against a port-restricted cone: each of S's probes leaves from a fresh
//! random port that C never sent to, so C's NAT drops every one. And a
//! single socket on S gives one mapping towards `Mc`, which C would have to
//! find alone (`k/r` ≈ 3.2% for 2048 probes). Symmetric x symmetric has no
//! fixed port on either side to aim at and stays relayed.
//!
//! ## When it runs
//!
//! Only when one side classified itself as symmetric and the other as cone
//! (each side learns the other's type from the introduction and `NatInfo`),
//! and only if the ordinary punch has shown no sign of life
//! `start_delay` after the fire time (a full cone or address-restricted
//! peer gets through with peer-reflexive candidates well before that). The
//! prober waits a further `ports / rate` so the other side's ports are
//! open before its first probe.
//!
//! ## Limits
//!
//! Every birthday packet, on both roles and across all peers, takes a
//! token from one node-wide bucket (`rate` packets/s, refilled smoothly;
//! packets go out in batches of at most `burst`). A run sends at most
//! `ports` packets (opening) or `probes` packets (probing), and stops
//! `max_duration` after it started; at most `max_runs` run at once. All of
//! it is off with `enabled: false` (`relay-node run --no-birthday`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, RngCore};
use relay_proto::wire::traversal::NatType;

/// Identifies one extra UDP port ("probe port") the driver opens for the
/// opening role. Ids are never reused within a core.
pub type PortId = u32;

/// Tunables of birthday probing, with documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirthdayConfig {
    /// Whether birthday probing may run at all. Default true.
    pub enabled: bool,
    /// Extra ports the symmetric side opens per run. Default 256.
    pub ports: u16,
    /// Probes the cone side sends per run at most. Default 2048.
    pub probes: u32,
    /// Node-wide rate of birthday packets, per second. Default 200.
    pub rate: u32,
    /// Largest batch sent at one wake-up. Default 10.
    pub burst: u32,
    /// Delay after the fire time before a run starts (only if the ordinary
    /// punch has seen nothing from the peer by then). Default 500 ms.
    pub start_delay: Duration,
    /// How long a run may last from its start. Default 13 s (the start
    /// delay, the opening and 2048 probes at 200/s take about 12 s).
    pub max_duration: Duration,
    /// Runs at once, node-wide. Default 2.
    pub max_runs: usize,
    /// Lowest port the cone side probes. Default 1024.
    pub port_min: u16,
    /// Highest port the cone side probes. Default 65535.
    pub port_max: u16,
}

impl Default for BirthdayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ports: 256,
            probes: 2048,
            rate: 200,
            burst: 10,
            start_delay: Duration::from_millis(500),
            max_duration: Duration::from_secs(13),
            max_runs: 2,
            port_min: 1024,
            port_max: 65535,
        }
    }
}

impl BirthdayConfig {
    /// How long opening `ports` ports takes at `rate` (what the probing
    /// side waits for before its first probe).
    pub fn open_time(&self) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(f64::from(self.ports) / f64::from(self.rate))
    }
}

/// Which half of a birthday run this node plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We are symmetric: open many ports towards the peer's one address.
    Opener,
    /// We are cone: probe random ports of the peer's public IP.
    Prober,
}

/// The role for our NAT type `ours` against the peer's `theirs`, if
/// birthday probing applies at all.
pub fn role(ours: NatType, theirs: NatType) -> Option<Role> {
    match (ours, theirs) {
        (NatType::Symmetric, NatType::Cone) => Some(Role::Opener),
        (NatType::Cone, NatType::Symmetric) => Some(Role::Prober),
        _ => None,
    }
}

/// Our role when a plain punch has failed and the NAT types do not rule
/// a direct path out (escalation): symmetric x symmetric, either side
/// open, and cone x cone get none (birthday probing cannot help them). A
/// side of unknown type is taken for the symmetric one facing a cone, and
/// for unknown x unknown the lower NodeId (`lower`) opens. Both sides
/// decide the same way from the types they told each other.
pub fn escalation_role(ours: NatType, theirs: NatType, lower: bool) -> Option<Role> {
    use NatType::{Cone, Open, Symmetric, Unknown};
    match (ours, theirs) {
        (Symmetric, Symmetric) | (Open, _) | (_, Open) | (Cone, Cone) => None,
        (Symmetric, _) | (Unknown, Cone) => Some(Role::Opener),
        (_, Symmetric) | (Cone, Unknown) => Some(Role::Prober),
        (Unknown, Unknown) => Some(if lower { Role::Opener } else { Role::Prober }),
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` banked.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: u32,
    burst: u32,
    tokens: u32,
    /// The instant the banked tokens are counted up to.
    last: Option<Instant>,
}

impl RateLimiter {
    /// A bucket that starts full.
    pub fn new(rate: u32, burst: u32) -> Self {
        let burst = burst.max(1);
        Self {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    fn per_token(&self) -> Duration {
        Duration::from_nanos(1_000_000_000 / u64::from(self.rate.max(1)))
    }

    fn refill(&mut self, now: Instant) {
        let Some(last) = self.last else {
            self.last = Some(now);
            return;
        };
        if self.rate == 0 || now <= last {
            return;
        }
        if self.tokens >= self.burst {
            self.last = Some(now);
            return;
        }
        let per = self.per_token();
        let elapsed = now - last;
        let earned = (elapsed.as_nanos() / per.as_nanos().max(1)).min(u128::from(self.burst));
        let earned = u32::try_from(earned).unwrap_or(self.burst);
        if earned == 0 {
            return;
        }
        self.tokens = (self.tokens + earned).min(self.burst);
        // Keep the fraction of a token already earned.
        self.last = Some(if self.tokens >= self.burst {
            now
        } else {
            last + per * earned
        });
    }

    /// Takes up to `want` tokens at `now`; returns how many were granted.
    pub fn take(&mut self, now: Instant, want: u32) -> u32 {
        self.refill(now);
        let granted = want.min(self.tokens);
        self.tokens -= granted;
        granted
    }

    /// When `want` tokens (capped at the burst) will be available.
    pub fn ready_at(&self, now: Instant, want: u32) -> Instant {
        let want = want.clamp(1, self.burst);
        if self.tokens >= want || (self.rate == 0 && self.tokens > 0) {
            return now;
        }
        if self.rate == 0 {
            // Never: a far deadline the run's own end will beat.
            return now + Duration::from_secs(3600);
        }
        let last = self.last.unwrap_or(now);
        (last + self.per_token() * (want - self.tokens)).max(now)
    }
}

/// One birthday packet to send: a probe to `addr`, from probe port
/// `port` (opening role) or from our own socket (`None`, probing role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BirthdayOut {
    /// The extra port to send from, if any.
    pub port: Option<PortId>,
    /// Destination.
    pub addr: SocketAddr,
}

/// One run towards one peer. Sans-IO: the agent calls
/// [`BirthdayRun::handle_timeout`] with the node-wide limiter.
#[derive(Debug, Clone)]
pub struct BirthdayRun {
    role: Role,
    start: Instant,
    started: bool,
    /// The prober's first probe (start + the opener's opening time).
    probe_from: Instant,
    deadline: Instant,
    /// Opener: the peer's address; prober: any address on the peer's IP.
    target: Option<SocketAddr>,
    first_port: PortId,
    ports: u16,
    opened: u16,
    probes: u32,
    tried: BTreeSet<u16>,
    port_min: u16,
    port_max: u16,
    burst: u32,
    sent: u32,
    cancelled: bool,
}

impl BirthdayRun {
    /// A run for `role` that starts at `start` (fire time + delay).
    /// `first_port` is the first of the `config.ports` probe port ids
    /// reserved for it (opener only).
    pub fn new(role: Role, start: Instant, first_port: PortId, config: &BirthdayConfig) -> Self {
        let probe_from = match role {
            Role::Opener => start,
            Role::Prober => start + config.open_time(),
        };
        Self {
            role,
            start,
            started: false,
            probe_from,
            deadline: start + config.max_duration,
            target: None,
            first_port,
            ports: config.ports,
            opened: 0,
            probes: config.probes,
            tried: BTreeSet::new(),
            port_min: config.port_min.min(config.port_max),
            port_max: config.port_max.max(config.port_min),
            burst: config.burst.max(1),
            sent: 0,
            cancelled: false,
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// When the run starts.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Whether it has started (and was not cancelled before).
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether it was cancelled at its start (the ordinary punch was
    /// making progress, or there was nothing to aim at).
    pub fn cancelled(&self) -> bool {
        self.cancelled
    }

    /// When it gives up sending.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Birthday packets sent so far.
    pub fn sent(&self) -> u32 {
        self.sent
    }

    /// The probe port ids this run may use (opener: `ports` of them;
    /// prober: none).
    pub fn port_ids(&self) -> std::ops::Range<PortId> {
        match self.role {
            Role::Opener => self.first_port..self.first_port + PortId::from(self.ports),
            Role::Prober => self.first_port..self.first_port,
        }
    }

    /// Whether `port` belongs to this run.
    pub fn owns_port(&self, port: PortId) -> bool {
        self.port_ids().contains(&port)
    }

    /// Starts the run aimed at `target`, or cancels it (`None`).
    pub fn begin(&mut self, target: Option<SocketAddr>) {
        self.started = true;
        match target {
            Some(t) => self.target = Some(t),
            None => self.cancelled = true,
        }
    }

    fn remaining(&self) -> u32 {
        match self.role {
            Role::Opener => u32::from(self.ports - self.opened),
            Role::Prober => {
                let range = u32::from(self.port_max - self.port_min) + 1;
                self.probes
                    .saturating_sub(self.sent)
                    .min(range.saturating_sub(self.tried.len() as u32))
            }
        }
    }

    /// Whether the run has nothing more to send.
    pub fn exhausted(&self, now: Instant) -> bool {
        self.cancelled || (self.started && (self.remaining() == 0 || now >= self.deadline))
    }

    /// The next instant the run has work, given the node-wide `limiter`.
    /// Before it started: its start.
    pub fn poll_timeout(&self, now: Instant, limiter: &RateLimiter) -> Option<Instant> {
        if !self.started {
            return Some(self.start);
        }
        if self.exhausted(now) {
            return None;
        }
        let ready = limiter.ready_at(now, self.remaining().min(self.burst));
        Some(ready.max(self.probe_from).min(self.deadline))
    }

    /// Sends what the limiter allows at `now` into `out`.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        limiter: &mut RateLimiter,
        rng: &mut dyn RngCore,
        out: &mut Vec<BirthdayOut>,
    ) {
        if !self.started || self.exhausted(now) || now < self.probe_from {
            return;
        }
        let Some(target) = self.target else {
            return;
        };
        let want = self.remaining().min(self.burst);
        let granted = limiter.take(now, want);
        for _ in 0..granted {
            match self.role {
                Role::Opener => {
                    let port = self.first_port + PortId::from(self.opened);
                    self.opened += 1;
                    out.push(BirthdayOut {
                        port: Some(port),
                        addr: target,
                    });
                }
                Role::Prober => {
                    let Some(port) = self.pick_port(rng) else {
                        break;
                    };
                    out.push(BirthdayOut {
                        port: None,
                        addr: SocketAddr::new(target.ip(), port),
                    });
                }
            }
            self.sent += 1;
        }
    }

    /// A random port not tried yet.
    fn pick_port(&mut self, rng: &mut dyn RngCore) -> Option<u16> {
        let range = u32::from(self.port_max - self.port_min) + 1;
        if self.tried.len() as u32 >= range {
            return None;
        }
        loop {
            let port = rng.gen_range(self.port_min..=self.port_max);
            if self.tried.insert(port) {
                return Some(port);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalation_roles_complement_each_other() {
        use NatType::{Cone, Open, Symmetric, Unknown};
        for (a, b) in [
            (Symmetric, Cone),
            (Symmetric, Unknown),
            (Unknown, Cone),
            (Unknown, Unknown),
        ] {
            // Each side decides from its own view: ours x theirs.
            let ra = escalation_role(a, b, true);
            let rb = escalation_role(b, a, false);
            assert_eq!(ra, Some(Role::Opener), "{a} x {b}");
            assert_eq!(rb, Some(Role::Prober), "{b} x {a}");
        }
        assert_eq!(escalation_role(Unknown, Unknown, false), Some(Role::Prober));
        for (a, b) in [
            (Symmetric, Symmetric),
            (Open, Unknown),
            (Unknown, Open),
            (Cone, Cone),
        ] {
            assert_eq!(escalation_role(a, b, true), None, "{a} x {b}");
            assert_eq!(escalation_role(b, a, false), None, "{b} x {a}");
        }
    }
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn roles() {
        use NatType::*;
        assert_eq!(role(Symmetric, Cone), Some(Role::Opener));
        assert_eq!(role(Cone, Symmetric), Some(Role::Prober));
        for (a, b) in [
            (Symmetric, Symmetric),
            (Cone, Cone),
            (Open, Symmetric),
            (Symmetric, Open),
            (Unknown, Symmetric),
            (Symmetric, Unknown),
        ] {
            assert_eq!(role(a, b), None, "{a} x {b}");
        }
    }

    #[test]
    fn limiter_holds_the_rate() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(100, 10);
        // Starts full: one burst at once, then nothing.
        assert_eq!(l.take(t0, 50), 10);
        assert_eq!(l.take(t0, 50), 0);
        assert_eq!(l.ready_at(t0, 10), t0 + ms(100));
        assert_eq!(l.ready_at(t0, 1), t0 + ms(10));
        // 55 ms earn 5 tokens; the half token is kept.
        assert_eq!(l.take(t0 + ms(55), 50), 5);
        assert_eq!(l.take(t0 + ms(60), 50), 1);
        // Over 10 s, never more than rate * time + burst.
        let mut total = 0;
        let mut now = t0 + ms(60);
        for _ in 0..1000 {
            now += ms(10);
            total += l.take(now, 1000);
        }
        assert_eq!(total, 1000);
        // A long pause banks only a burst.
        assert_eq!(l.take(now + Duration::from_secs(60), 1000), 10);
    }

    #[test]
    fn opener_opens_each_port_once_at_the_rate() {
        let t0 = Instant::now();
        let config = BirthdayConfig {
            ports: 32,
            rate: 100,
            burst: 8,
            ..BirthdayConfig::default()
        };
        let mut limiter = RateLimiter::new(config.rate, config.burst);
        let mut rng = StdRng::seed_from_u64(1);
        let mut run = BirthdayRun::new(Role::Opener, t0, 100, &config);
        assert_eq!(run.poll_timeout(t0, &limiter), Some(t0));
        let peer: SocketAddr = "203.0.113.2:40000".parse().unwrap();
        run.begin(Some(peer));
        let mut out = Vec::new();
        let mut now = t0;
        while let Some(at) = run.poll_timeout(now, &limiter) {
            now = at;
            run.handle_timeout(now, &mut limiter, &mut rng, &mut out);
        }
        let ports: Vec<PortId> = out.iter().filter_map(|o| o.port).collect();
        assert_eq!(ports, (100..132).collect::<Vec<_>>());
        assert!(out.iter().all(|o| o.addr == peer));
        assert_eq!(run.sent(), 32);
        // 32 packets at 100/s with a burst of 8 take 240 ms.
        assert_eq!(now, t0 + ms(240));
        assert!(run.owns_port(131) && !run.owns_port(132));
    }

    #[test]
    fn prober_waits_for_the_ports_then_sprays_distinct_ports_within_budget() {
        let t0 = Instant::now();
        let config = BirthdayConfig {
            ports: 50,
            probes: 300,
            rate: 100,
            burst: 10,
            max_duration: Duration::from_secs(60),
            port_min: 1000,
            port_max: 1199,
            ..BirthdayConfig::default()
        };
        let mut limiter = RateLimiter::new(config.rate, config.burst);
        let mut rng = StdRng::seed_from_u64(2);
        let mut run = BirthdayRun::new(Role::Prober, t0, 0, &config);
        assert!(run.port_ids().is_empty());
        run.begin(Some("203.0.113.9:5555".parse().unwrap()));
        let mut out = Vec::new();
        let mut now = t0;
        // Nothing before the opener's ports are open (50 at 100/s).
        run.handle_timeout(now, &mut limiter, &mut rng, &mut out);
        assert!(out.is_empty());
        assert_eq!(run.poll_timeout(now, &limiter), Some(t0 + ms(500)));
        while let Some(at) = run.poll_timeout(now, &limiter) {
            now = at;
            run.handle_timeout(now, &mut limiter, &mut rng, &mut out);
        }
        // The range holds only 200 ports: each is probed once, then stop.
        let ports: BTreeSet<u16> = out.iter().map(|o| o.addr.port()).collect();
        assert_eq!(out.len(), 200);
        assert_eq!(ports.len(), 200);
        assert!(out.iter().all(|o| o.port.is_none()));
        assert_eq!(now, t0 + ms(500) + ms(1900));
    }

    #[test]
    fn a_run_stops_at_its_deadline_and_a_cancelled_one_sends_nothing() {
        let t0 = Instant::now();
        let config = BirthdayConfig {
            rate: 10,
            burst: 1,
            max_duration: Duration::from_secs(2),
            ports: 0,
            ..BirthdayConfig::default()
        };
        let mut limiter = RateLimiter::new(config.rate, config.burst);
        let mut rng = StdRng::seed_from_u64(3);
        let mut run = BirthdayRun::new(Role::Prober, t0, 0, &config);
        run.begin(Some("203.0.113.9:5555".parse().unwrap()));
        let mut out = Vec::new();
        let mut now = t0;
        while let Some(at) = run.poll_timeout(now, &limiter) {
            now = at;
            run.handle_timeout(now, &mut limiter, &mut rng, &mut out);
        }
        // 10/s for 2 s (the first token at once, the last at the deadline
        // is not sent).
        assert_eq!(out.len(), 20);
        assert!(now <= t0 + Duration::from_secs(2));

        let mut cancelled = BirthdayRun::new(Role::Opener, t0, 0, &config);
        cancelled.begin(None);
        assert!(cancelled.cancelled());
        assert_eq!(cancelled.poll_timeout(t0, &limiter), None);
        cancelled.handle_timeout(t0, &mut limiter, &mut rng, &mut out);
        assert_eq!(out.len(), 20);
    }

    #[test]
    fn runs_share_one_limiter() {
        let t0 = Instant::now();
        let config = BirthdayConfig {
            ports: 100,
            rate: 50,
            burst: 5,
            ..BirthdayConfig::default()
        };
        let mut limiter = RateLimiter::new(config.rate, config.burst);
        let mut rng = StdRng::seed_from_u64(4);
        let peer: SocketAddr = "203.0.113.2:4000".parse().unwrap();
        let mut a = BirthdayRun::new(Role::Opener, t0, 0, &config);
        let mut b = BirthdayRun::new(Role::Opener, t0, 100, &config);
        a.begin(Some(peer));
        b.begin(Some(peer));
        let mut out = Vec::new();
        let mut now = t0;
        while now <= t0 + Duration::from_secs(1) {
            a.handle_timeout(now, &mut limiter, &mut rng, &mut out);
            b.handle_timeout(now, &mut limiter, &mut rng, &mut out);
            now += ms(10);
        }
        // One second at 50/s plus the initial burst, split between both.
        assert_eq!(out.len(), 55);
    }
}
