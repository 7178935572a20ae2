//! A subscription whose window exceeds what the node's per-peer writer
//! queues at once: the owner delivers the whole window in one burst and
//! every message must still arrive once, in order, with no gap.
//!
//! Two in-process nodes on loopback (the channels bench's nodes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../benches/channels/node.rs"]
#[allow(dead_code)]
mod node;

use std::time::Duration;

use node::Node;
use relay_transport::NetworkKey;

/// Far above the writer's queue of frames per peer.
const WINDOW: u32 = 16384;
/// Several windows' worth.
const COUNT: u64 = 40_000;

async fn burst(window: u32, count: u64) {
    let key = NetworkKey::generate();
    let a = Node::start(&key).await;
    let b = Node::start(&key).await;
    b.connect(&a).await;
    a.create("burst");
    let sub = b.subscribe(a.id(), "burst", window).await;
    // `receive` panics on a message out of order, a gap or any other
    // event; a stalled subscription fails the bound.
    let run = async {
        let (_, got) = tokio::join!(
            a.publish_batched(a.id(), "burst", count),
            sub.receive(count)
        );
        got
    };
    let got = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the subscription stalled");
    assert_eq!(got.count, count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_larger_than_the_writer_queue_loses_nothing() {
    burst(WINDOW, COUNT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_busy_subscriptions_from_one_peer_stay_in_order() {
    let key = NetworkKey::generate();
    let a = Node::start(&key).await;
    let b = Node::start(&key).await;
    b.connect(&a).await;
    a.create("one");
    a.create("two");
    let s1 = b.subscribe(a.id(), "one", 4000).await;
    let s2 = b.subscribe(a.id(), "two", 4000).await;
    let run = async {
        tokio::join!(
            a.publish_batched(a.id(), "one", 20_000),
            a.publish_batched(a.id(), "two", 20_000),
            s1.receive(20_000),
            s2.receive(20_000)
        )
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("a subscription stalled");
}
