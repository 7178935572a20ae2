//! The shape every part of a running node has, and the owner of the node's
//! tasks.
//!
//! A [`Subsystem`] (ping now; ledger, channels and rpc next) registers:
//! - its protocols on the transport's protocol mux;
//! - its local API routes;
//! - its section of `status --json` (under `subsystems.<name>`);
//! - its metrics;
//!
//! and starts its background work on [`Tasks`]. The list of subsystems a
//! node runs is in [`crate::subsystems::builtins`]: adding one touches only
//! that list.
//!
//! [`Tasks`] owns every long-lived task of the node. Shutdown is
//! cooperative: it cancels one token that every task watches, then waits at
//! most a bound for them to drain; no task is detached without an owner.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::router::{RouteError, Routes};
use crate::metrics::text::TextWriter;
use relay_transport::mux::{Mux, RegisterError};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One part of a running node.
pub trait Subsystem: Send + Sync + 'static {
    /// Its name: the key of its status section, a label of its metrics.
    fn name(&self) -> &'static str;

    /// Registers its protocols on the mux and starts serving them on
    /// `tasks` (the node starts the mux once every subsystem registered).
    fn register_protocols(&self, _mux: &Mux, _tasks: &Tasks) -> Result<(), RegisterError> {
        Ok(())
    }

    /// Registers its local API routes.
    fn register_routes(&self, _routes: &mut Routes) -> Result<(), RouteError> {
        Ok(())
    }

    /// Its section of `status --json`, if it has one.
    fn status(&self) -> Option<Value> {
        None
    }

    /// Writes its metric families.
    fn metrics(&self, _out: &mut TextWriter) {}

    /// Starts its background work on `tasks`.
    fn start(&self, _tasks: &Tasks) {}

    /// Shutdown has begun, but the mux, the connections and every
    /// subsystem still run: what peers must learn of the stop (withdrawn
    /// registrations) is recorded and sent now. Bounded by the caller.
    fn stopping(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// The subsystems of one node, in start order.
#[derive(Clone, Default)]
pub struct SubsystemSet {
    list: Vec<Arc<dyn Subsystem>>,
}

impl std::fmt::Debug for SubsystemSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|s| s.name()))
            .finish()
    }
}

impl SubsystemSet {
    /// A set of `list`.
    pub fn new(list: Vec<Arc<dyn Subsystem>>) -> Self {
        Self { list }
    }

    /// The names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.list.iter().map(|s| s.name()).collect()
    }

    /// Registers every subsystem's protocols on `mux`, serving them on
    /// `tasks`.
    pub fn register_protocols(&self, mux: &Mux, tasks: &Tasks) -> Result<(), RegisterError> {
        self.list
            .iter()
            .try_for_each(|s| s.register_protocols(mux, tasks))
    }

    /// Every subsystem's routes.
    pub fn register_routes(&self, routes: &mut Routes) -> Result<(), RouteError> {
        self.list.iter().try_for_each(|s| s.register_routes(routes))
    }

    /// `{name: section}` for the subsystems that have a section.
    pub fn status(&self) -> Map<String, Value> {
        self.list
            .iter()
            .filter_map(|s| s.status().map(|v| (s.name().to_string(), v)))
            .collect()
    }

    /// Every subsystem's metrics.
    pub fn metrics(&self, out: &mut TextWriter) {
        for s in &self.list {
            s.metrics(out);
        }
    }

    /// Starts every subsystem's background work.
    pub fn start(&self, tasks: &Tasks) {
        for s in &self.list {
            s.start(tasks);
        }
    }

    /// Runs every subsystem's [`Subsystem::stopping`], in reverse start
    /// order (the ledger, started before its users, sends what they
    /// recorded), for at most `bound` in all; returns whether all ended.
    pub async fn stopping(&self, bound: Duration) -> bool {
        let all = async {
            for s in self.list.iter().rev() {
                s.stopping().await;
            }
        };
        tokio::time::timeout(bound, all).await.is_ok()
    }
}

/// The owner of a node's long-lived tasks.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    token: CancellationToken,
}

impl Tasks {
    /// An empty owner.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token every task watches; cancelled by [`Self::shutdown`].
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Runs `task` until it ends or shutdown starts (then it is dropped at
    /// its next await).
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = token.cancelled() => tracing::debug!(task = name, "task cancelled"),
                () = task => tracing::debug!(task = name, "task ended"),
            }
        });
    }

    /// Runs `task`, which watches the token itself and drains its own
    /// in-flight work when it fires (bounded by the shutdown wait).
    pub fn spawn_draining<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(async move {
            task.await;
            tracing::debug!(task = name, "task drained");
        });
    }

    /// Cancels every task and waits at most `bound` for them to finish;
    /// returns whether all did.
    pub async fn shutdown(&self, bound: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(bound, self.tracker.wait())
            .await
            .is_ok()
    }

    /// Tasks still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no task is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test(start_paused = true)]
    async fn shutdown_cancels_and_drains_within_the_bound() {
        let tasks = Tasks::new();
        tasks.spawn("forever", std::future::pending());
        let drained = Arc::new(AtomicBool::new(false));
        let token = tasks.token();
        let flag = drained.clone();
        tasks.spawn_draining("drains", async move {
            token.cancelled().await;
            // In-flight work finishing after the cancel.
            tokio::time::sleep(Duration::from_secs(1)).await;
            flag.store(true, Ordering::SeqCst);
        });
        assert_eq!(tasks.len(), 2);
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
        assert!(drained.load(Ordering::SeqCst));
        assert!(tasks.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_cancel_hits_the_bound() {
        let tasks = Tasks::new();
        tasks.spawn_draining("stuck", std::future::pending());
        assert!(!tasks.shutdown(Duration::from_secs(2)).await);
    }

    struct Named(&'static str, Option<Value>);
    impl Subsystem for Named {
        fn name(&self) -> &'static str {
            self.0
        }
        fn status(&self) -> Option<Value> {
            self.1.clone()
        }
        fn metrics(&self, out: &mut TextWriter) {
            out.single(
                &format!("relay_node_{}_x", self.0),
                crate::metrics::text::Kind::Gauge,
                "x",
                1.0,
            );
        }
    }

    #[test]
    fn set_collects_sections_and_metrics() {
        let set = SubsystemSet::new(vec![
            Arc::new(Named("a", Some(serde_json::json!({"n": 1})))),
            Arc::new(Named("b", None)),
        ]);
        assert_eq!(set.names(), vec!["a", "b"]);
        let status = set.status();
        assert_eq!(status.len(), 1);
        assert_eq!(status["a"]["n"], 1);
        let mut w = TextWriter::new();
        set.metrics(&mut w);
        let text = w.finish();
        assert!(text.contains("relay_node_a_x 1"));
        assert!(text.contains("relay_node_b_x 1"));
    }
}
