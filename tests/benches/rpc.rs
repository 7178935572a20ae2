//! nRPC benchmarks, each against a raw bidi-stream floor measured in the
//! same run on the same two in-process nodes (relay-node Transport + mux on
//! loopback): the raw floor opens one QUIC stream per request and echoes
//! bytes with no framing, no header, no deadline, no admission.
//!
//! - unary 64 B echo, one caller: p50 and p99 (raw stream echo vs
//!   `Rpc::call("echo", "echo")`), in alternating blocks;
//! - unary 64 B echo, 16 concurrent callers: calls/s, alternating runs,
//!   median;
//! - server streaming of 64 B items: items/s (raw: the server writes the
//!   items back to back on one stream; nRPC: `echo.stream`);
//! - through the local API from separate processes (`rpc_local`): p50 and
//!   calls/s of `POST /v1/call` to a node process calling another node
//!   process's echo, and a peer process serving through `rpc-serve`, next
//!   to the in-process figures above.
//!
//! Run: `cargo bench -p relay-tests --bench rpc`. Under `cargo test` it
//! runs a tiny smoke version. Sizes: `RELAY_BENCH_RPC_ROUNDS` (5000 / 50),
//! `RELAY_BENCH_RPC_SECS` per concurrency run (3 / 0.2),
//! `RELAY_BENCH_RPC_ITEMS` per stream (100000 / 1000),
//! `RELAY_BENCH_REPEATS` (3 / 1); `RELAY_BENCH_RPC_RATE=raw|rpc` runs only
//! one kind's c=16 runs (for profiling).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/mod.rs"]
mod common;
#[path = "rpc_local/mod.rs"]
mod rpc_local;

use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_node::subsystem::{Subsystem, Tasks};
use relay_node::subsystems::rpc::Rpc;
use relay_node::subsystems::rpc_bench;
use relay_node::subsystems::rpc_client::CallOptions;
use relay_node::subsystems::rpc_echo;
use relay_transport::mux::{ProtocolId, QueueConfig};
use relay_transport::{
    Incoming, Mux, MuxConfig, NetworkKey, NodeId, SecretKey, Transport, TransportConfig,
};
use tokio::task::JoinSet;

const RAW_ECHO: ProtocolId = ProtocolId::new(200);
const RAW_STREAM: ProtocolId = ProtocolId::new(201);
const ITEM: usize = 64;
const CONCURRENCY: usize = 16;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Node {
    mux: Mux,
    rpc: Rpc,
    _tasks: Tasks,
}

async fn node(key: NetworkKey) -> Node {
    let transport = Transport::bind(TransportConfig::new(
        SecretKey::generate(),
        Some(key),
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let mux = Mux::new(transport, MuxConfig::default());
    let rpc = Rpc::new(mux.clone(), None);
    let tasks = Tasks::new();
    rpc.register_protocols(&mux, &tasks).unwrap();
    let queue = QueueConfig {
        streams: 1024,
        streams_per_peer: 1024,
        ..QueueConfig::default()
    };
    let mut echo = mux.register(RAW_ECHO, "raw-echo", queue).unwrap();
    tasks.spawn("raw-echo", async move {
        while let Some(Incoming::Bi {
            mut send, mut recv, ..
        }) = echo.next_stream().await
        {
            tokio::spawn(async move {
                let body = recv.read_to_end(1 << 20).await.unwrap_or_default();
                if send.write_all(&body).await.is_ok() {
                    let _ = send.finish();
                }
            });
        }
    });
    let mut stream = mux.register(RAW_STREAM, "raw-stream", queue).unwrap();
    tasks.spawn("raw-stream", async move {
        while let Some(Incoming::Bi {
            mut send, mut recv, ..
        }) = stream.next_stream().await
        {
            tokio::spawn(async move {
                let count = recv.read_to_end(8).await.unwrap_or_default();
                let count = u64::from_be_bytes(count.try_into().unwrap_or([0; 8]));
                let item = [0x5au8; ITEM];
                for _ in 0..count {
                    if send.write_all(&item).await.is_err() {
                        return;
                    }
                }
                let _ = send.finish();
            });
        }
    });
    mux.start();
    Node {
        mux,
        rpc,
        _tasks: tasks,
    }
}

async fn raw_echo(mux: &Mux, to: NodeId, body: &[u8]) {
    let (mut send, mut recv) = mux.open_bi(to, RAW_ECHO).await.unwrap();
    send.write_all(body).await.unwrap();
    send.finish().unwrap();
    let back = recv.read_to_end(1 << 20).await.unwrap();
    assert_eq!(back.len(), body.len());
}

async fn rpc_echo_call(rpc: &Rpc, options: &CallOptions, body: &Bytes) {
    let back = rpc
        .call("echo", "echo", body.clone(), options)
        .await
        .unwrap();
    assert_eq!(back.len(), body.len());
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Raw,
    Rpc,
}

const KINDS: [(Kind, &str); 2] = [
    (Kind::Raw, "raw bidi-stream echo"),
    (Kind::Rpc, "nRPC unary echo"),
];

async fn one(kind: Kind, client: &Node, server: NodeId, options: &CallOptions, body: &Bytes) {
    match kind {
        Kind::Raw => raw_echo(&client.mux, server, body).await,
        Kind::Rpc => rpc_echo_call(&client.rpc, options, body).await,
    }
}

/// Calls per second with `CONCURRENCY` callers for `secs`.
async fn rate(kind: Kind, client: &Node, server: NodeId, options: &CallOptions, secs: f64) -> f64 {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut callers = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (mux, rpc, options) = (client.mux.clone(), client.rpc.clone(), options.clone());
        callers.spawn(async move {
            let body = Bytes::from(vec![0x5a; ITEM]);
            let mut n = 0u64;
            while Instant::now() < end {
                match kind {
                    Kind::Raw => raw_echo(&mux, server, &body).await,
                    Kind::Rpc => rpc_echo_call(&rpc, &options, &body).await,
                }
                n += 1;
            }
            n
        });
    }
    let start = Instant::now();
    let mut total = 0;
    while let Some(n) = callers.join_next().await {
        total += n.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Items per second of one stream of `items`.
async fn stream(
    kind: Kind,
    client: &Node,
    server: NodeId,
    options: &CallOptions,
    items: u64,
) -> f64 {
    let start = Instant::now();
    match kind {
        Kind::Raw => {
            let (mut send, mut recv) = client.mux.open_bi(server, RAW_STREAM).await.unwrap();
            send.write_all(&items.to_be_bytes()).await.unwrap();
            send.finish().unwrap();
            let mut got = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            while let Some(n) = recv.read(&mut buf).await.unwrap() {
                got += n as u64;
            }
            assert_eq!(got, items * ITEM as u64);
        }
        Kind::Rpc => {
            let mut options = options.clone();
            options.metadata = vec![("count".into(), items.to_string())];
            options.timeout = Duration::from_secs(600);
            let mut call = client.rpc.open("echo", "stream", &options).await.unwrap();
            call.send(&[0x5a; ITEM]).await.unwrap();
            call.finish();
            let mut got = 0u64;
            while call.recv().await.unwrap().is_some() {
                got += 1;
            }
            assert_eq!(got, items);
        }
    }
    items as f64 / start.elapsed().as_secs_f64()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let bench = common::bench_mode();
    let pick = |full: f64, smoke: f64| if bench { full } else { smoke };
    let rounds = env_or("RELAY_BENCH_RPC_ROUNDS", pick(5000.0, 50.0)) as usize;
    let secs = env_or("RELAY_BENCH_RPC_SECS", pick(3.0, 0.2));
    let items = env_or("RELAY_BENCH_RPC_ITEMS", pick(100_000.0, 1000.0)) as u64;
    let repeats = env_or("RELAY_BENCH_REPEATS", pick(3.0, 1.0)).max(1.0) as usize;
    let rt = common::runtime();
    println!(
        "rpc bench ({}): {rounds} calls, c={CONCURRENCY} for {secs} s x{repeats}, streams of {items} items x{repeats}, {ITEM} B bodies, callers on {}",
        if bench { "bench mode" } else { "smoke mode" },
        common::caller_place(),
    );
    common::run_as_task(&rt, async move {
        let key = NetworkKey::generate();
        let server = node(key.clone()).await;
        let client = node(key).await;
        server
            .rpc
            .serve(rpc_echo::ECHO, rpc_echo::options(), rpc_echo::echo())
            .unwrap();
        let sid = server.mux.transport().node_id();
        client
            .mux
            .transport()
            .connect(sid, server.mux.transport().local_addrs()[0])
            .await
            .unwrap();
        let options = CallOptions {
            node: Some(sid),
            ..rpc_bench::options()
        };
        let body = Bytes::from(vec![0x5a; ITEM]);
        for (kind, _) in KINDS {
            for _ in 0..(rounds / 10).max(10) {
                one(kind, &client, sid, &options, &body).await;
            }
        }

        const BLOCKS: usize = 10;
        let mut times = vec![Vec::new(), Vec::new()];
        for _ in 0..BLOCKS {
            for (i, (kind, _)) in KINDS.iter().enumerate() {
                for _ in 0..rounds.div_ceil(BLOCKS) {
                    let t = Instant::now();
                    one(*kind, &client, sid, &options, &body).await;
                    times[i].push(t.elapsed());
                }
            }
        }
        let mut p50s = Vec::new();
        for ((_, name), mut t) in KINDS.iter().zip(times) {
            let p50 = common::percentile(&mut t, 50.0);
            let p99 = common::percentile(&mut t, 99.0);
            println!(
                "{:40} p50 {:>8.1} us   p99 {:>8.1} us   ({} calls, one caller)",
                format!("{name} 64 B"),
                us(p50),
                us(p99),
                t.len()
            );
            p50s.push(p50);
        }

        // `RELAY_BENCH_RPC_RATE=raw` or `=rpc` runs only that kind's c=16
        // runs (the other reads 0), to profile one at a time.
        let only = std::env::var("RELAY_BENCH_RPC_RATE").ok();
        let mut rates = vec![Vec::new(), Vec::new()];
        for _ in 0..repeats {
            for (i, (kind, _)) in KINDS.iter().enumerate() {
                let skip = matches!(
                    (only.as_deref(), kind),
                    (Some("raw"), Kind::Rpc) | (Some("rpc"), Kind::Raw)
                );
                rates[i].push(if skip {
                    0.0
                } else {
                    rate(*kind, &client, sid, &options, secs).await
                });
            }
        }
        // Each run is shown too: on two workers a run's rate can take one
        // of two levels (§10.5 of docs/PERFORMANCE.md).
        let runs: Vec<String> = rates
            .iter()
            .map(|r| {
                let each: Vec<String> = r.iter().map(|v| format!("{:.0}", v / 1000.0)).collect();
                each.join(" ")
            })
            .collect();
        let rates: Vec<f64> = rates.into_iter().map(median).collect();
        for (((_, name), r), each) in KINDS.iter().zip(&rates).zip(&runs) {
            println!(
                "{:40} {:>10.0} calls/s   (c={CONCURRENCY}, median of {repeats}; runs, K: {each})",
                format!("{name} 64 B"),
                r
            );
        }

        let mut streams = vec![Vec::new(), Vec::new()];
        for _ in 0..repeats {
            for (i, (kind, _)) in KINDS.iter().enumerate() {
                streams[i].push(stream(*kind, &client, sid, &options, items).await);
            }
        }
        let streams: Vec<f64> = streams.into_iter().map(median).collect();
        println!(
            "{:40} {:>10.0} items/s   (median of {repeats})",
            "raw stream, 64 B items", streams[0]
        );
        println!(
            "{:40} {:>10.0} items/s   (median of {repeats})",
            "nRPC server streaming, 64 B items", streams[1]
        );

        println!();
        println!("ratios (this run):");
        println!(
            "  nRPC unary p50 / raw stream echo p50  = {:.2}x",
            p50s[1].as_secs_f64() / p50s[0].as_secs_f64().max(1e-12)
        );
        if rates[0] > 0.0 && rates[1] > 0.0 {
            println!(
                "  nRPC c=16 calls/s / raw c=16 calls/s   = {:.2}x",
                rates[1] / rates[0]
            );
        } else {
            println!("  nRPC c=16 calls/s / raw c=16 calls/s   = n/a (RELAY_BENCH_RPC_RATE ran one kind)");
        }
        println!(
            "  nRPC stream items/s / raw items/s      = {:.2}x",
            streams[1] / streams[0].max(1e-9)
        );
        local_api(rounds, secs, repeats, p50s[1], rates[1]).await;
    });
}

/// The local API figures, next to the in-process nRPC p50 and rate of
/// this run.
async fn local_api(rounds: usize, secs: f64, repeats: usize, p50: Duration, rate: f64) {
    let mesh = rpc_local::mesh();
    rpc_local::wait_listed(&mesh.a_sock, "echo").await;
    rpc_local::serve_pecho(&mesh.b_sock).await;
    rpc_local::wait_listed(&mesh.a_sock, "pecho").await;
    let targets = [
        ("echo", "API -> A -> B echo"),
        ("pecho", "API -> A -> B -> peer process"),
    ];
    let requests: Vec<String> = targets
        .iter()
        .map(|(s, _)| rpc_local::request(s, &mesh.b_id, ITEM))
        .collect();
    for r in &requests {
        for _ in 0..(rounds / 10).max(10) {
            rpc_local::call(&mesh.a_sock, r).await;
        }
    }
    const BLOCKS: usize = 10;
    let mut times = vec![Vec::new(), Vec::new()];
    for _ in 0..BLOCKS {
        for (i, r) in requests.iter().enumerate() {
            for _ in 0..rounds.div_ceil(BLOCKS) {
                let t = Instant::now();
                rpc_local::call(&mesh.a_sock, r).await;
                times[i].push(t.elapsed());
            }
        }
    }
    let mut rates = vec![Vec::new(), Vec::new()];
    for _ in 0..repeats {
        for (i, r) in requests.iter().enumerate() {
            rates[i].push(rpc_local::rate(&mesh.a_sock, r, CONCURRENCY, secs).await);
        }
    }
    println!();
    println!("through the local API, separate processes (in-process nRPC above: p50 {:.1} us, {rate:.0} calls/s):", us(p50));
    for (((_, name), mut t), r) in targets.iter().zip(times).zip(rates) {
        let (p, p99) = (
            common::percentile(&mut t, 50.0),
            common::percentile(&mut t, 99.0),
        );
        let r = median(r);
        // The in-process rate is 0 when RELAY_BENCH_RPC_RATE=raw skipped it.
        let vs_rate = if rate > 0.0 {
            format!("{:.2}x", r / rate)
        } else {
            "n/a".to_string()
        };
        println!(
            "{:40} p50 {:>8.1} us   p99 {:>8.1} us   {:>8.0} calls/s (c={CONCURRENCY})   p50 {:.2}x, rate {vs_rate} in-process",
            format!("{name} 64 B"),
            us(p),
            us(p99),
            r,
            p.as_secs_f64() / p50.as_secs_f64().max(1e-12),
        );
    }

    // Many calls on one connection: the rpc-calls stream.
    let mut calls = rpc_local::Calls::open(&mesh.a_sock, &mesh.b_id, ITEM).await;
    for _ in 0..(rounds / 10).max(10) {
        calls.one().await;
    }
    let mut t = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        calls.one().await;
        t.push(start.elapsed());
    }
    let (p, p99) = (
        common::percentile(&mut t, 50.0),
        common::percentile(&mut t, 99.0),
    );
    let mut windows = Vec::new();
    for window in [CONCURRENCY, 256] {
        let mut r = Vec::new();
        for _ in 0..repeats {
            r.push(calls.rate(window, secs).await);
        }
        windows.push((window, median(r)));
    }
    println!(
        "{:40} p50 {:>8.1} us   p99 {:>8.1} us   {}",
        "rpc-calls stream -> A -> B echo 64 B",
        us(p),
        us(p99),
        windows
            .iter()
            .map(|(w, r)| format!("{r:>8.0} calls/s ({w} in flight)"))
            .collect::<Vec<_>>()
            .join("  "),
    );
}
