//! Relay forwarding cost in packets per second.
//!
//! Criterion part, one core, no I/O: the sans-IO relay core
//! ([`relay_transport::relay::server::RelayServer`]) takes one 1200-byte
//! relay-send frame between two registered clients and emits the relay-recv
//! frame (`handle_frame` + `poll_transmit`), alone and in the driver's
//! batches of 64. Frames are authenticated per client, so each iteration
//! first stamps the frame with the sender's next sequence number and tag
//! (the client's work); `client_seal` measures that step alone, so the
//! relay's own share is the difference. Baselines in the same run: copying
//! the same 1200 bytes into a fresh `Vec` (the least any forwarder that
//! hands frames on must do), and a ring ChaCha20-Poly1305 seal of 1200
//! bytes (what one QUIC packet costs a sender, as in `benches/aead.rs`).
//!
//! Driver part, loopback: a relaying `Transport` on its own thread (one
//! core, single-threaded runtime) forwards the same frames from client A to
//! client B, UDP in and UDP out; B counts what arrives. The baseline is the
//! same frames sent by A straight to B (one hop, same sender and receiver
//! code). The sender stays at most a window of frames ahead of B's count.
//!
//! Run: `cargo bench -p relay-tests --bench relay`. Without `--bench` the
//! driver part sends only a few thousand frames.
//!
//! Env vars (bench / smoke defaults):
//! - `RELAY_BENCH_DRIVER_FRAMES` frames per driver run (200000 / 2000)
//! - `RELAY_BENCH_DRIVER_WINDOW` frames in flight beyond B's count (256)
//! - `RELAY_BENCH_REPEATS` driver runs per path, median reported (5 / 1)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, Criterion, Throughput};
use relay_proto::wire::relay::{RelayFrame, RelayFrameKind, HEADER_LEN};
use relay_transport::relay::auth::{FrameKeys, Sealer};
use relay_transport::relay::server::RelayServer;
use relay_transport::{NetworkKey, NodeId, SecretKey, Transport};

mod common;

use common::relay_node::{self, RelayThread};

/// Size of each relay-send frame, header included.
const FRAME: usize = 1200;
/// Frames handled per lock of the core in the driver.
const BATCH: usize = 64;

/// A relay-send frame of [`FRAME`] bytes addressed to `dest`.
fn send_frame_to(dest: &NodeId) -> Vec<u8> {
    // The inner packet must look like QUIC (first byte >= 0x40).
    let packet = vec![0x40u8; FRAME - HEADER_LEN];
    let mut frame = Vec::with_capacity(FRAME);
    RelayFrame::new(RelayFrameKind::Send, dest, &packet)
        .emit_to_vec(&mut frame)
        .unwrap();
    assert_eq!(frame.len(), FRAME);
    frame
}

/// A relay core with clients A and B registered; returns (core, A's
/// address, frame from A to B, A's sealer for it).
fn core_with_two_clients() -> (RelayServer, SocketAddr, Vec<u8>, Sealer) {
    let now = Instant::now();
    let mut core = RelayServer::new(relay_node::unlimited());
    let a = SecretKey::generate().node_id();
    let b = SecretKey::generate().node_id();
    let a_addr: SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let b_addr: SocketAddr = "198.51.100.2:5000".parse().unwrap();
    let a_keys = FrameKeys::from_bytes([1; 16], [2; 16]);
    core.register(now, a, a_addr, a_keys.clone()).unwrap();
    core.register(now, b, b_addr, FrameKeys::from_bytes([3; 16], [4; 16]))
        .unwrap();
    let (sealer, _) = a_keys.client().unwrap();
    (core, a_addr, send_frame_to(&b), sealer)
}

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("relay_forward_1200B");

    group.throughput(Throughput::Elements(1));
    {
        let (mut core, src, mut frame, sealer) = core_with_two_clients();
        let now = Instant::now();
        group.bench_function("core_frame", |b| {
            b.iter(|| {
                sealer.seal(&mut frame).unwrap();
                core.handle_frame(now, src, black_box(&frame));
                black_box(core.poll_transmit().unwrap())
            })
        });
        assert_eq!(core.stats().packets_dropped, 0);
    }

    group.throughput(Throughput::Elements(BATCH as u64));
    {
        let (mut core, src, mut frame, sealer) = core_with_two_clients();
        let mut out = Vec::with_capacity(BATCH);
        group.bench_function("core_batch64", |b| {
            b.iter(|| {
                // As the driver does: one clock read per batch.
                let now = Instant::now();
                for _ in 0..BATCH {
                    sealer.seal(&mut frame).unwrap();
                    core.handle_frame(now, src, black_box(&frame));
                }
                out.extend(std::iter::from_fn(|| core.poll_transmit()));
                black_box(&out);
                out.clear();
            })
        });
        assert_eq!(core.stats().packets_dropped, 0);
    }

    group.throughput(Throughput::Elements(1));
    {
        let (_, _, mut frame, sealer) = core_with_two_clients();
        group.bench_function("client_seal", |b| {
            b.iter(|| sealer.seal(black_box(&mut frame)).unwrap())
        });
    }
    {
        let frame = vec![0x40u8; FRAME];
        group.bench_function("memcpy_to_vec", |b| {
            b.iter(|| {
                let mut v = Vec::with_capacity(FRAME);
                v.extend_from_slice(black_box(&frame));
                black_box(v)
            })
        });
    }
    {
        use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
        let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[7; 32]).unwrap());
        let mut buf = vec![0xa5u8; FRAME];
        let mut pn = 0u64;
        group.bench_function("ring_seal", |b| {
            b.iter(|| {
                pn = pn.wrapping_add(1);
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&pn.to_be_bytes());
                key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&[0x40u8; 16]),
                    black_box(&mut buf),
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = forward
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Which way the driver frames go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    /// A sends straight to B (B does not relay; its frame loop takes them).
    Direct,
    /// A sends relay-send frames to the relay, which forwards them to B.
    Relayed,
}

/// One driver run's outcome.
#[derive(Debug, Clone, Copy)]
struct DriverRun {
    received: u64,
    sent: u64,
    time: Duration,
    /// CPU time of the relay's thread during the run (relayed runs).
    relay_cpu: Option<Duration>,
}

impl DriverRun {
    fn pps(&self) -> f64 {
        self.received as f64 / self.time.as_secs_f64().max(1e-9)
    }

    /// Relay CPU per frame B received, in ns.
    fn relay_ns_per_frame(&self) -> Option<f64> {
        Some(self.relay_cpu?.as_secs_f64() * 1e9 / self.received.max(1) as f64)
    }

    /// Share of the run's wall time the relay's thread was on a CPU.
    fn relay_busy(&self) -> Option<f64> {
        Some(self.relay_cpu?.as_secs_f64() / self.time.as_secs_f64().max(1e-9))
    }
}

/// What B has counted for `hop` so far.
fn b_count(b: &Transport, hop: Hop) -> u64 {
    let s = b.socket_stats();
    match hop {
        Hop::Direct => s.frames_delivered,
        Hop::Relayed => s.relayed_received,
    }
}

/// Sends `frames` frames from A, at most `window` ahead of B's count, and
/// times them until the last one arrives (or arrivals stop for 200 ms).
/// Direct: `frame` as is to `to`. Relayed: its inner packet through the
/// relay `relay`, sealed with A's key for it (A's work, not the relay's).
#[allow(clippy::too_many_arguments)]
async fn driver_run(
    a: &Transport,
    b: &Transport,
    to: SocketAddr,
    relay: &NodeId,
    frame: &[u8],
    hop: Hop,
    frames: u64,
    window: u64,
) -> DriverRun {
    let b_id = b.node_id();
    let packet = &frame[HEADER_LEN..];
    let socket = a.path_socket().clone();
    let base = b_count(b, hop);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut received = 0u64;
    let mut last_progress = Instant::now();
    let mut last_arrival = start;
    loop {
        let now_received = b_count(b, hop) - base;
        if now_received != received {
            received = now_received;
            last_progress = Instant::now();
            last_arrival = last_progress;
        }
        if received >= frames || last_progress.elapsed() > Duration::from_millis(200) {
            break;
        }
        if sent < frames && sent - received < window {
            let burst = (window - (sent - received)).min(frames - sent).min(16);
            for _ in 0..burst {
                match hop {
                    Hop::Direct => socket.send_frame(to, frame).await.unwrap(),
                    Hop::Relayed => socket.send_to_relay(relay, &b_id, packet).await.unwrap(),
                }
            }
            sent += burst;
        } else {
            tokio::task::yield_now().await;
        }
    }
    DriverRun {
        received,
        sent,
        time: last_arrival - start,
        relay_cpu: None,
    }
}

fn median_run(mut runs: Vec<DriverRun>) -> DriverRun {
    runs.sort_by(|x, y| x.pps().total_cmp(&y.pps()));
    runs[runs.len() / 2]
}

/// The end-to-end driver figure: relayed and direct runs, interleaved.
fn driver(bench: bool) -> (DriverRun, DriverRun) {
    let frames: u64 = env_or(
        "RELAY_BENCH_DRIVER_FRAMES",
        if bench { 200_000 } else { 2000 },
    );
    let window: u64 = env_or("RELAY_BENCH_DRIVER_WINDOW", 256).max(1);
    let repeats: usize = env_or("RELAY_BENCH_REPEATS", if bench { 5 } else { 1 }).max(1);
    let network_key = NetworkKey::generate();
    let relay = RelayThread::start(&network_key, relay_node::unlimited());
    let rt = common::runtime();
    let result = rt.block_on(async {
        let a = common::relay::bind_transport(&network_key).await;
        let b = common::relay::bind_transport(&network_key).await;
        relay_node::join_relay(&a, &relay).await;
        relay_node::join_relay(&b, &relay).await;
        let frame = send_frame_to(&b.node_id());
        let b_addr = common::relay::transport_addr(&b);
        let before = relay.transport.relay_status().stats;
        let mut direct = Vec::new();
        let mut relayed = Vec::new();
        for _ in 0..repeats {
            let relay_id = relay.node_id();
            direct.push(
                driver_run(&a, &b, b_addr, &relay_id, &frame, Hop::Direct, frames, window).await,
            );
            let cpu_before = relay.cpu_time();
            let mut run = driver_run(
                &a,
                &b,
                relay.addr(),
                &relay_id,
                &frame,
                Hop::Relayed,
                frames,
                window,
            )
            .await;
            run.relay_cpu = relay
                .cpu_time()
                .zip(cpu_before)
                .map(|(after, before)| after.saturating_sub(before));
            relayed.push(run);
        }
        let after = relay.transport.relay_status().stats;
        println!();
        println!(
            "driver on loopback: {frames} frames of {FRAME} B per run, window {window}, {repeats} run(s) per path, interleaved"
        );
        for (name, runs) in [("direct A->B", &direct), ("relayed A->R->B", &relayed)] {
            let all = runs
                .iter()
                .map(|r| format!("{:.0}", r.pps()))
                .collect::<Vec<_>>()
                .join(" / ");
            let lost: u64 = runs.iter().map(|r| r.sent - r.received).sum();
            println!("  {name:18} runs (pps): {all}; frames lost: {lost}");
        }
        let cpu = relayed
            .iter()
            .filter_map(|r| Some(format!("{:.0} ns ({:.0}% busy)", r.relay_ns_per_frame()?, r.relay_busy()? * 100.0)))
            .collect::<Vec<_>>()
            .join(" / ");
        println!("  relay thread CPU per frame: {cpu}");
        println!(
            "  relay counters: forwarded {}, dropped by the core {}, dropped at its frame queue {}; B's relayed inbox dropped {}",
            after.packets_forwarded - before.packets_forwarded,
            after.packets_dropped - before.packets_dropped,
            relay.transport.socket_stats().frames_dropped,
            b.socket_stats().relayed_dropped
        );
        a.close().await;
        b.close().await;
        (median_run(direct), median_run(relayed))
    });
    relay.stop();
    result
}

fn main() {
    let bench = common::bench_mode();
    let since = SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let driven = driver(bench);
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    println!();
    println!("summary (this run):");
    let est = |name: &str| common::estimate(&format!("relay_forward_1200B/{name}"), since);
    let per_frame = |name: &str, frames: f64| est(name).map(|e| e.typical_ns / frames);
    let core = per_frame("core_frame", 1.0);
    let batch = per_frame("core_batch64", BATCH as f64);
    let copy = per_frame("memcpy_to_vec", 1.0);
    let seal = per_frame("ring_seal", 1.0);
    let client_seal = per_frame("client_seal", 1.0);
    let row = |label: &str, ns: Option<f64>| {
        if let Some(ns) = ns {
            println!(
                "  {label:34} {ns:8.1} ns/frame  {:6.2} Mpps  {:6.2} GB/s",
                1e3 / ns,
                FRAME as f64 / ns
            );
        }
    };
    row("relay core + client seal, one frame", core);
    row("relay core + client seal, batch 64", batch);
    row("client seal (frame MAC) alone", client_seal);
    if let (Some(core), Some(client_seal)) = (core, client_seal) {
        row("relay core alone (difference)", Some(core - client_seal));
    }
    row("baseline: memcpy 1200 B into a Vec", copy);
    row("baseline: ring seal of 1200 B", seal);
    if let (Some(core), Some(batch)) = (core, batch) {
        if let Some(copy) = copy {
            println!(
                "  relay core / memcpy (time per frame)  = {:.1}x (single), {:.1}x (batched)",
                core / copy,
                batch / copy
            );
        }
        if let Some(seal) = seal {
            println!(
                "  relay core / AEAD seal (time per frame) = {:.2}x (single), {:.2}x (batched)",
                core / seal,
                batch / seal
            );
        }
    }
    {
        let (direct, relayed) = driven;
        println!(
            "  driver, direct A->B (one hop)      {:10.0} pps  {:6.0} MB/s",
            direct.pps(),
            direct.pps() * FRAME as f64 / 1e6
        );
        println!(
            "  driver, relayed A->R->B            {:10.0} pps  {:6.0} MB/s",
            relayed.pps(),
            relayed.pps() * FRAME as f64 / 1e6
        );
        println!(
            "  relayed / direct (pps)             = {:.2}x",
            relayed.pps() / direct.pps().max(1e-9)
        );
        if let Some(ns) = relayed.relay_ns_per_frame() {
            println!(
                "  relay thread CPU per frame         {:10.0} ns  = {:.0} pps per core, {:.2} Mpps/core {:.3}x of the core alone",
                ns,
                1e9 / ns,
                1e3 / ns,
                core.map_or(0.0, |core| core / ns)
            );
            if let Some(busy) = relayed.relay_busy() {
                println!(
                    "  relay thread busy during the run   {:10.0} %",
                    busy * 100.0
                );
            }
        }
    }
    println!(
        "  load average (1/5/15 min) around the driver part: {} -> {}",
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
