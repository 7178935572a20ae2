//! The rpc subsystem: nRPC on the mux (protocol id 4, one QUIC stream per
//! call; see docs/RPC.md). It owns [`Rpc`], the node's handle for serving
//! and calling; registers served services in the ledger
//! (`service-registration`) and withdraws them on stop; keeps the
//! mesh-wide [`Directory`] of services from the ledger; serves the local
//! API routes (`crate::api::rpc`), an `rpc` status section (served
//! services, breakers and their thresholds) and `relay_node_rpc_*`
//! metrics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use relay_proto::ledger::body::ServiceRegistration;
use relay_proto::ledger::Body;
use relay_proto::NodeId;
use relay_rpc::{Candidate, Code, Path, Resilience, SplitMix64, Status};
use relay_transport::mux::{Mux, QueueConfig, RegisterError};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::rpc_client::{self, CallOptions, ClientCall, SharedResilience};
use super::rpc_directory::{self, Directory};
use super::rpc_io::RPC;
use super::rpc_paths::Paths;
use super::rpc_server;
use super::rpc_service::{Handler, ServeError, ServeOptions, Services};
use crate::api::router::{RouteError, Routes};
use crate::ledger::Ledger;
use crate::metrics::text::{count, Kind, TextWriter};
use crate::revocations_set::RevocationSet;
use crate::subsystem::{BoxFuture, Subsystem, Tasks};

/// How long a fresh node waits for its first own ledger entry (its
/// announcement) before registering a service anyway.
pub const REGISTER_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    failed: AtomicU64,
}

struct Inner {
    mux: Mux,
    node: NodeId,
    services: Arc<Services>,
    directory: Arc<Directory>,
    paths: Paths,
    env: SharedResilience,
    ledger: Option<Ledger>,
    /// This subsystem feeds its revocation set from the ledger itself
    /// (no shared set was given).
    feeds_revocations: bool,
    registrations: mpsc::UnboundedSender<ServiceRegistration>,
    pending: Mutex<Option<mpsc::UnboundedReceiver<ServiceRegistration>>>,
    /// Registrations and withdrawals queued so far, and how many of them
    /// the ledger took (or refused): shutdown waits for its withdrawals.
    queued: AtomicU64,
    recorded: Arc<watch::Sender<u64>>,
    /// Shutdown queued the withdrawal of every served service.
    withdrawn: Arc<AtomicBool>,
    counters: Counters,
}

/// The node's nRPC handle and subsystem. Cheap to clone.
#[derive(Clone)]
pub struct Rpc {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rpc")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

impl Rpc {
    /// nRPC over `mux`; with a ledger, services are registered in it and
    /// discovered from it.
    pub fn new(mux: Mux, ledger: Option<Ledger>) -> Self {
        Self::build(mux, ledger, None)
    }

    /// As [`Rpc::new`], checking tokens against the node's one revocation
    /// set, which its owner feeds (the `revocations` subsystem).
    pub fn with_revocations(mux: Mux, ledger: Option<Ledger>, revocations: RevocationSet) -> Self {
        Self::build(mux, ledger, Some(revocations))
    }

    /// `revocations` is `None` when this subsystem feeds a set of its own.
    fn build(mux: Mux, ledger: Option<Ledger>, revocations: Option<RevocationSet>) -> Self {
        let node = mux.transport().node_id();
        let feeds_revocations = revocations.is_none();
        let revocations = revocations.unwrap_or_default();
        let (registrations, pending) = mpsc::unbounded_channel();
        let seed = rand::random::<u64>();
        Self {
            inner: Arc::new(Inner {
                mux,
                node,
                services: Arc::new(Services::new(node, revocations)),
                feeds_revocations,
                directory: Arc::new(Directory::default()),
                paths: Paths::default(),
                env: Arc::new(Mutex::new(Resilience::new(SplitMix64::new(seed)))),
                ledger,
                registrations,
                pending: Mutex::new(Some(pending)),
                queued: AtomicU64::new(0),
                recorded: Arc::new(watch::Sender::new(0)),
                withdrawn: Arc::new(AtomicBool::new(false)),
                counters: Counters::default(),
            }),
        }
    }

    /// This node.
    pub fn node_id(&self) -> NodeId {
        self.inner.node
    }

    /// The mesh-wide directory of services.
    pub fn directory(&self) -> &Directory {
        &self.inner.directory
    }

    /// What this node serves.
    pub fn services(&self) -> &Services {
        &self.inner.services
    }

    /// Serves `name` with `handler` and registers it in the ledger.
    pub fn serve(
        &self,
        name: &str,
        options: ServeOptions,
        handler: Handler,
    ) -> Result<(), ServeError> {
        let spec = options.spec();
        self.inner.services.add(name, options, handler)?;
        self.record(ServiceRegistration {
            name: name.to_string(),
            withdrawn: false,
            spec: spec.encode().unwrap_or_default(),
        });
        Ok(())
    }

    /// Queues a registration or withdrawal for the ledger, in order.
    fn record(&self, registration: ServiceRegistration) {
        if self.inner.registrations.send(registration).is_ok() {
            self.inner.queued.fetch_add(1, Relaxed);
        }
    }

    /// Stops serving `name` and withdraws its registration.
    pub fn stop(&self, name: &str) -> bool {
        let removed = self.inner.services.remove(name);
        if removed {
            self.record(withdrawal(name));
        }
        removed
    }

    /// The nodes a call of `service` may go to: `options.node` alone if
    /// given, else every node registered for it, with the path the
    /// transport has to each (this node itself when it serves the service:
    /// its calls run in-process).
    pub fn candidates(&self, service: &str, options: &CallOptions) -> Vec<Candidate> {
        let mut out = self.candidates_unmeasured(service, options);
        self.fill_paths(&mut out);
        out
    }

    /// The nodes of [`Self::candidates`], paths not looked up yet.
    fn candidates_unmeasured(&self, service: &str, options: &CallOptions) -> Vec<Candidate> {
        let me = self.inner.node;
        let serves_here = self.inner.services.get(service).is_some();
        let candidate = |node| Candidate {
            node,
            path: Path::Unknown,
            rtt: None,
        };
        let mut out = Vec::new();
        match options.node {
            Some(n) => out.push(candidate(n)),
            None => self.inner.directory.each_server(service, |n| {
                if n != me {
                    out.push(candidate(n));
                }
            }),
        }
        if options.node.is_none() && serves_here {
            out.push(candidate(me));
        }
        out
    }

    /// The candidates of a call: as [`Self::candidates`], except that a
    /// lone candidate's path is not looked up (there is nothing to choose
    /// between).
    fn call_candidates(&self, service: &str, options: &CallOptions) -> Vec<Candidate> {
        let mut out = self.candidates_unmeasured(service, options);
        if out.len() > 1 {
            self.fill_paths(&mut out);
        }
        out
    }

    /// Sets each candidate's path and RTT (looked up once the directory's
    /// lock is released).
    fn fill_paths(&self, out: &mut [Candidate]) {
        let me = self.inner.node;
        let transport = self.inner.mux.transport();
        for c in out {
            (c.path, c.rtt) = if c.node == me {
                (Path::Local, Some(Duration::ZERO))
            } else {
                self.inner.paths.get(transport, &c.node)
            };
        }
    }

    /// A unary call of `service.method`.
    pub async fn call(
        &self,
        service: &str,
        method: &str,
        body: Bytes,
        options: &CallOptions,
    ) -> Result<Bytes, Status> {
        self.inner.counters.calls.fetch_add(1, Relaxed);
        let candidates = self.call_candidates(service, options);
        let result = rpc_client::call(
            &self.inner.mux,
            &self.inner.services,
            &self.inner.env,
            candidates,
            service,
            method,
            body,
            options,
        )
        .await;
        if let Err(e) = &result {
            self.inner.counters.failed.fetch_add(1, Relaxed);
            tracing::debug!(service, method, status = %e, "rpc: call failed");
        }
        result
    }

    /// Opens a streaming call of `service.method` on one picked node.
    pub async fn open(
        &self,
        service: &str,
        method: &str,
        options: &CallOptions,
    ) -> Result<ClientCall, Status> {
        self.inner.counters.calls.fetch_add(1, Relaxed);
        // Streaming calls always use a stream: this node is not a candidate.
        let mut candidates = self.call_candidates(service, options);
        candidates.retain(|c| c.node != self.inner.node);
        if candidates.is_empty() {
            self.inner.counters.failed.fetch_add(1, Relaxed);
            return Err(Status::new(
                Code::NoResponders,
                format!("nobody serves {service}"),
            ));
        }
        let now = tokio::time::Instant::now().into_std();
        let node = {
            let mut env = self.inner.env.lock().unwrap_or_else(|e| e.into_inner());
            let env = &mut *env;
            env.picker
                .pick(now, options.strategy, &candidates, &[], &env.breakers)
        };
        let Some(node) = node else {
            self.inner.counters.failed.fetch_add(1, Relaxed);
            return Err(Status::new(
                Code::BreakerOpen,
                format!("every node serving {service} has an open circuit breaker"),
            ));
        };
        ClientCall::open(&self.inner.mux, node, service, method, options).await
    }

    /// The `rpc` status section.
    pub fn status_json(&self) -> Value {
        let now = tokio::time::Instant::now().into_std();
        let env = self.inner.env.lock().unwrap_or_else(|e| e.into_inner());
        let config = env.breakers.config();
        let breakers: Vec<Value> = env
            .breakers
            .snapshot(now)
            .into_iter()
            .map(|(node, state, opened)| {
                json!({"node_id": node.to_string(), "state": state.as_str(), "opened": opened})
            })
            .collect();
        drop(env);
        let served: Vec<Value> = self
            .inner
            .services
            .list()
            .iter()
            .map(|e| {
                let mut v = e.stats_json();
                v["name"] = json!(e.name);
                v["concurrency"] = json!(e.options.concurrency);
                v["queue"] = json!(e.options.queue);
                v
            })
            .collect();
        json!({
            "served": served,
            "calls": self.inner.counters.calls.load(Relaxed),
            "failed": self.inner.counters.failed.load(Relaxed),
            "breakers": breakers,
            "breaker_thresholds": {
                "failure_threshold": config.failure_threshold,
                "open_for_ms": config.open_for.as_millis() as u64,
                "half_open_probes": config.half_open_probes,
            },
        })
    }
}

fn withdrawal(name: &str) -> ServiceRegistration {
    ServiceRegistration {
        name: name.to_string(),
        withdrawn: true,
        spec: Vec::new(),
    }
}

/// Appends registrations in order, counting them in `recorded`; on
/// shutdown, appends what is still queued and withdraws what is still
/// served (unless [`Subsystem::stopping`] queued the withdrawals).
async fn register(
    ledger: Ledger,
    services: Arc<Services>,
    mut pending: mpsc::UnboundedReceiver<ServiceRegistration>,
    recorded: Arc<watch::Sender<u64>>,
    withdrawn: Arc<AtomicBool>,
    token: tokio_util::sync::CancellationToken,
) {
    // A fresh node appends nothing before its announcement (which waits
    // until appending cannot fork its own feed).
    tokio::select! {
        () = ledger.wait_own_feed(REGISTER_GRACE) => {}
        () = token.cancelled() => {}
    }
    loop {
        let next = tokio::select! {
            () = token.cancelled() => None,
            r = pending.recv() => r,
        };
        let Some(reg) = next else { break };
        append_registration(&ledger, reg).await;
        recorded.send_modify(|n| *n += 1);
    }
    while let Ok(reg) = pending.try_recv() {
        append_registration(&ledger, reg).await;
    }
    if withdrawn.load(Relaxed) {
        return;
    }
    for entry in services.list() {
        if let Err(e) = ledger
            .append(Body::ServiceRegistration(withdrawal(&entry.name)))
            .await
        {
            tracing::debug!(service = %entry.name, error = %e, "rpc: cannot withdraw");
        }
    }
}

async fn append_registration(ledger: &Ledger, reg: ServiceRegistration) {
    let name = reg.name.clone();
    if let Err(e) = ledger.append(Body::ServiceRegistration(reg)).await {
        tracing::warn!(service = %name, error = %e, "rpc: cannot record the registration");
    }
}

impl Subsystem for Rpc {
    fn name(&self) -> &'static str {
        "rpc"
    }

    fn register_protocols(&self, mux: &Mux, tasks: &Tasks) -> Result<(), RegisterError> {
        // Calls never wait in the mux's queue: the handler starts each
        // call's task at once (bounded by `rpc_server::MAX_CALLS`).
        let queue = QueueConfig::default();
        let calls = rpc_server::Calls::default();
        let handler = rpc_server::stream_handler(self.inner.services.clone(), calls.clone());
        let rx = mux.register_with_handler(RPC, "rpc", queue, handler)?;
        tasks.spawn("rpc", rpc_server::serve(rx, calls));
        Ok(())
    }

    fn register_routes(&self, routes: &mut Routes) -> Result<(), RouteError> {
        crate::api::rpc::register(routes, self.clone())
    }

    fn status(&self) -> Option<Value> {
        Some(self.status_json())
    }

    fn metrics(&self, out: &mut TextWriter) {
        let c = &self.inner.counters;
        out.single(
            "relay_node_rpc_calls_total",
            Kind::Counter,
            "nRPC calls made by this node.",
            count(c.calls.load(Relaxed)),
        );
        out.single(
            "relay_node_rpc_failed_total",
            Kind::Counter,
            "nRPC calls made by this node that failed.",
            count(c.failed.load(Relaxed)),
        );
        let (mut served, mut errors, mut rejected) = (0, 0, 0);
        for e in self.inner.services.list() {
            if let Ok(s) = e.stats.lock() {
                served += s.calls;
                errors += s.errors;
                rejected += s.rejected;
            }
        }
        for (name, help, n) in [
            (
                "relay_node_rpc_served_total",
                "nRPC calls served by this node.",
                served,
            ),
            (
                "relay_node_rpc_served_errors_total",
                "Served calls that ended with an error.",
                errors,
            ),
            (
                "relay_node_rpc_rejected_total",
                "Calls refused past a service's queue.",
                rejected,
            ),
        ] {
            out.single(name, Kind::Counter, help, count(n));
        }
        let now = tokio::time::Instant::now().into_std();
        let open = self
            .inner
            .env
            .lock()
            .map(|e| {
                e.breakers
                    .snapshot(now)
                    .iter()
                    .filter(|(_, s, _)| s.as_str() == "open")
                    .count()
            })
            .unwrap_or(0);
        out.single(
            "relay_node_rpc_breakers_open",
            Kind::Gauge,
            "Peers whose circuit breaker is open.",
            open as f64,
        );
    }

    fn start(&self, tasks: &Tasks) {
        let Some(ledger) = self.inner.ledger.clone() else {
            return;
        };
        if self.inner.feeds_revocations {
            tasks.spawn(
                "rpc-revocations",
                self.inner
                    .services
                    .revocations()
                    .clone()
                    .run(ledger.clone()),
            );
        }
        tasks.spawn(
            "rpc-directory",
            rpc_directory::follow(ledger.clone(), self.inner.directory.clone()),
        );
        let pending = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(pending) = pending {
            tasks.spawn_draining(
                "rpc-register",
                register(
                    ledger,
                    self.inner.services.clone(),
                    pending,
                    self.inner.recorded.clone(),
                    self.inner.withdrawn.clone(),
                    tasks.token(),
                ),
            );
        }
    }

    /// Withdraws every served service and waits until the ledger took the
    /// withdrawals (the ledger subsystem, stopping next, sends them).
    fn stopping(&self) -> BoxFuture<'static, ()> {
        let rpc = self.clone();
        Box::pin(async move {
            let inner = &rpc.inner;
            let registering = inner.ledger.is_some()
                && inner
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_none();
            if !registering || inner.withdrawn.swap(true, Relaxed) {
                return;
            }
            for entry in inner.services.list() {
                rpc.record(withdrawal(&entry.name));
            }
            let queued = inner.queued.load(Relaxed);
            let _ = inner.recorded.subscribe().wait_for(|n| *n >= queued).await;
        })
    }
}
