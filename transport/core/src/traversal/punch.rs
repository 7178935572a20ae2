//! One hole-punching session towards one peer.
//!
//! ## Probing
//!
//! From the fire time on, the session sends a probe to every candidate on a
//! schedule (by default 9 probes over ~4 s, spaced further apart as time
//! goes on). A probe that arrives from the peer triggers an immediate probe
//! back to its source (as ICE's triggered checks do), which is what opens a
//! restricted NAT quickly once the other side's first probe got through.
//!
//! ## Peer-reflexive candidates
//!
//! The source a valid probe arrives from is where the peer's NAT put it for
//! us. If it is not a known candidate it becomes one (a peer-reflexive
//! candidate) and is probed like the others. Replies always go to the
//! source a probe came from (the agent does that), so a NAT that changes
//! ports per destination does not defeat a peer whose side accepts them.
//!
//! ## Validation and nomination
//!
//! An address is *validated both ways* when we got a reply to a probe we
//! sent to it, coming from it, and a probe from the peer arrived from it.
//! The two sides must agree on one address pair, so, as in ICE's regular
//! nomination, the lower NodeId is *controlling*: it nominates its first
//! validated address by sending probes flagged `NOMINATE` to it, and wins
//! when a reply acknowledges the nomination. The *controlled* side accepts a
//! nomination from an address once that address is validated on its side
//! too (it sends a triggered probe if needed), acknowledges it, and wins.
//!
//! ## Bounds
//!
//! Candidates, outstanding transactions and the address sets are bounded;
//! they only grow from authenticated probes and the introduction.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngCore;
use relay_proto::wire::probe::{FLAG_NOMINATE, TX_LEN};
use relay_proto::wire::traversal::NatType;
use relay_proto::NodeId;

/// Introduced candidates kept at most.
pub const MAX_INTRODUCED: usize = 8;
/// Peer-reflexive candidates kept at most.
pub const MAX_PEER_REFLEXIVE: usize = 8;
/// Outstanding probe transactions kept at most (the oldest is forgotten).
pub const MAX_OUTSTANDING: usize = 256;
/// Candidates learned from replies to birthday probes kept at most.
pub const MAX_BIRTHDAY: usize = 4;

/// Where a candidate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateOrigin {
    /// From the introduction.
    Introduced,
    /// Learned from the source of an inbound probe.
    PeerReflexive,
    /// Learned from a reply to a birthday probe (see `birthday`).
    Birthday,
}

/// A probe the agent must seal and send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOut {
    /// Destination.
    pub addr: SocketAddr,
    /// Transaction id.
    pub tx: [u8; TX_LEN],
    /// Probe flags.
    pub flags: u8,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This address is validated both ways and agreed on.
    Direct(SocketAddr),
    /// No address was validated in time.
    Failed {
        /// Probes sent in total.
        probes: u32,
        /// Candidates tried.
        candidates: usize,
    },
}

/// Timing of a session.
#[derive(Debug, Clone)]
pub struct PunchTiming {
    /// Offsets of each probe to a candidate, from its start.
    pub schedule: Vec<Duration>,
    /// Time after the last scheduled probe before giving up.
    pub grace: Duration,
    /// Nominations sent before giving up.
    pub nominate_attempts: u32,
    /// Spacing of nominations.
    pub nominate_interval: Duration,
    /// Learn peer-reflexive candidates.
    pub peer_reflexive: bool,
}

#[derive(Debug, Clone)]
struct Candidate {
    addr: SocketAddr,
    origin: CandidateOrigin,
    start: Instant,
    sent: usize,
    triggered: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    tx: [u8; TX_LEN],
    addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Probing,
    Nominating {
        addr: SocketAddr,
        sent: u32,
        next: Instant,
    },
    Done(Outcome),
}

/// A punch session towards one peer. Sans-IO.
#[derive(Debug)]
pub struct PunchSession {
    peer: NodeId,
    req: u64,
    controlling: bool,
    peer_nat: NatType,
    timing: PunchTiming,
    deadline: Instant,
    candidates: Vec<Candidate>,
    outstanding: VecDeque<Outstanding>,
    probe_from: BTreeSet<SocketAddr>,
    reply_from: BTreeSet<SocketAddr>,
    nominated: Option<SocketAddr>,
    phase: Phase,
    probes: u32,
}

impl PunchSession {
    /// A session that starts probing `candidates` at `fire_at`.
    /// `controlling` is whether our NodeId is the lower of the pair.
    pub fn new(
        fire_at: Instant,
        peer: NodeId,
        req: u64,
        controlling: bool,
        candidates: &[SocketAddr],
        peer_nat: NatType,
        timing: PunchTiming,
    ) -> Self {
        let last = timing.schedule.last().copied().unwrap_or_default();
        let deadline = fire_at + last + timing.grace;
        let mut session = Self {
            peer,
            req,
            controlling,
            peer_nat,
            timing,
            deadline,
            candidates: Vec::new(),
            outstanding: VecDeque::new(),
            probe_from: BTreeSet::new(),
            reply_from: BTreeSet::new(),
            nominated: None,
            phase: Phase::Probing,
            probes: 0,
        };
        for addr in candidates.iter().take(MAX_INTRODUCED) {
            session.add_candidate(*addr, CandidateOrigin::Introduced, fire_at);
        }
        session
    }

    /// Adds introduced candidates to a running session, probed from
    /// `start` on (duplicates and excess are ignored).
    pub fn add_introduced(&mut self, start: Instant, candidates: &[SocketAddr]) {
        if self.phase != Phase::Probing {
            return;
        }
        let before = self.candidates.len();
        for addr in candidates {
            self.add_candidate(*addr, CandidateOrigin::Introduced, start);
        }
        if self.candidates.len() > before {
            // New candidates get their whole schedule.
            let last = self.timing.schedule.last().copied().unwrap_or_default();
            self.deadline = self.deadline.max(start + last + self.timing.grace);
        }
    }

    /// The peer.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// The request id of the introduction that started it.
    pub fn req(&self) -> u64 {
        self.req
    }

    /// The peer's NAT type from the introduction.
    pub fn peer_nat(&self) -> NatType {
        self.peer_nat
    }

    /// Whether we nominate.
    pub fn is_controlling(&self) -> bool {
        self.controlling
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.phase {
            Phase::Done(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// Candidates and where they came from.
    pub fn candidates(&self) -> impl Iterator<Item = (SocketAddr, CandidateOrigin)> + '_ {
        self.candidates.iter().map(|c| (c.addr, c.origin))
    }

    fn add_candidate(&mut self, addr: SocketAddr, origin: CandidateOrigin, start: Instant) -> bool {
        if self.candidates.iter().any(|c| c.addr == addr) {
            return true;
        }
        let count = self
            .candidates
            .iter()
            .filter(|c| c.origin == origin)
            .count();
        let cap = match origin {
            CandidateOrigin::Introduced => MAX_INTRODUCED,
            CandidateOrigin::PeerReflexive => MAX_PEER_REFLEXIVE,
            CandidateOrigin::Birthday => MAX_BIRTHDAY,
        };
        if count >= cap {
            return false;
        }
        self.candidates.push(Candidate {
            addr,
            origin,
            start,
            sent: 0,
            triggered: None,
        });
        true
    }

    fn is_candidate(&self, addr: &SocketAddr) -> bool {
        self.candidates.iter().any(|c| c.addr == *addr)
    }

    fn trigger(&mut self, now: Instant, addr: SocketAddr) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == addr) {
            if c.triggered.is_none() {
                c.triggered = Some(now);
            }
        }
    }

    /// A valid probe from the peer arrived from `src`. Returns whether a
    /// nomination in it is accepted (the reply then acknowledges it).
    pub fn on_probe(&mut self, now: Instant, src: SocketAddr, flags: u8) -> bool {
        if let Phase::Done(outcome) = self.phase {
            return flags & FLAG_NOMINATE != 0 && outcome == Outcome::Direct(src);
        }
        if !self.is_candidate(&src) {
            if !self.timing.peer_reflexive {
                return false;
            }
            if !self.add_candidate(src, CandidateOrigin::PeerReflexive, now) {
                return false;
            }
        }
        self.probe_from.insert(src);
        if !self.reply_from.contains(&src) {
            self.trigger(now, src);
        }
        if flags & FLAG_NOMINATE != 0 && !self.controlling {
            if self.reply_from.contains(&src) {
                self.phase = Phase::Done(Outcome::Direct(src));
                return true;
            }
            self.nominated = Some(src);
            let hold = now + self.timing.nominate_interval * self.timing.nominate_attempts;
            self.deadline = self.deadline.max(hold);
            return false;
        }
        self.maybe_nominate(now, src);
        false
    }

    /// A valid reply from the peer arrived from `src`. Returns whether it
    /// answered one of our outstanding probes.
    pub fn on_reply(
        &mut self,
        now: Instant,
        src: SocketAddr,
        tx: &[u8; TX_LEN],
        flags: u8,
    ) -> bool {
        if matches!(self.phase, Phase::Done(_)) {
            return false;
        }
        let Some(pos) = self.outstanding.iter().position(|o| o.tx == *tx) else {
            return false;
        };
        // Symmetric check: the reply must come from where the probe went.
        if self.outstanding[pos].addr != src {
            return false;
        }
        self.outstanding.remove(pos);
        self.reply_from.insert(src);
        if !self.is_candidate(&src) {
            // A birthday probe hit: keep probing the address like any other
            // candidate (refreshes both NATs, carries the nomination).
            self.add_candidate(src, CandidateOrigin::Birthday, now);
        }
        match self.phase {
            Phase::Nominating { addr, .. } if addr == src && flags & FLAG_NOMINATE != 0 => {
                self.phase = Phase::Done(Outcome::Direct(src));
            }
            Phase::Probing if !self.controlling && self.nominated == Some(src) => {
                self.phase = Phase::Done(Outcome::Direct(src));
            }
            _ => self.maybe_nominate(now, src),
        }
        true
    }

    /// Whether anything from the peer has arrived yet (a probe or a reply,
    /// or the session is past probing).
    pub fn has_progress(&self) -> bool {
        self.phase != Phase::Probing || !self.probe_from.is_empty() || !self.reply_from.is_empty()
    }

    /// Whether any probe or reply from the peer arrived.
    pub fn heard_from_peer(&self) -> bool {
        !self.probe_from.is_empty() || !self.reply_from.is_empty()
    }

    /// Whether the session is still probing (not nominating, not done).
    pub fn is_probing(&self) -> bool {
        self.phase == Phase::Probing
    }

    /// Keeps the session probing until at least `until`.
    pub fn extend(&mut self, until: Instant) {
        if self.phase == Phase::Probing {
            self.deadline = self.deadline.max(until);
        }
    }

    /// A session that failed probing goes on probing (only extra probes:
    /// its schedule is spent) until `until`: birthday probing was started
    /// after the plain punch failed. Returns whether it did.
    pub fn resume(&mut self, until: Instant) -> bool {
        if !matches!(self.phase, Phase::Done(Outcome::Failed { .. })) {
            return false;
        }
        self.phase = Phase::Probing;
        self.deadline = until;
        true
    }

    /// Sends one extra probe to `addr` (a birthday probe), tracked like the
    /// scheduled ones so that a reply to it validates `addr`. Returns it,
    /// or `None` once the session is no longer probing.
    pub fn extra_probe(&mut self, rng: &mut dyn RngCore, addr: SocketAddr) -> Option<ProbeOut> {
        if self.phase != Phase::Probing {
            return None;
        }
        let mut out = Vec::with_capacity(1);
        self.send(rng, addr, 0, &mut out);
        out.pop()
    }

    fn maybe_nominate(&mut self, now: Instant, addr: SocketAddr) {
        if self.controlling
            && self.phase == Phase::Probing
            && self.reply_from.contains(&addr)
            && self.probe_from.contains(&addr)
        {
            self.phase = Phase::Nominating {
                addr,
                sent: 0,
                next: now,
            };
        }
    }

    fn send(
        &mut self,
        rng: &mut dyn RngCore,
        addr: SocketAddr,
        flags: u8,
        out: &mut Vec<ProbeOut>,
    ) {
        let mut tx = [0u8; TX_LEN];
        rng.fill_bytes(&mut tx);
        if self.outstanding.len() >= MAX_OUTSTANDING {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back(Outstanding { tx, addr });
        self.probes += 1;
        out.push(ProbeOut { addr, tx, flags });
    }

    /// Sends what is due at `now` into `out` and decides timeouts.
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut dyn RngCore, out: &mut Vec<ProbeOut>) {
        match self.phase {
            Phase::Done(_) => {}
            Phase::Nominating { addr, sent, next } => {
                if now < next {
                    return;
                }
                if sent >= self.timing.nominate_attempts {
                    self.fail();
                    return;
                }
                self.send(rng, addr, FLAG_NOMINATE, out);
                self.phase = Phase::Nominating {
                    addr,
                    sent: sent + 1,
                    next: now + self.timing.nominate_interval,
                };
            }
            Phase::Probing => {
                if now >= self.deadline {
                    self.fail();
                    return;
                }
                let mut due = Vec::new();
                for c in &mut self.candidates {
                    if c.triggered.is_some_and(|t| t <= now) {
                        c.triggered = None;
                        due.push(c.addr);
                        continue;
                    }
                    if let Some(offset) = self.timing.schedule.get(c.sent) {
                        if c.start + *offset <= now {
                            c.sent += 1;
                            due.push(c.addr);
                        }
                    }
                }
                for addr in due {
                    self.send(rng, addr, 0, out);
                }
            }
        }
    }

    fn fail(&mut self) {
        self.phase = Phase::Done(Outcome::Failed {
            probes: self.probes,
            candidates: self.candidates.len(),
        });
    }

    /// The next instant [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Done(_) => None,
            Phase::Nominating { next, .. } => Some(next),
            Phase::Probing => {
                let mut at = self.deadline;
                for c in &self.candidates {
                    if let Some(t) = c.triggered {
                        at = at.min(t);
                    }
                    if let Some(offset) = self.timing.schedule.get(c.sent) {
                        at = at.min(c.start + *offset);
                    }
                }
                Some(at)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use relay_proto::SecretKey;

    fn timing(peer_reflexive: bool) -> PunchTiming {
        PunchTiming {
            schedule: [0u64, 100, 300]
                .iter()
                .map(|m| Duration::from_millis(*m))
                .collect(),
            grace: Duration::from_millis(500),
            nominate_attempts: 3,
            nominate_interval: Duration::from_millis(100),
            peer_reflexive,
        }
    }

    fn peer() -> NodeId {
        SecretKey::from_bytes(&[9; 32]).node_id()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn run(s: &mut PunchSession, now: Instant, rng: &mut StdRng) -> Vec<ProbeOut> {
        let mut out = Vec::new();
        s.handle_timeout(now, rng, &mut out);
        out
    }

    #[test]
    fn schedule_then_timeout() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        let c = sa("203.0.113.2:2000");
        let mut s = PunchSession::new(t0, peer(), 1, true, &[c], NatType::Cone, timing(true));
        let mut sent = 0;
        let mut now = t0;
        while s.outcome().is_none() {
            now = s.poll_timeout().unwrap();
            sent += run(&mut s, now, &mut rng).len();
        }
        assert_eq!(sent, 3);
        assert_eq!(now, t0 + Duration::from_millis(800));
        assert_eq!(
            s.outcome(),
            Some(Outcome::Failed {
                probes: 3,
                candidates: 1
            })
        );
    }

    #[test]
    fn controlling_validates_nominates_and_wins() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(2);
        let c = sa("203.0.113.2:2000");
        let mut s = PunchSession::new(t0, peer(), 1, true, &[c], NatType::Cone, timing(true));
        let out = run(&mut s, t0, &mut rng);
        assert_eq!(out.len(), 1);
        // A reply from elsewhere, or an unknown tx, proves nothing.
        assert!(!s.on_reply(t0, sa("203.0.113.9:1"), &out[0].tx, 0));
        assert!(!s.on_reply(t0, c, &[0; TX_LEN], 0));
        assert!(s.on_reply(t0, c, &out[0].tx, 0));
        // Not yet both ways: no probe from the peer seen.
        assert_eq!(run(&mut s, t0, &mut rng).len(), 0);
        assert!(!s.on_probe(t0, c, 0));
        let nom = run(&mut s, t0, &mut rng);
        assert_eq!(nom.len(), 1);
        assert_eq!(nom[0].flags, FLAG_NOMINATE);
        // A reply without the nomination flag does not settle it.
        assert!(s.on_reply(t0, c, &nom[0].tx, 0));
        assert_eq!(s.outcome(), None);
        let nom = run(&mut s, t0 + Duration::from_millis(100), &mut rng);
        assert!(s.on_reply(t0, c, &nom[0].tx, FLAG_NOMINATE));
        assert_eq!(s.outcome(), Some(Outcome::Direct(c)));
    }

    #[test]
    fn controlled_accepts_nomination_only_when_validated() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(3);
        let c = sa("203.0.113.2:2000");
        let mut s = PunchSession::new(t0, peer(), 1, false, &[c], NatType::Cone, timing(true));
        let first = run(&mut s, t0, &mut rng);
        // Nomination before our own validation: held, a triggered probe goes out.
        assert!(!s.on_probe(t0, c, FLAG_NOMINATE));
        let triggered = run(&mut s, t0, &mut rng);
        assert_eq!(triggered.len(), 1);
        assert!(s.on_reply(t0, c, &first[0].tx, 0));
        assert_eq!(s.outcome(), Some(Outcome::Direct(c)));
        // A repeated nomination is acknowledged.
        assert!(s.on_probe(t0, c, FLAG_NOMINATE));
    }

    #[test]
    fn learns_peer_reflexive_candidates_bounded() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(4);
        let c = sa("203.0.113.2:2000");
        let mut s = PunchSession::new(t0, peer(), 1, true, &[c], NatType::Symmetric, timing(true));
        run(&mut s, t0, &mut rng);
        let prflx = sa("203.0.113.2:40001");
        s.on_probe(t0, prflx, 0);
        let out = run(&mut s, t0, &mut rng);
        assert_eq!(out.iter().map(|p| p.addr).collect::<Vec<_>>(), vec![prflx]);
        for port in 0..50 {
            s.on_probe(t0, SocketAddr::from(([203, 0, 113, 2], 50000 + port)), 0);
        }
        assert_eq!(s.candidates().count(), 1 + MAX_PEER_REFLEXIVE);

        let mut off =
            PunchSession::new(t0, peer(), 1, true, &[c], NatType::Symmetric, timing(false));
        off.on_probe(t0, prflx, 0);
        assert_eq!(off.candidates().count(), 1);
    }

    #[test]
    fn late_introduced_candidates_join_with_their_own_schedule() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(6);
        let mut s = PunchSession::new(t0, peer(), 0, true, &[], NatType::Unknown, timing(true));
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(800)));
        let c = sa("203.0.113.2:2000");
        let t1 = t0 + Duration::from_millis(500);
        s.add_introduced(t1, &[c]);
        assert_eq!(s.poll_timeout(), Some(t1));
        assert_eq!(run(&mut s, t1, &mut rng).len(), 1);
        // A duplicate does not extend the session.
        s.add_introduced(t1 + Duration::from_millis(200), &[c]);
        let mut now = t1;
        while s.outcome().is_none() {
            now = s.poll_timeout().unwrap();
            run(&mut s, now, &mut rng);
        }
        assert_eq!(now, t1 + Duration::from_millis(800));
    }

    #[test]
    fn nomination_without_ack_fails() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(5);
        let c = sa("203.0.113.2:2000");
        let mut s = PunchSession::new(t0, peer(), 1, true, &[c], NatType::Cone, timing(true));
        let out = run(&mut s, t0, &mut rng);
        s.on_probe(t0, c, 0);
        s.on_reply(t0, c, &out[0].tx, 0);
        let mut noms = 0;
        while s.outcome().is_none() {
            let now = s.poll_timeout().unwrap();
            noms += run(&mut s, now, &mut rng).len();
        }
        assert_eq!(noms, 3);
        assert!(matches!(s.outcome(), Some(Outcome::Failed { .. })));
    }

    #[test]
    fn a_failed_session_resumes_for_extra_probes_only() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(8);
        let c = sa("203.0.113.2:2000");
        let mut s = PunchSession::new(t0, peer(), 1, true, &[c], NatType::Unknown, timing(true));
        assert!(!s.resume(t0 + Duration::from_secs(9)), "not failed yet");
        let mut now = t0;
        while s.outcome().is_none() {
            now = s.poll_timeout().unwrap();
            run(&mut s, now, &mut rng);
        }
        assert!(!s.heard_from_peer());
        let until = now + Duration::from_secs(5);
        assert!(s.resume(until));
        assert!(s.is_probing());
        // Nothing scheduled is left; extra probes still go out and a reply
        // to one validates its address.
        assert_eq!(s.poll_timeout(), Some(until));
        let extra = s.extra_probe(&mut rng, c).unwrap();
        s.on_probe(now, c, 0);
        s.on_reply(now, c, &extra.tx, 0);
        assert!(s.heard_from_peer());
        run(&mut s, now, &mut rng);
        assert!(!s.is_probing(), "nominating");
    }
}
