//! The subsystems a node runs. This list is the one place to touch when a
//! subsystem is added (see [`crate::subsystem`] for what each registers).

pub mod ping;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use relay_transport::{NodeId, Transport};

use crate::subsystem::{Subsystem, SubsystemSet};

/// What subsystems are built from.
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// The node's transport.
    pub transport: Transport,
    /// Addresses we were told about (`--peer`, bootstrap), for dialing a
    /// peer that is not connected.
    pub known: HashMap<NodeId, SocketAddr>,
}

/// Every subsystem of a running node, in start order.
pub fn builtins(ctx: &NodeContext) -> SubsystemSet {
    let list: Vec<Arc<dyn Subsystem>> = vec![Arc::new(ping::PingSubsystem::new(
        ctx.transport.clone(),
        ctx.known.clone(),
    ))];
    SubsystemSet::new(list)
}
