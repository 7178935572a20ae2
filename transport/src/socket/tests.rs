//! Path socket tests against real loopback UDP sockets.

use std::future::poll_fn;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use quinn::AsyncUdpSocket;
use relay_proto::SecretKey;
use tokio::net::UdpSocket;

use super::*;

const TIMEOUT: Duration = Duration::from_secs(5);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn path_socket(options: &SocketOptions) -> Arc<PathSocket> {
    Arc::new(PathSocket::bind(loopback(), options).unwrap())
}

async fn raw() -> UdpSocket {
    UdpSocket::bind(loopback()).await.unwrap()
}

/// Receives one batch through the quinn-facing API.
async fn recv_batch(sock: &PathSocket) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut storage = vec![[0u8; 2048]; 4];
    let mut metas = [RecvMeta::default(); 4];
    let n = {
        let mut bufs: Vec<IoSliceMut<'_>> =
            storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let n = tokio::time::timeout(
            TIMEOUT,
            poll_fn(|cx| sock.poll_recv(cx, &mut bufs, &mut metas)),
        )
        .await
        .unwrap()
        .unwrap();
        n
    };
    (0..n)
        .map(|i| (metas[i].addr, storage[i][..metas[i].len].to_vec()))
        .collect()
}

/// Sends through the quinn-facing API, waiting for writability as quinn does.
async fn send(sock: &Arc<PathSocket>, to: SocketAddr, data: &[u8]) {
    let t = Transmit {
        destination: to,
        ecn: None,
        contents: data,
        segment_size: None,
        src_ip: None,
    };
    let mut poller = sock.clone().create_io_poller();
    loop {
        match sock.try_send(&t) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::time::timeout(TIMEOUT, poll_fn(|cx| poller.as_mut().poll_writable(cx)))
                    .await
                    .unwrap()
                    .unwrap();
            }
            Err(e) => panic!("send failed: {e}"),
        }
    }
}

async fn raw_recv(sock: &UdpSocket) -> (SocketAddr, Vec<u8>) {
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(TIMEOUT, sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    (from, buf[..n].to_vec())
}

#[tokio::test]
async fn quinn_sees_only_mapped_addresses() {
    let sock = path_socket(&SocketOptions::default());
    let local = sock.local_addr().unwrap();
    assert!(local.is_ipv6(), "quinn must accept IPv6 mapped peers");
    assert_eq!(local.port(), sock.real_local_addr().port());

    let peer = raw().await;
    peer.send_to(&[0x40, 1, 2, 3], sock.real_local_addr())
        .await
        .unwrap();
    let got = recv_batch(&sock).await;
    assert_eq!(got.len(), 1);
    let (mapped, data) = &got[0];
    assert!(is_mapped(mapped), "{mapped} is not a mapped address");
    assert_eq!(data, &[0x40, 1, 2, 3]);
    assert_eq!(sock.stats().unadopted_entries, 1);

    // Replies to the mapped address reach the real one.
    send(&sock, *mapped, &[0x41, 9]).await;
    let (from, data) = raw_recv(&peer).await;
    assert_eq!(from, sock.real_local_addr());
    assert_eq!(data, vec![0x41, 9]);

    // Adoption keeps the same address.
    let node = SecretKey::generate().node_id();
    assert!(sock.adopt(mapped, node));
    assert_eq!(sock.mapped_addr(&node), Some(*mapped));
    assert_eq!(sock.stats().unadopted_entries, 0);
}

#[tokio::test]
async fn frames_never_reach_quinn() {
    let sock = path_socket(&SocketOptions::default());
    let mut frames = sock.take_frames().unwrap();
    assert!(sock.take_frames().is_none(), "only one receiver");
    let peer = raw().await;
    let to = sock.real_local_addr();
    peer.send_to(&[0x01, 0xaa], to).await.unwrap();
    peer.send_to(&[0x3f], to).await.unwrap();
    peer.send_to(&[0xc0, 7], to).await.unwrap();

    let mut quic = Vec::new();
    while quic.is_empty() {
        quic = recv_batch(&sock).await;
    }
    assert_eq!(quic.len(), 1);
    assert_eq!(quic[0].1, vec![0xc0, 7]);

    let f1 = frames.recv().await.unwrap();
    let f2 = frames.recv().await.unwrap();
    assert_eq!(f1.src, peer.local_addr().unwrap());
    assert_eq!(&f1.data[..], &[0x01, 0xaa]);
    assert_eq!(&f2.data[..], &[0x3f]);
    // Frames from unknown sources allocate nothing.
    assert_eq!(sock.stats().mapped_entries, 1);
    assert_eq!(sock.stats().frames_delivered, 2);
}

#[tokio::test]
async fn send_frame_rejects_quic_looking_data() {
    let sock = path_socket(&SocketOptions::default());
    let peer = raw().await;
    let to = peer.local_addr().unwrap();
    assert!(sock.send_frame(to, &[0x40]).await.is_err());
    assert!(sock.send_frame(to, &[]).await.is_err());
    sock.send_frame(to, &[0x02, 5]).await.unwrap();
    assert_eq!(raw_recv(&peer).await.1, vec![0x02, 5]);
}

#[tokio::test]
async fn set_path_moves_traffic_under_the_same_address() {
    let sock = path_socket(&SocketOptions::default());
    let first = raw().await;
    let second = raw().await;
    let node = SecretKey::generate().node_id();
    let mapped = sock.map_outbound(node, first.local_addr().unwrap());
    assert!(is_mapped(&mapped));

    send(&sock, mapped, &[0x40, 1]).await;
    assert_eq!(raw_recv(&first).await.1, vec![0x40, 1]);

    let old = sock.set_path(&mapped, Path::Direct(second.local_addr().unwrap()));
    assert_eq!(old, Some(Path::Direct(first.local_addr().unwrap())));
    send(&sock, mapped, &[0x40, 2]).await;
    assert_eq!(raw_recv(&second).await.1, vec![0x40, 2]);

    // Packets from the new real address arrive under the old mapped one.
    second
        .send_to(&[0x40, 3], sock.real_local_addr())
        .await
        .unwrap();
    let got = recv_batch(&sock).await;
    assert_eq!(got, vec![(mapped, vec![0x40, 3])]);
}

#[tokio::test]
async fn unroutable_sends_are_dropped_and_counted() {
    let sock = path_socket(&SocketOptions::default());
    let unknown: SocketAddr = "[fd52:4e00::ffff]:1".parse().unwrap();
    send(&sock, unknown, &[0x40]).await;
    let relay = SecretKey::generate().node_id();
    let node = SecretKey::generate().node_id();
    let mapped = sock.map_outbound(node, "127.0.0.1:9".parse().unwrap());
    sock.set_path(&mapped, Path::Relayed { relay });
    send(&sock, mapped, &[0x40]).await;
    assert_eq!(sock.stats().unroutable, 2);
}

#[tokio::test]
async fn unauthenticated_sources_are_bounded() {
    let options = SocketOptions {
        max_unadopted: 3,
        ..SocketOptions::default()
    };
    let sock = path_socket(&options);
    let mut peers = Vec::new();
    for _ in 0..6 {
        peers.push(raw().await);
    }
    for peer in &peers {
        peer.send_to(&[0xc0], sock.real_local_addr()).await.unwrap();
        let got = recv_batch(&sock).await;
        assert_eq!(got.len(), 1);
    }
    let stats = sock.stats();
    assert_eq!(stats.unadopted_entries, 3);
    assert_eq!(stats.mapped_entries, 3);
}

/// Splits received buffers into datagrams by their stride.
fn segments(batch: &[(SocketAddr, Vec<u8>, usize)]) -> Vec<(SocketAddr, Vec<u8>)> {
    batch
        .iter()
        .flat_map(|(addr, data, stride)| {
            let stride = (*stride).max(1);
            data.chunks(stride).map(move |c| (*addr, c.to_vec()))
        })
        .collect()
}

/// Like `recv_batch`, keeping each buffer's stride.
async fn recv_strided(sock: &PathSocket) -> Vec<(SocketAddr, Vec<u8>, usize)> {
    let mut storage = vec![[0u8; 4096]; 4];
    let mut metas = [RecvMeta::default(); 4];
    let n = {
        let mut bufs: Vec<IoSliceMut<'_>> =
            storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        tokio::time::timeout(
            TIMEOUT,
            poll_fn(|cx| sock.poll_recv(cx, &mut bufs, &mut metas)),
        )
        .await
        .unwrap()
        .unwrap()
    };
    (0..n)
        .map(|i| {
            (
                metas[i].addr,
                storage[i][..metas[i].len].to_vec(),
                metas[i].stride,
            )
        })
        .collect()
}

#[tokio::test]
async fn batched_sends_and_receives_keep_segments_and_demux() {
    let tx = path_socket(&SocketOptions::default());
    let rx = path_socket(&SocketOptions::default());
    let mut frames = rx.take_frames().unwrap();
    let node = SecretKey::generate().node_id();
    let mapped = tx.map_outbound(node, rx.real_local_addr());
    let segs = tx.max_transmit_segments().min(3);

    // QUIC, one of our frames, QUIC: 100 bytes each, one transmit when GSO
    // is available.
    let mut contents = Vec::new();
    for first in [0x40u8, 0x01, 0x41].iter().take(segs.max(1)) {
        contents.extend(std::iter::once(*first).chain(std::iter::repeat_n(*first, 99)));
    }
    let t = Transmit {
        destination: mapped,
        ecn: None,
        contents: &contents,
        segment_size: (segs > 1).then_some(100),
        src_ip: None,
    };
    let mut poller = tx.clone().create_io_poller();
    loop {
        match tx.try_send(&t) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                poll_fn(|cx| poller.as_mut().poll_writable(cx))
                    .await
                    .unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }

    let want_quic: Vec<u8> = [0x40u8, 0x41]
        .into_iter()
        .filter(|b| segs > 1 || *b == 0x40)
        .collect();
    let mut quic = Vec::new();
    while quic.len() < want_quic.len() {
        quic.extend(segments(&recv_strided(&rx).await));
    }
    assert!(quic
        .iter()
        .all(|(from, d)| is_mapped(from) && d.len() == 100));
    let firsts: Vec<u8> = quic.iter().map(|(_, d)| d[0]).collect();
    assert_eq!(firsts, want_quic);
    if segs > 1 {
        let f = tokio::time::timeout(TIMEOUT, frames.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.data.len(), 100);
        assert_eq!(f.data[0], 0x01);
        assert_eq!(f.src, tx.real_local_addr());
    }
}

/// A garbage flood from many sources fills the un-adopted pool; once it
/// stops, the transport's sweep removes every entry after its TTL although
/// no further packet arrives, and the gauge is back to its baseline.
#[tokio::test]
async fn unauthenticated_entries_leave_after_their_ttl_without_new_packets() {
    let ttl = Duration::from_secs(30);
    let options = SocketOptions {
        max_unadopted: 16,
        unadopted_ttl: ttl,
        ..SocketOptions::default()
    };
    let sock = path_socket(&options);
    let node = SecretKey::generate().node_id();
    sock.map_outbound(node, "192.0.2.1:7".parse().unwrap());
    let baseline = sock.stats();
    assert_eq!(
        (baseline.mapped_entries, baseline.unadopted_entries),
        (1, 0)
    );

    let mut flooders = Vec::new();
    for _ in 0..24 {
        let peer = raw().await;
        peer.send_to(&[0x40, 0xde, 0xad], sock.real_local_addr())
            .await
            .unwrap();
        flooders.push(peer);
    }
    let mut seen = 0;
    while seen < flooders.len() {
        seen += recv_batch(&sock).await.len();
    }
    let flooded = sock.stats();
    assert_eq!(flooded.unadopted_entries, 16, "bounded");
    assert_eq!(flooded.mapped_entries, 17);

    // From here on the clock is simulated; no packet arrives any more.
    tokio::time::pause();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sweeper = tokio::spawn(sock.clone().sweep_expired(stop_rx));
    tokio::time::advance(ttl - Duration::from_secs(2)).await;
    tokio::task::yield_now().await;
    assert_eq!(sock.stats().mapped_entries, 17, "nothing expires early");
    tokio::time::advance(Duration::from_secs(2) + SWEEP_INTERVAL * 2).await;
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    let after = sock.stats();
    assert_eq!(after.unadopted_entries, 0);
    assert_eq!(after.mapped_entries, baseline.mapped_entries);
    assert!(
        sock.mapped_addr(&node).is_some(),
        "authenticated entry kept"
    );
    stop_tx.send_replace(true);
    sweeper.await.unwrap();
}

#[tokio::test]
async fn relay_keys_are_resumed_not_restarted() {
    use crate::relay::auth::FrameKeys;
    let sock = path_socket(&SocketOptions::default());
    let relay = SecretKey::generate().node_id();
    let keys = FrameKeys::from_bytes([1; 16], [2; 16]);
    assert!(sock.add_relay(relay, keys.clone()), "new keys");
    assert!(!sock.add_relay(relay, keys.clone()), "same keys");
    let before = sock.relayed.auth(&relay).unwrap();
    sock.remove_relay(&relay);
    assert!(sock.relayed.auth(&relay).is_none(), "no longer used");
    assert!(!sock.add_relay(relay, keys), "same keys again");
    let after = sock.relayed.auth(&relay).unwrap();
    assert!(Arc::ptr_eq(&before, &after), "numbering and window resumed");
    assert!(sock.add_relay(relay, FrameKeys::from_bytes([3; 16], [4; 16])));
}

#[tokio::test]
async fn every_datagram_arrives_after_full_and_short_reads() {
    let sock = path_socket(&SocketOptions::default());
    let peer = raw().await;
    // Reads take 4 at most (recv_batch): 6 datagrams give a full read,
    // which must leave the socket readable for the other 2, then a short
    // read, after which only new datagrams may wake the reader again.
    for round in 0u8..8 {
        let count = 1 + round % 6;
        for i in 0..count {
            peer.send_to(&[0x40, round, i], sock.real_local_addr())
                .await
                .unwrap();
        }
        let mut got = Vec::new();
        while got.len() < usize::from(count) {
            got.extend(recv_batch(&sock).await.into_iter().map(|(_, d)| d));
        }
        let want: Vec<Vec<u8>> = (0..count).map(|i| vec![0x40, round, i]).collect();
        assert_eq!(got, want, "round {round}");
    }
}

#[test]
fn only_a_short_batch_read_means_the_queue_is_empty() {
    let linux = cfg!(any(target_os = "linux", target_os = "android"));
    assert_eq!(drains_queue(1, 32), linux);
    assert_eq!(drains_queue(31, 32), linux);
    // A full batch may have left datagrams behind; one of one says nothing.
    assert!(!drains_queue(32, 32));
    assert!(!drains_queue(1, 1));
    assert!(!drains_queue(0, 32));
}
