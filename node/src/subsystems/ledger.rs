//! The ledger subsystem: owns the node's [`Ledger`] (`DIR/ledger.redb`,
//! opened by `run`), registers ledger replication on the mux (protocol id
//! 2, see [`super::ledger_wire`]), runs the driver
//! ([`super::ledger_driver`]) that replicates and announces this node, and
//! serves the ledger's local API routes (`/v1/members`, `/v1/ledger`,
//! `/v1/ledger/verify`), a `ledger` status section and
//! `relay_node_ledger_*` metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_transport::mux::{Mux, QueueConfig, RegisterError};
use relay_transport::PeerState;
use serde_json::{json, Value};

use super::ledger_core::LedgerCore;
use super::ledger_driver::drive;
use super::ledger_wire::LEDGER;
use crate::api::ledger::LedgerApi;
use crate::api::router::{RouteError, Routes};
use crate::ledger::{Lag, Ledger, ReplicaConfig, ReplicaStats};
use crate::metrics::text::{count, Kind, TextWriter};
use crate::subsystem::{BoxFuture, Subsystem, Tasks};
use relay_proto::ledger::EntryKind;
use relay_proto::NodeId;

/// Counters the driver keeps and status and metrics read.
#[derive(Debug, Default)]
pub struct Counters {
    appends: AtomicU64,
    replica: Mutex<ReplicaStats>,
    relay_sessions: AtomicU64,
    traversal_outcomes: AtomicU64,
    events_dropped: AtomicU64,
    lags: Mutex<Vec<(NodeId, Lag)>>,
}

impl Counters {
    /// This node appended an event entry of `kind`.
    pub fn event_appended(&self, kind: EntryKind) {
        match kind {
            EntryKind::RelaySession => self.relay_sessions.fetch_add(1, Relaxed),
            EntryKind::TraversalOutcome => self.traversal_outcomes.fetch_add(1, Relaxed),
            _ => 0,
        };
    }

    /// Events not recorded (duplicates, rate limits, bounds) so far.
    pub fn set_events_dropped(&self, n: u64) {
        self.events_dropped.store(n, Relaxed);
    }

    /// The per-peer lag, as of the last check.
    pub fn set_lags(&self, lags: Vec<(NodeId, Lag)>) {
        *self.lags.lock().unwrap_or_else(|e| e.into_inner()) = lags;
    }

    /// The per-peer lag, as of the last check.
    pub fn lags(&self) -> Vec<(NodeId, Lag)> {
        self.lags.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// This node appended an entry.
    pub fn appended(&self) {
        self.appends.fetch_add(1, Relaxed);
    }

    /// Copies the replica's counters (after each core call).
    pub fn sync_stats(&self, core: &Arc<Mutex<LedgerCore>>) {
        let stats = core.lock().unwrap_or_else(|e| e.into_inner()).stats();
        *self.replica.lock().unwrap_or_else(|e| e.into_inner()) = stats;
    }

    /// The replica's counters, as of the last core call.
    pub fn replica(&self) -> ReplicaStats {
        *self.replica.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends made by this node since start.
    pub fn appends(&self) -> u64 {
        self.appends.load(Relaxed)
    }
}

/// The ledger, as a subsystem.
#[derive(Clone)]
pub struct LedgerSubsystem {
    mux: Mux,
    ledger: Ledger,
    core: Arc<Mutex<LedgerCore>>,
    counters: Arc<Counters>,
    rx: Arc<Mutex<Option<relay_transport::ProtocolRx>>>,
}

impl std::fmt::Debug for LedgerSubsystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerSubsystem")
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

impl LedgerSubsystem {
    /// The subsystem over an open `ledger`, replicating through `mux`.
    pub fn new(mux: Mux, ledger: Ledger) -> Self {
        let key = mux.transport().network_key();
        let core = LedgerCore::new(ledger.clone(), ReplicaConfig::default(), key);
        Self {
            mux,
            ledger,
            core: Arc::new(Mutex::new(core)),
            counters: Arc::new(Counters::default()),
            rx: Arc::new(Mutex::new(None)),
        }
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The mux (the transport behind it says who is connected).
    pub fn mux(&self) -> &Mux {
        &self.mux
    }
}

/// How often a stopping node checks that its peers were sent its feed.
const STOPPING_POLL: Duration = Duration::from_millis(20);
/// The pause after that, for the writers to hand the last bytes to QUIC.
const STOPPING_LINGER: Duration = Duration::from_millis(50);

impl Subsystem for LedgerSubsystem {
    fn name(&self) -> &'static str {
        "ledger"
    }

    /// Waits until every connected peer was sent what it lacks of this
    /// node's ledger (the withdrawals its users just appended among it).
    fn stopping(&self) -> BoxFuture<'static, ()> {
        let core = self.core.clone();
        Box::pin(async move {
            loop {
                let core = core.clone();
                let lags = tokio::task::spawn_blocking(move || {
                    core.lock().unwrap_or_else(|e| e.into_inner()).lags()
                })
                .await;
                match lags {
                    Ok(Ok(lags)) if lags.iter().any(|(_, l)| l.peer_lacks > 0) => {
                        tokio::time::sleep(STOPPING_POLL).await;
                    }
                    _ => break,
                }
            }
            tokio::time::sleep(STOPPING_LINGER).await;
        })
    }

    fn register_protocols(&self, mux: &Mux, _tasks: &Tasks) -> Result<(), RegisterError> {
        let rx = mux.register(LEDGER, "ledger", QueueConfig::default())?;
        *self.rx.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx);
        Ok(())
    }

    fn register_routes(&self, routes: &mut Routes) -> Result<(), RouteError> {
        let core = self.core.clone();
        let behind = Arc::new(move || {
            let core = core.lock().unwrap_or_else(|e| e.into_inner());
            core.own_state().is_ok_and(|(_, ahead)| ahead)
        });
        crate::api::tokens::register(routes, self.ledger.clone(), behind)?;
        let transport = self.mux.transport().clone();
        crate::api::ledger::register(
            routes,
            LedgerApi {
                ledger: self.ledger.clone(),
                connected: Arc::new(move || {
                    transport
                        .peers()
                        .into_iter()
                        .filter(|p| p.state == PeerState::Connected)
                        .map(|p| p.node_id)
                        .collect()
                }),
            },
        )
    }

    fn status(&self) -> Option<Value> {
        let stats = self.ledger.store().stats().unwrap_or_default();
        let c = &self.counters;
        let r = c.replica();
        let peers: serde_json::Map<String, Value> = c
            .lags()
            .into_iter()
            .map(|(peer, lag)| {
                let v = json!({
                    "replication_lag": {
                        "peer_lacks": lag.peer_lacks,
                        "we_lack": lag.we_lack,
                    }
                });
                (peer.to_string(), v)
            })
            .collect();
        Some(json!({
            "origins": stats.origins,
            "entries": stats.entries,
            "bytes": stats.bytes,
            "forks": stats.forks,
            "peers": peers,
            "appends": c.appends(),
            "replicated": r.replicated,
            "rejected": rejected(&r)
                .into_iter()
                .map(|(reason, n)| (reason.to_string(), Value::from(n)))
                .collect::<serde_json::Map<String, Value>>(),
            "events": {
                "relay_sessions": c.relay_sessions.load(Relaxed),
                "traversal_outcomes": c.traversal_outcomes.load(Relaxed),
                "dropped": c.events_dropped.load(Relaxed),
            },
        }))
    }

    fn metrics(&self, out: &mut TextWriter) {
        let r = self.counters.replica();
        out.single(
            "relay_node_ledger_appends_total",
            Kind::Counter,
            "Entries this node appended to its own feed.",
            count(self.counters.appends()),
        );
        out.single(
            "relay_node_ledger_replicated_total",
            Kind::Counter,
            "Entries stored from peers.",
            count(r.replicated),
        );
        out.single(
            "relay_node_ledger_forks_total",
            Kind::Counter,
            "Forks detected.",
            count(r.forks),
        );
        let name = "relay_node_ledger_rejected_total";
        out.family(
            name,
            Kind::Counter,
            "Entries or messages rejected, by reason.",
        );
        for (reason, n) in rejected(&r) {
            out.sample(name, &[("reason", reason)], count(n));
        }
        let name = "relay_node_ledger_events_total";
        out.family(
            name,
            Kind::Counter,
            "Event entries this node appended, by kind.",
        );
        for (kind, n) in [
            ("relay-session", &self.counters.relay_sessions),
            ("traversal-outcome", &self.counters.traversal_outcomes),
        ] {
            out.sample(name, &[("kind", kind)], count(n.load(Relaxed)));
        }
        out.single(
            "relay_node_ledger_events_dropped_total",
            Kind::Counter,
            "Relay sessions and traversal outcomes not recorded (duplicates, rate limits, bounds).",
            count(self.counters.events_dropped.load(Relaxed)),
        );
    }

    fn start(&self, tasks: &Tasks) {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(rx) = rx else {
            tracing::warn!("ledger: protocol not registered; not replicating");
            return;
        };
        tasks.spawn(
            "ledger",
            drive(
                self.mux.clone(),
                self.ledger.clone(),
                self.core.clone(),
                rx,
                self.counters.clone(),
            ),
        );
    }
}

/// Rejections by reason, as status and metrics name them.
fn rejected(r: &ReplicaStats) -> [(&'static str, u64); 7] {
    [
        ("tampered", r.tampered),
        ("broken_chain", r.broken_chain),
        ("not_member", r.not_member),
        ("forked_origin", r.forked_origin),
        ("rate_limited", r.rate_limited),
        ("malformed", r.malformed),
        ("out_of_order", r.out_of_order),
    ]
}
