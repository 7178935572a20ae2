//! The NAT lab's own foundation: each preset behaves as RFC 4787 says, so
//! the relay-node matrix built on it means something.
//!
//! With the `lab-udp` helper inside the namespaces: a site host sends from
//! one port to two public echo servers and compares the mapped addresses
//! they report (same for endpoint-independent mapping, different for
//! symmetric); a third public host sends unsolicited datagrams to that
//! mapping (delivered through endpoint-independent filtering, dropped and
//! counted otherwise); pairs of hosts punch holes towards each other; loss,
//! rebinding and teardown do what they say. Skipped with `SKIPPED: ...`
//! unless root with `ip` and `nft`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use relay_tests::lab::{netns, Lab, NatPreset, Site, UdpProc};
use relay_tests::lab_or_skip;

/// Generous bound for anything the lab must do; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(20);
/// Resend interval for datagrams that may legitimately be dropped.
const RESEND: Duration = Duration::from_millis(200);
const ECHO_PORT: u16 = 3478;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lab-udp"))
}

fn sock(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

fn any(port: u16) -> SocketAddr {
    sock(Ipv4Addr::UNSPECIFIED, port)
}

/// Polls `f` until it is true or the deadline passes (external state only).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Mapping and filtering of one preset, seen from outside.
fn check_preset(preset: NatPreset) {
    let lab = Lab::build(3, &[preset]).unwrap();
    let (s1, s2, third) = (
        lab.public(0).unwrap(),
        lab.public(1).unwrap(),
        lab.public(2).unwrap(),
    );
    let site = lab.site(0).unwrap();
    let _echo1 = UdpProc::echo(bin(), &s1.ns, sock(s1.addr, ECHO_PORT)).unwrap();
    let _echo2 = UdpProc::echo(bin(), &s2.ns, sock(s2.addr, ECHO_PORT)).unwrap();
    let mut host = UdpProc::agent(bin(), &site.host, any(4000)).unwrap();

    // Mapping: the same inside port towards two different servers.
    let m1 = host
        .mapped_addr(sock(s1.addr, ECHO_PORT), "m1", RESEND, DEADLINE)
        .unwrap();
    let m2 = host
        .mapped_addr(sock(s2.addr, ECHO_PORT), "m2", RESEND, DEADLINE)
        .unwrap();
    assert_eq!(
        m1.ip(),
        std::net::IpAddr::V4(site.public_addr()),
        "{preset}"
    );
    assert_eq!(m2.ip(), m1.ip(), "{preset}");
    match preset {
        NatPreset::Open => {
            assert_eq!(m1, sock(site.host_addr, 4000));
            assert_eq!(m2, m1);
        }
        NatPreset::FullCone | NatPreset::PortRestrictedCone | NatPreset::CarrierGrade => {
            assert_eq!(m1, m2, "{preset}: endpoint-independent mapping");
        }
        NatPreset::Symmetric => {
            assert_ne!(
                m1.port(),
                m2.port(),
                "symmetric: a new port per destination"
            );
        }
    }

    // Filtering: a third host that the site host never talked to.
    let mut stranger = UdpProc::agent(bin(), &third.ns, any(5555)).unwrap();
    let stranger_addr = sock(third.addr, 5555);
    if preset.endpoint_independent_filtering() {
        let deadline = Instant::now() + DEADLINE;
        let got = loop {
            stranger.send(m1, "unsolicited").unwrap();
            if let Ok(got) = host.wait_received(RESEND, |r| r.payload == "unsolicited") {
                break got;
            }
            assert!(
                Instant::now() < deadline,
                "{preset}: unsolicited never arrived"
            );
        };
        assert_eq!(got.from, stranger_addr, "{preset}");
        // The host's answer leaves through the same mapping.
        let deadline = Instant::now() + DEADLINE;
        let answer = loop {
            host.send(stranger_addr, "answer").unwrap();
            if let Ok(answer) = stranger.wait_received(RESEND, |r| r.payload == "answer") {
                break answer;
            }
            assert!(Instant::now() < deadline, "{preset}: answer never arrived");
        };
        assert_eq!(answer.from, m1, "{preset}");
    } else {
        let before = site.unsolicited_drops().unwrap();
        for _ in 0..3 {
            stranger.send(m1, "unsolicited").unwrap();
        }
        // All three were dropped at the router, so none can arrive.
        eventually("the router to drop 3 unsolicited packets", || {
            site.unsolicited_drops().unwrap() >= before + 3
        });
        // The mapping itself still works for the server it belongs to.
        let again = host
            .mapped_addr(sock(s1.addr, ECHO_PORT), "m1b", RESEND, DEADLINE)
            .unwrap();
        assert_eq!(again, m1, "{preset}");
        assert!(
            host.received().iter().all(|r| r.from != stranger_addr),
            "{preset}: unsolicited packet got through: {:?}",
            host.received()
        );
    }
}

#[test]
fn preset_open() {
    lab_or_skip!("nat_lab_presets::preset_open");
    check_preset(NatPreset::Open);
}

#[test]
fn preset_full_cone() {
    lab_or_skip!("nat_lab_presets::preset_full_cone");
    check_preset(NatPreset::FullCone);
}

#[test]
fn preset_port_restricted_cone() {
    lab_or_skip!("nat_lab_presets::preset_port_restricted_cone");
    check_preset(NatPreset::PortRestrictedCone);
}

#[test]
fn preset_symmetric() {
    lab_or_skip!("nat_lab_presets::preset_symmetric");
    check_preset(NatPreset::Symmetric);
}

/// NAT stacked on NAT: endpoint-independent end to end, and the carrier's
/// NAT drops what the host never asked for.
#[test]
fn preset_carrier_grade() {
    lab_or_skip!("nat_lab_presets::preset_carrier_grade");
    check_preset(NatPreset::CarrierGrade);
}

/// One punching host: its agent, its site and what it has learned.
struct Puncher<'a> {
    agent: UdpProc,
    site: &'a Site,
    candidates: Vec<SocketAddr>,
}

impl Puncher<'_> {
    /// Sends `payload` to every candidate.
    fn fire(&mut self, payload: &str) {
        for &c in &self.candidates {
            self.agent.send(c, payload).unwrap();
        }
    }

    /// Whether the peer's punch arrived; learns its source as a
    /// peer-reflexive candidate.
    fn heard(&mut self, payload: &str) -> bool {
        let got: Vec<_> = self
            .agent
            .received()
            .into_iter()
            .filter(|r| r.payload == payload)
            .collect();
        for r in &got {
            if !self.candidates.contains(&r.from) {
                self.candidates.push(r.from);
            }
        }
        !got.is_empty()
    }
}

/// Two hosts behind `a` and `b` learn their mapped addresses from a public
/// echo server, then punch towards each other, answering also to any
/// source a punch really came from (peer-reflexive). Returns whether both
/// heard the other.
fn punch(a: NatPreset, b: NatPreset) -> bool {
    let lab = Lab::build(1, &[a, b]).unwrap();
    let server = lab.public(0).unwrap();
    let server_addr = sock(server.addr, ECHO_PORT);
    let _echo = UdpProc::echo(bin(), &server.ns, server_addr).unwrap();
    let mut sides: Vec<Puncher> = (0..2)
        .map(|i| {
            let site = lab.site(i).unwrap();
            let mut agent = UdpProc::agent(bin(), &site.host, any(4000)).unwrap();
            let mapped = agent
                .mapped_addr(server_addr, "reflex", RESEND, DEADLINE)
                .unwrap();
            Puncher {
                agent,
                site,
                candidates: vec![mapped],
            }
        })
        .collect();
    // Each side starts with the other's server-reflexive address.
    let (ca, cb) = (sides[0].candidates[0], sides[1].candidates[0]);
    sides[0].candidates = vec![cb];
    sides[1].candidates = vec![ca];

    let expect_direct = rfc4787_punch_works(a, b);
    let drops_before: Vec<u64> = sides
        .iter()
        .map(|s| s.site.unsolicited_drops().unwrap())
        .collect();
    let rounds = if expect_direct { 100 } else { 5 };
    for _ in 0..rounds {
        sides[0].fire("punch-a");
        sides[1].fire("punch-b");
        let (ha, hb) = (sides[0].heard("punch-b"), sides[1].heard("punch-a"));
        if ha && hb {
            return true;
        }
        // Resend pacing: wait (briefly) on a side that has not heard yet.
        let (waiter, missing) = if ha { (1, "punch-a") } else { (0, "punch-b") };
        let _ = sides[waiter]
            .agent
            .wait_received(RESEND, |r| r.payload == missing);
    }
    if !expect_direct {
        // Every punch either arrived or was dropped and counted: once the
        // drop counters cover all of them, none can still arrive.
        let sent: Vec<u64> = sides
            .iter()
            .map(|s| (s.candidates.len() * rounds) as u64)
            .collect();
        eventually("both routers to drop every punch", || {
            sides[0].site.unsolicited_drops().unwrap() >= drops_before[0] + sent[1]
                && sides[1].site.unsolicited_drops().unwrap() >= drops_before[1] + sent[0]
        });
    }
    sides[0].heard("punch-b") && sides[1].heard("punch-a")
}

/// RFC 4787: a simultaneous punch works unless one side maps per
/// destination and the other filters by address and port.
fn rfc4787_punch_works(a: NatPreset, b: NatPreset) -> bool {
    let blocks = |x: NatPreset, y: NatPreset| {
        !x.endpoint_independent_mapping() && x.translates() && !y.endpoint_independent_filtering()
    };
    !blocks(a, b) && !blocks(b, a)
}

macro_rules! punch_case {
    ($name:ident, $a:ident, $b:ident, $works:expr) => {
        #[test]
        fn $name() {
            lab_or_skip!(concat!("nat_lab_presets::", stringify!($name)));
            let (a, b) = (NatPreset::$a, NatPreset::$b);
            assert_eq!(rfc4787_punch_works(a, b), $works);
            assert_eq!(punch(a, b), $works, "{a} x {b}");
        }
    };
}

punch_case!(punch_open_x_port_restricted, Open, PortRestrictedCone, true);
punch_case!(punch_full_cone_x_full_cone, FullCone, FullCone, true);
punch_case!(
    punch_full_cone_x_port_restricted,
    FullCone,
    PortRestrictedCone,
    true
);
punch_case!(
    punch_port_restricted_x_port_restricted,
    PortRestrictedCone,
    PortRestrictedCone,
    true
);
punch_case!(punch_symmetric_x_full_cone, Symmetric, FullCone, true);
punch_case!(
    punch_symmetric_x_port_restricted,
    Symmetric,
    PortRestrictedCone,
    false
);
punch_case!(punch_symmetric_x_symmetric, Symmetric, Symmetric, false);

#[test]
fn loss_rule_drops_and_lifts() {
    lab_or_skip!("nat_lab_presets::loss_rule_drops_and_lifts");
    let lab = Lab::build(1, &[NatPreset::FullCone]).unwrap();
    let server = lab.public(0).unwrap();
    let server_addr = sock(server.addr, ECHO_PORT);
    let _echo = UdpProc::echo(bin(), &server.ns, server_addr).unwrap();
    let site = lab.site(0).unwrap();
    let mut host = UdpProc::agent(bin(), &site.host, any(4000)).unwrap();

    site.set_loss(100).unwrap();
    for _ in 0..5 {
        host.send(server_addr, "lost").unwrap();
    }
    eventually("the loss rule to drop 5 packets", || {
        relay_tests::lab::nat::loss_drops(&site.router).unwrap() >= 5
    });
    assert!(host.received().is_empty(), "{:?}", host.received());

    site.set_loss(0).unwrap();
    let mapped = host
        .mapped_addr(server_addr, "through", RESEND, DEADLINE)
        .unwrap();
    assert_eq!(mapped.ip(), std::net::IpAddr::V4(site.wan_addr));
}

#[test]
fn rebind_gives_a_new_mapping() {
    lab_or_skip!("nat_lab_presets::rebind_gives_a_new_mapping", needs: "conntrack");
    let lab = Lab::build(1, &[NatPreset::PortRestrictedCone]).unwrap();
    let server = lab.public(0).unwrap();
    let server_addr = sock(server.addr, ECHO_PORT);
    let _echo = UdpProc::echo(bin(), &server.ns, server_addr).unwrap();
    let site = lab.site(0).unwrap();
    let mut host = UdpProc::agent(bin(), &site.host, any(4000)).unwrap();
    let before = host
        .mapped_addr(server_addr, "one", RESEND, DEADLINE)
        .unwrap();
    assert_eq!(
        host.mapped_addr(server_addr, "two", RESEND, DEADLINE)
            .unwrap(),
        before
    );
    // Each rebinding draws a fresh random port from 40000 candidates; allow
    // a second draw so a 1-in-40000 repeat cannot fail the test.
    let mut after = before;
    for round in 0..2 {
        site.rebind().unwrap();
        after = host
            .mapped_addr(server_addr, &format!("after{round}"), RESEND, DEADLINE)
            .unwrap();
        if after != before {
            break;
        }
    }
    assert_eq!(after.ip(), before.ip());
    assert_ne!(after.port(), before.port(), "rebinding kept the mapping");
    // The new mapping is stable again.
    assert_eq!(
        host.mapped_addr(server_addr, "stable", RESEND, DEADLINE)
            .unwrap(),
        after
    );
}

#[test]
fn teardown_removes_everything_even_on_panic() {
    lab_or_skip!("nat_lab_presets::teardown_removes_everything_even_on_panic");
    let names = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(|| {
        let lab = Lab::build(1, &[NatPreset::Symmetric]).unwrap();
        let server = lab.public(0).unwrap();
        let _echo = UdpProc::echo(bin(), &server.ns, sock(server.addr, ECHO_PORT)).unwrap();
        *names.lock().unwrap() = lab
            .namespaces()
            .iter()
            .map(|n| n.name().to_string())
            .collect::<Vec<_>>();
        panic!("a failing lab test");
    });
    assert!(result.is_err());
    let names = names.into_inner().unwrap();
    assert_eq!(names.len(), 4, "{names:?}");
    let left = netns::list_all().unwrap();
    for name in &names {
        assert!(!left.contains(name), "{name} survived teardown: {left:?}");
    }
}
