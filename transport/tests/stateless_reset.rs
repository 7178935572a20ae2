//! A peer crashes (no CONNECTION_CLOSE reaches us) and restarts with the
//! same identity on the same port. Its reset key comes from its identity,
//! so its answer to our stale connection's next packet is a stateless
//! reset we accept: we reconnect at once instead of waiting for the idle
//! timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay_transport::{PeerEvent, SecretKey, Transport};
use support::*;

/// Binds `secret` on `addr`, retrying while the OS still holds the port.
async fn rebind(secret: SecretKey, addr: SocketAddr) -> Transport {
    within(async {
        loop {
            let mut c = config(secret.clone(), None);
            c.listen = addr;
            match Transport::bind(c).await {
                Ok(t) => return t,
                Err(relay_transport::BindError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AddrInUse =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("bind: {e}"),
            }
        }
    })
    .await
}

/// A's stale connection to B ends by B's stateless reset, A reconnects
/// within 2 s of B's restart, and data flows again.
async fn reset_then_reconnected(
    events: &mut tokio::sync::broadcast::Receiver<PeerEvent>,
    a: &Transport,
    b_id: relay_transport::NodeId,
    restarted: Instant,
) {
    let gone = event(
        events,
        |e| matches!(e, PeerEvent::Disconnected { node_id, .. } if *node_id == b_id),
    )
    .await;
    let PeerEvent::Disconnected { reason, .. } = gone else {
        unreachable!()
    };
    assert!(
        reason.starts_with("reset:"),
        "the stale connection ends by a stateless reset, not {reason:?}"
    );
    event(events, is_connected(b_id)).await;
    let took = restarted.elapsed();
    println!("reconnected {took:?} after the restart");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let data = pattern(5_000, 3);
    assert_eq!(echo(a, b_id, &data).await, data);
}

#[tokio::test]
async fn restarted_peer_resets_the_stale_connection_at_once() {
    init_tracing();
    let b_secret = SecretKey::generate();
    let b = Transport::bind(config(b_secret.clone(), None))
        .await
        .unwrap();
    let b_id = b.node_id();
    let b_addr = addr(&b);
    // A's keep-alive decides how soon it sends B a packet after the
    // restart; half a second leaves the 2 s goal room on a busy machine.
    let mut a_config = config(SecretKey::generate(), None);
    a_config.keep_alive = Duration::from_millis(500);
    let a = Transport::bind(a_config).await.unwrap();
    let mut events = a.subscribe();
    a.add_peer(b_id, b_addr);
    event(&mut events, is_connected(b_id)).await;

    // B crashes: nothing it sends reaches A any more, not even its close.
    b.path_socket().drop_traffic_with(Some(addr(&a)));
    b.close().await;
    drop(b);

    let b2 = rebind(b_secret, b_addr).await;
    let restarted = Instant::now();
    let _served = serve(&b2);
    // The idle timeout here is 10 s; the reset answers A's next packet.
    reset_then_reconnected(&mut events, &a, b_id, restarted).await;
    a.close().await;
    b2.close().await;
}

/// The same crash at the default keep-alive (5 s), where the restarted
/// peer dials us: its new connection loses the tie-break to our stale one
/// (we have the lower NodeId and dialled first), so we send one packet on
/// the stale one at once, its stateless reset ends it, and we redial:
/// reconnected well within 2 s, not a keep-alive later.
#[tokio::test]
async fn restarted_peer_dialing_us_resets_our_stale_connection_at_once() {
    init_tracing();
    // A must hold the lower NodeId, so that its stale outbound connection
    // wins the tie-break against B's new one.
    let (a_secret, b_secret) = loop {
        let (x, y) = (SecretKey::generate(), SecretKey::generate());
        if x.node_id() < y.node_id() {
            break (x, y);
        }
    };
    let b = Transport::bind(config(b_secret.clone(), None))
        .await
        .unwrap();
    let b_id = b.node_id();
    let b_addr = addr(&b);
    let mut a_config = config(a_secret, None);
    a_config.keep_alive =
        relay_transport::TransportConfig::new(SecretKey::generate(), None, a_config.listen)
            .keep_alive;
    assert!(a_config.keep_alive >= Duration::from_secs(5));
    let a = Transport::bind(a_config).await.unwrap();
    let a_id = a.node_id();
    let a_addr = addr(&a);
    let mut events = a.subscribe();
    a.add_peer(b_id, b_addr);
    event(&mut events, is_connected(b_id)).await;

    b.path_socket().drop_traffic_with(Some(a_addr));
    b.close().await;
    drop(b);

    let b2 = rebind(b_secret, b_addr).await;
    let restarted = Instant::now();
    let _served = serve(&b2);
    // The restarted B dials A, as a node dials its bootstrap peer.
    b2.add_peer(a_id, a_addr);
    reset_then_reconnected(&mut events, &a, b_id, restarted).await;
    a.close().await;
    b2.close().await;
}
