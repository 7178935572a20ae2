//! The ledger's routes: `GET /v1/members`, `GET /v1/ledger` (a page, or
//! with `follow=1` an NDJSON tail with no gap or duplicate),
//! `GET /v1/ledger/events` (the same tail as server-sent events, resumed by
//! `Last-Event-ID`) and `GET /v1/ledger/verify` (docs/LOCAL_API.md). Reads run off the async
//! runtime; the node hands in the ledger and who is connected.

use std::collections::HashSet;
use std::sync::Arc;

use relay_proto::ledger::EntryKind;
use relay_proto::NodeId;
use serde_json::{json, Value};

use super::body::{ok, ApiResponse};
use super::error::ApiError;
use super::ledger_json::{entry_json, member_json};
use super::ledger_tail::{ledger_error, resume_after, Tail, TailFormat};
use super::request::query_param;
use super::router::{ApiRequest, RequestContext, RouteError, Routes};
use crate::ledger::{Cursor, Filter, Ledger, LedgerError};

/// Entries per page when the request names no limit.
pub const DEFAULT_LIMIT: usize = 100;
/// Most entries per page.
pub const MAX_LIMIT: usize = 1000;
/// Period of keep-alive comments on an idle event stream.
pub const SSE_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// The NodeIds connected right now.
pub type Connected = Arc<dyn Fn() -> HashSet<NodeId> + Send + Sync>;

/// What the routes read.
#[derive(Clone)]
pub struct LedgerApi {
    /// The node's ledger.
    pub ledger: Ledger,
    /// Who is connected.
    pub connected: Connected,
}

impl std::fmt::Debug for LedgerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerApi")
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

/// A page request: `origin`, `kind`, `after`, `limit`, `follow`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// Which entries.
    pub filter: Filter,
    /// Only entries after this cursor.
    pub after: Option<Cursor>,
    /// Most entries.
    pub limit: usize,
    /// Tail instead of a page.
    pub follow: bool,
}

impl Query {
    /// Parses the query string.
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let bad = |what: &str, v: &str| ApiError::BadRequest(format!("{what} {v:?} is not valid"));
        let origin = match query_param(query, "origin").filter(|v| !v.is_empty()) {
            Some(v) => Some(
                v.parse::<NodeId>()
                    .map_err(|e| ApiError::operation("invalid-node-id", format!("{e}")))?,
            ),
            None => None,
        };
        let kind = match query_param(query, "kind").filter(|v| !v.is_empty()) {
            Some(v) => Some(v.parse::<EntryKind>().map_err(|_| bad("kind", v))?),
            None => None,
        };
        let after = match query_param(query, "after").filter(|v| !v.is_empty()) {
            Some(v) => Some(v.parse::<Cursor>().map_err(|_| bad("cursor", v))?),
            None => None,
        };
        let limit = match query_param(query, "limit").filter(|v| !v.is_empty()) {
            Some(v) => match v.parse::<usize>() {
                Ok(0) | Err(_) => return Err(bad("limit", v)),
                Ok(n) => n.min(MAX_LIMIT),
            },
            None => DEFAULT_LIMIT,
        };
        let follow = match query_param(query, "follow") {
            None | Some("0") => false,
            Some("1" | "") => true,
            Some(v) => return Err(bad("follow", v)),
        };
        Ok(Self {
            filter: Filter { origin, kind },
            after,
            limit,
            follow,
        })
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ledger_error(&e))
}

/// `GET /v1/members`: `{"members": [...]}`.
pub async fn members(api: &LedgerApi) -> Result<Value, ApiError> {
    let ledger = api.ledger.clone();
    let list = blocking(move || crate::ledger::members(ledger.store())).await?;
    let connected = (api.connected)();
    let own = api.ledger.node_id();
    let members: Vec<Value> = list
        .iter()
        .map(|m| member_json(m, m.node_id == own || connected.contains(&m.node_id)))
        .collect();
    Ok(json!({ "members": members }))
}

/// `GET /v1/ledger` (and the HTTP endpoint's `GET /ledger`):
/// `{"entries": [...], "cursor": last or the request's after}`.
pub async fn page(ledger: &Ledger, q: Query) -> Result<Value, ApiError> {
    let ledger = ledger.clone();
    let (after, limit, filter) = (q.after, q.limit, q.filter);
    let entries = blocking(move || ledger.read(after, limit, &filter)).await?;
    let cursor = entries.last().map(|s| s.cursor).or(after);
    Ok(json!({
        "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
        "cursor": cursor.map(|c| c.to_string()),
    }))
}

/// `GET /v1/ledger/verify`: the report; `ok` false on any problem.
pub async fn verify(api: &LedgerApi) -> Result<Value, ApiError> {
    let ledger = api.ledger.clone();
    let r = blocking(move || ledger.verify()).await?;
    let pairs = |v: &[(NodeId, u64)]| {
        v.iter()
            .map(|(o, s)| json!({"origin": o.to_string(), "seq": s}))
            .collect::<Vec<_>>()
    };
    Ok(json!({
        "ok": r.is_ok(),
        "entries": r.entries,
        "origins": r.origins,
        "bad_signatures": pairs(&r.bad_signatures),
        "broken_links": pairs(&r.broken_links),
        "forks": r.forks.iter()
            .map(|(o, seqs)| json!({"origin": o.to_string(), "seqs": seqs}))
            .collect::<Vec<_>>(),
    }))
}

/// `GET /v1/ledger?follow=1` (NDJSON) and `GET /v1/ledger/events`
/// (server-sent events, resuming after `Last-Event-ID`): every matching
/// entry after the cursor, then new ones as they are stored.
pub fn follow(
    api: &LedgerApi,
    after: Option<Cursor>,
    q: Query,
    format: TailFormat,
    ctx: &RequestContext,
) -> Result<ApiResponse, ApiError> {
    let permit = ctx.stream_permit()?;
    let tail = Tail {
        follower: api.ledger.follow(after, q.filter),
        stop: ctx.shutdown.clone(),
        stall: None,
        keepalive: (format == TailFormat::Sse).then_some(SSE_KEEPALIVE),
        format,
    };
    let (response, pump) = tail.start(permit);
    ctx.tasks.spawn(pump);
    Ok(response)
}

/// Registers the four routes.
pub fn register(routes: &mut Routes, api: LedgerApi) -> Result<(), RouteError> {
    let a = api.clone();
    routes.get("/v1/members", move |_req: ApiRequest, _ctx| {
        let a = a.clone();
        async move { Ok(ok(&members(&a).await?)) }
    })?;
    let a = api.clone();
    routes.get("/v1/ledger", move |req: ApiRequest, ctx: RequestContext| {
        let a = a.clone();
        async move {
            let q = Query::parse(req.uri().query())?;
            if q.follow {
                follow(&a, q.after, q, TailFormat::Ndjson, &ctx)
            } else {
                Ok(ok(&page(&a.ledger, q).await?))
            }
        }
    })?;
    let a = api.clone();
    routes.get(
        "/v1/ledger/events",
        move |req: ApiRequest, ctx: RequestContext| {
            let a = a.clone();
            async move {
                let q = Query::parse(req.uri().query())?;
                let after = resume_after(&req, q.after)?;
                follow(&a, after, q, TailFormat::Sse, &ctx)
            }
        },
    )?;
    routes.get("/v1/ledger/verify", move |_req: ApiRequest, _ctx| {
        let a = api.clone();
        async move { Ok(ok(&verify(&a).await?)) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_dir;
    use http_body_util::BodyExt;
    use hyper::StatusCode;
    use relay_proto::ledger::body::{NatType, NodeAnnouncement};
    use relay_proto::ledger::Body;
    use relay_proto::SecretKey;

    fn api(name: &str) -> LedgerApi {
        let ledger = Ledger::open(&temp_dir(name), SecretKey::from_bytes(&[5; 32])).unwrap();
        LedgerApi {
            ledger,
            connected: Arc::new(HashSet::new),
        }
    }

    fn ann(port: u16) -> Body {
        Body::NodeAnnouncement(NodeAnnouncement {
            addrs: vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))],
            nat: NatType::Cone,
            relay: true,
            version: "v".into(),
            member_proof: None,
        })
    }

    #[test]
    fn queries_parse_and_bad_ones_are_typed() {
        let q = Query::parse(Some("kind=node-announcement&after=3&limit=5000")).unwrap();
        assert_eq!(q.filter.kind, Some(EntryKind::NodeAnnouncement));
        assert_eq!(q.after, Some(Cursor(3)));
        assert_eq!(q.limit, MAX_LIMIT);
        assert!(!q.follow);
        assert_eq!(Query::parse(None).unwrap().limit, DEFAULT_LIMIT);
        assert!(Query::parse(Some("follow=1")).unwrap().follow);
        for bad in [
            "kind=nope",
            "after=x",
            "limit=0",
            "limit=-1",
            "follow=yes",
            "origin=abc",
        ] {
            let e = Query::parse(Some(bad)).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn page_members_and_verify() {
        let a = api("api-ledger");
        a.ledger.append_at(1_000, ann(1)).await.unwrap();
        a.ledger.append_at(2_000, ann(2)).await.unwrap();
        let all = page(&a.ledger, Query::parse(None).unwrap()).await.unwrap();
        let entries = all["entries"].as_array().unwrap();
        // Retention keeps the latest announcement per origin.
        assert!(!entries.is_empty());
        let last = entries.last().unwrap();
        assert_eq!(last["kind"], "node-announcement");
        assert_eq!(last["origin"], a.ledger.node_id().to_string());
        assert_eq!(last["body"]["addrs"][0], "127.0.0.1:2");
        assert_eq!(last["ts"], "1970-01-01T00:00:02Z");
        assert_eq!(last["hash"].as_str().unwrap().len(), 64);
        assert_eq!(all["cursor"], last["cursor"]);
        let after: Cursor = last["cursor"].as_str().unwrap().parse().unwrap();
        let q = Query {
            after: Some(after),
            limit: 10,
            ..Query::default()
        };
        let none = page(&a.ledger, q).await.unwrap();
        assert!(none["entries"].as_array().unwrap().is_empty());
        assert_eq!(none["cursor"], after.to_string());

        let m = members(&a).await.unwrap();
        let list = m["members"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["addrs"][0], "127.0.0.1:2");
        assert_eq!(list[0]["connected"], true);
        assert_eq!(list[0]["nat"], "cone");

        let v = verify(&a).await.unwrap();
        assert_eq!(v["ok"], true);
        a.ledger.close();
    }

    #[tokio::test]
    async fn follow_streams_old_then_new_entries_as_lines() {
        let a = api("api-follow");
        a.ledger.append_at(1_000, ann(1)).await.unwrap();
        let ctx = RequestContext::new(4);
        let q = Query::parse(Some("follow=1")).unwrap();
        let resp = follow(&a, q.after, q, TailFormat::Ndjson, &ctx).unwrap();
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let v: Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(v["seq"], 1);
        a.ledger.append_at(2_000, ann(2)).await.unwrap();
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let v: Value = serde_json::from_slice(&second).unwrap();
        assert_eq!(v["seq"], 2);
        assert!(second.ends_with(b"\n"));
        drop(body);
        a.ledger.close();
    }
}
