//! Connect time of a legitimate peer while a half-open handshake flood
//! runs against the node it dials.
//!
//! The flood: valid QUIC Initials whose Noise message 1 announces a length
//! it never completes (`relay_transport::noise::stalling_client_config`),
//! each a new connection attempt, from `RELAY_BENCH_FLOOD_SOURCES` UDP
//! sockets round-robin, at a fixed rate, on its own thread and runtime.
//! The flood answers Retry, as an attacker at real addresses would. For
//! each rate a fresh victim `Transport` is flooded for one second, then
//! fresh clients dial it one after another and each connect is timed
//! (bind not included). The figure: the highest rate at which every
//! connect took under 2 s. Baseline in the same run: rate 0.
//!
//! Run: `cargo bench -p relay-tests --bench handshake_flood`.
//!
//! Env vars (bench / smoke defaults):
//! - `RELAY_BENCH_FLOOD_RATES` attempts per second, comma-separated
//!   (`0,300,1000,3000,10000` / `0,300`)
//! - `RELAY_BENCH_FLOOD_CONNECTS` timed connects per rate (10 / 2)
//! - `RELAY_BENCH_FLOOD_SOURCES` flood sockets (8)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_transport::noise::{self, NoiseConfig};
use relay_transport::{NetworkKey, NodeId, SecretKey};

mod common;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A flood on its own thread until dropped.
struct Flood {
    stop: Arc<AtomicBool>,
    started: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flood {
    fn start(target: NodeId, to: SocketAddr, rate: u64, sources: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicU64::new(0));
        let (stop2, started2) = (stop.clone(), started.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let config = NoiseConfig::new(SecretKey::generate(), None);
                let mut transport = quinn::TransportConfig::default();
                transport.max_idle_timeout(Some(Duration::from_secs(30).try_into().unwrap()));
                let client = noise::stalling_client_config(&config, Arc::new(transport));
                let endpoints: Vec<quinn::Endpoint> = (0..sources.max(1))
                    .map(|_| {
                        quinn::Endpoint::new(
                            noise::endpoint_config(),
                            None,
                            UdpSocket::bind("127.0.0.1:0").unwrap(),
                            Arc::new(quinn::TokioRuntime),
                        )
                        .unwrap()
                    })
                    .collect();
                let mut held = Vec::new();
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                let start = Instant::now();
                let mut n = 0u64;
                while !stop2.load(Ordering::Relaxed) {
                    tick.tick().await;
                    // Catch up to the rate (a tick may come late).
                    let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                    while n < due {
                        let ep = &endpoints[n as usize % endpoints.len()];
                        n += 1;
                        if let Ok(c) = ep.connect_with(client.clone(), to, &target.to_string()) {
                            held.push(c);
                            started2.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                drop(held);
                for ep in endpoints {
                    ep.close(0u32.into(), b"");
                }
            });
        });
        Self {
            stop,
            started,
            thread: Some(thread),
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Step {
    rate: u64,
    times: Vec<Duration>,
    failed: usize,
    started: u64,
    retries: u64,
    dropped: u64,
}

fn main() {
    let bench = common::bench_mode();
    let rates: Vec<u64> = std::env::var("RELAY_BENCH_FLOOD_RATES")
        .unwrap_or_else(|_| {
            if bench {
                "0,300,1000,3000,10000".into()
            } else {
                "0,300".into()
            }
        })
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let connects: usize = env_or("RELAY_BENCH_FLOOD_CONNECTS", if bench { 10 } else { 2 });
    let sources: usize = env_or("RELAY_BENCH_FLOOD_SOURCES", 8);
    let network_key = NetworkKey::generate();
    let rt = common::runtime();
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let steps: Vec<Step> = rates
        .iter()
        .map(|&rate| {
            rt.block_on(async {
                let victim = common::relay::bind_transport(&network_key).await;
                let to = common::relay::transport_addr(&victim);
                let flood = (rate > 0).then(|| Flood::start(victim.node_id(), to, rate, sources));
                tokio::time::sleep(Duration::from_secs(1)).await;
                let mut times = Vec::new();
                let mut failed = 0;
                for _ in 0..connects {
                    let client = common::relay::bind_transport(&network_key).await;
                    let t = Instant::now();
                    match client.connect(victim.node_id(), to).await {
                        Ok(()) => times.push(t.elapsed()),
                        Err(e) => {
                            eprintln!("rate {rate}: connect failed: {e}");
                            failed += 1;
                        }
                    }
                    client.close().await;
                }
                let started = flood
                    .as_ref()
                    .map_or(0, |f| f.started.load(Ordering::Relaxed));
                drop(flood);
                let status = victim.handshake_status();
                victim.close().await;
                Step {
                    rate,
                    times,
                    failed,
                    started,
                    retries: status.retries_sent,
                    dropped: status.attempts_dropped,
                }
            })
        })
        .collect();
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    println!();
    println!(
        "half-open handshake flood, {connects} timed connects per rate, {sources} flood sources, loopback"
    );
    println!("  rate/s  attempts  connects ok  p50 ms  max ms  retries sent  attempts dropped");
    let mut best = None;
    let baseline = steps
        .first()
        .map(|s| common::percentile(&mut s.times.clone(), 50.0));
    for s in &steps {
        let mut times = s.times.clone();
        let p50 = common::percentile(&mut times, 50.0);
        let max = times.iter().max().copied().unwrap_or_default();
        println!(
            "  {:6}  {:8}  {:5}/{:<5}  {:6.1}  {:6.1}  {:12}  {:16}",
            s.rate,
            s.started,
            s.times.len(),
            s.times.len() + s.failed,
            p50.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            s.retries,
            s.dropped
        );
        if s.failed == 0 && max < Duration::from_secs(2) {
            best = Some(s.rate);
        }
    }
    println!();
    println!("summary (this run):");
    match best {
        Some(rate) => println!("  highest flood rate with every connect under 2 s: {rate}/s"),
        None => println!("  no rate kept every connect under 2 s"),
    }
    if let Some(b) = baseline {
        println!(
            "  baseline (no flood) connect p50: {:.2} ms",
            b.as_secs_f64() * 1e3
        );
    }
    println!(
        "  load average (1/5/15 min): {} -> {}",
        load_before
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        load_after
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
