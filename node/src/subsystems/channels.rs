//! The channels subsystem: named pub/sub (the `relay-channels` cores) on
//! mux protocol id 3 ([`super::channels_wire`]), driven by
//! [`super::channels_driver`]; channels registered in the ledger
//! ([`super::channels_registry`]); the local API routes of
//! [`crate::api::channels`]; a `channels` status section and
//! `relay_node_channels_*` metrics. At start it owns again the channels
//! its own ledger feed registers. Tokens are checked against the node's
//! one revocation set ([`crate::revocations_feed`]).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use relay_transport::mux::{Mux, ProtocolRx, QueueConfig, RegisterError};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::channels_driver::{drive, lock, unix_ms};
use super::channels_hub::Hub;
use super::channels_registry::registered;
use super::channels_wire::{WireCounters, CHANNELS};
use crate::api::channels::ChannelsApi;
use crate::api::router::{RouteError, Routes};
use crate::ledger::Ledger;
use crate::metrics::text::{count, Kind, TextWriter};
use crate::revocations_set::RevocationSet;
use crate::subsystem::{Subsystem, Tasks};

/// Channels, as a subsystem.
#[derive(Clone)]
pub struct ChannelsSubsystem {
    mux: Mux,
    ledger: Ledger,
    hub: Arc<Mutex<Hub>>,
    wake: Arc<Notify>,
    counters: Arc<WireCounters>,
    rx: Arc<Mutex<Option<ProtocolRx>>>,
    revocations: RevocationSet,
}

impl std::fmt::Debug for ChannelsSubsystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelsSubsystem").finish_non_exhaustive()
    }
}

impl ChannelsSubsystem {
    /// Channels over `mux`, registered in `ledger`, checking tokens
    /// against the node's `revocations`.
    pub fn new(mux: Mux, ledger: Ledger, revocations: RevocationSet) -> Self {
        let hub = Hub::new(ledger.node_id(), revocations.clone());
        Self {
            mux,
            ledger,
            hub: Arc::new(Mutex::new(hub)),
            wake: Arc::new(Notify::new()),
            counters: Arc::new(WireCounters::default()),
            rx: Arc::new(Mutex::new(None)),
            revocations,
        }
    }

    /// The channel operations the local API routes use, for callers in
    /// the same process (benchmarks, embedding applications).
    pub fn api(&self) -> ChannelsApi {
        ChannelsApi {
            hub: self.hub.clone(),
            wake: self.wake.clone(),
            ledger: self.ledger.clone(),
        }
    }

    /// Owns again the channels this node registered (and did not withdraw).
    fn restore(&self) {
        let me = self.ledger.node_id();
        match registered(&self.ledger) {
            Ok(all) => {
                let mut hub = lock(&self.hub);
                for r in all.values().filter(|r| r.owner == me) {
                    if let Some(policy) = r.policy {
                        let _ = hub.owner_mut().create(&r.name, policy, unix_ms());
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "channels: reading registrations failed"),
        }
    }
}

impl Subsystem for ChannelsSubsystem {
    fn name(&self) -> &'static str {
        "channels"
    }

    fn register_protocols(&self, mux: &Mux, _tasks: &Tasks) -> Result<(), RegisterError> {
        let rx = mux.register(CHANNELS, "channels", QueueConfig::default())?;
        *self.rx.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx);
        Ok(())
    }

    fn register_routes(&self, routes: &mut Routes) -> Result<(), RouteError> {
        crate::api::channels::register(
            routes,
            ChannelsApi {
                hub: self.hub.clone(),
                wake: self.wake.clone(),
                ledger: self.ledger.clone(),
            },
        )
    }

    fn status(&self) -> Option<Value> {
        let hub = lock(&self.hub);
        let owned = hub.owner().channels();
        let (subs, pubs) = hub.local_links();
        let (denied, throttled) = hub.owner().denials();
        Some(json!({
            "owned": owned.len(),
            "links": hub.owner().links(),
            "local_subscriptions": subs,
            "local_publishers": pubs,
            "denied": denied,
            "throttled": throttled,
        }))
    }

    fn metrics(&self, out: &mut TextWriter) {
        let (published, delivered, dropped, owned, links) = {
            let hub = lock(&self.hub);
            let owned = hub.owner().channels();
            let sum = |f: fn(&relay_channels::ChannelStats) -> u64| {
                owned.iter().map(|c| f(&c.stats)).sum::<u64>()
            };
            (
                sum(|s| s.published),
                sum(|s| s.delivered),
                sum(|s| s.dropped),
                owned.len() as u64,
                hub.owner().links() as u64,
            )
        };
        let c = &self.counters;
        for (name, kind, help, value) in [
            (
                "relay_node_channels_owned",
                Kind::Gauge,
                "Channels this node owns.",
                owned,
            ),
            (
                "relay_node_channels_links",
                Kind::Gauge,
                "Subscriptions and publishing sessions open to owned channels.",
                links,
            ),
            (
                "relay_node_channels_published_total",
                Kind::Counter,
                "Messages owned channels took from publishers.",
                published,
            ),
            (
                "relay_node_channels_delivered_total",
                Kind::Counter,
                "Deliveries owned channels sent to subscriptions.",
                delivered,
            ),
            (
                "relay_node_channels_dropped_total",
                Kind::Counter,
                "Deliveries dropped by backpressure (each reported as a gap).",
                dropped,
            ),
            (
                "relay_node_channels_frames_in_total",
                Kind::Counter,
                "Channel frames received from peers.",
                c.frames_in.load(Relaxed),
            ),
            (
                "relay_node_channels_frames_out_total",
                Kind::Counter,
                "Channel frames sent to peers.",
                c.frames_out.load(Relaxed),
            ),
            (
                "relay_node_channels_datagrams_dropped_total",
                Kind::Counter,
                "Best-effort deliveries that could not be sent.",
                c.datagrams_dropped.load(Relaxed),
            ),
            (
                "relay_node_channels_bad_frames_total",
                Kind::Counter,
                "Channel frames from peers that did not decode.",
                c.bad_frames.load(Relaxed),
            ),
        ] {
            out.single(name, kind, help, count(value));
        }
    }

    fn start(&self, tasks: &Tasks) {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(rx) = rx else {
            tracing::warn!("channels: protocol not registered; not serving");
            return;
        };
        self.restore();
        tasks.spawn(
            "channels",
            drive(
                self.mux.clone(),
                self.ledger.clone(),
                self.revocations.clone(),
                self.hub.clone(),
                self.wake.clone(),
                rx,
                self.counters.clone(),
            ),
        );
    }
}
