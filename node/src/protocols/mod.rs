//! The node's own protocols, served on the transport's protocol mux
//! ([`relay_transport::mux`]): each registers its protocol id there and
//! serves what arrives in its queue. Routing, protocol ids on the wire,
//! refusals and their counters are the mux's job, not this module's.

pub mod ping;

use relay_transport::mux::{Mux, QueueConfig, RegisterError};
use tokio::task::JoinSet;

/// Registers the built-in protocols (ping) on `mux` and starts serving
/// them (start the mux afterwards); the tasks end when the mux closes, or
/// are aborted when the returned set is dropped.
pub fn serve_builtins(mux: &Mux) -> Result<JoinSet<()>, RegisterError> {
    let mut tasks = JoinSet::new();
    let ping = mux.register(ping::PING, "ping", QueueConfig::default())?;
    tasks.spawn(ping::serve(ping));
    Ok(tasks)
}
