//! The NAT lab traversal benchmark: how fast, and how often, two nodes
//! behind modelled NATs go from relayed to direct.
//!
//! For every ordered pair of presets (open, full cone, port-restricted
//! cone, symmetric: 16 pairs, so the mixed ones in both orders; A pings B;
//! plus carrier-grade x carrier-grade and carrier-grade x symmetric in
//! both orders), in each topology (ticket-only: one public relay, nodes
//! joined by its ticket alone; two observers: the relay and a second
//! public observer), it builds one lab (`trial::PairLab`) and runs
//! independent trials in it: fresh nodes with fresh identities and ports,
//! NAT mappings flushed. In each trial node A, knowing only B's NodeId,
//! runs `ping B --until-direct -i INTERVAL`, and the bench measures:
//!
//! - **first relayed pong**: from spawning the ping to its first pong,
//!   which comes over the relay (dial through the relay, Noise handshake,
//!   one ping round trip, plus the CLI's own start, a few ms);
//! - **relayed -> direct**: from the first relayed pong to the first
//!   direct pong, both stamped on arrival (resolution: the ping interval
//!   plus one round trip), or a failure when `--until-direct` times out;
//! - **switch logged**: from the first relayed pong to A's own log
//!   timestamp of its `relayed -> direct` switch (same clock);
//! - **birthday packets**: what both sides spent on birthday-paradox
//!   probing (`traversal.birthday.packets` in `status --json`).
//!
//! It prints a markdown table per run, the RFC 4787 prediction per pair,
//! and the check of the target: p50 relayed -> direct ≤ 1 s for every
//! cone x cone pair.
//!
//! Run: `cargo bench -p relay-tests --bench nat_lab` (root, `ip` and `nft`;
//! `conntrack` for flushing mappings between trials). Elsewhere it prints
//! `SKIPPED: <reason>` and exits 0. Without `--bench` in its arguments
//! (`cargo test --benches`) it runs one full-cone x full-cone trial.
//!
//! Env vars (bench / smoke defaults):
//! - `RELAY_LAB_BENCH_TRIALS` trials per pair (20 / 1)
//! - `RELAY_LAB_BENCH_PAIRS` comma list of pairs `a-b` with preset names
//!   (`open`, `fullcone`, `portrestricted`, `symmetric`, `carriergrade`)
//!   (all / `fullcone-fullcone`)
//! - `RELAY_LAB_BENCH_TOPOLOGIES` comma list of `ticket-only`,
//!   `two-observers` (both / `ticket-only`)
//! - `RELAY_LAB_BENCH_INTERVAL_MS` ping interval (10)
//! - `RELAY_LAB_BENCH_TIMEOUT_S` how long a trial waits for direct (15)
//! - `RELAY_LAB_BENCH_LOG_DIR` keep both nodes' logs of every trial there
//! - `RELAY_LAB_BENCH_LOSS_PERCENT` random UDP loss on both NAT routers' WAN
//!   links, each direction, for the whole run (0); with loss the cone x
//!   cone target is p50 ≤ 1 s and p95 ≤ 3 s
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod table;
mod trial;

use std::time::{Duration, Instant};

use relay_tests::lab::public::Topology;
use relay_tests::lab::skip::{lab_available, report_skip, tool_available};
use relay_tests::lab::NatPreset;
use relay_tests::relay_node_bin;

use table::{cone_x_cone, PairSummary, HEADER};
use trial::{PairLab, PingPlan};

const TARGET: Duration = Duration::from_secs(1);
/// The p95 target for cone x cone under loss.
const TARGET_P95_LOSSY: Duration = Duration::from_secs(3);

struct Settings {
    trials: usize,
    pairs: Vec<(NatPreset, NatPreset)>,
    topologies: Vec<Topology>,
    plan: PingPlan,
    /// Loss on both sites' WAN links, percent.
    loss: u8,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn preset(name: &str) -> NatPreset {
    NatPreset::ALL
        .into_iter()
        .chain([NatPreset::CarrierGrade])
        .find(|p| p.name() == name)
        .unwrap_or_else(|| panic!("unknown preset {name:?}"))
}

fn topology(name: &str) -> Topology {
    Topology::ALL
        .into_iter()
        .find(|t| t.name() == name)
        .unwrap_or_else(|| panic!("unknown topology {name:?}"))
}

/// Every ordered pair of presets, in `NatPreset::ALL` order, then NAT
/// stacked on NAT (carrier-grade) with itself and with symmetric.
fn all_pairs() -> Vec<(NatPreset, NatPreset)> {
    use NatPreset::{CarrierGrade, Symmetric};
    let all = NatPreset::ALL;
    all.iter()
        .flat_map(|&a| all.iter().map(move |&b| (a, b)))
        .chain([
            (CarrierGrade, CarrierGrade),
            (CarrierGrade, Symmetric),
            (Symmetric, CarrierGrade),
        ])
        .collect()
}

impl Settings {
    fn from_env(bench: bool) -> Self {
        let pairs = match std::env::var("RELAY_LAB_BENCH_PAIRS") {
            Ok(list) => list
                .split(',')
                .map(|p| {
                    let (a, b) = p.trim().split_once('-').expect("pair as a-b");
                    (preset(a), preset(b))
                })
                .collect(),
            Err(_) if bench => all_pairs(),
            Err(_) => vec![(NatPreset::FullCone, NatPreset::FullCone)],
        };
        let topologies = match std::env::var("RELAY_LAB_BENCH_TOPOLOGIES") {
            Ok(list) => list.split(',').map(|t| topology(t.trim())).collect(),
            Err(_) if bench => Topology::ALL.to_vec(),
            Err(_) => vec![Topology::TicketOnly],
        };
        Self {
            trials: env_or("RELAY_LAB_BENCH_TRIALS", if bench { 20 } else { 1 }).max(1),
            pairs,
            topologies,
            plan: PingPlan {
                interval: Duration::from_millis(env_or("RELAY_LAB_BENCH_INTERVAL_MS", 10)),
                timeout: Duration::from_secs(env_or("RELAY_LAB_BENCH_TIMEOUT_S", 15).max(1)),
            },
            loss: env_or("RELAY_LAB_BENCH_LOSS_PERCENT", 0u8).min(100),
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    if let Err(reason) = lab_available() {
        report_skip("nat_lab bench", &reason);
        return;
    }
    let conntrack = tool_available("conntrack").is_ok();
    let settings = Settings::from_env(bench);
    let bin = relay_node_bin().expect("relay-node binary");
    println!(
        "nat_lab: {} pair(s) x {} topolog(ies) x {} trial(s), ping interval {} ms, timeout {} s, mappings flushed between trials: {}",
        settings.pairs.len(),
        settings.topologies.len(),
        settings.trials,
        settings.plan.interval.as_millis(),
        settings.plan.timeout.as_secs(),
        if conntrack { "yes" } else { "no (conntrack missing; fresh ports only)" },
    );
    if settings.loss > 0 {
        println!(
            "nat_lab: {}% random UDP loss on both NAT routers' WAN links",
            settings.loss
        );
    }
    println!("nat_lab: load average at start {}", loadavg());
    let started = Instant::now();
    let mut summaries = Vec::new();
    let cases: Vec<(NatPreset, NatPreset, Topology)> = settings
        .topologies
        .iter()
        .flat_map(|&t| settings.pairs.iter().map(move |&(a, b)| (a, b, t)))
        .collect();
    for (a, b, topology) in cases {
        let tn = topology.name();
        let lab = PairLab::build(bin.clone(), a, b, topology).expect("build the pair's lab");
        if settings.loss > 0 {
            lab.set_loss(settings.loss).expect("set the loss rules");
        }
        let mut summary = PairSummary {
            a,
            b,
            topology,
            trials: Vec::new(),
            setup_errors: Vec::new(),
        };
        for n in 0..settings.trials {
            match lab.trial(n, settings.plan, conntrack) {
                Ok(t) => {
                    eprintln!(
                        "nat_lab: {a} x {b} ({tn}) #{n}: first relayed pong {:?}, to direct {:?}, switch logged {:?} ms, birthday runs {} packets {}{}",
                        t.first_relayed,
                        t.to_direct,
                        t.switch_logged_ms.map(|v| v.round()),
                        t.birthday_runs,
                        t.birthday_packets,
                        t.error.as_deref().map(|e| format!(", {e}")).unwrap_or_default(),
                    );
                    summary.trials.push(t);
                }
                Err(e) => {
                    eprintln!("nat_lab: {a} x {b} ({tn}) #{n}: setup failed: {e}");
                    summary.setup_errors.push(e);
                }
            }
        }
        drop(lab);
        println!("{}", summary.row());
        summaries.push(summary);
    }
    let took = started.elapsed();

    println!();
    println!("{HEADER}");
    for s in &summaries {
        println!("{}", s.row());
    }
    println!();
    for s in &summaries {
        for (kind, n) in s.errors() {
            println!(
                "nat_lab: {} x {} ({}): {n} trial(s) failed with {kind}",
                s.a,
                s.b,
                s.topology.name()
            );
        }
        if !s.setup_errors.is_empty() {
            println!(
                "nat_lab: {} x {} ({}): {} trial(s) not run (setup failed; first: {})",
                s.a,
                s.b,
                s.topology.name(),
                s.setup_errors.len(),
                s.setup_errors[0].lines().next().unwrap_or_default()
            );
        }
        let first = s.trials.iter().filter(|t| t.direct_first).count();
        if first > 0 {
            println!(
                "nat_lab: {} x {} ({}): {first} trial(s) direct from the first pong",
                s.a,
                s.b,
                s.topology.name()
            );
        }
    }
    for s in summaries.iter().filter(|s| cone_x_cone(s.a, s.b)) {
        let verdict = match s.p50_to_direct() {
            Some(p50) if p50 <= TARGET => format!("met ({:.0} ms)", p50.as_secs_f64() * 1e3),
            Some(p50) => format!("MISSED ({:.0} ms)", p50.as_secs_f64() * 1e3),
            None => "MISSED (never direct)".into(),
        };
        println!(
            "nat_lab: target cone x cone p50 <= 1 s: {} x {} ({}): {verdict}",
            s.a,
            s.b,
            s.topology.name()
        );
        if settings.loss > 0 {
            let verdict = match s.p95_to_direct() {
                Some(Duration::MAX) => "MISSED (over 5% of trials never direct)".into(),
                Some(p95) if p95 <= TARGET_P95_LOSSY => {
                    format!("met ({:.0} ms)", p95.as_secs_f64() * 1e3)
                }
                Some(p95) => format!("MISSED ({:.0} ms)", p95.as_secs_f64() * 1e3),
                None => "MISSED (never direct)".into(),
            };
            println!(
                "nat_lab: target cone x cone p95 <= 3 s with {}% loss: {} x {}: {verdict}",
                settings.loss, s.a, s.b
            );
        }
    }
    println!(
        "nat_lab: {} trials in {:.0} s; load average at end {}",
        summaries.iter().map(|s| s.trials.len()).sum::<usize>(),
        took.as_secs_f64(),
        loadavg()
    );
}
