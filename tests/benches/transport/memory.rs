//! Memory per idle connection, measured as RSS growth in separate processes
//! (this bench binary re-run with `RELAY_BENCH_CHILD`):
//!
//! - a **server** process holds one server: a full
//!   `relay_transport::Transport` (relay-node), or a quinn + rustls endpoint
//!   (stock). Its RSS growth per connection is what a node pays per idle
//!   peer: the headline figure.
//! - a **client** process opens N connections, each from its own quinn
//!   endpoint and UDP socket, as N separate peers would (relay-node's path
//!   socket maps one peer per real address, so clients cannot share a
//!   socket). relay-node clients are bare quinn endpoints with
//!   `relay_transport::noise` configs, each with a fresh identity. Its RSS
//!   growth per connection includes a whole quinn endpoint per client, so it
//!   over-counts pure connection state.
//!
//! Sequence (parent drives both children over stdin/stdout): the server
//! binds and reports its address; the client makes one warm-up connection;
//! both take a baseline; the client opens N more; once the server has them
//! all, both wait a while (`RELAY_BENCH_IDLE_MS`, default 2 s) and read RSS again.

use std::io::{BufRead, BufReader, Lines, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_transport::{NetworkKey, NodeId, PeerState};
use tokio::task::JoinSet;

use crate::common;

/// Env var that turns the bench binary into a memory-measuring child:
/// `server-stock`, `server-relay`, `client-stock`, `client-stock-shared` or
/// `client-relay`.
pub const CHILD_ENV: &str = "RELAY_BENCH_CHILD";
const ADDR_ENV: &str = "RELAY_BENCH_SERVER_ADDR";
const ID_ENV: &str = "RELAY_BENCH_SERVER_ID";
const KEY_ENV: &str = "RELAY_BENCH_NETWORK_KEY";
const CERT_ENV: &str = "RELAY_BENCH_SERVER_CERT";
/// How many dials run at once while connecting.
const DIAL_BATCH: usize = 32;
/// Env var: how long connections sit idle before RSS is read, ms.
pub const IDLE_ENV: &str = "RELAY_BENCH_IDLE_MS";

/// How long connections sit idle before RSS is read (default 2 s).
fn idle() -> Duration {
    Duration::from_millis(
        std::env::var(IDLE_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000),
    )
}
/// Overall limit on waiting for the server to see every connection.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// RSS growth of one process over N connections.
#[derive(Debug, Clone, Copy)]
pub struct Growth {
    /// RSS at the baseline, KiB.
    pub before_kib: u64,
    /// RSS with every connection open and idle, KiB.
    pub after_kib: u64,
    /// Connections opened after the baseline.
    pub connections: u64,
}

impl Growth {
    /// RSS growth per connection, KiB.
    pub fn kib_per_connection(&self) -> f64 {
        self.after_kib.saturating_sub(self.before_kib) as f64 / self.connections.max(1) as f64
    }

    fn parse(line: &str) -> Self {
        let f: Vec<u64> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        Self {
            before_kib: f[0],
            after_kib: f[1],
            connections: f[2],
        }
    }

    fn line(&self) -> String {
        format!(
            "{} {} {}",
            self.before_kib, self.after_kib, self.connections
        )
    }
}

/// What one stack's measurement found.
#[derive(Debug, Clone, Copy)]
pub struct MemResult {
    /// The server (node) process.
    pub server: Growth,
    /// The client process (one quinn endpoint per connection).
    pub client: Growth,
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

/// A child process and its pipes.
struct ChildProc {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl ChildProc {
    fn spawn(role: &str, connections: u64, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .env(CHILD_ENV, role)
            .env("RELAY_BENCH_IDLE_CONNS", connections.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// The rest of the next line starting with `tag`.
    fn expect(&mut self, tag: &str) -> String {
        for line in self.lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix(tag) {
                return rest.trim().to_string();
            }
        }
        panic!("child ended before printing {tag}");
    }

    fn say(&mut self, word: &str) {
        writeln!(self.stdin, "{word}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn finish(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

/// Measures `stack` with `connections` connections: "stock", "relay", or
/// "stock-shared" (stock server; the client opens every connection from one
/// shared endpoint, which shows how much of the client figure is
/// per-endpoint cost).
pub fn measure(stack: &str, connections: u64) -> MemResult {
    let server_role = if stack == "relay" { "relay" } else { "stock" };
    let network_key = NetworkKey::generate();
    let key_hex = hex(network_key.as_bytes());
    let mut server = ChildProc::spawn(
        &format!("server-{server_role}"),
        connections,
        &[(KEY_ENV, key_hex.clone())],
    );
    let ready = server.expect("READY");
    let mut parts = ready.split_whitespace();
    let addr = parts.next().unwrap().to_string();
    let id = parts.next().unwrap().to_string();
    let cert = parts.next().unwrap().to_string();
    let mut client = ChildProc::spawn(
        &format!("client-{stack}"),
        connections,
        &[
            (ADDR_ENV, addr),
            (ID_ENV, id),
            (KEY_ENV, key_hex),
            (CERT_ENV, cert),
        ],
    );
    client.expect("WARM");
    server.say("baseline");
    server.expect("BASE");
    client.say("go");
    let client_growth = Growth::parse(&client.expect("CLIENT"));
    server.say("measure");
    let server_growth = Growth::parse(&server.expect("MEM"));
    client.finish();
    server.finish();
    MemResult {
        server: server_growth,
        client: client_growth,
    }
}

/// Entry point of a child process.
pub fn child(role: &str, connections: u64) {
    let rt = common::runtime();
    match role {
        "server-stock" => server_stock(&rt, connections),
        "server-relay" => server_relay(&rt, connections),
        "client-stock" => client(&rt, Client::Stock, connections),
        "client-stock-shared" => client(&rt, Client::StockShared, connections),
        "client-relay" => client(&rt, Client::Relay, connections),
        other => panic!("unknown child role {other}"),
    }
}

/// Blocks until the parent writes `word` on stdin.
fn wait_word(word: &str) {
    for line in std::io::stdin().lines() {
        if line.unwrap().trim() == word {
            return;
        }
    }
    panic!("parent went away before {word}");
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// The server half shared by both stacks: waits for `count()` to reach 1
/// for the baseline and `n + 1` for the measurement.
fn serve(rt: &tokio::runtime::Runtime, n: u64, count: impl Fn() -> u64) {
    wait_word("baseline");
    rt.block_on(wait_for(|| count() >= 1));
    std::thread::sleep(idle());
    let before_kib = rss_kib();
    say(&format!("BASE {before_kib}"));
    wait_word("measure");
    rt.block_on(wait_for(|| count() > n));
    std::thread::sleep(idle());
    let growth = Growth {
        before_kib,
        after_kib: rss_kib(),
        connections: n,
    };
    say(&format!("MEM {}", growth.line()));
    // Stay up (connections open) until the parent closes stdin.
    for _ in std::io::stdin().lines() {}
}

fn server_stock(rt: &tokio::runtime::Runtime, n: u64) {
    let configs = common::stock::configs(None);
    let (server, _client, addr) = rt.block_on(async { common::stock::endpoints(&configs) });
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = accepted.clone();
    rt.spawn(async move {
        let mut held = Vec::new();
        while let Some(incoming) = server.accept().await {
            if let Ok(conn) = incoming.await {
                held.push(conn);
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    say(&format!("READY {addr} - {}", hex(&configs.cert)));
    serve(rt, n, || accepted.load(Ordering::SeqCst));
}

fn server_relay(rt: &tokio::runtime::Runtime, n: u64) {
    let key = network_key_from_env();
    let server = rt.block_on(common::relay::bind_transport(&key));
    let addr = common::relay::transport_addr(&server);
    say(&format!("READY {addr} {} -", server.node_id()));
    serve(rt, n, || {
        server
            .peers()
            .iter()
            .filter(|p| p.state == PeerState::Connected)
            .count() as u64
    });
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The network key the parent made up for this measurement.
fn network_key_from_env() -> NetworkKey {
    let bytes: [u8; 32] = unhex(&std::env::var(KEY_ENV).unwrap()).try_into().unwrap();
    NetworkKey::from_bytes(bytes)
}

/// How the client process connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// relay-node Noise configs, one endpoint per connection.
    Relay,
    /// quinn + rustls, one endpoint per connection.
    Stock,
    /// quinn + rustls, every connection from one endpoint.
    StockShared,
}

/// What a client dial needs.
#[derive(Clone)]
struct DialSpec {
    kind: Client,
    addr: SocketAddr,
    server_id: Option<NodeId>,
    key: Option<NetworkKey>,
    stock: Option<quinn::ClientConfig>,
    shared: Option<quinn::Endpoint>,
}

/// One client connection; returns the endpoint it made, if its own.
async fn dial_one(spec: DialSpec) -> (Option<quinn::Endpoint>, quinn::Connection) {
    match spec.kind {
        Client::Relay => {
            let (Some(id), Some(key)) = (spec.server_id, spec.key) else {
                panic!("relay client needs the server id and key");
            };
            let endpoint = common::relay::noise_endpoint(None);
            let config = common::relay::noise_client_config(&key);
            let conn = common::relay::noise_dial(&endpoint, config, spec.addr, &id).await;
            (Some(endpoint), conn)
        }
        Client::Stock | Client::StockShared => {
            let own = match &spec.shared {
                Some(_) => None,
                None => {
                    let mut endpoint =
                        quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
                    endpoint.set_default_client_config(spec.stock.clone().unwrap());
                    Some(endpoint)
                }
            };
            let endpoint = own.as_ref().or(spec.shared.as_ref()).unwrap();
            let conn = endpoint
                .connect(spec.addr, common::stock::SERVER_NAME)
                .unwrap()
                .await
                .unwrap();
            (own, conn)
        }
    }
}

fn client(rt: &tokio::runtime::Runtime, kind: Client, n: u64) {
    let addr: SocketAddr = std::env::var(ADDR_ENV).unwrap().parse().unwrap();
    let server_id: Option<NodeId> = std::env::var(ID_ENV).ok().and_then(|s| s.parse().ok());
    let relay = kind == Client::Relay;
    let key = relay.then(network_key_from_env);
    // The stock client trusts the server's self-signed certificate, which
    // the server printed and the parent passed on.
    let stock = (!relay).then(|| {
        let cert = unhex(&std::env::var(CERT_ENV).unwrap());
        common::stock::client_config(cert.into(), None)
    });
    let shared = (kind == Client::StockShared).then(|| {
        let _guard = rt.enter();
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        endpoint.set_default_client_config(stock.clone().unwrap());
        endpoint
    });
    let spec = DialSpec {
        kind,
        addr,
        server_id,
        key,
        stock,
        shared,
    };

    let warm = rt.block_on(dial_one(spec.clone()));
    std::thread::sleep(idle());
    let before_kib = rss_kib();
    say("WARM");
    wait_word("go");
    let mut held = Vec::with_capacity(n as usize);
    rt.block_on(async {
        let mut left = n;
        while left > 0 {
            let batch = left.min(DIAL_BATCH as u64);
            let mut set = JoinSet::new();
            for _ in 0..batch {
                set.spawn(dial_one(spec.clone()));
            }
            while let Some(pair) = set.join_next().await {
                held.push(pair.unwrap());
            }
            left -= batch;
        }
    });
    std::thread::sleep(idle());
    let growth = Growth {
        before_kib,
        after_kib: rss_kib(),
        connections: n,
    };
    say(&format!("CLIENT {}", growth.line()));
    for _ in std::io::stdin().lines() {}
    drop((warm, held, spec));
}

/// Polls `done` until it holds (panics after [`SETTLE_LIMIT`]).
async fn wait_for(mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < SETTLE_LIMIT, "connections did not settle");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
