//! Channels benchmarks (docs/PERFORMANCE.md §11), each next to the
//! raw-transport baseline measured in the same run on the same in-process
//! nodes: framed 64 B messages on one uni stream, through the mux's
//! coalescing writer and with one plain `write_all` per message.
//!
//! - **1→1**, 64 B, reliable channel owned by node A, publisher on A,
//!   subscriber on B, through the node's Rust API (the hub the local API
//!   uses): msgs/s at the subscriber, every message checked in order with
//!   none missing; publishing batched (many per lock and driver wake-up)
//!   and one call per message (`ChannelsApi::queue_publish`);
//! - **local API from separate processes**: publisher process → node A →
//!   node B → subscriber process, real `relay-node` processes, the
//!   `/v1/stream/channels` binary frames (see `procs.rs`);
//! - **fan-out**: one publisher on A, 10 subscribing nodes: msgs/s per
//!   subscriber;
//! - **latency** publish → delivery at 1000 msgs/s, p50/p99, next to the
//!   raw stream (one `write_all` per message) at the same rate;
//! - **memory** per idle subscription: RSS growth of this process (owner
//!   and subscriber side both) over N idle subscriptions.
//!
//! Run: `cargo bench -p relay-tests --bench channels`. Under `cargo test`
//! a tiny smoke version runs (the process part is skipped). Sizes:
//! `RELAY_BENCH_CHANNELS_MSGS` per 1→1 run (1,000,000 / 2000),
//! `RELAY_BENCH_CHANNELS_FANOUT` per fan-out run (200,000 / 500; 0 skips
//! the fan-out),
//! `RELAY_BENCH_CHANNELS_PROCS` per process run (2,000,000 / skipped),
//! `RELAY_BENCH_CHANNELS_LATENCY` messages (3000 / 50),
//! `RELAY_BENCH_CHANNELS_IDLE` subscriptions (1000 / 50),
//! `RELAY_BENCH_CHANNELS_WINDOW` subscriber credit (the default window,
//! `relay_channels::DEFAULT_WINDOW`),
//! `RELAY_BENCH_CHANNELS_KINDS` the 1->1 runs to make (default all:
//! `raw-coalesced,raw-write-all,batched,each`),
//! `RELAY_BENCH_REPEATS` (3 / 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;

mod node;
mod procs;

use std::time::{Duration, Instant};

use node::{rss, Node};
use relay_transport::NetworkKey;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The 1→1 variants, measured in turn in every repeat.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    RawCoalesced,
    RawWriteAll,
    ChannelBatched,
    ChannelEach,
}

const KINDS: [(Kind, &str); 4] = [
    (Kind::RawCoalesced, "raw uni stream, coalescing writer"),
    (Kind::RawWriteAll, "raw uni stream, write_all per msg"),
    (Kind::ChannelBatched, "channel 1->1, batched publish"),
    (Kind::ChannelEach, "channel 1->1, one publish per call"),
];

struct Bench {
    a: Node,
    b: Node,
    window: u32,
    next_channel: u32,
}

impl Bench {
    fn channel(&mut self) -> String {
        self.next_channel += 1;
        let name = format!("bench-{}", self.next_channel);
        self.a.create(&name);
        name
    }

    /// msgs/s of one 1→1 run of `count` messages.
    async fn one_to_one(&mut self, kind: Kind, count: u64) -> f64 {
        let (a, b) = (&self.a, &self.b);
        match kind {
            Kind::RawCoalesced | Kind::RawWriteAll => {
                let start = Instant::now();
                let (_, got) = tokio::join!(
                    a.raw_send(b.id(), count, kind == Kind::RawCoalesced, None),
                    b.raw_received()
                );
                assert_eq!(got.count, count, "raw: every message");
                count as f64 / (got.end - start).as_secs_f64()
            }
            Kind::ChannelBatched | Kind::ChannelEach => {
                let name = self.channel();
                let (a, b) = (&self.a, &self.b);
                let sub = b.subscribe(a.id(), &name, self.window).await;
                let start = Instant::now();
                let publish = async {
                    if kind == Kind::ChannelBatched {
                        a.publish_batched(a.id(), &name, count).await;
                    } else {
                        a.publish_each(a.id(), &name, count, None).await;
                    }
                };
                let (_, got) = tokio::join!(publish, sub.receive(count));
                sub.close();
                count as f64 / (got.end - start).as_secs_f64()
            }
        }
    }
}

/// One publisher on A, `subs` subscribing nodes: (median per-subscriber
/// msgs/s, slowest subscriber's msgs/s).
async fn fan_out(a: &Node, subs: &[Node], name: &str, window: u32, count: u64) -> (f64, f64) {
    let mut live = Vec::new();
    for s in subs {
        live.push(s.subscribe(a.id(), name, window).await);
    }
    let start = Instant::now();
    let receivers: Vec<_> = live
        .into_iter()
        .map(|s| {
            tokio::spawn(async move {
                let got = s.receive(count).await;
                s.close();
                got
            })
        })
        .collect();
    a.publish_batched(a.id(), name, count).await;
    let mut rates = Vec::new();
    for r in receivers {
        let got = r.await.unwrap();
        rates.push(count as f64 / (got.end - start).as_secs_f64());
    }
    let slowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
    (median(rates), slowest)
}

/// Whether `kind` runs: all of them, unless `RELAY_BENCH_CHANNELS_KINDS`
/// lists some (comma-separated: `raw-coalesced`, `raw-write-all`,
/// `batched`, `each`), e.g. to profile the channel runs alone.
fn selected(kind: Kind) -> bool {
    let key = match kind {
        Kind::RawCoalesced => "raw-coalesced",
        Kind::RawWriteAll => "raw-write-all",
        Kind::ChannelBatched => "batched",
        Kind::ChannelEach => "each",
    };
    std::env::var("RELAY_BENCH_CHANNELS_KINDS")
        .map_or(true, |only| only.split(',').any(|k| k.trim() == key))
}

fn main() {
    if procs::child_main() {
        return;
    }
    let bench = common::bench_mode();
    let pick = |full: f64, smoke: f64| if bench { full } else { smoke };
    let msgs = env_or("RELAY_BENCH_CHANNELS_MSGS", pick(1_000_000.0, 2000.0)) as u64;
    let fanout_msgs = env_or("RELAY_BENCH_CHANNELS_FANOUT", pick(200_000.0, 500.0)) as u64;
    let proc_msgs = env_or("RELAY_BENCH_CHANNELS_PROCS", pick(2_000_000.0, 0.0)) as u64;
    let latency_msgs = env_or("RELAY_BENCH_CHANNELS_LATENCY", pick(3000.0, 50.0)) as u64;
    let idle = env_or("RELAY_BENCH_CHANNELS_IDLE", pick(1000.0, 50.0)) as u64;
    let window = env_or(
        "RELAY_BENCH_CHANNELS_WINDOW",
        relay_channels::DEFAULT_WINDOW,
    );
    let repeats = env_or("RELAY_BENCH_REPEATS", pick(3.0, 1.0)).max(1.0) as usize;
    println!(
        "channels bench ({}): 1->1 {msgs} msgs x{repeats}, fan-out 10 x {fanout_msgs} msgs x{repeats}, \
         processes {proc_msgs} msgs x{repeats}, latency {latency_msgs} msgs at 1000/s, \
         {idle} idle subscriptions, {} B messages, subscriber window {window}",
        if bench { "bench mode" } else { "smoke mode" },
        node::MESSAGE,
    );
    let rt = common::runtime();
    let rates = rt.block_on(async {
        node::base();
        let key = NetworkKey::generate();
        let mut b = Bench {
            a: Node::start(&key).await,
            b: Node::start(&key).await,
            window,
            next_channel: 0,
        };
        b.b.connect(&b.a).await;
        // Memory per idle subscription (both ends are in this process),
        // first, while freed memory cannot hide the growth.
        let name = b.channel();
        let warm = b.b.subscribe(b.a.id(), &name, window).await;
        let before = rss();
        let mut held = Vec::new();
        for _ in 0..idle {
            held.push(b.b.subscribe(b.a.id(), &name, window).await);
        }
        let grown = rss().saturating_sub(before);
        println!(
            "{:40} {:>12.0} B per subscription   (RSS growth over {idle}, owner and subscriber side)",
            "idle subscription memory",
            grown as f64 / idle as f64
        );
        warm.close();
        for s in held {
            s.close();
        }

        // Warm up every path once.
        for (kind, _) in KINDS.into_iter().filter(|(k, _)| selected(*k)) {
            b.one_to_one(kind, (msgs / 10).max(100)).await;
        }
        let mut rates = vec![Vec::new(); KINDS.len()];
        for _ in 0..repeats {
            for (i, (kind, _)) in KINDS.iter().enumerate() {
                if selected(*kind) {
                    rates[i].push(b.one_to_one(*kind, msgs).await);
                }
            }
        }
        let rates: Vec<f64> = rates.into_iter().map(median).collect();
        for ((_, name), r) in KINDS.iter().zip(&rates) {
            println!("{name:40} {r:>12.0} msgs/s   (median of {repeats}, 0 lost)");
        }

        // Fan-out, next to the coalesced raw stream (again, same phase);
        // skipped with 0 messages (e.g. to profile the 1->1 runs alone).
        let subs = if fanout_msgs == 0 {
            Vec::new()
        } else {
            let mut subs = Vec::new();
            for _ in 0..10 {
                let s = Node::start(&key).await;
                s.connect(&b.a).await;
                subs.push(s);
            }
            subs
        };
        let (mut per_sub, mut slowest, mut raw_fan) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeats {
            if subs.is_empty() {
                break;
            }
            raw_fan.push(b.one_to_one(Kind::RawCoalesced, fanout_msgs).await);
            let name = b.channel();
            let (m, s) = fan_out(&b.a, &subs, &name, window, fanout_msgs).await;
            per_sub.push(m);
            slowest.push(s);
        }
        let (per_sub, slowest, raw_fan) = (median(per_sub), median(slowest), median(raw_fan));
        println!(
            "{:40} {per_sub:>12.0} msgs/s per subscriber (median sub; slowest {slowest:.0}; \
             {:.0} deliveries/s in all; raw coalesced {raw_fan:.0} msgs/s)",
            "fan-out 1 -> 10 nodes, batched publish",
            per_sub * 10.0
        );

        // Latency at 1000 msgs/s: raw write_all vs one publish per call.
        let every = Some(Duration::from_millis(1));
        let mut raw_ages = Vec::new();
        let mut ch_ages = Vec::new();
        for _ in 0..repeats {
            let (_, got) = tokio::join!(
                b.a.raw_send(b.b.id(), latency_msgs, false, every),
                b.b.raw_received()
            );
            raw_ages.extend(got.ages);
            let name = b.channel();
            let sub = b.b.subscribe(b.a.id(), &name, window).await;
            let (_, got) = tokio::join!(
                b.a.publish_each(b.a.id(), &name, latency_msgs, every),
                sub.receive(latency_msgs)
            );
            sub.close();
            ch_ages.extend(got.ages);
        }
        let lat = |ages: &mut Vec<Duration>| {
            (
                common::percentile(ages, 50.0),
                common::percentile(ages, 99.0),
            )
        };
        let (raw50, raw99) = lat(&mut raw_ages);
        let (ch50, ch99) = lat(&mut ch_ages);
        println!(
            "{:40} p50 {:>8.1} us   p99 {:>8.1} us   ({} msgs at 1000/s)",
            "raw uni stream latency, write_all",
            us(raw50),
            us(raw99),
            raw_ages.len()
        );
        println!(
            "{:40} p50 {:>8.1} us   p99 {:>8.1} us   ({} msgs at 1000/s)",
            "channel publish -> delivery latency",
            us(ch50),
            us(ch99),
            ch_ages.len()
        );

        (rates, (per_sub, raw_fan), (ch50, ch99, raw50, raw99))
    });
    let (rates, (per_sub, raw_fan), (ch50, ch99, raw50, raw99)) = rates;

    let procs = (proc_msgs > 0).then(|| procs::run(proc_msgs, repeats));
    if let Some(p) = &procs {
        println!(
            "{:40} {:>12.0} msgs/s   (median of {repeats}, 0 lost)",
            "processes: pub -> A -> B -> sub", p
        );
    }

    println!();
    println!("ratios (this run):");
    let raw = rates[0].max(1e-9);
    println!(
        "  batched 1->1 / raw coalesced           = {:.2}x",
        rates[2] / raw
    );
    println!(
        "  one-per-call 1->1 / raw coalesced      = {:.2}x",
        rates[3] / raw
    );
    println!(
        "  raw write_all / raw coalesced          = {:.2}x",
        rates[1] / raw
    );
    println!(
        "  fan-out per subscriber / raw coalesced = {:.2}x",
        per_sub / raw_fan.max(1e-9)
    );
    if let Some(p) = procs {
        println!("  processes / raw coalesced              = {:.2}x", p / raw);
    }
    println!(
        "  latency p50 channel / raw              = {:.2}x (p99 {:.2}x)",
        ch50.as_secs_f64() / raw50.as_secs_f64().max(1e-12),
        ch99.as_secs_f64() / raw99.as_secs_f64().max(1e-12)
    );
}
