//! Relayed against direct, on loopback, with a custom main that prints one
//! table with ratios from this run:
//!
//! - time to first byte: a fresh A reaches B (dial + one byte on a new
//!   stream, until B reads it), relayed by NodeId alone vs dialling B's
//!   address; p50/p99, samples interleaved one of each per round;
//! - 64-byte request/response RTT p50/p99 and one-way bulk throughput on
//!   one stream, relayed vs direct, runs interleaved;
//! - relayed bulk through a relay with its default per-client limits.
//!
//! The relay runs on its own thread with a single-threaded runtime (one
//! core at most); A and B share the bench's two-worker runtime. The relay in
//! the TTFB, RTT and bulk rows has limits high enough never to bind.
//!
//! Run: `cargo bench -p relay-tests --bench relayed`. Without `--bench`
//! (under `cargo test`) it runs a tiny smoke version.
//!
//! Env vars (bench / smoke defaults):
//! - `RELAY_BENCH_TTFB_RUNS` samples of each route (100 / 5)
//! - `RELAY_BENCH_BULK_MIB` bulk size (64 / 2)
//! - `RELAY_BENCH_REPEATS` bulk repetitions, median reported (5 / 1)
//! - `RELAY_BENCH_RTT_ROUNDS` measured round trips (5000 / 50)
//! - `RELAY_BENCH_LIMITED_MIB` bulk size through default limits (16 / 1)
//! - `RELAY_BENCH_ONLY` comma list of sections: `ttfb,bulk,rtt,limited`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
mod rigs;
#[path = "../transport/streams.rs"]
mod streams;
mod ttfb;

use std::time::{Duration, Instant};

use relay_transport::{NetworkKey, RelayLimits};

use common::relay_node::{self, RelayThread};
use rigs::{Rig, Route};

const MIB: u64 = 1024 * 1024;

struct Settings {
    ttfb_runs: usize,
    bulk_bytes: u64,
    repeats: usize,
    rtt_rounds: usize,
    limited_bytes: u64,
    only: Option<Vec<String>>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env(bench: bool) -> Self {
        let pick = |full: u64, smoke: u64| if bench { full } else { smoke };
        Self {
            ttfb_runs: env_or("RELAY_BENCH_TTFB_RUNS", pick(100, 5)).max(1) as usize,
            bulk_bytes: env_or("RELAY_BENCH_BULK_MIB", pick(64, 2)).max(1) * MIB,
            repeats: env_or("RELAY_BENCH_REPEATS", pick(5, 1)).max(1) as usize,
            rtt_rounds: env_or("RELAY_BENCH_RTT_ROUNDS", pick(5000, 50)).max(1) as usize,
            limited_bytes: env_or("RELAY_BENCH_LIMITED_MIB", pick(16, 1)).max(1) * MIB,
            only: std::env::var("RELAY_BENCH_ONLY")
                .ok()
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
        }
    }

    fn runs(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == section))
    }
}

fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64().max(1e-9) / 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

const ROUTES: [(Route, &str); 2] = [(Route::Direct, "direct"), (Route::Relayed, "relayed")];

/// Time to first byte, both routes interleaved: (p50, p99) of the first
/// byte per route, direct first.
fn time_to_first_byte(rt: &tokio::runtime::Runtime, runs: usize) -> Vec<(Duration, Duration)> {
    let network_key = NetworkKey::generate();
    let relay = RelayThread::start(&network_key, relay_node::unlimited());
    let mut samples: [Vec<ttfb::Sample>; 2] = [Vec::new(), Vec::new()];
    rt.block_on(async {
        let mut target = ttfb::Target::new(&network_key, &relay).await;
        // One unmeasured round to warm up.
        for (route, _) in ROUTES {
            target.sample(route, &relay).await;
        }
        for _ in 0..runs {
            for (i, (route, _)) in ROUTES.iter().enumerate() {
                samples[i].push(target.sample(*route, &relay).await);
            }
        }
        target.close().await;
    });
    relay.stop();
    let mut out = Vec::new();
    for ((_, name), samples) in ROUTES.iter().zip(samples) {
        let mut connected: Vec<Duration> = samples.iter().map(|s| s.connected).collect();
        let mut first: Vec<Duration> = samples.iter().map(|s| s.first_byte).collect();
        let (c50, c99) = (
            common::percentile(&mut connected, 50.0),
            common::percentile(&mut connected, 99.0),
        );
        let (f50, f99) = (
            common::percentile(&mut first, 50.0),
            common::percentile(&mut first, 99.0),
        );
        println!(
            "{:40} {:>8.3} ms   p99 {:.3} ms; connect alone p50 {:.3} / p99 {:.3} ms ({} samples)",
            format!("{name} time to first byte p50"),
            ms(f50),
            ms(f99),
            ms(c50),
            ms(c99),
            first.len()
        );
        out.push((f50, f99));
    }
    out
}

fn main() {
    let bench = common::bench_mode();
    let settings = Settings::from_env(bench);
    let rt = common::runtime();
    let started = Instant::now();
    println!(
        "relayed bench ({}): {} TTFB samples per route, bulk {} MiB x{}, {} round trips, limited bulk {} MiB",
        if bench { "bench mode" } else { "smoke mode" },
        settings.ttfb_runs,
        settings.bulk_bytes / MIB,
        settings.repeats,
        settings.rtt_rounds,
        settings.limited_bytes / MIB,
    );
    println!("load average at start: {}", loadavg());
    println!();

    let ttfb = if settings.runs("ttfb") {
        time_to_first_byte(&rt, settings.ttfb_runs)
    } else {
        Vec::new()
    };

    let rigs: Vec<Rig> = if settings.runs("bulk") || settings.runs("rtt") {
        rt.block_on(async {
            let mut rigs = Vec::new();
            for (route, _) in ROUTES {
                rigs.push(Rig::new(route, relay_node::unlimited()).await);
            }
            rigs
        })
    } else {
        Vec::new()
    };

    let mut bulk = Vec::new();
    if settings.runs("bulk") {
        let mut times = vec![Vec::new(); rigs.len()];
        let mut relay_cpu = Duration::ZERO;
        let mut relay_wall = Duration::ZERO;
        let forwarded_before = rigs.iter().find_map(Rig::relay_stats);
        for _ in 0..settings.repeats {
            for (rig, t) in rigs.iter().zip(times.iter_mut()) {
                let cpu_before = rig.relay_cpu();
                let time = rt.block_on(rig.bulk(settings.bulk_bytes));
                if let (Some(before), Some(after)) = (cpu_before, rig.relay_cpu()) {
                    relay_cpu += after.saturating_sub(before);
                    relay_wall += time;
                }
                t.push(time);
            }
        }
        let forwarded = rigs
            .iter()
            .find_map(Rig::relay_stats)
            .zip(forwarded_before)
            .map_or(0, |(after, before)| {
                after.packets_forwarded - before.packets_forwarded
            });
        for ((_, name), mut t) in ROUTES.iter().zip(times) {
            let runs = t
                .iter()
                .map(|d| format!("{:.0}", mb_per_s(settings.bulk_bytes, *d)))
                .collect::<Vec<_>>()
                .join(" / ");
            let rate = mb_per_s(settings.bulk_bytes, common::percentile(&mut t, 50.0));
            println!(
                "{:40} {:>8.0} MB/s median; runs: {runs}",
                format!("{name} bulk one-way, one stream"),
                rate
            );
            bulk.push(rate);
        }
        if !relay_wall.is_zero() {
            println!(
                "{:40} {:>8.0} %    busy during relayed bulk; {:.0} ns CPU per forwarded frame ({} frames)",
                "relay thread (one core)",
                relay_cpu.as_secs_f64() / relay_wall.as_secs_f64() * 100.0,
                relay_cpu.as_secs_f64() * 1e9 / forwarded.max(1) as f64,
                forwarded
            );
        }
    }

    let mut rtts = Vec::new();
    if settings.runs("rtt") {
        const BLOCKS: usize = 10;
        let per_block = settings.rtt_rounds.div_ceil(BLOCKS);
        let warmup = (settings.rtt_rounds / 10).max(10);
        let all = rt.block_on(async {
            let mut echoes = Vec::new();
            for rig in &rigs {
                let mut echo = rig.echo_stream().await;
                echo.round_trips(warmup).await;
                echoes.push(echo);
            }
            let mut all = vec![Vec::new(); echoes.len()];
            for _ in 0..BLOCKS {
                for (echo, times) in echoes.iter_mut().zip(all.iter_mut()) {
                    times.extend(echo.round_trips(per_block).await);
                }
            }
            for echo in echoes {
                echo.finish().await;
            }
            all
        });
        for ((_, name), mut times) in ROUTES.iter().zip(all) {
            let p50 = common::percentile(&mut times, 50.0);
            let p99 = common::percentile(&mut times, 99.0);
            println!(
                "{:40} {:>8.1} us   p99 {:.1} us ({} round trips)",
                format!("{name} 64 B RTT p50"),
                us(p50),
                us(p99),
                times.len()
            );
            rtts.push((p50, p99));
        }
    }
    if let Some(stats) = rigs.iter().find_map(Rig::relay_stats) {
        println!(
            "{:40} forwarded {} frames / {} MB, dropped {}",
            "relay counters (bulk + RTT rig)",
            stats.packets_forwarded,
            stats.bytes_forwarded / 1_000_000,
            stats.packets_dropped
        );
    }
    rt.block_on(async {
        for rig in rigs {
            rig.close().await;
        }
    });

    let mut limited = None;
    if settings.runs("limited") {
        let limits = RelayLimits::default();
        let (time, stats) = rt.block_on(async {
            let rig = Rig::new(Route::Relayed, limits).await;
            let time = rig.bulk(settings.limited_bytes).await;
            let stats = rig.relay_stats().unwrap_or_default();
            rig.close().await;
            (time, stats)
        });
        let rate = mb_per_s(settings.limited_bytes, time);
        println!(
            "{:40} {:>8.1} MB/s limit {:.1} MB/s + {:.1} MB burst; relay dropped {} of {} frames over the rate",
            "relayed bulk, default relay limits",
            rate,
            limits.rate_bytes_per_sec as f64 / 1e6,
            limits.burst_bytes as f64 / 1e6,
            stats.dropped_rate,
            stats.packets_forwarded + stats.packets_dropped
        );
        limited = Some(rate);
    }

    println!();
    println!("ratios, relayed / direct (this run):");
    if let [(d50, d99), (r50, r99)] = ttfb.as_slice() {
        println!(
            "  time to first byte  p50 {:.2}x, p99 {:.2}x",
            r50.as_secs_f64() / d50.as_secs_f64().max(1e-12),
            r99.as_secs_f64() / d99.as_secs_f64().max(1e-12)
        );
    }
    if let [(d50, d99), (r50, r99)] = rtts.as_slice() {
        println!(
            "  64 B RTT            p50 {:.2}x, p99 {:.2}x",
            r50.as_secs_f64() / d50.as_secs_f64().max(1e-12),
            r99.as_secs_f64() / d99.as_secs_f64().max(1e-12)
        );
    }
    if let [direct, relayed] = bulk.as_slice() {
        println!("  bulk throughput     {:.2}x", relayed / direct.max(1e-9));
        if let Some(limited) = limited {
            println!(
                "  bulk with default relay limits / direct = {:.3}x",
                limited / direct.max(1e-9)
            );
        }
    }
    println!();
    println!("load average at end: {}", loadavg());
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}
