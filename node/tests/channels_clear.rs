//! Nothing in clear: two real nodes whose only path goes through a UDP
//! forwarder in this test; a message published on a channel reaches the
//! subscriber, and its plaintext never appears in any forwarded datagram.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const MARKER: &str = "PLAINTEXT-MARKER-7f3a9c";

mod channels_common;
mod common;
use channels_common::{cli, text, Node, BIN, DEADLINE};
use common::TempDir;

/// Forwards datagrams between one client and `server`, recording each.
struct Shim {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl Shim {
    fn start(server: SocketAddr) -> Self {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = front.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        for (from, to, upstream) in [
            (front.try_clone().unwrap(), back.try_clone().unwrap(), true),
            (back, front, false),
        ] {
            let (seen, stop, client) = (seen.clone(), stop.clone(), client.clone());
            from.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, src)) = from.recv_from(&mut buf) else {
                        continue;
                    };
                    seen.lock().unwrap().push(buf[..n].to_vec());
                    if upstream {
                        *client.lock().unwrap() = Some(src);
                        let _ = to.send_to(&buf[..n], server);
                    } else if let Some(c) = *client.lock().unwrap() {
                        let _ = to.send_to(&buf[..n], c);
                    }
                }
            });
        }
        Self { addr, seen, stop }
    }

    fn bytes(&self) -> usize {
        self.seen.lock().unwrap().iter().map(Vec::len).sum()
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn published_plaintext_never_appears_on_the_wire() {
    let tmp = TempDir::new("clear");
    let (a, b) = (tmp.0.join("a"), tmp.0.join("b"));
    assert!(cli(&a, &["init"]).status.success());
    let node_a = Node::start(&a, &["--no-traversal", "--no-port-map"]);
    let shim = Shim::start(node_a.listen);
    let ticket = text(&cli(&a, &["invite", "--addr", &shim.addr.to_string()]).stdout);
    assert!(cli(&b, &["init", "--join", &ticket]).status.success());
    let _node_b = Node::start(&b, &["--no-traversal", "--no-port-map"]);
    assert!(cli(&a, &["channel", "create", "secret"]).status.success());

    // B subscribes once the registration reached it through the shim.
    let (tx, rx) = mpsc::channel();
    let end = Instant::now() + DEADLINE;
    let mut sub = loop {
        let listed = cli(&b, &["channel", "list", "--json"]);
        if text(&listed.stdout).contains("\"secret\"") {
            break Command::new(BIN)
                .arg("--data-dir")
                .arg(&b)
                .args(["sub", "secret", "--count", "50"])
                .env_remove("RELAY_NODE_DATA_DIR")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
        }
        assert!(Instant::now() < end, "B never learned the channel");
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = BufReader::new(sub.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Publish until B has its 50 messages (it may join after the first).
    let before = shim.bytes();
    let mut got = Vec::new();
    while got.len() < 50 {
        assert!(Instant::now() < end, "B received {} messages", got.len());
        let published = cli(&a, &["pub", "secret", MARKER]);
        assert!(published.status.success(), "{}", text(&published.stderr));
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            got.push(line);
        }
    }
    let _ = sub.wait();
    assert!(got.iter().all(|l| l == MARKER));
    // The messages did cross the shim, and never in clear.
    assert!(shim.bytes() - before > 50 * MARKER.len());
    let seen = shim.seen.lock().unwrap();
    let marker = MARKER.as_bytes();
    assert!(
        seen.iter()
            .all(|d| !d.windows(marker.len()).any(|w| w == marker)),
        "plaintext on the wire"
    );
}
