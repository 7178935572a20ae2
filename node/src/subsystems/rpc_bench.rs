//! `bench rpc`: a load generator in the spirit of `nats bench`, run inside
//! the node (so it measures the mesh, not the local API): `concurrency`
//! callers make unary calls of `size`-byte bodies for `duration`, and the
//! report gives the rate, latency p50/p99 and errors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use relay_rpc::{Latency, RetryPolicy};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::rpc::Rpc;
use super::rpc_client::CallOptions;

/// Most concurrent callers.
pub const MAX_CONCURRENCY: usize = 1024;
/// Largest body.
pub const MAX_SIZE: usize = 1024 * 1024;
/// Longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchRequest {
    /// The service (default `echo`).
    #[serde(default)]
    pub service: Option<String>,
    /// The method (default `echo`).
    #[serde(default)]
    pub method: Option<String>,
    /// Only this node.
    #[serde(default)]
    pub node_id: Option<String>,
    /// Concurrent callers (1..=1024).
    pub concurrency: usize,
    /// Body size in bytes.
    pub size: usize,
    /// How long, in ms.
    pub duration_ms: u64,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Calls that succeeded.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Successful calls per second.
    pub rate: f64,
    /// Median latency, µs.
    pub p50_us: Option<f64>,
    /// 99th percentile latency, µs.
    pub p99_us: Option<f64>,
    /// The first error, `kind: detail`.
    pub first_error: Option<String>,
    /// How long it ran, s.
    pub seconds: f64,
}

/// Runs `concurrency` callers of `service.method` until `duration` is
/// over.
pub async fn run(
    rpc: &Rpc,
    service: &str,
    method: &str,
    options: CallOptions,
    concurrency: usize,
    size: usize,
    duration: Duration,
) -> BenchReport {
    let body = Bytes::from(vec![0x5a; size.min(MAX_SIZE)]);
    let start = Instant::now();
    let end = start + duration.min(MAX_DURATION);
    let shared = Arc::new(Mutex::new((Latency::default(), 0u64, None::<String>)));
    let mut callers = JoinSet::new();
    for _ in 0..concurrency.clamp(1, MAX_CONCURRENCY) {
        let (rpc, body, shared, options) =
            (rpc.clone(), body.clone(), shared.clone(), options.clone());
        let (service, method) = (service.to_string(), method.to_string());
        callers.spawn(async move {
            let mut local = Latency::default();
            let mut errors = 0u64;
            let mut first = None;
            while Instant::now() < end {
                let t = Instant::now();
                match rpc.call(&service, &method, body.clone(), &options).await {
                    Ok(_) => local.record(t.elapsed()),
                    Err(e) => {
                        errors += 1;
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            s.0.merge(&local);
            s.1 += errors;
            if s.2.is_none() {
                s.2 = first;
            }
        });
    }
    while callers.join_next().await.is_some() {}
    let seconds = start.elapsed().as_secs_f64();
    let s = shared.lock().unwrap_or_else(|e| e.into_inner());
    let us = |q| s.0.quantile(q).map(|d| d.as_secs_f64() * 1e6);
    BenchReport {
        calls: s.0.count(),
        errors: s.1,
        rate: s.0.count() as f64 / seconds.max(1e-9),
        p50_us: us(0.5),
        p99_us: us(0.99),
        first_error: s.2.clone(),
        seconds,
    }
}

/// Call options for a bench: no retries (a failure is counted, not
/// hidden), a 5 s timeout.
pub fn options() -> CallOptions {
    CallOptions {
        retry: RetryPolicy::none(),
        ..CallOptions::default()
    }
}
