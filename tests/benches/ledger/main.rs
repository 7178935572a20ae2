//! Ledger benchmarks with a custom main that prints one table, each figure
//! next to redb's raw durable commit rate measured in the same run:
//!
//! - **raw**: redb alone, one 200-byte row per `Durability::Immediate`
//!   commit, one writer (the baseline);
//! - **one writer**: `Ledger::append_at` awaited one at a time (sign, encode,
//!   index, durable commit, acknowledge): goal >= 0.9x raw. It runs
//!   interleaved with raw in chunks, with a breakdown ([`append`]);
//! - **16 writers**: 16 tasks appending concurrently; group commit shares
//!   one durable commit among the queued appends;
//! - **bulk**: 100,000 entries from 10 origins replicated to a fresh node
//!   through the real replica core on both sides and the redb store on the
//!   receiver (messages encoded and decoded, run heads verified), no
//!   network: goal <= 3 s;
//! - **convergence**: the 20-node simulated mesh (10% loss, 5 s
//!   anti-entropy) after a partition heals, in simulated time;
//! - **bulk over loopback** ([`net`]): the same 100,000 entries replicated
//!   between two in-process nodes over a real connection (transport, mux,
//!   the node's ledger subsystem, redb on both sides): goal <= 3 s. Its
//!   baseline, interleaved with it round by round: redb alone writing the
//!   same number of 200-byte rows in durable commits of one `Entries`
//!   message (512 rows).
//!
//! Run: `cargo bench -p relay-tests --bench ledger`. Without `--bench` it
//! runs a tiny smoke version. Env: `RELAY_BENCH_COMMITS` (raw and
//! one-writer commits, 4000 / 20), `RELAY_BENCH_CHUNKS` (interleaved chunks
//! they run in, 50 / 2: 80 commits per chunk amortise the chunk's own cost), `RELAY_BENCH_BULK` (bulk entries, 100000 / 2000),
//! `RELAY_BENCH_ROUNDS` (rounds of bulk over loopback and its baseline,
//! 5 / 1). `RELAY_BENCH_ONLY_APPEND=1` runs the one-writer comparison
//! alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod append;
#[path = "../../tests/ledger_common/mod.rs"]
mod ledger_common;
mod net;

use std::time::{Duration, Instant};

use ledger_common::{event_body, Mesh};
use relay_node::ledger::{Ledger, MemStore, Replica, ReplicaConfig, ReplicaStore};
use relay_proto::ledger::{Entry, EntryHash};
use relay_proto::SecretKey;
use relay_tests::TempDir;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `writers` tasks appending `each` entries concurrently: (appends per
/// second, commits).
fn many_writers(rt: &tokio::runtime::Runtime, writers: u64, each: u64) -> (f64, u64) {
    let dir = TempDir::new("ledger-bench-many").unwrap();
    let ledger = Ledger::open(dir.path(), SecretKey::from_bytes(&[1; 32])).unwrap();
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..writers {
            let l = ledger.clone();
            tasks.spawn(async move {
                for i in 0..each {
                    l.append_at(i, event_body(w * each + i)).await.unwrap();
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    });
    let rate = (writers * each) as f64 / start.elapsed().as_secs_f64();
    let commits = ledger.commits();
    ledger.close();
    (rate, commits)
}

/// `total` entries from 10 origins, held by a sender, replicated into a
/// fresh redb-backed node: elapsed wall time.
fn bulk(total: u64) -> Duration {
    let origins = 10u64;
    let per = total / origins;
    let mut sender = MemStore::new();
    for o in 0..origins {
        let key = SecretKey::from_bytes(&[o as u8 + 10; 32]);
        let mut prev = EntryHash::ZERO;
        let mut feed = Vec::with_capacity(per as usize);
        for seq in 1..=per {
            let e = Entry::sign(&key, seq, prev, seq, &event_body(seq)).unwrap();
            prev = e.hash();
            feed.push(e);
        }
        sender
            .insert_verified(&key.node_id(), &feed, (per, prev))
            .unwrap();
    }
    let dir = TempDir::new("ledger-bench-bulk").unwrap();
    let mut receiver = Ledger::open(dir.path(), SecretKey::from_bytes(&[2; 32])).unwrap();
    let (a, b) = (
        SecretKey::from_bytes(&[3; 32]).node_id(),
        SecretKey::from_bytes(&[2; 32]).node_id(),
    );
    let config = ReplicaConfig::default();
    let mut ra = Replica::new(config, Box::new(|_| true));
    let mut rb = Replica::new(config, Box::new(|_| true));
    let now = Instant::now();
    let start = Instant::now();
    ra.handle_peer_connected(now, b, &sender).unwrap();
    rb.handle_peer_connected(now, a, &receiver).unwrap();
    loop {
        let mut moved = false;
        while let Some(t) = ra.poll_transmit(&sender).unwrap() {
            rb.handle_message(now, a, &t.bytes, &mut receiver).unwrap();
            moved = true;
        }
        while let Some(t) = rb.poll_transmit(&receiver).unwrap() {
            ra.handle_message(now, b, &t.bytes, &mut sender).unwrap();
            moved = true;
        }
        if !moved {
            break;
        }
    }
    let elapsed = start.elapsed();
    let stats = receiver.store().stats().unwrap();
    assert_eq!(stats.entries, origins * per, "every entry arrived");
    assert_eq!(rb.stats().tampered, 0);
    receiver.close();
    elapsed
}

/// The 20-node mesh: simulated time from heal to convergence, and the wall
/// time the whole run took.
fn convergence() -> (Duration, Duration) {
    let wall = Instant::now();
    let mut mesh = Mesh::new(
        20,
        1,
        10,
        ReplicaConfig {
            batch_entries: 16,
            anti_entropy: Duration::from_secs(5),
            ..ReplicaConfig::default()
        },
    );
    for i in 0..20 {
        mesh.append(i);
    }
    mesh.run_until(Duration::from_secs(2));
    let left: Vec<usize> = (0..10).collect();
    mesh.partition(&left);
    for round in 0..10u64 {
        for i in 0..20 {
            mesh.append(i);
        }
        mesh.run_until(Duration::from_secs(3 + round));
    }
    let healed = mesh.now;
    mesh.heal();
    let at = mesh
        .run_until_converged(Duration::from_millis(10), healed + Duration::from_secs(120))
        .expect("converges");
    (at - healed, wall.elapsed())
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let commits = env_or("RELAY_BENCH_COMMITS", if bench { 4000 } else { 20 });
    let bulk_n = env_or("RELAY_BENCH_BULK", if bench { 100_000 } else { 2_000 });
    let rounds = env_or("RELAY_BENCH_ROUNDS", if bench { 5 } else { 1 });
    if std::env::var_os("RELAY_BENCH_ONLY_APPEND").is_some() {
        // The one-writer append and its breakdown alone.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let chunks = env_or("RELAY_BENCH_CHUNKS", if bench { 50 } else { 2 });
        append::rounds(&rt, chunks, commits);
        return;
    }
    if std::env::var_os("RELAY_BENCH_ONLY_NET").is_some() {
        // For profiling the bulk run over loopback alone.
        bulk_rounds(rounds, bulk_n);
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    println!(
        "ledger bench ({}): {commits} commits, bulk {bulk_n} entries",
        if bench { "bench mode" } else { "smoke mode" }
    );
    println!("{:44} {:>16}   detail", "measurement", "result");
    let chunks = env_or("RELAY_BENCH_CHUNKS", if bench { 50 } else { 2 });
    let (raw, _) = append::rounds(&rt, chunks, commits);
    let (many, group_commits) = many_writers(&rt, 16, commits / 4);
    println!(
        "{:44} {:>12.0} /s   {:.2}x raw, {} appends in {} commits",
        "ledger append, 16 writers, group commit",
        many,
        many / raw,
        16 * (commits / 4),
        group_commits
    );
    let b = bulk(bulk_n);
    println!(
        "{:44} {:>14.2} s   {:.0} entries/s (goal <= 3 s for 100000)",
        format!("bulk replicate {bulk_n} entries from 10 origins"),
        b.as_secs_f64(),
        bulk_n as f64 / b.as_secs_f64()
    );
    let (sim, wall) = convergence();
    println!(
        "{:44} {:>13.2} s   simulated; whole run {:.2} s wall",
        "20-node mesh converged after partition heal",
        sim.as_secs_f64(),
        wall.as_secs_f64()
    );
    bulk_rounds(rounds, bulk_n);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Bulk over loopback and its redb baseline, interleaved round by round;
/// each round printed, then the medians.
fn bulk_rounds(rounds: u64, n: u64) {
    let batch = relay_proto::ledger::wire::MAX_BATCH as u64;
    let (mut raw, mut net, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let r = net::raw_batched(n, batch);
        let run = net::bulk_over_loopback(n);
        let (t, c) = (run.wall.as_secs_f64(), run.cpu.as_secs_f64());
        println!(
            "{:44} {:>14.2} s   {:.0} entries/s, {c:.2} s CPU; redb raw {batch}-row commits {:.0} rows/s, {:.2}x",
            format!("round {round}: bulk {n} over loopback"),
            t,
            n as f64 / t,
            r,
            (n as f64 / t) / r
        );
        raw.push(r);
        net.push(t);
        cpu.push(c);
    }
    let (r, t, c) = (median(raw), median(net), median(cpu));
    println!(
        "{:44} {:>14.2} s   {:.0} entries/s, {c:.2} s CPU (goal <= 3 s for 100000)",
        format!("bulk replicate {n} over loopback, median"),
        t,
        n as f64 / t
    );
    println!(
        "{:44} {:>12.0} /s   baseline; bulk over loopback {:.2}x",
        format!("redb raw {batch}-row durable commits, median"),
        r,
        (n as f64 / t) / r
    );
}
