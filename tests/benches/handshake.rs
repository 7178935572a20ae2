//! Handshake cost: a bare snow `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s`
//! handshake in memory (both sides, the baseline) against a full relay-node
//! connect on loopback.
//!
//! Run: `cargo bench -p relay-tests --bench handshake`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

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

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_snow
}
criterion_main!(benches);
