//! Both sides dial each other at the same moment: afterwards each side keeps
//! exactly one connection, and it is the same one (initiated by the lower
//! NodeId), and it carries streams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use relay_transport::{NodeId, PeerInfo, PeerState, Transport};
use support::*;

const ITERATIONS: usize = 20;

/// One connected peer whose connection was initiated by `initiator`.
fn settled(me: NodeId, peer: NodeId, initiator: NodeId) -> impl FnMut(&[PeerInfo]) -> bool {
    move |peers| {
        peers.len() == 1
            && peers[0].node_id == peer
            && peers[0].state == PeerState::Connected
            && peers[0].outbound == (initiator == me)
    }
}

async fn round(i: usize) {
    let a = transport(None).await;
    let b = transport(None).await;
    let _a_seen = serve(&a);
    let _b_seen = serve(&b);
    let mut a_events = a.subscribe();
    let mut b_events = b.subscribe();
    let (a_id, b_id) = (a.node_id(), b.node_id());
    let lower = a_id.min(b_id);

    let (ra, rb) =
        within(async { tokio::join!(a.connect(b_id, addr(&b)), b.connect(a_id, addr(&a))) }).await;
    ra.unwrap_or_else(|e| panic!("round {i}: a->b {e}"));
    rb.unwrap_or_else(|e| panic!("round {i}: b->a {e}"));

    until_peers(&a, &mut a_events, settled(a_id, b_id, lower)).await;
    until_peers(&b, &mut b_events, settled(b_id, a_id, lower)).await;

    // The kept connection works both ways.
    let data = pattern(4000, i as u8);
    assert_eq!(echo(&a, b_id, &data).await, data, "round {i}");
    assert_eq!(echo(&b, a_id, &data).await, data, "round {i}");

    // And it is still the one (nothing replaced it meanwhile).
    assert!(settled(a_id, b_id, lower)(&a.peers()), "round {i}");
    assert!(settled(b_id, a_id, lower)(&b.peers()), "round {i}");
    close_both(a, b).await;
}

async fn close_both(a: Transport, b: Transport) {
    tokio::join!(a.close(), b.close());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_keep_one_connection() {
    for i in 0..ITERATIONS {
        round(i).await;
    }
}
