//! Transport benchmarks with a custom main that prints one table:
//! raw UDP, stock quinn + rustls (ChaCha20-Poly1305) and relay-node's
//! Transport on loopback: one-way bulk throughput, 64-byte request/response
//! RTT, and memory per idle connection, with ratios from this one run.
//! Then the comparison with iroh ([`compare`]): connect, per-request echo
//! at c=1 and c=16, 64-byte framed messages, bulk and the coalescing
//! writer, for stock quinn, iroh and relay-node, medians of fresh
//! processes.
//!
//! Run: `cargo bench -p relay-tests --bench transport`. Without `--bench`
//! (i.e. under `cargo test`) it runs a tiny smoke version.
//!
//! Sizes (env vars; defaults in bench mode / smoke mode):
//! - `RELAY_BENCH_BULK_MIB` bulk transfer size (256 / 4)
//! - `RELAY_BENCH_UDP_MIB` raw UDP volume (256 / 4)
//! - `RELAY_BENCH_UDP_WINDOW` raw UDP datagrams in flight beyond the
//!   receiver's count, 0 = unthrottled blasting (256)
//! - `RELAY_BENCH_REPEATS` bulk and UDP repetitions, median reported (5 / 1)
//! - `RELAY_BENCH_RTT_ROUNDS` measured round trips (5000 / 50)
//! - `RELAY_BENCH_IDLE_CONNS` idle connections for the memory figure (1000 / 20)
//! - `RELAY_BENCH_IDLE_MS` idle wait before reading RSS (2000 / 200)
//! - `RELAY_BENCH_ONLY` comma list of what to run (everything by default):
//!   sections `aead,udp,bulk,rtt,mem,compare` and stacks
//!   `stock,relay,iroh` (iroh runs in `compare` only); a stack
//!   measurement runs when both its section and its stack are listed
//!   (e.g. `bulk,rtt,stock`).
//! - the comparison's own sizes: see [`compare::Sizes`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod coalesce;
#[path = "../common/mod.rs"]
mod common;
mod compare;
mod connect;
mod memory;
mod runs;
mod stacks;
mod streams;
mod udp;
mod workloads;

use std::time::{Duration, Instant};

use runs::Stack;

const MIB: u64 = 1024 * 1024;

/// Benchmark sizes, from env vars.
#[derive(Debug)]
pub struct Settings {
    bulk_bytes: u64,
    udp_bytes: u64,
    udp_window: u64,
    repeats: usize,
    rtt_rounds: usize,
    idle_conns: u64,
    only: Option<Vec<String>>,
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env(bench: bool) -> Self {
        let pick = |full: u64, smoke: u64| if bench { full } else { smoke };
        Self {
            bulk_bytes: env_or("RELAY_BENCH_BULK_MIB", pick(256, 4)) * MIB,
            udp_bytes: env_or("RELAY_BENCH_UDP_MIB", pick(256, 4)) * MIB,
            udp_window: env_or("RELAY_BENCH_UDP_WINDOW", 256),
            repeats: env_or("RELAY_BENCH_REPEATS", pick(5, 1)).max(1) as usize,
            rtt_rounds: env_or("RELAY_BENCH_RTT_ROUNDS", pick(5000, 50)).max(1) as usize,
            idle_conns: env_or("RELAY_BENCH_IDLE_CONNS", pick(1000, 20)).max(1),
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

/// The median of `times` (sorted in place).
fn median(times: &mut [Duration]) -> Duration {
    common::percentile(times, 50.0)
}

fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64().max(1e-9) / 1e6
}

/// ring seal of 1200-byte packets on one core with `algorithm`
/// (ChaCha20-Poly1305, relay-node's; AES-256-GCM, what iroh's TLS picks on
/// this machine), MB/s (a quick in-run reference; `--bench aead` measures
/// ChaCha20-Poly1305 properly).
fn raw_aead_mb_per_s(algorithm: &'static ring::aead::Algorithm, duration: Duration) -> f64 {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
    let key = LessSafeKey::new(UnboundKey::new(algorithm, &[7; 32]).unwrap());
    let mut buf = vec![0xa5u8; udp::DATAGRAM];
    let start = Instant::now();
    let mut packets = 0u64;
    while start.elapsed() < duration {
        for _ in 0..256 {
            packets += 1;
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&packets.to_be_bytes());
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&[0x40u8; 16]),
                    std::hint::black_box(&mut buf),
                )
                .unwrap();
            let _ = std::hint::black_box(tag);
        }
    }
    mb_per_s(packets * udp::DATAGRAM as u64, start.elapsed())
}

fn fmt_times(times: &[Duration], bytes: u64) -> String {
    times
        .iter()
        .map(|t| format!("{:.0}", mb_per_s(bytes, *t)))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The `RELAY_BENCH_ONLY` name of a stack.
fn stack_key(stack: Stack) -> &'static str {
    match stack {
        Stack::Stock => "stock",
        Stack::Relay => "relay",
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    if let Ok(stack) = std::env::var(memory::CHILD_ENV) {
        memory::child(&stack, env_or("RELAY_BENCH_IDLE_CONNS", 1000));
        return;
    }
    let bench = common::bench_mode();
    let settings = Settings::from_env(bench);
    let compared: Vec<stacks::Stack> = stacks::Stack::ALL
        .into_iter()
        .filter(|s| settings.runs(s.key()))
        .collect();
    let sizes = compare::Sizes::from_env(bench, &settings);
    if std::env::var_os(compare::CHILD_ENV).is_some() {
        compare::child(&compared, sizes);
        return;
    }
    if !bench && std::env::var_os(memory::IDLE_ENV).is_none() {
        // Smoke mode: children inherit a short idle wait.
        std::env::set_var(memory::IDLE_ENV, "200");
    }
    let rt = common::runtime();
    let started = Instant::now();
    println!(
        "transport bench ({}): bulk {} MiB x{}, udp {} MiB x{} (window {}), {} round trips, {} idle connections",
        if bench { "bench mode" } else { "smoke mode" },
        settings.bulk_bytes / MIB,
        settings.repeats,
        settings.udp_bytes / MIB,
        settings.repeats,
        settings.udp_window,
        settings.rtt_rounds,
        settings.idle_conns
    );
    println!();
    println!("{:42} {:>14}   detail", "measurement", "result");

    let mut aead = None;
    if settings.runs("aead") {
        let time = Duration::from_millis(if bench { 1000 } else { 50 });
        let v = raw_aead_mb_per_s(&ring::aead::CHACHA20_POLY1305, time);
        println!(
            "{:42} {:>9.0} MB/s   ring seal, 1200 B, one core",
            "raw AEAD (ChaCha20-Poly1305)", v
        );
        aead = Some(v);
        let aes = raw_aead_mb_per_s(&ring::aead::AES_256_GCM, time);
        println!(
            "{:42} {:>9.0} MB/s   ring seal, 1200 B, one core",
            "raw AEAD (AES-256-GCM)", aes
        );
    }

    let mut udp_rate = None;
    if settings.runs("udp") {
        let datagrams = settings.udp_bytes / udp::DATAGRAM as u64;
        for (io, name) in [
            (udp::Io::Plain, "raw UDP one-way, 1 syscall/datagram"),
            (udp::Io::Batched, "raw UDP one-way, GSO/GRO (quinn-udp)"),
        ] {
            let mut results: Vec<udp::UdpResult> = (0..settings.repeats)
                .map(|_| udp::run(io, datagrams, settings.udp_window))
                .collect();
            results.sort_by(|a, b| a.received_mb_per_s().total_cmp(&b.received_mb_per_s()));
            let mid = results[results.len() / 2];
            let all = results
                .iter()
                .map(|r| {
                    format!(
                        "{:.0} ({:.0}% lost)",
                        r.received_mb_per_s(),
                        r.loss_percent()
                    )
                })
                .collect::<Vec<_>>()
                .join(" / ");
            println!(
                "{:42} {:>9.0} MB/s   received; runs: {all}",
                name,
                mid.received_mb_per_s()
            );
            // The batched figure is the ceiling quinn-based stacks share.
            if io == udp::Io::Batched {
                udp_rate = Some(mid.received_mb_per_s());
            }
        }
    }

    // Stack rigs, used in turn so outside load hits both alike.
    let stacks: Vec<(Stack, &str)> = [
        (Stack::Stock, "stock quinn+rustls"),
        (Stack::Relay, "relay-node Transport"),
    ]
    .into_iter()
    .filter(|(stack, _)| settings.runs(stack_key(*stack)))
    .collect();
    let rigs: Vec<runs::Rig> = rt.block_on(async {
        let mut rigs = Vec::new();
        for (stack, _) in &stacks {
            rigs.push(runs::Rig::new(*stack).await);
        }
        rigs
    });

    let mut stock_rate = None;
    let mut relay_rate = None;
    if settings.runs("bulk") {
        let mut times = vec![Vec::new(); rigs.len()];
        for _ in 0..settings.repeats {
            for (rig, t) in rigs.iter().zip(times.iter_mut()) {
                t.push(rt.block_on(rig.bulk(settings.bulk_bytes)));
            }
        }
        for ((stack, name), mut t) in stacks.iter().zip(times) {
            let detail = fmt_times(&t, settings.bulk_bytes);
            let rate = mb_per_s(settings.bulk_bytes, median(&mut t));
            println!(
                "{:42} {:>9.0} MB/s   median; runs: {detail}",
                format!("{name} bulk one-way"),
                rate
            );
            match stack {
                Stack::Stock => stock_rate = Some(rate),
                Stack::Relay => relay_rate = Some(rate),
            }
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
        for ((stack, name), mut times) in stacks.iter().zip(all) {
            let p50 = common::percentile(&mut times, 50.0);
            let p99 = common::percentile(&mut times, 99.0);
            println!(
                "{:42} {:>9.1} us     p99 {:.1} us ({} round trips)",
                format!("{name} 64 B RTT p50"),
                us(p50),
                us(p99),
                times.len()
            );
            rtts.push((*stack, p50, p99));
        }
    }
    rt.block_on(async {
        for rig in rigs {
            rig.close().await;
        }
    });

    let mut mems = Vec::new();
    if settings.runs("mem") {
        for (stack, name) in [("stock", "stock quinn+rustls"), ("relay", "relay-node")] {
            if !settings.runs(stack) {
                continue;
            }
            let m = memory::measure(stack, settings.idle_conns);
            println!(
                "{:42} {:>9.1} KiB    server RSS {} -> {} KiB for {} idle connections",
                format!("{name} mem/idle conn, server side"),
                m.server.kib_per_connection(),
                m.server.before_kib,
                m.server.after_kib,
                m.server.connections
            );
            println!(
                "{:42} {:>9.1} KiB    client RSS {} -> {} KiB (one quinn endpoint per connection)",
                format!("{name} mem/idle conn, client side"),
                m.client.kib_per_connection(),
                m.client.before_kib,
                m.client.after_kib,
            );
            mems.push((name, m));
        }
        if settings.runs("stock") {
            let m = memory::measure("stock-shared", settings.idle_conns);
            println!(
                "{:42} {:>9.1} KiB    client RSS {} -> {} KiB (all connections on one endpoint)",
                "stock quinn+rustls mem/idle conn, client*",
                m.client.kib_per_connection(),
                m.client.before_kib,
                m.client.after_kib,
            );
        }
    }

    if settings.runs("compare") {
        compare::run(&compared, sizes);
    }

    println!();
    println!("ratios (this run):");
    if let (Some(relay), Some(stock)) = (relay_rate, stock_rate) {
        println!(
            "  relay-node bulk / stock quinn bulk      = {:.2}x",
            relay / stock
        );
    }
    if let (Some(relay), Some(udp)) = (relay_rate, udp_rate) {
        println!(
            "  relay-node bulk / raw UDP (GSO/GRO)     = {:.2}x",
            relay / udp
        );
    }
    if let (Some(stock), Some(udp)) = (stock_rate, udp_rate) {
        println!(
            "  stock quinn bulk / raw UDP (GSO/GRO)    = {:.2}x",
            stock / udp
        );
    }
    if let (Some(relay), Some(aead)) = (relay_rate, aead) {
        println!(
            "  relay-node bulk / raw AEAD (one core)   = {:.2}x",
            relay / aead
        );
    }
    if let (Some(stock), Some(aead)) = (stock_rate, aead) {
        println!(
            "  stock quinn bulk / raw AEAD (one core)  = {:.2}x",
            stock / aead
        );
    }
    if let [(Stack::Stock, stock_p50, _), (Stack::Relay, relay_p50, _)] = rtts.as_slice() {
        println!(
            "  relay-node RTT p50 / stock quinn RTT p50 = {:.2}x",
            relay_p50.as_secs_f64() / stock_p50.as_secs_f64().max(1e-12)
        );
    }
    if let [("stock quinn+rustls", stock_mem), (_, relay_mem)] = mems.as_slice() {
        println!(
            "  relay-node / stock quinn memory per connection (server side) = {:.2}x",
            relay_mem.server.kib_per_connection() / stock_mem.server.kib_per_connection().max(1e-9)
        );
    }
    println!();
    println!("targets: bulk >= stock quinn; <= 64 KiB per idle connection");
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}
