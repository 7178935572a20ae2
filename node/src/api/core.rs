//! The node's own routes, present whatever subsystems run: health, status,
//! netcheck, events and the `echo` stream service.

use std::sync::Arc;

use relay_proto::SecretKey;
use relay_transport::PeerEvent;
use serde_json::Value;
use tokio::sync::broadcast;

use super::body::ok;
use super::events::{events_response, KEEPALIVE};
use super::frames::Echo;
use super::health::{parse_nonce, prove};
use super::router::{ApiRequest, RequestContext, RouteError, Routes};

/// A snapshot as JSON, taken per request.
pub type Snapshot = Arc<dyn Fn() -> Value + Send + Sync>;
/// A new subscription to the peer events.
pub type Subscribe = Arc<dyn Fn() -> broadcast::Receiver<PeerEvent> + Send + Sync>;

/// What the core routes read from the running node.
#[derive(Clone)]
pub struct Core {
    /// The identity key (signs health proofs).
    pub identity: SecretKey,
    /// The JSON of `status --json`, with the subsystems' sections.
    pub status: Snapshot,
    /// The JSON of `netcheck --json`.
    pub netcheck: Snapshot,
    /// Peer events.
    pub events: Subscribe,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("node_id", &self.identity.node_id())
            .finish_non_exhaustive()
    }
}

/// Adds the core routes.
pub fn register(routes: &mut Routes, core: Core) -> Result<(), RouteError> {
    let identity = core.identity.clone();
    routes.get("/v1/health", move |req: ApiRequest, _ctx| {
        let identity = identity.clone();
        async move {
            let nonce = parse_nonce(req.uri().query())?;
            Ok(ok(&prove(&identity, &nonce)?))
        }
    })?;
    let status = core.status.clone();
    routes.get("/v1/status", move |_req, _ctx| {
        let value = status();
        async move { Ok(ok(&value)) }
    })?;
    let netcheck = core.netcheck.clone();
    routes.get("/v1/netcheck", move |_req, _ctx| {
        let value = netcheck();
        async move { Ok(ok(&value)) }
    })?;
    let events = core.events.clone();
    routes.get("/v1/events", move |_req, ctx: RequestContext| {
        let result = events_response(events(), &ctx, KEEPALIVE);
        async move { result }
    })?;
    routes.stream("echo", Echo)?;
    Ok(())
}
