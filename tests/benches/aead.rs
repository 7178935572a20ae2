//! Raw ChaCha20-Poly1305 seal speed on one core: ring vs RustCrypto.
//!
//! Seals one 1200-byte packet (a typical QUIC payload) per iteration with a
//! 16-byte header as associated data and a per-packet nonce, the way QUIC
//! packet protection does. Criterion reports the throughput in bytes/s; this
//! is the ceiling any ChaCha20-Poly1305 QUIC stack can reach on one core.
//!
//! Run: `cargo bench -p relay-tests --bench aead`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use criterion::{criterion_group, Criterion, Throughput};

mod common;

/// The packet payload size sealed per iteration.
const PACKET: usize = 1200;
/// Associated data, standing in for a short QUIC header.
const HEADER: [u8; 16] = [0x40; 16];
const KEY: [u8; 32] = [7; 32];

fn nonce_for(pn: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&pn.to_be_bytes());
    nonce
}

fn seal_ring(c: &mut Criterion) {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &KEY).unwrap());
    let mut buf = vec![0xa5u8; PACKET];
    let mut pn = 0u64;
    let mut group = c.benchmark_group("aead_seal_1200B");
    group.throughput(Throughput::BytesDecimal(PACKET as u64));
    group.bench_function("ring", |b| {
        b.iter(|| {
            pn = pn.wrapping_add(1);
            let nonce = Nonce::assume_unique_for_key(nonce_for(pn));
            key.seal_in_place_separate_tag(nonce, Aad::from(&HEADER), black_box(&mut buf))
                .unwrap()
        })
    });
    group.finish();
}

fn seal_rustcrypto(c: &mut Criterion) {
    use chacha20poly1305::{ChaCha20Poly1305, Nonce};
    let cipher = ChaCha20Poly1305::new((&KEY).into());
    let mut buf = vec![0xa5u8; PACKET];
    let mut pn = 0u64;
    let mut group = c.benchmark_group("aead_seal_1200B");
    group.throughput(Throughput::BytesDecimal(PACKET as u64));
    group.bench_function("rustcrypto", |b| {
        b.iter(|| {
            pn = pn.wrapping_add(1);
            let nonce = nonce_for(pn);
            cipher
                .encrypt_in_place_detached(Nonce::from_slice(&nonce), &HEADER, black_box(&mut buf))
                .unwrap()
        })
    });
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
    targets = seal_ring, seal_rustcrypto
}

fn main() {
    let since = std::time::SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();
    let ring = common::estimate("aead_seal_1200B/ring", since);
    let rc = common::estimate("aead_seal_1200B/rustcrypto", since);
    if let (Some(ring), Some(rc)) = (ring, rc) {
        let gbps = |e: common::Estimate| PACKET as f64 / e.typical_ns;
        println!();
        println!("summary (criterion point estimates, 1200-byte seal, one core):");
        println!("  ring        {:6.3} GB/s", gbps(ring));
        println!("  rustcrypto  {:6.3} GB/s", gbps(rc));
        println!(
            "  ring / rustcrypto = {:.2}x",
            rc.typical_ns / ring.typical_ns
        );
    }
}
