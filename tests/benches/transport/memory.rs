//! Memory per idle connection: a child process (this bench binary re-run
//! with `RELAY_BENCH_CHILD`) opens N connections to one server inside the
//! same process, lets them go idle, and reports its RSS growth. Both sides
//! of every connection live in the child, so the figure per connection
//! counts client state + server state.
//!
//! - relay-node: the server is a full `relay_transport::Transport`; the N
//!   clients are connections from one bare quinn endpoint using
//!   `relay_transport::noise` configs, each with its own fresh identity
//!   (N client Transports would each add a socket and driver tasks, which is
//!   per-endpoint, not per-connection, cost).
//! - stock: a quinn + rustls server endpoint and one client endpoint.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relay_transport::{NetworkKey, PeerState};
use tokio::task::JoinSet;

use crate::common;

/// Env var that turns the bench binary into a memory-measuring child.
pub const CHILD_ENV: &str = "RELAY_BENCH_CHILD";
/// How many dials run at once while connecting.
const DIAL_BATCH: usize = 64;
/// How long connections sit idle before RSS is read.
const IDLE: Duration = Duration::from_secs(1);
/// Overall limit on waiting for the server to see every connection.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// What one child measured.
#[derive(Debug, Clone, Copy)]
pub struct MemResult {
    /// RSS after setup and one warm-up connection, KiB.
    pub before_kib: u64,
    /// RSS with every connection open and idle, KiB.
    pub after_kib: u64,
    /// Connections opened (each counted once, both sides included).
    pub connections: u64,
}

impl MemResult {
    /// RSS growth per connection (client + server side), KiB.
    pub fn kib_per_connection(&self) -> f64 {
        self.after_kib.saturating_sub(self.before_kib) as f64 / self.connections.max(1) as f64
    }
}

/// This process's resident set size in KiB, from /proc/self/status.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Runs the child for `stack` ("stock" or "relay") and parses its result.
pub fn measure(stack: &str, connections: u64) -> MemResult {
    let output = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, stack)
        .env("RELAY_BENCH_IDLE_CONNS", connections.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("MEM "))
        .unwrap_or_else(|| {
            panic!(
                "child {stack} printed no result: {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    MemResult {
        before_kib: fields[0],
        after_kib: fields[1],
        connections: fields[2],
    }
}

/// The child's entry point: measures and prints `MEM before after n`.
pub fn child(stack: &str, connections: u64) {
    let rt = common::runtime();
    let result = rt.block_on(async {
        match stack {
            "stock" => stock(connections).await,
            "relay" => relay(connections).await,
            other => panic!("unknown child {other}"),
        }
    });
    println!(
        "MEM {} {} {}",
        result.before_kib, result.after_kib, result.connections
    );
}

async fn stock(n: u64) -> MemResult {
    let configs = common::stock::configs(None);
    let (server, client, addr) = common::stock::endpoints(&configs);
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let sink = accepted.clone();
    let acceptor = server.clone();
    tokio::spawn(async move {
        while let Some(incoming) = acceptor.accept().await {
            if let Ok(conn) = incoming.await {
                sink.lock().unwrap().push(conn);
            }
        }
    });
    let warm = client
        .connect(addr, common::stock::SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    wait_for(|| accepted.lock().unwrap().len() as u64 >= 1).await;
    tokio::time::sleep(IDLE).await;
    let before_kib = rss_kib();

    let mut conns = Vec::with_capacity(n as usize);
    let mut left = n;
    while left > 0 {
        let batch = left.min(DIAL_BATCH as u64);
        let mut set = JoinSet::new();
        for _ in 0..batch {
            let connecting = client.connect(addr, common::stock::SERVER_NAME).unwrap();
            set.spawn(async move { connecting.await.unwrap() });
        }
        while let Some(conn) = set.join_next().await {
            conns.push(conn.unwrap());
        }
        left -= batch;
    }
    wait_for(|| accepted.lock().unwrap().len() as u64 > n).await;
    tokio::time::sleep(IDLE).await;
    let after_kib = rss_kib();
    drop((warm, conns));
    MemResult {
        before_kib,
        after_kib,
        connections: n,
    }
}

async fn relay(n: u64) -> MemResult {
    let network_key = NetworkKey::generate();
    let server = common::relay::bind_transport(&network_key).await;
    let server_id = server.node_id();
    let addr = common::relay::transport_addr(&server);
    let client = common::relay::noise_endpoint(None);
    let connected = |server: &relay_transport::Transport| {
        server
            .peers()
            .iter()
            .filter(|p| p.state == PeerState::Connected)
            .count() as u64
    };
    let warm = common::relay::noise_dial(
        &client,
        common::relay::noise_client_config(&network_key),
        addr,
        &server_id,
    )
    .await;
    wait_for(|| connected(&server) >= 1).await;
    tokio::time::sleep(IDLE).await;
    let before_kib = rss_kib();

    let mut conns = Vec::with_capacity(n as usize);
    let mut left = n;
    while left > 0 {
        let batch = left.min(DIAL_BATCH as u64);
        let mut set = JoinSet::new();
        for _ in 0..batch {
            let config = common::relay::noise_client_config(&network_key);
            let client = client.clone();
            set.spawn(
                async move { common::relay::noise_dial(&client, config, addr, &server_id).await },
            );
        }
        while let Some(conn) = set.join_next().await {
            conns.push(conn.unwrap());
        }
        left -= batch;
    }
    wait_for(|| connected(&server) > n).await;
    tokio::time::sleep(IDLE).await;
    let after_kib = rss_kib();
    drop((warm, conns));
    MemResult {
        before_kib,
        after_kib,
        connections: n,
    }
}

/// Polls `done` until it holds (panics after [`SETTLE_LIMIT`]).
async fn wait_for(mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < SETTLE_LIMIT, "connections did not settle");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
