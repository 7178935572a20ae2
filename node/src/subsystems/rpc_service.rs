//! What this node serves: [`ServeOptions`], the [`Handler`] type, and
//! [`Services`], the table of served services with their admission
//! control (a concurrency limit and a bounded queue per service) and
//! statistics.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use relay_proto::wire::rpc::{valid_name, ServiceSpec, MAX_METHOD, MAX_METHODS, MAX_SERVICE};
use relay_rpc::{Code, ServiceStats, Status};
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::rpc_server::ServerCall;
use crate::revocations_set::RevocationSet;
use crate::subsystem::BoxFuture;

/// Built-in verbs every service answers (not counted against its limits).
pub const BUILTIN_METHODS: [&str; 3] = ["ping", "info", "stats"];
/// Most services one node serves.
pub const MAX_SERVICES: usize = 256;

/// A service's handler: takes the call, returns the final reply message
/// (sent with the `ok` trailer; `None` for none) or a status.
pub type Handler =
    Arc<dyn Fn(ServerCall) -> BoxFuture<'static, Result<Option<Bytes>, Status>> + Send + Sync>;

/// Makes a [`Handler`] from an async function.
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(ServerCall) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Bytes>, Status>> + Send + 'static,
{
    Arc::new(move |call| Box::pin(f(call)))
}

/// How a service is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Its methods (built-in verbs excluded); empty: any method.
    pub methods: Vec<String>,
    /// Its version.
    pub version: String,
    /// Calls run at once at most.
    pub concurrency: usize,
    /// Calls waiting for a slot at most; past it, `resource-exhausted`.
    pub queue: usize,
    /// The pushback sent with `resource-exhausted`.
    pub retry_after: Duration,
    /// Whether callers must present a token (recorded in the registration,
    /// checked before the handler runs: `rpc_auth`).
    pub token_required: bool,
}

impl Default for ServeOptions {
    /// Any method, version "1", 64 at once, 256 queued, 50 ms pushback.
    fn default() -> Self {
        Self {
            methods: Vec::new(),
            version: "1".into(),
            concurrency: 64,
            queue: 256,
            retry_after: Duration::from_millis(50),
            token_required: false,
        }
    }
}

impl ServeOptions {
    /// The spec a registration carries.
    pub fn spec(&self) -> ServiceSpec {
        ServiceSpec {
            version: self.version.clone(),
            methods: self.methods.clone(),
            token_required: self.token_required,
        }
    }
}

/// `serve` was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ServeError {
    /// A bad service or method name, or too many methods.
    #[error("invalid-service: {0}")]
    Invalid(String),
    /// The service is already served here.
    #[error("already-serving: {0} is already served by this node")]
    AlreadyServing(String),
    /// [`MAX_SERVICES`] are served.
    #[error("too-many-services: this node serves {MAX_SERVICES} services already")]
    TooMany,
}

impl ServeError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid-service",
            Self::AlreadyServing(_) => "already-serving",
            Self::TooMany => "too-many-services",
        }
    }
}

/// One served service.
pub struct ServiceEntry {
    /// Its name.
    pub name: String,
    /// How it is served.
    pub options: ServeOptions,
    /// Its handler.
    pub handler: Handler,
    permits: Arc<Semaphore>,
    queued: AtomicUsize,
    /// Its counters.
    pub stats: Mutex<ServiceStats>,
}

impl std::fmt::Debug for ServiceEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceEntry")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ServiceEntry {
    /// Whether `method` is one of its methods.
    pub fn has_method(&self, method: &str) -> bool {
        self.options.methods.is_empty() || self.options.methods.iter().any(|m| m == method)
    }

    /// A slot to run one call if one is free now.
    pub fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// A slot to run one call: at once, else after waiting in the queue
    /// (bounded by the caller's deadline, applied by the caller); past the
    /// queue, `resource-exhausted` with the pushback.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, Status> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        let waiting = self.queued.fetch_add(1, Ordering::AcqRel);
        let _left = QueueSlot(&self.queued);
        if waiting >= self.options.queue {
            if let Ok(mut s) = self.stats.lock() {
                s.rejected += 1;
            }
            let detail = format!(
                "{} runs {} calls and queues {}",
                self.name, self.options.concurrency, self.options.queue
            );
            return Err(Status::new(Code::ResourceExhausted, detail)
                .with_retry_after(self.options.retry_after));
        }
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::new(Code::Unavailable, "the service stopped"))
    }

    fn snapshot(&self) -> ServiceStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The JSON the built-in `stats` verb answers.
    pub fn stats_json(&self) -> serde_json::Value {
        let s = self.snapshot();
        let us = |q| s.latency.quantile(q).map(|d| d.as_secs_f64() * 1e6);
        serde_json::json!({
            "calls": s.calls,
            "errors": s.errors,
            "in_flight": s.in_flight,
            "rejected": s.rejected,
            "p50_us": us(0.5),
            "p99_us": us(0.99),
        })
    }
}

struct QueueSlot<'a>(&'a AtomicUsize);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The services this node serves.
#[derive(Debug)]
pub struct Services {
    node: relay_proto::NodeId,
    revocations: RevocationSet,
    map: RwLock<foldhash::HashMap<String, Arc<ServiceEntry>>>,
}

impl Services {
    /// None yet, on node `node`, checking tokens against `revocations`.
    pub fn new(node: relay_proto::NodeId, revocations: RevocationSet) -> Self {
        Self {
            node,
            revocations,
            map: RwLock::default(),
        }
    }

    /// This node.
    pub fn node(&self) -> relay_proto::NodeId {
        self.node
    }

    /// The revocations token checks consult.
    pub fn revocations(&self) -> &RevocationSet {
        &self.revocations
    }

    /// Adds `name`.
    pub fn add(
        &self,
        name: &str,
        options: ServeOptions,
        handler: Handler,
    ) -> Result<Arc<ServiceEntry>, ServeError> {
        if !valid_name(name, MAX_SERVICE) {
            return Err(ServeError::Invalid(format!("bad service name {name:?}")));
        }
        if options.methods.len() > MAX_METHODS {
            return Err(ServeError::Invalid(format!(
                "more than {MAX_METHODS} methods"
            )));
        }
        if let Some(m) = options
            .methods
            .iter()
            .find(|m| !valid_name(m, MAX_METHOD) || BUILTIN_METHODS.contains(&m.as_str()))
        {
            return Err(ServeError::Invalid(format!("bad or reserved method {m:?}")));
        }
        if options.spec().encode().is_err() {
            return Err(ServeError::Invalid("version too long".into()));
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(name) {
            return Err(ServeError::AlreadyServing(name.to_string()));
        }
        if map.len() >= MAX_SERVICES {
            return Err(ServeError::TooMany);
        }
        let entry = Arc::new(ServiceEntry {
            name: name.to_string(),
            permits: Arc::new(Semaphore::new(options.concurrency.max(1))),
            queued: AtomicUsize::new(0),
            stats: Mutex::new(ServiceStats::default()),
            options,
            handler,
        });
        map.insert(name.to_string(), entry.clone());
        Ok(entry)
    }

    /// Removes `name`; whether it was served.
    pub fn remove(&self, name: &str) -> bool {
        let removed = self
            .map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(e) = &removed {
            e.permits.close();
        }
        removed.is_some()
    }

    /// The entry of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<ServiceEntry>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Every entry, by name.
    pub fn list(&self) -> Vec<Arc<ServiceEntry>> {
        let mut v: Vec<_> = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}
