//! Helpers shared by the criterion benches: reading back the estimates
//! criterion just wrote, so a bench can print ratios from the same run.
#![allow(dead_code)]

pub mod relay;
pub mod relay_node;
pub mod stock;

use std::path::PathBuf;
use std::time::SystemTime;

/// Per-iteration time criterion measured for one benchmark, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    /// Mean time per iteration.
    pub mean_ns: f64,
    /// Median time per iteration.
    pub median_ns: f64,
    /// The figure criterion prints: the slope of the linear fit when it has
    /// one, else the mean.
    pub typical_ns: f64,
}

/// Criterion's output directory, found the way criterion finds it.
fn criterion_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    // The bench binary lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// The estimate criterion wrote for `full_id` (e.g. `group/function`), if it
/// was written at or after `since` (i.e. in this run).
pub fn estimate(full_id: &str, since: SystemTime) -> Option<Estimate> {
    let path = criterion_home()?
        .join(full_id)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let mean_ns = json["mean"]["point_estimate"].as_f64()?;
    Some(Estimate {
        mean_ns,
        median_ns: json["median"]["point_estimate"].as_f64()?,
        typical_ns: json["slope"]["point_estimate"].as_f64().unwrap_or(mean_ns),
    })
}

/// True when the binary runs as a real benchmark (`cargo bench`), false
/// under `cargo test`, where benches only run a quick smoke pass.
pub fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The `p`-th percentile (0..=100) of `samples` (sorted in place), by the
/// nearest-rank method; zero for no samples.
pub fn percentile(samples: &mut [std::time::Duration], p: f64) -> std::time::Duration {
    if samples.is_empty() {
        return std::time::Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Runs `work` to completion on `rt` as a task of the runtime, the way an
/// application's callers run (a handler, a spawned task), and returns its
/// output. `block_on` alone would poll it on the bench's main thread,
/// outside the worker pool: on a multi-thread runtime every wake-up of the
/// caller then crosses to a thread tokio parks on its own, a cost of the
/// harness and not of the stack measured (docs/PERFORMANCE.md §10.9).
/// `RELAY_BENCH_CALLER=main` keeps the old way, to compare.
#[allow(dead_code)]
pub fn run_as_task<F>(rt: &tokio::runtime::Runtime, work: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    if caller_on_main() {
        return rt.block_on(work);
    }
    match rt.block_on(rt.spawn(work)) {
        Ok(out) => out,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Where the measuring callers run, for a bench's header.
#[allow(dead_code)]
pub fn caller_place() -> &'static str {
    if caller_on_main() {
        "the main thread (RELAY_BENCH_CALLER=main)"
    } else {
        "runtime tasks"
    }
}

/// `RELAY_BENCH_CALLER=main`: measuring callers run on the main thread.
#[allow(dead_code)]
pub fn caller_on_main() -> bool {
    std::env::var("RELAY_BENCH_CALLER").as_deref() == Ok("main")
}

/// A tokio runtime like a node's on this machine: two worker threads.
pub fn runtime() -> tokio::runtime::Runtime {
    // `RELAY_BENCH_RUNTIME=current-thread`: every task on one thread (no
    // wake-up crosses threads), to see what the thread hops cost.
    if std::env::var("RELAY_BENCH_RUNTIME").as_deref() == Ok("current-thread") {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `args` for `relay-node run`, plus `--threads N` when
/// `RELAY_BENCH_NODE_THREADS=N` is set (the node processes' runtime).
#[allow(dead_code)]
pub fn run_args(args: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    if let Some(n) = std::env::var("RELAY_BENCH_NODE_THREADS")
        .ok()
        .filter(|n| !n.is_empty())
    {
        out.extend(["--threads".to_string(), n]);
    }
    out
}
