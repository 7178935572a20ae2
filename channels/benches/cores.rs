//! The cores alone, in one process, no transport: 64-byte messages from a
//! publishing session through the owner to one reliable subscription, with
//! every frame encoded and decoded as on the wire. Frames are moved in
//! batches, as the node's driver does. This is the upper bound the node's
//! channels can reach; the raw-transport baseline and the end-to-end
//! figures are measured elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use relay_channels::{
    DenyTokens, Owner, OwnerConfig, Policy, Publication, SubEvent, Subscription, SubscriptionConfig,
};
use relay_proto::wire::channel::ChannelFrame;
use relay_proto::SecretKey;

const MESSAGES: u64 = 10_000;

fn wire(frame: ChannelFrame) -> ChannelFrame {
    ChannelFrame::decode(&frame.encode().unwrap()).unwrap()
}

/// Moves `MESSAGES` messages end to end; returns how many arrived.
fn run() -> u64 {
    let owner_id = SecretKey::from_bytes(&[1; 32]).node_id();
    let peer = SecretKey::from_bytes(&[2; 32]).node_id();
    let mut owner = Owner::new(owner_id, DenyTokens, OwnerConfig::default());
    owner.create("bench", Policy::default(), 0).unwrap();
    let mut sub = Subscription::new(1, "bench", vec![], SubscriptionConfig::default());
    let mut publication = Publication::new(2, "bench", vec![]);
    let data = vec![7u8; 64];
    let (mut sent, mut got) = (0u64, 0u64);
    while got < MESSAGES {
        while sent < MESSAGES && publication.try_publish(data.clone()).is_ok() {
            sent += 1;
        }
        while let Some(f) = sub.poll_transmit() {
            owner.handle_frame(0, peer, wire(f));
        }
        while let Some(f) = publication.poll_transmit() {
            owner.handle_frame(0, peer, wire(f));
        }
        while let Some(t) = owner.poll_transmit() {
            match t.frame.link() {
                1 => sub.handle_frame(wire(t.frame)),
                _ => publication.handle_frame(wire(t.frame)),
            }
        }
        while let Some(e) = sub.poll_event() {
            if matches!(e, SubEvent::Message { .. }) {
                got += 1;
            }
        }
        while publication.poll_event().is_some() {}
    }
    got
}

fn cores(c: &mut Criterion) {
    let mut group = c.benchmark_group("channels_cores");
    group.throughput(Throughput::Elements(MESSAGES));
    group.bench_function("reliable_1to1_64B", |b| b.iter(run));
    group.finish();
}

criterion_group!(benches, cores);
criterion_main!(benches);
