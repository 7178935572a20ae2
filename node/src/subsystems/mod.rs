//! The subsystems a node runs. This list is the one place to touch when a
//! subsystem is added (see [`crate::subsystem`] for what each registers).

pub mod channels;
pub mod channels_acks;
pub mod channels_driver;
pub mod channels_hub;
#[cfg(test)]
mod channels_hub_tests;
pub mod channels_outbox;
pub mod channels_redial;
pub mod channels_registry;
pub mod channels_wire;
pub mod ledger;
pub mod ledger_announce;
pub mod ledger_core;
pub mod ledger_driver;
pub mod ledger_outcomes;
pub mod ledger_sessions;
pub mod ledger_wire;
pub mod ping;
pub mod rpc;
pub mod rpc_auth;
pub mod rpc_bench;
pub mod rpc_builtin;
pub mod rpc_client;
pub mod rpc_client_stream;
pub mod rpc_directory;
pub mod rpc_echo;
pub mod rpc_frames;
pub mod rpc_io;
pub mod rpc_paths;
pub mod rpc_remote;
pub mod rpc_remote_calls;
pub mod rpc_remote_requests;
pub mod rpc_server;
pub mod rpc_service;
pub mod rpc_sink;

use std::sync::Arc;

use relay_transport::Mux;

use crate::revocations_set::RevocationSet;
use crate::subsystem::{Subsystem, SubsystemSet};

/// What subsystems are built from.
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// The node's protocol mux (and through it the transport); it knows
    /// the addresses we were told about (`--peer`, bootstrap), for dialing
    /// a peer that is not connected.
    pub mux: Mux,
    /// The node's ledger (`DIR/ledger.redb`), opened by `run`.
    pub ledger: crate::ledger::Ledger,
    /// Serve the built-in `echo` service (`run --serve-echo`).
    pub serve_echo: bool,
}

/// Every subsystem of a running node, in start order.
pub fn builtins(ctx: &NodeContext) -> SubsystemSet {
    // One revocation set for every token check, fed before they start.
    let revocations = crate::revocations_feed::RevocationsFeed::new(ctx.ledger.clone());
    let revoked = revocations.set();
    let list: Vec<Arc<dyn Subsystem>> = vec![
        Arc::new(ping::PingSubsystem::new(ctx.mux.clone())),
        Arc::new(ledger::LedgerSubsystem::new(
            ctx.mux.clone(),
            ctx.ledger.clone(),
        )),
        Arc::new(revocations),
        Arc::new(rpc_subsystem(ctx, revoked.clone())),
        Arc::new(channels::ChannelsSubsystem::new(
            ctx.mux.clone(),
            ctx.ledger.clone(),
            revoked,
        )),
    ];
    SubsystemSet::new(list)
}

/// The rpc subsystem, serving `echo` when asked.
fn rpc_subsystem(ctx: &NodeContext, revoked: RevocationSet) -> rpc::Rpc {
    let rpc = rpc::Rpc::with_revocations(ctx.mux.clone(), Some(ctx.ledger.clone()), revoked);
    if ctx.serve_echo {
        if let Err(e) = rpc.serve(rpc_echo::ECHO, rpc_echo::options(), rpc_echo::echo()) {
            tracing::warn!(error = %e, "cannot serve echo");
        }
    }
    rpc
}
