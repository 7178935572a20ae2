//! nRPC's local API routes (docs/LOCAL_API.md):
//!
//! - `GET /v1/services`: every service mesh-wide (from the ledger's
//!   registrations): name, and per node its version, methods and path
//!   (local, direct, relayed, unknown);
//! - `POST /v1/call`: one call through the node (unary, or with
//!   `"stream": true` every item of a server-streaming call);
//! - `POST /v1/bench/rpc`: a load run made by the node;
//! - `GET /v1/stream/rpc-serve`: a peer process serves a service
//!   (`super::rpc_serve`);
//! - `GET /v1/stream/rpc-call`: a peer process makes a streaming call
//!   (client streaming, duplex; `super::rpc_call`);
//! - `GET /v1/stream/rpc-calls`: a peer process makes many unary calls
//!   over one connection (`super::rpc_calls`).
//!
//! A failed call answers `{"error":{"kind","detail"}}` with nRPC's kind
//! (`no-responders`, `timeout`, ...).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use relay_proto::token::TokenChain;
use relay_proto::NodeId;
use relay_rpc::{Path, Status};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::ok;
use super::error::ApiError;
use super::request::{hex_decode, hex_encode, read_json};
use super::router::{ApiRequest, RouteError, Routes};
use super::{BODY_TIMEOUT, MAX_BODY};
use crate::subsystems::rpc::Rpc;
use crate::subsystems::rpc_auth::token_metadata;
use crate::subsystems::rpc_bench::{self, BenchRequest};
use crate::subsystems::rpc_client::CallOptions;

/// Longest call timeout a request may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Most items a streaming call returns through `POST /v1/call`.
pub const MAX_STREAM_ITEMS: usize = 10_000;
/// Most item bytes, all items together, a streaming call returns through
/// `POST /v1/call` (the answer carries each item twice, as text and hex).
pub const MAX_STREAM_BYTES: usize = 4 * 1024 * 1024;

/// The body of `POST /v1/call`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    /// The service.
    pub service: String,
    /// The method.
    pub method: String,
    /// The request body as text.
    #[serde(default)]
    pub body: Option<String>,
    /// The request body as hex (instead of `body`).
    #[serde(default)]
    pub body_hex: Option<String>,
    /// Only this node.
    #[serde(default)]
    pub node_id: Option<String>,
    /// The call's timeout (default 5000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Whether the call is idempotent (may be retried after it may have
    /// run, and hedged).
    #[serde(default)]
    pub idempotent: bool,
    /// Metadata pairs.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Collect every item of a server-streaming call.
    #[serde(default)]
    pub stream: bool,
    /// A token (`rnk1...`) for a service that requires one.
    #[serde(default)]
    pub token: Option<String>,
}

fn status_error(s: &Status) -> ApiError {
    ApiError::operation(s.kind.clone(), s.detail.clone())
}

fn node_arg(text: Option<&str>) -> Result<Option<NodeId>, ApiError> {
    text.map(|t| {
        t.trim()
            .parse()
            .map_err(|e| ApiError::operation("invalid-node-id", format!("{e}")))
    })
    .transpose()
}

impl CallRequest {
    /// The body bytes and the call options.
    pub fn parse(&self) -> Result<(Bytes, CallOptions), ApiError> {
        let body = match (&self.body, &self.body_hex) {
            (Some(_), Some(_)) => {
                return Err(ApiError::BadRequest(
                    "give body or body_hex, not both".into(),
                ))
            }
            (Some(t), None) => Bytes::from(t.clone().into_bytes()),
            (None, Some(h)) => Bytes::from(
                hex_decode(h).ok_or_else(|| ApiError::BadRequest("body_hex is not hex".into()))?,
            ),
            (None, None) => Bytes::new(),
        };
        let timeout = match self.timeout_ms {
            Some(0) => return Err(ApiError::BadRequest("timeout_ms must be at least 1".into())),
            Some(ms) => Duration::from_millis(ms).min(MAX_TIMEOUT),
            None => crate::subsystems::rpc_client::DEFAULT_TIMEOUT,
        };
        let mut metadata: Vec<(String, String)> = self.metadata.clone().into_iter().collect();
        if let Some(text) = self.token.as_deref().map(str::trim) {
            let chain = TokenChain::from_text(text).map_err(|e| {
                ApiError::operation("token", e.to_string().trim_start_matches("token: "))
            })?;
            metadata.extend(token_metadata(&chain));
        }
        let options = CallOptions {
            timeout,
            idempotent: self.idempotent,
            metadata,
            node: node_arg(self.node_id.as_deref())?,
            hedge: self.idempotent.then(relay_rpc::HedgePolicy::default),
            ..CallOptions::default()
        };
        Ok((body, options))
    }
}

/// A message as JSON: text when it is UTF-8, and always hex.
fn message_json(m: &[u8]) -> Value {
    json!({
        "body": std::str::from_utf8(m).ok(),
        "body_hex": hex_encode(m),
    })
}

async fn call(rpc: &Rpc, req: &CallRequest) -> Result<Value, ApiError> {
    let (body, options) = req.parse()?;
    if !req.stream {
        let reply = rpc
            .call(&req.service, &req.method, body, &options)
            .await
            .map_err(|e| status_error(&e))?;
        return Ok(message_json(&reply));
    }
    let mut call = rpc
        .open(&req.service, &req.method, &options)
        .await
        .map_err(|e| status_error(&e))?;
    call.send(&body).await.map_err(|e| status_error(&e))?;
    call.finish();
    let mut items = Vec::new();
    let mut bytes = 0;
    while let Some(m) = call.recv().await.map_err(|e| status_error(&e))? {
        bytes += m.len();
        if items.len() >= MAX_STREAM_ITEMS || bytes > MAX_STREAM_BYTES {
            return Err(ApiError::operation(
                "too-many-items",
                format!(
                    "the stream sent more than {MAX_STREAM_ITEMS} items or {MAX_STREAM_BYTES} bytes"
                ),
            ));
        }
        items.push(message_json(&m));
    }
    Ok(json!({ "node_id": call.node().to_string(), "items": items }))
}

/// The `GET /v1/services` answer.
pub fn services(rpc: &Rpc) -> Value {
    let me = rpc.node_id();
    let mut list = Vec::new();
    for (name, nodes) in rpc.directory().all() {
        let ids: Vec<NodeId> = nodes.iter().map(|(n, _)| *n).collect();
        let paths = rpc.candidates(
            &name,
            &CallOptions {
                node: None,
                ..CallOptions::default()
            },
        );
        let nodes: Vec<Value> = nodes
            .iter()
            .map(|(id, spec)| {
                let path = if *id == me {
                    Path::Local
                } else {
                    paths
                        .iter()
                        .find(|c| c.node == *id)
                        .map_or(Path::Unknown, |c| c.path)
                };
                json!({
                    "node_id": id.to_string(),
                    "path": path.as_str(),
                    "version": spec.version,
                    "methods": spec.methods,
                    "token_required": spec.token_required,
                })
            })
            .collect();
        list.push(json!({ "name": name, "nodes": nodes, "count": ids.len() }));
    }
    json!({ "services": list })
}

async fn bench(rpc: &Rpc, req: &BenchRequest) -> Result<Value, ApiError> {
    if req.concurrency == 0 || req.concurrency > rpc_bench::MAX_CONCURRENCY {
        return Err(ApiError::BadRequest(format!(
            "concurrency must be 1..={}",
            rpc_bench::MAX_CONCURRENCY
        )));
    }
    if req.size > rpc_bench::MAX_SIZE || req.duration_ms == 0 {
        return Err(ApiError::BadRequest("size or duration out of range".into()));
    }
    let options = CallOptions {
        node: node_arg(req.node_id.as_deref())?,
        ..rpc_bench::options()
    };
    let report = rpc_bench::run(
        rpc,
        req.service.as_deref().unwrap_or("echo"),
        req.method.as_deref().unwrap_or("echo"),
        options,
        req.concurrency,
        req.size,
        Duration::from_millis(req.duration_ms),
    )
    .await;
    serde_json::to_value(report).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Registers the routes.
pub fn register(routes: &mut Routes, rpc: Rpc) -> Result<(), RouteError> {
    let r = rpc.clone();
    routes.get("/v1/services", move |_req: ApiRequest, _ctx| {
        let r = r.clone();
        async move { Ok(ok(&services(&r))) }
    })?;
    let r = rpc.clone();
    routes.post("/v1/call", move |req: ApiRequest, _ctx| {
        let r = r.clone();
        async move {
            let request: CallRequest = read_json(req, MAX_BODY, BODY_TIMEOUT).await?;
            Ok(ok(&call(&r, &request).await?))
        }
    })?;
    routes.stream("rpc-serve", super::rpc_serve::RpcServe(rpc.clone()))?;
    routes.stream("rpc-call", super::rpc_call::RpcCall(rpc.clone()))?;
    routes.stream("rpc-calls", super::rpc_calls::RpcCalls(rpc.clone()))?;
    routes.post("/v1/bench/rpc", move |req: ApiRequest, _ctx| {
        let r = rpc.clone();
        async move {
            let request: BenchRequest = read_json(req, MAX_BODY, BODY_TIMEOUT).await?;
            Ok(ok(&bench(&r, &request).await?))
        }
    })
}
