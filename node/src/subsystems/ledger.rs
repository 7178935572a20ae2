//! The ledger subsystem: owns the node's [`Ledger`] (`DIR/ledger.redb`,
//! opened by `run`), registers ledger replication on the mux (protocol id
//! 2, see [`super::ledger_wire`]), runs the driver
//! ([`super::ledger_driver`]) that replicates and announces this node, and
//! serves the ledger's local API routes (`/v1/members`, `/v1/ledger`,
//! `/v1/ledger/verify`), a `ledger` status section and
//! `relay_node_ledger_*` metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use relay_transport::mux::{Mux, QueueConfig, RegisterError};
use relay_transport::PeerState;
use serde_json::{json, Value};

use super::ledger_core::LedgerCore;
use super::ledger_driver::drive;
use super::ledger_wire::LEDGER;
use crate::api::ledger::LedgerApi;
use crate::api::router::{RouteError, Routes};
use crate::ledger::{Ledger, ReplicaConfig, ReplicaStats};
use crate::metrics::text::{count, Kind, TextWriter};
use crate::subsystem::{Subsystem, Tasks};

/// Counters the driver keeps and status and metrics read.
#[derive(Debug, Default)]
pub struct Counters {
    appends: AtomicU64,
    replica: Mutex<ReplicaStats>,
}

impl Counters {
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
        let core = LedgerCore::new(ledger.clone(), ReplicaConfig::default());
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

impl Subsystem for LedgerSubsystem {
    fn name(&self) -> &'static str {
        "ledger"
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
        Some(json!({
            "origins": stats.origins,
            "entries": stats.entries,
            "bytes": stats.bytes,
            "forks": stats.forks,
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
        for (reason, n) in [
            ("tampered", r.tampered),
            ("broken_chain", r.broken_chain),
            ("not_member", r.not_member),
            ("forked_origin", r.forked_origin),
            ("rate_limited", r.rate_limited),
            ("malformed", r.malformed),
            ("out_of_order", r.out_of_order),
        ] {
            out.sample(name, &[("reason", reason)], count(n));
        }
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
