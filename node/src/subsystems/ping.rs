//! The ping subsystem: the ping stream protocol (answering peers), the
//! `POST /v1/ping` route (one ping to a peer, dialing it first if needed),
//! a `ping` status section and `relay_node_ping_*` metrics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use relay_transport::{NodeId, RecvStream, SendStream, Transport};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::body::ok;
use crate::api::error::ApiError;
use crate::api::request::read_json;
use crate::api::router::{ApiRequest, RouteError, Routes};
use crate::api::{BODY_TIMEOUT, MAX_BODY};
use crate::metrics::text::{count, Kind, TextWriter};
use crate::protocols::ping::{self, PingProtocol, PongReport};
use crate::protocols::{Dispatcher, StreamProtocol, PROTO_PING};
use crate::subsystem::{BoxFuture, Subsystem};

/// Ping timeout when the request names none.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest ping timeout a request may ask for.
pub const MAX_PING_TIMEOUT: Duration = Duration::from_secs(60);

/// The body of `POST /v1/ping`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingRequest {
    /// The peer.
    pub node_id: String,
    /// How long to wait for the pong, dial included.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl PingRequest {
    /// The peer and the timeout to use.
    pub fn parse(&self) -> Result<(NodeId, Duration), ApiError> {
        let peer: NodeId = self
            .node_id
            .trim()
            .parse()
            .map_err(|e| ApiError::operation("invalid-node-id", format!("{e}")))?;
        let timeout = match self.timeout_ms {
            None => DEFAULT_PING_TIMEOUT,
            Some(0) => return Err(ApiError::BadRequest("timeout_ms must be at least 1".into())),
            Some(ms) => Duration::from_millis(ms).min(MAX_PING_TIMEOUT),
        };
        Ok((peer, timeout))
    }
}

#[derive(Debug, Default)]
struct Counters {
    served: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
}

/// Ping, as a subsystem.
#[derive(Debug, Clone)]
pub struct PingSubsystem {
    transport: Transport,
    known: Arc<HashMap<NodeId, SocketAddr>>,
    counters: Arc<Counters>,
}

impl PingSubsystem {
    /// Ping over `transport`, dialing unconnected peers at `known`
    /// addresses when it has one.
    pub fn new(transport: Transport, known: HashMap<NodeId, SocketAddr>) -> Self {
        Self {
            transport,
            known: Arc::new(known),
            counters: Arc::new(Counters::default()),
        }
    }

    /// An address for `peer`: one we were told, else the last one seen.
    fn known_addr(&self, peer: NodeId) -> Option<SocketAddr> {
        self.known.get(&peer).copied().or_else(|| {
            self.transport
                .peers()
                .into_iter()
                .find(|p| p.node_id == peer)
                .and_then(|p| p.remote_addr)
        })
    }

    /// One ping.
    pub async fn ping(&self, request: &PingRequest) -> Result<PongReport, ApiError> {
        let (peer, timeout) = request.parse()?;
        self.counters.sent.fetch_add(1, Relaxed);
        let result = ping::ping(&self.transport, peer, self.known_addr(peer), timeout).await;
        result.map_err(|e| {
            self.counters.failed.fetch_add(1, Relaxed);
            ApiError::operation(e.kind(), e.detail())
        })
    }
}

/// The ping protocol, counting the pings it answers.
struct Served {
    counters: Arc<Counters>,
}

impl StreamProtocol for Served {
    fn serve(&self, from: NodeId, send: SendStream, recv: RecvStream) -> BoxFuture<'static, ()> {
        self.counters.served.fetch_add(1, Relaxed);
        PingProtocol.serve(from, send, recv)
    }
}

impl Subsystem for PingSubsystem {
    fn name(&self) -> &'static str {
        "ping"
    }

    fn register_protocols(&self, protocols: &mut Dispatcher) {
        protocols.register(
            PROTO_PING,
            Arc::new(Served {
                counters: self.counters.clone(),
            }),
        );
    }

    fn register_routes(&self, routes: &mut Routes) -> Result<(), RouteError> {
        let this = self.clone();
        routes.post("/v1/ping", move |req: ApiRequest, _ctx| {
            let this = this.clone();
            async move {
                let request: PingRequest = read_json(req, MAX_BODY, BODY_TIMEOUT).await?;
                Ok(ok(&this.ping(&request).await?))
            }
        })
    }

    fn status(&self) -> Option<Value> {
        Some(json!({
            "served": self.counters.served.load(Relaxed),
            "sent": self.counters.sent.load(Relaxed),
            "failed": self.counters.failed.load(Relaxed),
        }))
    }

    fn metrics(&self, out: &mut TextWriter) {
        for (name, help, counter) in [
            (
                "relay_node_ping_served_total",
                "Pings from peers answered.",
                &self.counters.served,
            ),
            (
                "relay_node_ping_sent_total",
                "Pings sent for local API requests.",
                &self.counters.sent,
            ),
            (
                "relay_node_ping_failed_total",
                "Pings sent that got no pong (timeout, no path, ...).",
                &self.counters.failed,
            ),
        ] {
            out.single(name, Kind::Counter, help, count(counter.load(Relaxed)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    #[test]
    fn requests_parse_with_bounds() {
        let id = SecretKey::generate().node_id();
        let req = |timeout_ms| PingRequest {
            node_id: id.to_string(),
            timeout_ms,
        };
        assert_eq!(req(None).parse().unwrap(), (id, DEFAULT_PING_TIMEOUT));
        assert_eq!(
            req(Some(250)).parse().unwrap().1,
            Duration::from_millis(250)
        );
        assert_eq!(req(Some(999_999)).parse().unwrap().1, MAX_PING_TIMEOUT);
        assert_eq!(req(Some(0)).parse().unwrap_err().kind(), "bad-request");
        let bad = PingRequest {
            node_id: "nope".into(),
            timeout_ms: None,
        };
        let e = bad.parse().unwrap_err();
        assert_eq!(e.kind(), "invalid-node-id");
        assert_eq!(e.status().as_u16(), 400);
        assert!(serde_json::from_str::<PingRequest>(r#"{"node_id":"x","extra":1}"#).is_err());
    }
}
