//! Handshake cost: a bare snow `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s`
//! handshake in memory (both sides, the baseline) against a full relay-node
//! connect on loopback.
//!
//! Criterion benchmarks; all but the DH one are one full handshake with both
//! sides in this process:
//! - `snow_ikpsk2_in_memory`: the bare Noise handshake, no I/O (baseline);
//! - `snow_x25519_dh`: one X25519 DH as snow computes it (IK does 4 a side);
//! - `relay_noise_quinn_connect`: a QUIC connect on loopback between bare
//!   quinn endpoints running relay-node's Noise crypto;
//! - `stock_quinn_rustls_connect`: the same with stock quinn + rustls.
//!
//! Then it samples connect latency (p50/p99) for those two and for a full
//! [`relay_transport::Transport::connect`] (fresh client Transport per
//! sample), and prints handshakes/s and ratios from this run.
//!
//! Run: `cargo bench -p relay-tests --bench handshake`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, Criterion, Throughput};
use relay_transport::NetworkKey;

mod common;

const PATTERN: &str = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// Stand-in for the QUIC transport parameters each side carries as payload.
const PAYLOAD_LEN: usize = 64;

/// Static keys and the network key for one initiator/responder pair.
struct Keys {
    initiator_private: Vec<u8>,
    responder_private: Vec<u8>,
    responder_public: Vec<u8>,
    psk: [u8; 32],
}

fn keys() -> Keys {
    let builder = snow::Builder::new(PATTERN.parse().unwrap());
    let initiator = builder.generate_keypair().unwrap();
    let responder = builder.generate_keypair().unwrap();
    Keys {
        initiator_private: initiator.private,
        responder_private: responder.private,
        responder_public: responder.public,
        psk: [9; 32],
    }
}

/// One full IKpsk2 handshake, both sides, ending in transport mode.
fn snow_handshake(keys: &Keys) {
    let params: snow::params::NoiseParams = PATTERN.parse().unwrap();
    let mut initiator = snow::Builder::new(params.clone())
        .local_private_key(&keys.initiator_private)
        .unwrap()
        .remote_public_key(&keys.responder_public)
        .unwrap()
        .psk(2, &keys.psk)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut responder = snow::Builder::new(params)
        .local_private_key(&keys.responder_private)
        .unwrap()
        .psk(2, &keys.psk)
        .unwrap()
        .build_responder()
        .unwrap();
    let payload = [0x5au8; PAYLOAD_LEN];
    let mut msg = [0u8; 512];
    let mut out = [0u8; 512];
    let n = initiator.write_message(&payload, &mut msg).unwrap();
    responder.read_message(&msg[..n], &mut out).unwrap();
    let n = responder.write_message(&payload, &mut msg).unwrap();
    initiator.read_message(&msg[..n], &mut out).unwrap();
    black_box(initiator.into_transport_mode().unwrap());
    black_box(responder.into_transport_mode().unwrap());
}

fn bench_snow(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("snow_ikpsk2_in_memory", |b| {
        b.iter(|| snow_handshake(&keys))
    });
    group.finish();
}

/// One X25519 Diffie-Hellman with the implementation snow uses (its
/// default resolver); an IK handshake does four per side.
fn bench_dh(c: &mut Criterion) {
    use snow::params::DHChoice;
    use snow::resolvers::{CryptoResolver, DefaultResolver};
    let keys = keys();
    let mut dh = DefaultResolver.resolve_dh(&DHChoice::Curve25519).unwrap();
    dh.set(&keys.initiator_private);
    let mut out = [0u8; 32];
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("snow_x25519_dh", |b| {
        b.iter(|| {
            dh.dh(black_box(&keys.responder_public), &mut out).unwrap();
            out[0]
        })
    });
    group.finish();
}

fn bench_relay_connect(c: &mut Criterion) {
    let rt = common::runtime();
    let network_key = NetworkKey::generate();
    let (server, server_id, addr) =
        rt.block_on(async { common::relay::noise_server(&network_key) });
    let client = rt.block_on(async { common::relay::noise_endpoint(None) });
    let config = common::relay::noise_client_config(&network_key);
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("relay_noise_quinn_connect", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (c, s) = common::relay::noise_connect(
                    &server,
                    &client,
                    config.clone(),
                    addr,
                    &server_id,
                )
                .await;
                c.close(0u32.into(), b"");
                s.close(0u32.into(), b"");
            })
        })
    });
    group.finish();
}

fn bench_stock_connect(c: &mut Criterion) {
    let rt = common::runtime();
    let configs = common::stock::configs(None);
    let (server, client, addr) = rt.block_on(async { common::stock::endpoints(&configs) });
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("stock_quinn_rustls_connect", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (c, s) = common::stock::connect(&server, &client, addr).await;
                c.close(0u32.into(), b"");
                s.close(0u32.into(), b"");
            })
        })
    });
    group.finish();
}

/// Connect latency samples (client side: from dial to connected).
struct Latency {
    name: &'static str,
    samples: Vec<Duration>,
}

/// Samples connect latency for the three setups in turn (one connect of
/// each per round), so outside load hits them alike.
fn connect_latencies(samples: usize) -> Vec<Latency> {
    let rt = common::runtime();
    let network_key = NetworkKey::generate();
    rt.block_on(async {
        let (noise_server, server_id, noise_addr) = common::relay::noise_server(&network_key);
        let noise_client = common::relay::noise_endpoint(None);
        let noise_config = common::relay::noise_client_config(&network_key);

        let configs = common::stock::configs(None);
        let (stock_server, stock_client, stock_addr) = common::stock::endpoints(&configs);

        let node = common::relay::bind_transport(&network_key).await;
        let node_addr = common::relay::transport_addr(&node);

        let mut noise = Vec::with_capacity(samples);
        let mut stock = Vec::with_capacity(samples);
        let mut transport = Vec::with_capacity(samples);
        for _ in 0..samples {
            let start = Instant::now();
            let (c, s) = common::relay::noise_connect(
                &noise_server,
                &noise_client,
                noise_config.clone(),
                noise_addr,
                &server_id,
            )
            .await;
            noise.push(start.elapsed());
            c.close(0u32.into(), b"");
            s.close(0u32.into(), b"");

            let start = Instant::now();
            let (c, s) = common::stock::connect(&stock_server, &stock_client, stock_addr).await;
            stock.push(start.elapsed());
            c.close(0u32.into(), b"");
            s.close(0u32.into(), b"");

            // A fresh client Transport each time (bound outside the timing):
            // connect() to an already connected peer returns at once.
            let client = common::relay::bind_transport(&network_key).await;
            let start = Instant::now();
            client.connect(node.node_id(), node_addr).await.unwrap();
            transport.push(start.elapsed());
            tokio::spawn(async move { client.close().await });
        }
        vec![
            Latency {
                name: "relay-node noise quinn endpoint",
                samples: noise,
            },
            Latency {
                name: "stock quinn + rustls",
                samples: stock,
            },
            Latency {
                name: "relay-node Transport::connect",
                samples: transport,
            },
        ]
    })
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_snow, bench_dh, bench_relay_connect, bench_stock_connect
}

fn main() {
    let since = SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();

    let samples = std::env::var("RELAY_BENCH_CONNECT_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if common::bench_mode() { 300 } else { 3 });
    println!();
    println!(
        "connect latency on loopback ({samples} sequential connects each, interleaved, client side):"
    );
    for mut latency in connect_latencies(samples) {
        let p50 = common::percentile(&mut latency.samples, 50.0);
        let p99 = common::percentile(&mut latency.samples, 99.0);
        println!(
            "  {:34} p50 {:8.3} ms   p99 {:8.3} ms",
            latency.name,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }

    let get = |id: &str| common::estimate(&format!("handshake/{id}"), since);
    let snow = get("snow_ikpsk2_in_memory");
    let relay = get("relay_noise_quinn_connect");
    let stock = get("stock_quinn_rustls_connect");
    if let Some(dh) = get("snow_x25519_dh") {
        println!();
        println!(
            "snow's X25519: {:.1} us per DH; 8 DH (4 per side) = {:.3} ms of each handshake",
            dh.typical_ns / 1e3,
            8.0 * dh.typical_ns / 1e6
        );
    }
    if let (Some(snow), Some(relay), Some(stock)) = (snow, relay, stock) {
        let per_sec = |e: common::Estimate| 1e9 / e.typical_ns;
        println!();
        println!("summary (criterion point estimates, both sides in one process):");
        println!(
            "  snow IKpsk2 in memory        {:8.0} handshakes/s  ({:.3} ms each)",
            per_sec(snow),
            snow.typical_ns / 1e6
        );
        println!(
            "  relay-node connect (quinn)   {:8.0} connects/s    ({:.3} ms each)",
            per_sec(relay),
            relay.typical_ns / 1e6
        );
        println!(
            "  stock quinn+rustls connect   {:8.0} connects/s    ({:.3} ms each)",
            per_sec(stock),
            stock.typical_ns / 1e6
        );
        println!(
            "  relay-node connect / snow handshake time = {:.2}x",
            relay.typical_ns / snow.typical_ns
        );
        println!(
            "  relay-node connects/s / stock quinn connects/s = {:.2}x",
            stock.typical_ns / relay.typical_ns
        );
    }
}
