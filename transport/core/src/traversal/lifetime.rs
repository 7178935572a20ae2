//! Measuring how long our NAT keeps an idle UDP binding, and the keepalive
//! interval that follows from it.
//!
//! ## The measurement
//!
//! In the spirit of RFC 5780's binding-lifetime test, with an *observer*:
//! a peer we reach directly (preferably one that reports an open NAT, such
//! as a public relay) and share a probe key with.
//!
//! 1. **Pilot.** One fresh probe port sends a probe (flag `BINDING`) to the
//!    observer's address. The observer replies to where it saw it from,
//!    which tells us the port's mapped address `M`. At once we send the
//!    observer a [`BindingCheck`](relay_proto::wire::traversal::TraversalMsg::BindingCheck) asking for one probe from
//!    its main socket to `M`. If it arrives on the port, the observer
//!    answers checks and reaches fresh ports; otherwise the measurement is
//!    `unavailable` (an observer behind a filtering NAT, or an old node).
//! 2. **Ladder.** One fresh port per rung `T_i` (default 2, 4, ... 128 s)
//!    does the same opening exchange, then stays silent. At `T_i` after its
//!    reply arrived we send the check for its `M_i`. The observer's probe
//!    comes from the very address the port talked to, so a filtering NAT
//!    lets it through exactly when the binding is still alive. Arrival
//!    within the wait (a second plus two RTTs, one resend of the unreliable
//!    check) means the binding lived at least `T_i`; otherwise it died.
//!    Each port serves once, because a received packet refreshes its
//!    binding, and is released as soon as its rung is decided.
//! 3. **Result.** `lower` is the largest `T_i` alive with every smaller
//!    rung alive; `upper` the smallest dead rung (none when all lived).
//!    The ladder stops at the first dead rung.
//!
//! The idle time really tested is `T_i` plus about one RTT (the check and
//! the probe still have to travel), so `lower` errs on the short side.
//!
//! ## Keepalives
//!
//! [`keepalive_for`]: half the lower bound, clamped to
//! `keepalive_min..=keepalive_max` (1 s to a third of the connection idle
//! timeout in the transport, so dead-path detection stays inside it).
//! With our NAT open there is nothing to keep alive: `keepalive_max`.
//! Before any result: the configured default.
//!
//! ## The observer's side
//!
//! [`CheckBudget`] and `Traversal`'s handler answer a check only from a
//! connected peer, only towards the IP it observes that peer at (a check
//! cannot aim probes at a third party) and within a per-peer token bucket.
//! The probe it sends is the ordinary 81-byte probe.
//!
//! Sans-IO: inputs are `handle_*` calls with a `now`, outputs go into a
//! `Vec<LifetimeOut>`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngCore;
use relay_proto::wire::probe::TX_LEN;
use relay_proto::NodeId;

use super::birthday::PortId;

/// Tunables of binding-lifetime measurement (`TraversalConfig::lifetime`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifetimeConfig {
    /// Whether we measure at all (the observer side always answers within
    /// its budget). Default true.
    pub enabled: bool,
    /// Idle durations tested, ascending. Default 2, 4, 8, 16, 32, 64,
    /// 128 s.
    pub ladder: Vec<Duration>,
    /// How long after a measurement the next one starts. Default 30 min.
    pub remeasure: Duration,
    /// Delay from an observer becoming available (or our NAT changing) to
    /// the start, so classification can settle. Default 5 s.
    pub start_delay: Duration,
    /// Opening probes per port before it counts as unanswered. Default 3.
    pub open_attempts: u32,
    /// Spacing of opening probes. Default 1 s.
    pub open_retry: Duration,
    /// Base wait for a check's probe (two RTTs are added). Default 1 s.
    pub check_wait: Duration,
    /// Checks sent per rung (the first and its resends). Default 2.
    pub check_attempts: u32,
    /// First delay before trying again after an unavailable result
    /// (doubling up to `remeasure`). Default 60 s.
    pub retry: Duration,
    /// Shortest keepalive interval derived. Default 1 s.
    pub keepalive_min: Duration,
    /// Longest keepalive interval derived. Default 10 s (the transport
    /// sets a third of the connection idle timeout).
    pub keepalive_max: Duration,
    /// Observer side: checks a peer may burst. Default 24.
    pub check_burst: u32,
    /// Observer side: one check credit comes back per this period.
    /// Default 5 s.
    pub check_refill: Duration,
}

impl Default for LifetimeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ladder: [2u64, 4, 8, 16, 32, 64, 128]
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            remeasure: Duration::from_secs(30 * 60),
            start_delay: Duration::from_secs(5),
            open_attempts: 3,
            open_retry: Duration::from_secs(1),
            check_wait: Duration::from_secs(1),
            check_attempts: 2,
            retry: Duration::from_secs(60),
            keepalive_min: Duration::from_secs(1),
            keepalive_max: Duration::from_secs(10),
            check_burst: 24,
            check_refill: Duration::from_secs(5),
        }
    }
}

impl LifetimeConfig {
    /// Probe ports one measurement uses at most: the pilot and one per rung.
    pub fn ports_per_measurement(&self) -> usize {
        self.ladder.len() + 1
    }
}

/// The keepalive interval for a binding known to live at least `lower`.
pub fn keepalive_for(lower: Duration, min: Duration, max: Duration) -> Duration {
    (lower / 2).clamp(min, max.max(min))
}

/// Where the measurement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LifetimeState {
    /// Turned off in the config.
    Disabled,
    /// Not measured yet: waiting for an observer or the start delay.
    #[default]
    Pending,
    /// A measurement is running (a previous result, if any, still holds).
    Measuring,
    /// Measured: `lower` / `upper` hold.
    Measured,
    /// Our NAT is open: no binding to keep alive.
    NotNeeded,
    /// The last attempt failed (see `error`); retried later.
    Unavailable,
}

impl LifetimeState {
    /// Stable text.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Pending => "pending",
            Self::Measuring => "measuring",
            Self::Measured => "measured",
            Self::NotNeeded => "not-needed",
            Self::Unavailable => "unavailable",
        }
    }
}

/// What status and `netcheck` show about the binding lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LifetimeReport {
    /// Where the measurement stands.
    pub state: LifetimeState,
    /// The binding lived at least this long (the last result).
    pub lower: Option<Duration>,
    /// The binding died within this idle time (`None`: every rung lived,
    /// or not measured).
    pub upper: Option<Duration>,
    /// The keepalive interval in use on direct paths.
    pub keepalive: Duration,
    /// The observer of the last (or running) measurement.
    pub observer: Option<NodeId>,
    /// Why the last attempt was unavailable.
    pub error: Option<String>,
    /// Measurements completed.
    pub measurements: u64,
}

/// What the measurement asks the agent to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifetimeOut {
    /// Send a `BINDING` probe from probe port `port` to `dst`.
    Open {
        /// The probe port.
        port: PortId,
        /// The observer's address.
        dst: SocketAddr,
        /// The probe's transaction id.
        tx: [u8; TX_LEN],
    },
    /// Send `BindingCheck { tx, addr }` to `to`.
    Check {
        /// The observer.
        to: NodeId,
        /// The transaction id its probe must carry.
        tx: [u8; TX_LEN],
        /// The port's mapped address.
        addr: SocketAddr,
    },
    /// These probe ports are done.
    Release(Vec<PortId>),
}

/// The observer a measurement runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observer {
    /// The peer.
    pub node: NodeId,
    /// Its address on our direct connection.
    pub addr: SocketAddr,
    /// The connection's RTT.
    pub rtt: Duration,
}

#[derive(Debug, Clone)]
struct Rung {
    after: Duration,
    port: PortId,
    open_tx: [u8; TX_LEN],
    opens_sent: u32,
    next_open: Instant,
    opened_at: Option<Instant>,
    mapped: Option<SocketAddr>,
    check_tx: [u8; TX_LEN],
    checks_sent: u32,
    check_deadline: Option<Instant>,
    alive: Option<bool>,
    released: bool,
}

impl Rung {
    fn new(after: Duration, port: PortId, now: Instant, rng: &mut dyn RngCore) -> Self {
        let mut open_tx = [0u8; TX_LEN];
        rng.fill_bytes(&mut open_tx);
        let mut check_tx = [0u8; TX_LEN];
        rng.fill_bytes(&mut check_tx);
        Self {
            after,
            port,
            open_tx,
            opens_sent: 0,
            next_open: now,
            opened_at: None,
            mapped: None,
            check_tx,
            checks_sent: 0,
            check_deadline: None,
            alive: None,
            released: false,
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        if self.alive.is_some() {
            return None;
        }
        match (self.opened_at, self.check_deadline) {
            (None, _) => Some(self.next_open),
            (Some(at), None) => Some(at + self.after),
            (Some(_), Some(deadline)) => Some(deadline),
        }
    }
}

#[derive(Debug)]
struct Run {
    observer: Observer,
    /// Index 0 is the pilot (checked at once); the ladder follows.
    rungs: Vec<Rung>,
    /// Whether the ladder's ports were opened (after the pilot passed).
    ladder_open: bool,
}

/// What one pass over a run's timers found.
enum Step {
    /// Nothing decided.
    Idle,
    /// The pilot passed: the ladder's ports open now.
    LadderOpened,
    /// The run failed.
    Unavailable(String),
    /// The ladder is decided.
    Measured {
        lower: Duration,
        upper: Option<Duration>,
    },
}

/// The measuring side. Sans-IO; see the module docs.
#[derive(Debug)]
pub struct LifetimeProbe {
    config: LifetimeConfig,
    default_keepalive: Duration,
    state: LifetimeState,
    run: Option<Run>,
    /// When the next measurement may start; `None` waits for an observer.
    next_start: Option<Instant>,
    /// Delay after the next unavailable result.
    backoff: Duration,
    lower: Option<Duration>,
    upper: Option<Duration>,
    observer: Option<NodeId>,
    error: Option<String>,
    measurements: u64,
}

impl LifetimeProbe {
    /// A probe with `config`; `default_keepalive` holds until a result.
    pub fn new(config: LifetimeConfig, default_keepalive: Duration) -> Self {
        let state = if config.enabled {
            LifetimeState::Pending
        } else {
            LifetimeState::Disabled
        };
        let backoff = config.retry;
        Self {
            config,
            default_keepalive,
            state,
            run: None,
            next_start: None,
            backoff,
            lower: None,
            upper: None,
            observer: None,
            error: None,
            measurements: 0,
        }
    }

    /// The tunables.
    pub fn config(&self) -> &LifetimeConfig {
        &self.config
    }

    /// The keepalive interval that follows from what we know.
    pub fn keepalive(&self) -> Duration {
        let (min, max) = (self.config.keepalive_min, self.config.keepalive_max);
        match (self.state, self.lower) {
            (LifetimeState::NotNeeded, _) => max.max(min),
            (LifetimeState::Disabled, _) => self.default_keepalive,
            (_, Some(lower)) => keepalive_for(lower, min, max),
            (_, None) => self.default_keepalive,
        }
    }

    /// Whether the keepalive comes from a result (measured or not needed)
    /// rather than the default.
    pub fn has_result(&self) -> bool {
        self.state == LifetimeState::NotNeeded || self.lower.is_some()
    }

    /// Status.
    pub fn report(&self) -> LifetimeReport {
        LifetimeReport {
            state: self.state,
            lower: self.lower,
            upper: self.upper,
            keepalive: self.keepalive(),
            observer: self.run.as_ref().map(|r| r.observer.node).or(self.observer),
            error: self.error.clone(),
            measurements: self.measurements,
        }
    }

    /// Whether a run is in progress.
    pub fn is_running(&self) -> bool {
        self.run.is_some()
    }

    /// The observer of the running measurement.
    pub fn running_observer(&self) -> Option<NodeId> {
        self.run.as_ref().map(|r| r.observer.node)
    }

    /// Whether probe port `port` belongs to the running measurement.
    pub fn owns_port(&self, port: PortId) -> bool {
        self.run
            .as_ref()
            .is_some_and(|r| r.rungs.iter().any(|g| g.port == port && !g.released))
    }

    /// A peer we could observe with is connected: arm the first start.
    pub fn observer_available(&mut self, now: Instant) {
        if self.config.enabled
            && self.run.is_none()
            && self.next_start.is_none()
            && self.state != LifetimeState::NotNeeded
        {
            self.next_start = Some(now + self.config.start_delay);
        }
    }

    /// Our NAT was (re)classified: open means nothing to measure; any
    /// other change measures again soon.
    pub fn nat_changed(&mut self, now: Instant, open: bool, out: &mut Vec<LifetimeOut>) {
        if !self.config.enabled {
            return;
        }
        self.abort(out);
        if open {
            self.state = LifetimeState::NotNeeded;
            self.lower = None;
            self.upper = None;
            self.error = None;
            self.next_start = None;
        } else {
            if self.state == LifetimeState::NotNeeded {
                self.state = LifetimeState::Pending;
            }
            self.backoff = self.config.retry;
            self.next_start = Some(now + self.config.start_delay);
        }
    }

    /// Whether a measurement should start at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.config.enabled && self.run.is_none() && self.next_start.is_some_and(|t| t <= now)
    }

    /// Due, but no observer: wait for one ([`Self::observer_available`]).
    pub fn no_observer(&mut self) {
        self.next_start = None;
    }

    /// Starts a measurement against `observer`; ports are numbered from
    /// `first_port` (the agent reserves [`LifetimeConfig::ports_per_measurement`]).
    pub fn start(
        &mut self,
        now: Instant,
        observer: Observer,
        first_port: PortId,
        rng: &mut dyn RngCore,
        out: &mut Vec<LifetimeOut>,
    ) {
        if !self.config.enabled || self.run.is_some() {
            return;
        }
        let mut rungs = vec![Rung::new(Duration::ZERO, first_port, now, rng)];
        for (i, after) in self.config.ladder.iter().enumerate() {
            let port = first_port.wrapping_add(PortId::try_from(i + 1).unwrap_or(PortId::MAX));
            rungs.push(Rung::new(*after, port, now, rng));
        }
        self.state = LifetimeState::Measuring;
        self.next_start = None;
        self.run = Some(Run {
            observer,
            rungs,
            ladder_open: false,
        });
        self.handle_timeout(now, out);
    }

    /// The observer went away or its address changed: the run is void.
    pub fn observer_lost(&mut self, now: Instant, peer: &NodeId, out: &mut Vec<LifetimeOut>) {
        if self.run.as_ref().is_some_and(|r| r.observer.node == *peer) {
            self.abort(out);
            self.unavailable(now, format!("observer {} went away", peer.fmt_short()));
        }
    }

    /// An authenticated `BINDING` frame from `sender` arrived on probe
    /// port `port` from `src`: a reply to an opening probe (`reply`, with
    /// the address the observer saw the port at) or the observer's check
    /// probe. Returns whether it belonged to the measurement.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_port_frame(
        &mut self,
        now: Instant,
        port: PortId,
        sender: &NodeId,
        src: SocketAddr,
        reply: bool,
        tx: &[u8; TX_LEN],
        seen_at: SocketAddr,
        out: &mut Vec<LifetimeOut>,
    ) -> bool {
        let Some(run) = self.run.as_mut() else {
            return false;
        };
        if run.observer.node != *sender || run.observer.addr != src {
            return false;
        }
        let Some(rung) = run.rungs.iter_mut().find(|g| g.port == port) else {
            return false;
        };
        if rung.alive.is_some() {
            return true;
        }
        if reply {
            if rung.opened_at.is_none() && *tx == rung.open_tx {
                rung.opened_at = Some(now);
                rung.mapped = Some(seen_at);
            }
        } else if rung.checks_sent > 0 && *tx == rung.check_tx {
            rung.alive = Some(true);
            if !rung.released {
                rung.released = true;
                out.push(LifetimeOut::Release(vec![rung.port]));
            }
        }
        self.handle_timeout(now, out);
        true
    }

    /// Runs due timers.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<LifetimeOut>) {
        // A second pass runs when the pilot just opened the ladder.
        for _ in 0..2 {
            match self.step(now, out) {
                Step::Idle => return,
                Step::LadderOpened => continue,
                Step::Unavailable(error) => {
                    self.abort(out);
                    self.unavailable(now, error);
                    return;
                }
                Step::Measured { lower, upper } => {
                    self.abort(out);
                    self.state = LifetimeState::Measured;
                    self.lower = Some(lower);
                    self.upper = upper;
                    self.error = None;
                    self.measurements += 1;
                    self.backoff = self.config.retry;
                    self.next_start = Some(now + self.config.remeasure);
                    return;
                }
            }
        }
    }

    /// One pass over the running measurement's timers.
    fn step(&mut self, now: Instant, out: &mut Vec<LifetimeOut>) -> Step {
        let config = &self.config;
        let Some(run) = self.run.as_mut() else {
            return Step::Idle;
        };
        let wait = config.check_wait + run.observer.rtt * 2;
        let mut failed_open = false;
        let upto = if run.ladder_open { run.rungs.len() } else { 1 };
        for rung in run.rungs.iter_mut().take(upto) {
            if rung.alive.is_some() {
                continue;
            }
            match (rung.opened_at, rung.check_deadline) {
                (None, _) => {
                    if rung.next_open > now {
                        continue;
                    }
                    if rung.opens_sent >= config.open_attempts {
                        failed_open = true;
                        continue;
                    }
                    rung.opens_sent += 1;
                    rung.next_open = now + config.open_retry.max(run.observer.rtt * 2);
                    out.push(LifetimeOut::Open {
                        port: rung.port,
                        dst: run.observer.addr,
                        tx: rung.open_tx,
                    });
                }
                (Some(opened), deadline) => {
                    let due = deadline.unwrap_or(opened + rung.after);
                    if due > now {
                        continue;
                    }
                    if rung.checks_sent >= config.check_attempts {
                        rung.alive = Some(false);
                        rung.released = true;
                        out.push(LifetimeOut::Release(vec![rung.port]));
                        continue;
                    }
                    let Some(addr) = rung.mapped else {
                        continue;
                    };
                    rung.checks_sent += 1;
                    rung.check_deadline = Some(now + wait);
                    out.push(LifetimeOut::Check {
                        to: run.observer.node,
                        tx: rung.check_tx,
                        addr,
                    });
                }
            }
        }
        if failed_open {
            return Step::Unavailable(format!(
                "observer {} did not answer opening probes",
                run.observer.node.fmt_short()
            ));
        }
        // The pilot decides whether the ladder runs at all.
        match run.rungs.first().and_then(|p| p.alive) {
            Some(false) => {
                return Step::Unavailable(format!(
                    "observer {} did not answer a binding check",
                    run.observer.node.fmt_short()
                ))
            }
            Some(true) if !run.ladder_open => {
                run.ladder_open = true;
                for rung in run.rungs.iter_mut().skip(1) {
                    rung.next_open = now;
                }
                return Step::LadderOpened;
            }
            _ => {}
        }
        match Self::outcome(run) {
            Some((lower, upper)) => Step::Measured { lower, upper },
            None => Step::Idle,
        }
    }

    /// The run's result once the ladder is decided: `(lower, upper)`.
    fn outcome(run: &Run) -> Option<(Duration, Option<Duration>)> {
        if !run.ladder_open {
            return None;
        }
        let mut lower = Duration::ZERO;
        for rung in run.rungs.iter().skip(1) {
            match rung.alive {
                Some(true) => lower = rung.after,
                Some(false) => return Some((lower, Some(rung.after))),
                None => return None,
            }
        }
        Some((lower, None))
    }

    /// When [`Self::handle_timeout`] has work (or a start is due).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.run {
            Some(run) => {
                let upto = if run.ladder_open { run.rungs.len() } else { 1 };
                run.rungs
                    .iter()
                    .take(upto)
                    .filter_map(Rung::next_timer)
                    .min()
            }
            None if self.config.enabled => self.next_start,
            None => None,
        }
    }

    /// Ends the run (if any) and releases its ports.
    fn abort(&mut self, out: &mut Vec<LifetimeOut>) {
        let Some(run) = self.run.take() else {
            return;
        };
        self.observer = Some(run.observer.node);
        let ports: Vec<PortId> = run
            .rungs
            .iter()
            .filter(|g| !g.released && (g.opens_sent > 0 || g.opened_at.is_some()))
            .map(|g| g.port)
            .collect();
        if !ports.is_empty() {
            out.push(LifetimeOut::Release(ports));
        }
        if self.state == LifetimeState::Measuring {
            self.state = if self.lower.is_some() {
                LifetimeState::Measured
            } else {
                LifetimeState::Pending
            };
        }
    }

    fn unavailable(&mut self, now: Instant, error: String) {
        if self.lower.is_none() {
            self.state = LifetimeState::Unavailable;
        }
        self.error = Some(error);
        self.next_start = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(self.config.remeasure.max(self.config.retry));
    }
}

/// The observer side's budget: a token bucket per requesting peer.
#[derive(Debug)]
pub struct CheckBudget {
    burst: u32,
    refill: Duration,
    buckets: BTreeMap<NodeId, (Duration, Instant)>,
}

/// Most peers the budget tracks at once (it only tracks connected peers;
/// this bounds it regardless).
pub const MAX_BUDGETS: usize = 4096;

impl CheckBudget {
    /// `burst` checks at once, one back per `refill`.
    pub fn new(burst: u32, refill: Duration) -> Self {
        Self {
            burst,
            refill,
            buckets: BTreeMap::new(),
        }
    }

    /// Takes one credit from `peer`'s bucket; false when empty.
    pub fn allow(&mut self, now: Instant, peer: NodeId) -> bool {
        let full = self.refill * self.burst;
        if !self.buckets.contains_key(&peer) && self.buckets.len() >= MAX_BUDGETS {
            return false;
        }
        let (credit, last) = self.buckets.entry(peer).or_insert((full, now));
        *credit = (*credit + now.saturating_duration_since(*last)).min(full);
        *last = now;
        if *credit >= self.refill && !self.refill.is_zero() {
            *credit -= self.refill;
            true
        } else {
            false
        }
    }

    /// `peer` disconnected.
    pub fn forget(&mut self, peer: &NodeId) {
        self.buckets.remove(peer);
    }

    /// Peers tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
#[path = "lifetime_tests.rs"]
mod tests;
