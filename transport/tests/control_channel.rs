//! The control channel never waits behind application datagrams: with
//! nobody reading B's accept queue and A flooding B with application
//! datagrams, A's traversal message still reaches B, a third node still
//! registers with B as a relay, and B counts the application datagrams it
//! dropped. Control messages are reliable: both sides count them sent and
//! delivered, none retransmitted on a clean loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bytes::Bytes;
use relay_proto::wire::traversal::NatType;
use relay_transport::{ControlMsg, SecretKey, Transport, TraversalMsg};
use support::*;

/// Application datagrams A sends: well beyond the accept queue (1024).
const FLOOD: u64 = 3000;

async fn node(relay: bool) -> Transport {
    init_tracing();
    let mut c = config(SecretKey::generate(), None);
    c.traversal = false;
    c.relay = relay;
    Transport::bind(c).await.unwrap()
}

/// Polls `cond` until it holds (overall test timeout): the registration
/// state has no event to wait on.
async fn poll_until(mut cond: impl FnMut() -> bool) {
    within(async {
        while !cond() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn control_flows_while_nobody_reads_application_datagrams() {
    // B relays, so registration is one of the control exchanges checked.
    let b = node(true).await;
    let a = node(false).await;
    let c = node(false).await;
    let mut traversal = b.take_traversal_messages().unwrap();

    within(a.connect(b.node_id(), addr(&b))).await.unwrap();
    for i in 0..FLOOD {
        a.send_datagram(b.node_id(), Bytes::from(i.to_be_bytes().to_vec()))
            .unwrap();
    }
    // Sent after the flood on the same connection: it is read after it.
    let nat = ControlMsg::Traversal(TraversalMsg::NatInfo {
        nat: NatType::Symmetric,
    });
    a.send_control(b.node_id(), &nat).unwrap();
    let (from, msg) = within(traversal.recv()).await.unwrap();
    assert_eq!(from, a.node_id());
    assert_eq!(
        msg,
        TraversalMsg::NatInfo {
            nat: NatType::Symmetric
        }
    );
    let stats = b.channel_stats();
    assert!(
        stats.app_datagrams_dropped > 0 && stats.app_datagrams_dropped <= FLOOD - 1024,
        "{stats:?}"
    );

    // With B's accept queue still full, relay registrations complete (A's
    // went over the flooded connection) and a third node reaches A through
    // B by NodeId alone.
    let relay = b.node_id();
    poll_until(|| a.relays().contains(&relay)).await;
    within(c.connect(b.node_id(), addr(&b))).await.unwrap();
    poll_until(|| c.relays().contains(&relay)).await;
    within(c.connect_relayed(a.node_id())).await.unwrap();

    // Control messages went through the reliable channel.
    assert!(
        a.channel_stats().control_sent >= 1,
        "{:?}",
        a.channel_stats()
    );
    assert!(b.channel_stats().control_delivered >= 1);
    assert!(c.channel_stats().control_delivered >= 1);
    assert_eq!(b.channel_stats().control_invalid, 0);
}
