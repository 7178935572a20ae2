//! What an on-path attacker can do to Noise-over-QUIC: flipped bytes and
//! replayed packets are dropped without harm, and nothing travels in clear.
//! A UDP forwarding shim sits between client and server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use tokio::net::UdpSocket;

/// Which way a datagram travels through the shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToServer,
    ToClient,
}

/// What the shim does with a datagram.
enum Action {
    Forward,
    /// Forward twice (a replay).
    Duplicate,
}

type Policy = Box<dyn FnMut(Dir, &mut Vec<u8>) -> Action + Send>;

/// A UDP forwarder: the client talks to `addr`, the shim talks to the
/// server from the same socket.
struct Shim {
    addr: SocketAddr,
    /// Every datagram forwarded (after the policy ran), when recording.
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Shim {
    async fn start(server: SocketAddr, mut policy: Policy, record: bool) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            let mut client: Option<SocketAddr> = None;
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let (dir, to) = if from == server {
                    match client {
                        Some(c) => (Dir::ToClient, c),
                        None => continue,
                    }
                } else {
                    client = Some(from);
                    (Dir::ToServer, server)
                };
                let mut dgram = buf[..n].to_vec();
                let action = policy(dir, &mut dgram);
                if record {
                    log.lock().unwrap().push(dgram.clone());
                }
                let _ = sock.send_to(&dgram, to).await;
                if let Action::Duplicate = action {
                    let _ = sock.send_to(&dgram, to).await;
                }
            }
        });
        Self { addr, seen }
    }
}

/// Runs an echo of `data` through a shim with `policy` (sending each of
/// `datagrams` as a QUIC datagram first); returns the shim.
async fn transfer_through(
    policy: Policy,
    record: bool,
    data: &[u8],
    datagrams: &[Vec<u8>],
) -> Shim {
    let server = node(None);
    let client = node(None);
    let sep = endpoint(&server.config, true);
    let cep = endpoint(&client.config, false);
    let shim = Shim::start(addr(&sep), policy, record).await;
    let srv = tokio::spawn(echo_server(sep.clone()));

    let conn = within(dial(&cep, &client.config, &server.id, shim.addr))
        .await
        .unwrap();
    for d in datagrams {
        conn.send_datagram(d.clone().into()).unwrap();
    }
    let back = within(echo(&conn, data)).await;
    assert!(back == data, "echo differs");
    // Still up: another round trip works and nothing closed it.
    assert_eq!(within(echo(&conn, b"still here")).await, b"still here");
    assert!(conn.close_reason().is_none());
    conn.close(0u32.into(), b"done");
    within(srv).await.unwrap();
    shim
}

fn is_short_header(d: &[u8]) -> bool {
    d.first().is_some_and(|b| b & 0x80 == 0)
}

#[tokio::test]
async fn flipped_byte_in_one_packet_is_harmless() {
    let flipped = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let (f, c) = (flipped.clone(), count.clone());
    let policy: Policy = Box::new(move |dir, d| {
        if dir == Dir::ToServer && is_short_header(d) {
            let i = c.fetch_add(1, Ordering::Relaxed);
            if i == 50 {
                let mid = d.len() / 2;
                d[mid] ^= 0x20;
                f.fetch_add(1, Ordering::Relaxed);
            }
        }
        Action::Forward
    });
    let data = pattern(1024 * 1024, 3);
    transfer_through(policy, false, &data, &[]).await;
    assert_eq!(
        flipped.load(Ordering::Relaxed),
        1,
        "the shim flipped a byte"
    );
}

#[tokio::test]
async fn replayed_packets_are_harmless() {
    let replayed = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let (r, c) = (replayed.clone(), count.clone());
    let policy: Policy = Box::new(move |_dir, _d| {
        if c.fetch_add(1, Ordering::Relaxed) % 7 == 3 {
            r.fetch_add(1, Ordering::Relaxed);
            Action::Duplicate
        } else {
            Action::Forward
        }
    });
    let data = pattern(1024 * 1024, 4);
    transfer_through(policy, false, &data, &[]).await;
    assert!(replayed.load(Ordering::Relaxed) > 10);
}

#[tokio::test]
async fn nothing_in_clear() {
    let marker: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
    let data = marker.repeat(2000);
    let datagrams = vec![marker.clone(); 50];
    let shim = transfer_through(Box::new(|_, _| Action::Forward), true, &data, &datagrams).await;
    let seen = shim.seen.lock().unwrap();
    assert!(seen.len() > 100, "shim saw the traffic");
    let windows: std::collections::HashSet<&[u8]> = marker.windows(16).collect();
    for (i, d) in seen.iter().enumerate() {
        for w in d.windows(16) {
            assert!(!windows.contains(w), "datagram {i} carries marker bytes");
        }
    }
}
