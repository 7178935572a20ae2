//! Probe ports against real loopback UDP sockets.

use std::future::poll_fn;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use quinn::AsyncUdpSocket;
use relay_proto::SecretKey;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::super::{PathSocket, SocketOptions};
use super::{run_probe_port, PortFrame};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn raw_recv(sock: &UdpSocket) -> (SocketAddr, Vec<u8>) {
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(TIMEOUT, sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    (from, buf[..n].to_vec())
}

async fn recv_one(sock: &PathSocket) -> (SocketAddr, Vec<u8>) {
    let mut storage = [0u8; 2048];
    let mut metas = [RecvMeta::default(); 1];
    let mut bufs = [IoSliceMut::new(&mut storage)];
    let n = tokio::time::timeout(
        TIMEOUT,
        poll_fn(|cx| sock.poll_recv(cx, &mut bufs, &mut metas)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(n, 1);
    (metas[0].addr, storage[..metas[0].len].to_vec())
}

fn quic(sock: &PathSocket, to: SocketAddr, data: &[u8]) {
    let t = Transmit {
        destination: to,
        ecn: None,
        contents: data,
        segment_size: None,
        src_ip: None,
    };
    sock.try_send(&t).unwrap();
}

async fn wait_for(mut check: impl FnMut() -> bool) {
    tokio::time::timeout(TIMEOUT, async {
        while !check() {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_routed_peer_talks_through_its_probe_port() {
    let sock = Arc::new(
        PathSocket::bind("127.0.0.1:0".parse().unwrap(), &SocketOptions::default()).unwrap(),
    );
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let node = SecretKey::from_bytes(&[3; 32]).node_id();
    let mapped = sock.map_outbound(node, peer_addr);

    let io = sock.open_probe_port(7).unwrap();
    assert!(sock.open_probe_port(7).is_err(), "one socket per id");
    assert_eq!(sock.stats().probe_ports, 1);
    let (tx, mut frames) = mpsc::channel::<PortFrame>(8);
    let reader = tokio::spawn(run_probe_port(sock.clone(), 7, io, tx));

    // A frame from the probe port leaves from another local port.
    sock.send_frame_from_port(7, peer_addr, &[0x10, 1, 2])
        .await
        .unwrap();
    let (port_addr, data) = raw_recv(&peer).await;
    assert_eq!(data, [0x10, 1, 2]);
    assert_ne!(port_addr, sock.real_local_addr());

    // Frames arriving on the port reach the channel, tagged.
    peer.send_to(&[0x11, 9], port_addr).await.unwrap();
    let frame = tokio::time::timeout(TIMEOUT, frames.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (frame.port, frame.src, &frame.data[..]),
        (7, peer_addr, &[0x11, 9][..])
    );

    // QUIC on the port from an address not routed through it: dropped.
    peer.send_to(&[0x40, 1], port_addr).await.unwrap();
    wait_for(|| sock.stats().port_dropped == 1).await;

    // Not routed yet: QUIC to the peer leaves from the main socket.
    quic(&sock, mapped, &[0x41, 1]);
    let (from, _) = raw_recv(&peer).await;
    assert_eq!(from, sock.real_local_addr());

    // Routed: QUIC leaves from the probe port, and the peer's QUIC to the
    // port reaches quinn under the peer's mapped address (the reader task
    // wakes quinn's receive).
    assert!(sock.route_via_port(peer_addr, 7));
    assert_eq!(sock.port_route(&peer_addr), Some(7));
    quic(&sock, mapped, &[0x42, 2]);
    let (from, data) = raw_recv(&peer).await;
    assert_eq!((from, data), (port_addr, vec![0x42, 2]));
    // Poll quinn's receive once so it is parked on the main socket, then
    // send: only the reader task's wake-up can finish it.
    let mut receiving = Box::pin(recv_one(&sock));
    tokio::select! {
        biased;
        _ = &mut receiving => panic!("nothing was sent yet"),
        () = std::future::ready(()) => {}
    }
    peer.send_to(&[0x43, 3], port_addr).await.unwrap();
    let (src, data) = receiving.await;
    assert_eq!((src, data), (mapped, vec![0x43, 3]));
    assert_eq!(sock.stats().port_received, 1);
    assert_eq!(sock.stats().port_sent, 1);

    // Closed: the route goes with it, traffic is back on the main socket.
    reader.abort();
    sock.close_probe_port(7);
    assert_eq!(sock.port_route(&peer_addr), None);
    assert_eq!(sock.stats().probe_ports, 0);
    assert!(
        !sock.route_via_port(peer_addr, 7),
        "no route via a closed port"
    );
    quic(&sock, mapped, &[0x44, 4]);
    let (from, _) = raw_recv(&peer).await;
    assert_eq!(from, sock.real_local_addr());
}

#[tokio::test]
async fn probe_ports_are_bounded() {
    let sock = PathSocket::bind("127.0.0.1:0".parse().unwrap(), &SocketOptions::default()).unwrap();
    // Ids are the caller's; the bound is on open sockets.
    for id in 0..8 {
        sock.open_probe_port(id).unwrap();
    }
    assert_eq!(sock.probe_ports(), 8);
    for id in 0..8 {
        sock.close_probe_port(id);
    }
    assert_eq!(sock.probe_ports(), 0);
    const { assert!(super::MAX_PROBE_PORTS >= 256) };
}

/// A routed peer's full-size packets sent as one GSO batch (as quinn sends
/// a stream's data) reach quinn as separate, whole datagrams. The probe
/// port's socket state turns GRO on, so the kernel may hand the port the
/// batch as one coalesced buffer; reading it as a single datagram loses
/// every packet in it (truncated, then undecryptable), which stalled
/// streams on birthday-punched paths while small packets kept flowing.
#[tokio::test]
async fn a_gso_batch_to_a_routed_probe_port_arrives_whole() {
    const SEG: usize = 1200;
    const SEGS: usize = 3;
    let sock = Arc::new(
        PathSocket::bind("127.0.0.1:0".parse().unwrap(), &SocketOptions::default()).unwrap(),
    );
    let peer_std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer_std.set_nonblocking(true).unwrap();
    let peer_state = quinn::udp::UdpSocketState::new((&peer_std).into()).unwrap();
    let peer_addr = peer_std.local_addr().unwrap();
    let node = SecretKey::from_bytes(&[4; 32]).node_id();
    let mapped = sock.map_outbound(node, peer_addr);

    let io = sock.open_probe_port(9).unwrap();
    let port_addr = sock.probe_port_addr(9).unwrap();
    let (tx, _frames) = mpsc::channel::<PortFrame>(8);
    let reader = tokio::spawn(run_probe_port(sock.clone(), 9, io, tx));
    // Routed once the reader runs, as when a probe wins.
    assert!(sock.route_via_port(peer_addr, 9));

    let contents: Vec<u8> = (0..SEGS)
        .flat_map(|i| {
            let mut seg = vec![i as u8; SEG];
            seg[0] = 0x40 | i as u8;
            seg
        })
        .collect();
    let batch = Transmit {
        destination: port_addr,
        ecn: None,
        contents: &contents,
        segment_size: (peer_state.max_gso_segments() >= SEGS).then_some(SEG),
        src_ip: None,
    };
    if batch.segment_size.is_some() {
        peer_state.send((&peer_std).into(), &batch).unwrap();
    } else {
        // No GSO here: the same packets one by one (the check still holds).
        for chunk in contents.chunks(SEG) {
            peer_std.send_to(chunk, port_addr).unwrap();
        }
    }

    for i in 0..SEGS {
        let (src, data) = recv_one(&sock).await;
        assert_eq!(src, mapped, "packet {i}");
        assert_eq!(data.len(), SEG, "packet {i}: one whole segment");
        assert_eq!(data[0], 0x40 | i as u8, "packet {i}: in order");
    }
    assert_eq!(sock.stats().port_received, SEGS as u64);
    assert_eq!(sock.stats().port_dropped, 0);
    reader.abort();
}
