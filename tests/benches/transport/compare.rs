//! relay-node against iroh and stock quinn, the same workloads in the same
//! run. The parent re-runs this bench binary `RELAY_BENCH_PROCESSES` times
//! (3 by default) with [`CHILD_ENV`] set; each fresh child process sets up
//! one connected pair per stack, runs every workload on each stack in turn
//! (stock, iroh, relay: interleaved, so outside load hits all three alike)
//! and prints one line per figure. The parent reports the median of the
//! processes and the ratio relay / iroh.
//!
//! Workloads ([`crate::workloads`], [`crate::connect`]): connect with a
//! fresh client (p50), 64 B echo with one bidirectional stream per request
//! at c=1 (p50) and c=16 (calls/s), 64 B length-prefixed messages with one
//! `write_all` each on one unidirectional stream (msgs/s), bulk 64 KiB
//! writes on one unidirectional stream (MB/s), and relay-node's coalescing
//! writer ([`relay_transport::mux::writer`]) on the framed workload.
//! relay-node's send streams are [`relay_transport::mux::buffered`]'s;
//! `framed-quinn` is the framed workload on quinn's own stream (no
//! coalescing), the baseline of that wrapper in the same process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::stacks::{Conn, Pair, QuinnRelaySide, Stack};
use crate::{coalesce, common, connect, env_or, workloads, Settings};

/// Env var that turns the bench binary into one comparison process.
pub const CHILD_ENV: &str = "RELAY_BENCH_COMPARE_CHILD";

/// Sizes of the comparison (env vars; bench / smoke defaults).
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// `RELAY_BENCH_PROCESSES`: fresh processes, median reported (3 / 1).
    pub processes: usize,
    /// `RELAY_BENCH_CONNECTS`: connect samples per process (200 / 5).
    pub connects: usize,
    /// `RELAY_BENCH_ECHO_CALLS`: sequential echo calls (3000 / 20).
    pub echo_calls: usize,
    /// `RELAY_BENCH_ECHO_CONCURRENT_CALLS`: calls per caller at c=16 (1000 / 5).
    pub calls_each: usize,
    /// `RELAY_BENCH_MESSAGES`: framed messages (2 000 000 / 10 000).
    pub messages: u64,
    /// Bulk bytes (`RELAY_BENCH_BULK_MIB`).
    pub bulk_bytes: u64,
}

/// Whether `figure` is selected by `RELAY_BENCH_FIGURES` (a comma list of
/// figure keys: `connect,echo-c1-p50,echo-c16,framed,bulk,writer,framed-quinn`; all by
/// default), for profiling one workload at a time.
fn selected(figure: Figure) -> bool {
    std::env::var("RELAY_BENCH_FIGURES")
        .map(|v| v.split(',').any(|k| k.trim() == figure.key()))
        .unwrap_or(true)
}

/// Concurrent callers of the c=16 echo.
pub const CALLERS: usize = 16;

impl Sizes {
    /// From the env, with bench or smoke defaults.
    pub fn from_env(bench: bool, settings: &Settings) -> Self {
        let pick = |full: u64, smoke: u64| if bench { full } else { smoke };
        Self {
            processes: env_or("RELAY_BENCH_PROCESSES", pick(3, 1)).max(1) as usize,
            connects: env_or("RELAY_BENCH_CONNECTS", pick(200, 5)).max(1) as usize,
            echo_calls: env_or("RELAY_BENCH_ECHO_CALLS", pick(3000, 20)).max(1) as usize,
            calls_each: env_or("RELAY_BENCH_ECHO_CONCURRENT_CALLS", pick(1000, 5)).max(1) as usize,
            messages: env_or("RELAY_BENCH_MESSAGES", pick(2_000_000, 10_000)).max(1),
            bulk_bytes: settings.bulk_bytes,
        }
    }
}

/// One figure of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Figure {
    Connect,
    EchoP50,
    EchoC16,
    Framed,
    Bulk,
    Writer,
    FramedQuinn,
}

impl Figure {
    const ALL: [Figure; 7] = [
        Figure::Connect,
        Figure::EchoP50,
        Figure::EchoC16,
        Figure::Framed,
        Figure::Bulk,
        Figure::Writer,
        Figure::FramedQuinn,
    ];

    fn key(self) -> &'static str {
        match self {
            Figure::Connect => "connect",
            Figure::EchoP50 => "echo-c1-p50",
            Figure::EchoC16 => "echo-c16",
            Figure::Framed => "framed",
            Figure::Bulk => "bulk",
            Figure::Writer => "writer",
            Figure::FramedQuinn => "framed-quinn",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Figure::Connect => "connect, fresh client, p50",
            Figure::EchoP50 => "64 B echo, stream/request, c=1, p50",
            Figure::EchoC16 => "64 B echo, stream/request, c=16",
            Figure::Framed => "64 B framed msgs, write_all each, 1 uni",
            Figure::Bulk => "bulk, 64 KiB writes, 1 uni",
            Figure::Writer => "64 B framed msgs, coalescing writer",
            Figure::FramedQuinn => "64 B framed, write_all each, quinn stream",
        }
    }

    /// Unit as printed, and the factor from the raw value (seconds or
    /// per-second rates) to it.
    fn unit(self) -> (&'static str, f64) {
        match self {
            Figure::Connect => ("ms", 1e3),
            Figure::EchoP50 => ("us", 1e6),
            Figure::EchoC16 => ("K calls/s", 1e-3),
            Figure::Framed | Figure::Writer | Figure::FramedQuinn => ("M msgs/s", 1e-6),
            Figure::Bulk => ("MB/s", 1e-6),
        }
    }

    /// Whether a bigger value is better (rates) or worse (times).
    fn higher_is_better(self) -> bool {
        !matches!(self, Figure::Connect | Figure::EchoP50)
    }

    fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.key() == key)
    }
}

fn stack_of(key: &str) -> Option<Stack> {
    Stack::ALL.into_iter().find(|s| s.key() == key)
}

fn rate(count: f64, time: Duration) -> f64 {
    count / time.as_secs_f64().max(1e-12)
}

/// Prints one figure for the parent.
fn report(stack: Stack, figure: Figure, value: f64) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "FIGURE {} {} {value}", stack.key(), figure.key()).unwrap();
    out.flush().unwrap();
}

/// Runs every workload once per stack in `stacks` (one process's share).
pub fn child(stacks: &[Stack], sizes: Sizes) {
    // Two workers, like a node on this machine, unless
    // `RELAY_BENCH_WORKERS` says otherwise (the worker-count sweep), or one
    // thread for everything with `RELAY_BENCH_RUNTIME=current-thread`.
    let rt = if std::env::var("RELAY_BENCH_RUNTIME").as_deref() == Ok("current-thread") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(env_or("RELAY_BENCH_WORKERS", 2usize).max(1))
            .enable_all()
            .build()
            .unwrap()
    };
    for &stack in stacks.iter().filter(|_| selected(Figure::Connect)) {
        let mut times = rt.block_on(connect::connect_times(stack, sizes.connects));
        report(
            stack,
            Figure::Connect,
            common::percentile(&mut times, 50.0).as_secs_f64(),
        );
    }
    let pairs: Arc<Vec<(Stack, Pair)>> = Arc::new(rt.block_on(async {
        let mut pairs = Vec::new();
        for &stack in stacks {
            pairs.push((stack, Pair::new(stack).await));
        }
        pairs
    }));
    let stream_figures = [
        Figure::EchoP50,
        Figure::EchoC16,
        Figure::Framed,
        Figure::Bulk,
    ];
    for figure in stream_figures.into_iter().filter(|f| selected(*f)) {
        for i in 0..pairs.len() {
            let all = pairs.clone();
            let value =
                common::run_as_task(&rt, async move { on_pair(&all[i].1, figure, sizes).await });
            report(pairs[i].0, figure, value);
        }
    }
    let pairs =
        Arc::try_unwrap(pairs).unwrap_or_else(|_| panic!("a measuring task outlived its figure"));
    for (stack, pair) in pairs.iter().filter(|_| selected(Figure::Writer)) {
        if let Pair::Relay { sides } = pair {
            let time = rt.block_on(coalesce::framed(&sides.0, &sides.1, sizes.messages));
            report(*stack, Figure::Writer, rate(sizes.messages as f64, time));
        }
    }
    for (stack, pair) in pairs.iter().filter(|_| selected(Figure::FramedQuinn)) {
        if let Pair::Relay { sides } = pair {
            let (client, server) = (
                QuinnRelaySide(sides.0.clone()),
                QuinnRelaySide(sides.1.clone()),
            );
            let time = rt.block_on(workloads::framed(&client, &server, sizes.messages));
            report(
                *stack,
                Figure::FramedQuinn,
                rate(sizes.messages as f64, time),
            );
        }
    }
    rt.block_on(async {
        for (_, pair) in pairs {
            pair.close().await;
        }
    });
}

/// Measures `figure` on the (client, server) sides of `pair`.
async fn on_pair(pair: &Pair, figure: Figure, sizes: Sizes) -> f64 {
    match pair {
        Pair::Stock { conns, .. } => measure(&conns.0, &conns.1, figure, sizes).await,
        Pair::Iroh { conns, .. } => measure(&conns.0, &conns.1, figure, sizes).await,
        Pair::Relay { sides } => measure(&sides.0, &sides.1, figure, sizes).await,
    }
}

/// One stream figure on one connection: seconds for p50, a rate otherwise.
async fn measure<C: Conn>(client: &C, server: &C, figure: Figure, sizes: Sizes) -> f64 {
    match figure {
        Figure::EchoP50 => {
            let echo = workloads::echo_server(server);
            workloads::echo_latencies(client, sizes.echo_calls / 10).await;
            let mut times = workloads::echo_latencies(client, sizes.echo_calls).await;
            echo.abort();
            common::percentile(&mut times, 50.0).as_secs_f64()
        }
        Figure::EchoC16 => {
            let echo = workloads::echo_server(server);
            let time = workloads::echo_concurrent(client, CALLERS, sizes.calls_each).await;
            echo.abort();
            rate((CALLERS * sizes.calls_each) as f64, time)
        }
        Figure::Framed => rate(
            sizes.messages as f64,
            workloads::framed(client, server, sizes.messages).await,
        ),
        Figure::Bulk => rate(
            sizes.bulk_bytes as f64,
            workloads::bulk(client, server, sizes.bulk_bytes).await,
        ),
        Figure::Connect | Figure::Writer | Figure::FramedQuinn => {
            unreachable!("measured elsewhere")
        }
    }
}

/// Spawns the comparison processes and prints the medians and ratios.
pub fn run(stacks: &[Stack], sizes: Sizes) {
    let keys: Vec<&str> = stacks.iter().map(|s| s.key()).collect();
    let mut values: BTreeMap<(Figure, &str), Vec<f64>> = BTreeMap::new();
    for process in 0..sizes.processes {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(std::env::args().skip(1))
            .env(CHILD_ENV, keys.join(","))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let f: Vec<&str> = line.split_whitespace().collect();
            if let ["FIGURE", stack, figure, value] = f.as_slice() {
                let (Some(stack), Some(figure)) = (stack_of(stack), Figure::parse(figure)) else {
                    continue;
                };
                values
                    .entry((figure, stack.key()))
                    .or_default()
                    .push(value.parse().unwrap());
            }
        }
        assert!(
            child.wait().unwrap().success(),
            "comparison process {process} failed"
        );
    }
    println!();
    println!(
        "relay-node vs iroh vs stock quinn (median of {} fresh processes; runs in brackets; callers on {})",
        sizes.processes,
        common::caller_place(),
    );
    println!(
        "{:42} {:>22} {:>22} {:>22}   relay/iroh  relay/stock",
        "workload", "stock quinn", "iroh", "relay-node"
    );
    for figure in Figure::ALL {
        let (unit, scale) = figure.unit();
        let mut medians = BTreeMap::new();
        let mut cells = Vec::new();
        for stack in Stack::ALL {
            let cell = match values.get_mut(&(figure, stack.key())) {
                Some(v) => {
                    let runs: Vec<String> = v.iter().map(|x| format!("{:.2}", x * scale)).collect();
                    v.sort_by(f64::total_cmp);
                    let m = v[v.len() / 2];
                    medians.insert(stack.key(), m);
                    format!("{:.2} {unit} [{}]", m * scale, runs.join(" "))
                }
                None => "-".to_string(),
            };
            cells.push(cell);
        }
        let ratio = |base: &str| match (medians.get("relay"), medians.get(base)) {
            (Some(r), Some(b)) if *b > 0.0 => {
                let x = r / b;
                let better = if figure.higher_is_better() {
                    x >= 1.0
                } else {
                    x <= 1.0
                };
                format!("{x:.2}x{}", if better { "+" } else { "" })
            }
            _ => "-".to_string(),
        };
        println!(
            "{:42} {:>22} {:>22} {:>22}   {:>10}  {:>11}",
            figure.label(),
            cells[0],
            cells[1],
            cells[2],
            ratio("iroh"),
            ratio("stock")
        );
    }
    println!("(ratios are relay-node's value over the other's: times for connect and p50, rates otherwise; + marks relay-node ahead)");
}
