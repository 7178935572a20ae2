//! The `channels` frame stream against a real node: a subscriber and a
//! publisher process-side (raw Unix sockets, HTTP upgrade, length-prefixed
//! frames); 2,000 messages arrive in order with their acknowledgements.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

const MESSAGES: u64 = 2000;

mod channels_common;
mod common;
use channels_common::{cli, Node};
use common::TempDir;

/// Upgrades a connection to the `channels` frame stream.
fn upgrade(dir: &Path) -> UnixStream {
    let mut s = UnixStream::connect(dir.join("api.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(
        b"GET /v1/stream/channels HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\
          Upgrade: relay-node-frames/1\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

fn send(s: &mut UnixStream, payload: &[u8]) {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    s.write_all(&f).unwrap();
}

fn recv(s: &mut UnixStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut f).unwrap();
    f
}

#[test]
fn frames_carry_many_messages_in_order_with_acks() {
    let tmp = TempDir::new("stream");
    let dir = tmp.data();
    let cli = |args: &[&str]| cli(&dir, args);
    assert!(cli(&["init"]).status.success());
    let _node = Node::start(&dir, &[]);
    assert!(cli(&["channel", "create", "fast"]).status.success());

    let mut sub = upgrade(&dir);
    send(&mut sub, br#"{"op":"sub","name":"fast"}"#);
    assert_eq!(recv(&mut sub), br#"{"ok":true}"#);
    let mut bad = upgrade(&dir);
    send(&mut bad, br#"{"op":"sub","name":"nope"}"#);
    assert!(String::from_utf8(recv(&mut bad))
        .unwrap()
        .contains("no-such-channel"));

    let mut publisher = upgrade(&dir);
    send(&mut publisher, br#"{"op":"pub","name":"fast"}"#);
    assert_eq!(recv(&mut publisher), br#"{"ok":true}"#);
    let writer = {
        let mut p = publisher.try_clone().unwrap();
        std::thread::spawn(move || {
            for i in 0..MESSAGES {
                send(&mut p, format!("msg-{i}").as_bytes());
            }
            p.shutdown(std::net::Shutdown::Write).unwrap();
        })
    };
    for i in 0..MESSAGES {
        let f = recv(&mut sub);
        assert_eq!(f[0], 0x01);
        assert_eq!(u64::from_be_bytes(f[33..41].try_into().unwrap()), i + 1);
        assert_eq!(&f[49..], format!("msg-{i}").as_bytes());
    }
    writer.join().unwrap();
    for _ in 0..MESSAGES {
        let f = recv(&mut publisher);
        assert_eq!(f, [0x04, 0, 0, 0, 1, 0, 0, 0, 1]);
    }
}
