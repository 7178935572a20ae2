//! Relayed -> direct upgrade by traversal, in-process on loopback: A and B
//! know only relay R; A reaches B by NodeId (relayed), and while a reliable
//! stream carries a numbered byte stream, traversal (R introducing) moves
//! the live connection to the direct path: no new handshake, same `since`,
//! every byte delivered once and in order. Then the direct path dies and
//! the connection falls back to the relay.
//!
//! On loopback every punch would succeed at once, so the test holds the
//! first attempt off with the path socket's fault injection (A drops all
//! traffic with B's real address) until the stream runs over the relay.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use relay_transport::{
    Incoming, NodeId, PathKind, PeerEvent, PeerInfo, RelayLimits, SecretKey, Transport,
};
use support::*;
use tokio::sync::mpsc;

/// Words (u64, little endian) per write.
const CHUNK_WORDS: u64 = 8192;
const MIB_WORDS: u64 = (1 << 20) / 8;

async fn relay_node() -> Transport {
    init_tracing();
    let mut c = config(SecretKey::generate(), None);
    c.relay = true;
    c.relay_limits = RelayLimits::default();
    Transport::bind(c).await.unwrap()
}

async fn poll_until(mut cond: impl FnMut() -> bool) {
    within(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

fn info(t: &Transport, peer: NodeId) -> PeerInfo {
    t.peers()
        .into_iter()
        .find(|p| p.node_id == peer)
        .expect("peer listed")
}

fn handshakes(t: &Transport) -> u64 {
    t.noise_stats().handshakes.load(Ordering::Relaxed)
}

async fn connected_to_relay(client: &Transport, relay: &Transport) {
    within(client.connect(relay.node_id(), addr(relay)))
        .await
        .unwrap();
    let r = relay.node_id();
    poll_until(|| client.relays().contains(&r)).await;
}

/// Reads numbered words from the first bi stream `t` accepts, checking
/// each is the next number; reports the words verified so far. Returns
/// the total at the end of the stream.
fn verifying_reader(t: &Transport, progress: Arc<AtomicU64>) -> tokio::task::JoinHandle<u64> {
    let t = t.clone();
    tokio::spawn(async move {
        let (mut send, mut recv) = loop {
            match t.accept().await.expect("transport open") {
                Incoming::Bi { send, recv, .. } => break (send, recv),
                _ => continue,
            }
        };
        let mut expected = 0u64;
        let mut partial: Vec<u8> = Vec::new();
        while let Some(chunk) = recv.read_chunk(1 << 16, true).await.unwrap() {
            partial.extend_from_slice(&chunk.bytes);
            let whole = partial.len() / 8 * 8;
            for word in partial[..whole].chunks_exact(8) {
                let n = u64::from_le_bytes(word.try_into().unwrap());
                assert_eq!(n, expected, "lost, duplicated or reordered stream data");
                expected += 1;
            }
            partial.drain(..whole);
            progress.store(expected, Ordering::Relaxed);
        }
        assert!(partial.is_empty(), "stream ended mid-word");
        send.finish().unwrap();
        let _ = send.stopped().await;
        expected
    })
}

enum Write {
    /// Write this many more words.
    Words(u64),
    /// Write until the flag is set, then this many more words.
    Until(Arc<AtomicBool>, u64),
}

/// Writes numbered words on `send` as told; finishes the stream when the
/// command channel closes and returns the words written.
fn numbered_writer(
    mut send: relay_transport::SendStream,
    mut commands: mpsc::UnboundedReceiver<Write>,
    written: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut next = 0u64;
        let mut buf = Vec::with_capacity((CHUNK_WORDS * 8) as usize);
        let write_upto = |limit: u64, buf: &mut Vec<u8>, next: &mut u64| {
            buf.clear();
            let end = (*next + CHUNK_WORDS).min(limit);
            for n in *next..end {
                buf.extend_from_slice(&n.to_le_bytes());
            }
            *next = end;
        };
        while let Some(cmd) = commands.recv().await {
            let (flag, extra) = match cmd {
                Write::Words(n) => (None, n),
                Write::Until(flag, n) => (Some(flag), n),
            };
            if let Some(flag) = flag {
                while !flag.load(Ordering::Relaxed) {
                    write_upto(u64::MAX, &mut buf, &mut next);
                    send.write_all(&buf).await.unwrap();
                    written.store(next, Ordering::Relaxed);
                }
            }
            let limit = next + extra;
            while next < limit {
                write_upto(limit, &mut buf, &mut next);
                send.write_all(&buf).await.unwrap();
                written.store(next, Ordering::Relaxed);
            }
        }
        send.finish().unwrap();
        next
    })
}

#[tokio::test]
async fn relayed_connection_upgrades_to_direct_without_loss_and_falls_back() {
    let r = relay_node().await;
    let a = transport(None).await;
    let b = transport(None).await;
    let (a_id, b_id, r_id) = (a.node_id(), b.node_id(), r.node_id());
    connected_to_relay(&a, &r).await;
    connected_to_relay(&b, &r).await;

    // Hold the first punch off: A drops everything exchanged with B's
    // real address (R is reached at its own address, unaffected).
    a.path_socket().drop_traffic_with(Some(addr(&b)));

    let progress = Arc::new(AtomicU64::new(0));
    let reader = verifying_reader(&b, progress.clone());
    within(a.connect_relayed(b_id)).await.unwrap();
    poll_until(|| {
        b.peers()
            .iter()
            .any(|p| p.node_id == a_id && p.since.is_some())
    })
    .await;
    let before = info(&a, b_id);
    assert_eq!(before.path, PathKind::Relayed);
    assert_eq!(before.via, Some(r_id));
    assert!(before.why.is_some(), "a relayed peer has a why");
    let b_before = info(&b, a_id);
    let (a_hs, b_hs) = (handshakes(&a), handshakes(&b));

    // The stream starts on the relayed path.
    let (send, _recv) = within(a.open_bi(b_id)).await.unwrap();
    let (cmd, commands) = mpsc::unbounded_channel();
    let written = Arc::new(AtomicU64::new(0));
    let writer = numbered_writer(send, commands, written.clone());
    cmd.send(Write::Words(MIB_WORDS)).unwrap();
    poll_until(|| progress.load(Ordering::Relaxed) >= MIB_WORDS).await;
    assert_eq!(info(&a, b_id).path, PathKind::Relayed);

    // Both sides' punches fail while A drops B's traffic; each says why.
    let failed =
        |t: &Transport, peer| info(t, peer).why.as_deref() == Some("punch-failed: timeout");
    poll_until(|| failed(&a, b_id) && failed(&b, a_id)).await;
    let snap = a.traversal_snapshot();
    assert_eq!(
        snap.why.get(&b_id).map(String::as_str),
        Some("punch-failed: timeout")
    );
    assert!(snap.enabled);
    assert!(snap.stats.punches_attempted >= 1);
    assert!(snap.stats.relay_fallbacks >= 1);
    assert!(snap
        .stats
        .last_error
        .as_deref()
        .unwrap()
        .starts_with("punch-failed: "));
    assert_eq!(info(&a, b_id).path, PathKind::Relayed);

    // The path heals; A asks again while the stream keeps writing.
    let mut a_events = a.subscribe();
    let direct = Arc::new(AtomicBool::new(false));
    cmd.send(Write::Until(direct.clone(), 2 * MIB_WORDS))
        .unwrap();
    a.path_socket().drop_traffic_with(None);
    a.request_direct(b_id).unwrap();
    let ev = event(&mut a_events, |ev| {
        matches!(ev, PeerEvent::PathChanged { node_id, path: PathKind::Direct, .. } if *node_id == b_id)
    })
    .await;
    direct.store(true, Ordering::Relaxed);
    assert_eq!(
        ev,
        PeerEvent::PathChanged {
            node_id: b_id,
            path: PathKind::Direct,
            remote_addr: Some(addr(&b)),
        }
    );
    let at_switch = written.load(Ordering::Relaxed);
    assert!(
        at_switch > MIB_WORDS,
        "the stream was running at the switch"
    );
    poll_until(|| info(&b, a_id).path == PathKind::Direct).await;

    drop(cmd);
    let total = within(writer).await.unwrap();
    let received = within(reader).await.unwrap();
    assert_eq!(received, total, "every word delivered once, in order");
    assert!(total >= 3 * MIB_WORDS + at_switch - MIB_WORDS);

    let after = info(&a, b_id);
    assert_eq!(after.path, PathKind::Direct);
    assert_eq!(after.via, None);
    assert_eq!(after.remote_addr, Some(addr(&b)));
    assert_eq!(after.why, None);
    assert!(!a.traversal_snapshot().why.contains_key(&b_id));
    assert_eq!(after.since, before.since, "same connection");
    assert!(after.path_changes >= 1);
    let b_after = info(&b, a_id);
    assert_eq!(b_after.path, PathKind::Direct);
    assert_eq!(b_after.remote_addr, Some(addr(&a)));
    assert_eq!(b_after.since, b_before.since);
    assert_eq!(handshakes(&a), a_hs, "no new handshake on A");
    assert_eq!(handshakes(&b), b_hs, "no new handshake on B");
    let snap = a.traversal_snapshot();
    assert!(snap.stats.punches_succeeded >= 1);
    assert!(b.traversal_snapshot().stats.punches_succeeded >= 1);
    assert!(snap.stats.direct_upgrades + b.traversal_snapshot().stats.direct_upgrades >= 1);

    // The direct path dies: keepalives go unanswered and both sides move
    // back to the relay under the same connection.
    let fallbacks = snap.stats.relay_fallbacks;
    let mut a_events = a.subscribe();
    a.path_socket().drop_traffic_with(Some(addr(&b)));
    let ev = event(
        &mut a_events,
        |ev| matches!(ev, PeerEvent::PathChanged { node_id, .. } if *node_id == b_id),
    )
    .await;
    assert_eq!(
        ev,
        PeerEvent::PathChanged {
            node_id: b_id,
            path: PathKind::Relayed,
            remote_addr: None,
        }
    );
    poll_until(|| info(&b, a_id).path == PathKind::Relayed).await;
    let _b_seen = serve(&b);
    let data = pattern(100_000, 7);
    assert_eq!(echo(&a, b_id, &data).await, data);
    let back = info(&a, b_id);
    assert_eq!(back.via, Some(r_id));
    assert_eq!(back.since, before.since, "still the same connection");
    assert!(back.path_changes >= 2);
    // A lost path is punched again 2 s later, so by now the reason may
    // already be the new attempt.
    assert!(
        matches!(back.why.as_deref(), Some("direct path lost" | "punching")),
        "{:?}",
        back.why
    );
    assert!(a.traversal_snapshot().stats.relay_fallbacks > fallbacks);
    assert_eq!(handshakes(&a), a_hs);
    assert_eq!(handshakes(&b), b_hs);

    for t in [&a, &b, &r] {
        t.close().await;
    }
}

#[tokio::test]
async fn public_addr_pins_the_nat_and_traversal_can_be_off() {
    init_tracing();
    let public: std::net::SocketAddr = "203.0.113.5:4433".parse().unwrap();
    let mut c = config(SecretKey::generate(), None);
    c.public_addr = Some(public);
    let pinned = Transport::bind(c).await.unwrap();
    let snap = pinned.traversal_snapshot();
    assert!(snap.enabled);
    assert_eq!(snap.nat.nat, relay_transport::traversal::NatType::Open);
    assert_eq!(snap.nat.reflex_addr, Some(public));
    assert!(pinned.take_frames().is_none(), "traversal owns the frames");

    let mut c = config(SecretKey::generate(), None);
    c.traversal = false;
    let off = Transport::bind(c).await.unwrap();
    let snap = off.traversal_snapshot();
    assert!(!snap.enabled);
    assert_eq!(snap.stats, Default::default());
    assert!(off.take_frames().is_some(), "left to the caller");
    let e = off.request_direct(pinned.node_id()).unwrap_err();
    assert_eq!(
        e.kind,
        relay_transport::traversal::TraversalErrorKind::Unsupported
    );
    let e = pinned.request_direct(off.node_id()).unwrap_err();
    assert_eq!(
        e.kind,
        relay_transport::traversal::TraversalErrorKind::PeerNotReachable
    );
    pinned.close().await;
    off.close().await;
}
