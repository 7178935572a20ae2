//! The channels' routes (docs/LOCAL_API.md, "Channels"):
//!
//! - `POST /v1/channels/create` `{name, require_token, best_effort,
//!   history, max_rate}`: own a channel and register it in the ledger;
//! - `POST /v1/channels/rm` `{name}`: withdraw it;
//! - `POST /v1/channels/refresh` `{name, token}`: present a fresh token on
//!   this node's live subscriptions to a channel;
//! - `GET /v1/channels`: every registered channel, mesh-wide, with
//!   counters for the ones this node owns;
//! - `GET /v1/sub?name=&token=&queue=&start=&count=&backpressure=`: an
//!   NDJSON stream of messages and gap notices (values percent-encoded);
//! - `POST /v1/pub` `{name, token, messages}`: publish, answering once the
//!   owner took each message, with how many targets got it.
//!
//! The node acts as itself: a token presented here must name this node as
//! its subject.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use relay_channels::{History, Policy, SubEvent, SubscriptionConfig, DEFAULT_WINDOW, MAX_WINDOW};
use relay_proto::token::TokenChain;
use relay_proto::wire::channel::{Backpressure, Reason, Start};
use relay_proto::NodeId;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use super::body::{ok, with_type, ChannelBody, NDJSON};
use super::error::ApiError;
use super::request::{query_param, read_json};
use super::router::{ApiRequest, RequestContext, RouteError, Routes};
use super::{BODY_TIMEOUT, MAX_BODY};
use crate::ledger::Ledger;
use crate::subsystems::channels_acks::{AckRun, Acks};
use crate::subsystems::channels_driver::{lock, unix_ms};
use crate::subsystems::channels_hub::{Hub, PublishWait};
use crate::subsystems::channels_registry::{owner_of, registered, registration};

/// How long a subscribe or a publish waits for the owner's answer.
pub const OWNER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `create` on a fresh node waits for its first announcement
/// before registering the channel anyway.
pub const REGISTER_GRACE: Duration = Duration::from_secs(10);
/// Events taken from a subscription per turn.
const EVENT_BATCH: usize = 256;
/// Lines buffered for a slow subscriber.
const LINE_BUFFER: usize = 64;

/// What the routes work on.
#[derive(Clone)]
pub struct ChannelsApi {
    /// The node's channel state.
    pub hub: Arc<Mutex<Hub>>,
    /// Wakes the driver to send what the hub queued.
    pub wake: Arc<Notify>,
    /// The ledger (registrations).
    pub ledger: Ledger,
}

impl std::fmt::Debug for ChannelsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelsApi").finish_non_exhaustive()
    }
}

/// The body of `POST /v1/channels/create`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// The name.
    pub name: String,
    /// Tokens required to subscribe and publish.
    #[serde(default)]
    pub require_token: bool,
    /// Datagrams instead of streams.
    #[serde(default)]
    pub best_effort: bool,
    /// `N` or a duration (`30s`, `10m`, `2h`, `1d`).
    #[serde(default)]
    pub history: Option<String>,
    /// Messages per second.
    #[serde(default)]
    pub max_rate: Option<u32>,
}

/// The body of `POST /v1/channels/rm`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    /// The name.
    pub name: String,
}

/// The body of `POST /v1/channels/refresh`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The channel.
    pub name: String,
    /// The fresh token (`rnk1...`).
    pub token: String,
}

/// The body of `POST /v1/pub`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The channel.
    pub name: String,
    /// A token (`rnk1...`), if the channel needs one.
    #[serde(default)]
    pub token: Option<String>,
    /// The messages, in order.
    pub messages: Vec<String>,
}

/// What to subscribe to: the query of `GET /v1/sub`, or the first frame of
/// the `channels` frame stream.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubOptions {
    /// The channel.
    pub name: String,
    /// A token (`rnk1...`).
    #[serde(default)]
    pub token: Option<String>,
    /// The queue group.
    #[serde(default)]
    pub queue: Option<String>,
    /// `live` (default), `from-start` or `last:N`.
    #[serde(default)]
    pub start: Option<String>,
    /// `block` (default), `drop-oldest` or `drop-newest`.
    #[serde(default)]
    pub backpressure: Option<String>,
    /// Messages the owner may send ahead of what was taken, 1 to 65536
    /// (default 4096).
    #[serde(default)]
    pub window: Option<u32>,
}

impl SubOptions {
    /// The subscription's configuration.
    pub fn config(&self) -> Result<SubscriptionConfig, ApiError> {
        let start = match self.start.as_deref() {
            None | Some("live") => Start::Live,
            Some("from-start") => Start::FromStart,
            Some(s) => match s.strip_prefix("last:").map(str::parse::<u32>) {
                Some(Ok(n)) => Start::Last(n),
                _ => return Err(ApiError::BadRequest(format!("start {s:?} is not valid"))),
            },
        };
        let backpressure = match self.backpressure.as_deref() {
            None => Backpressure::Block,
            Some(b) => Backpressure::from_text(b)
                .ok_or_else(|| ApiError::BadRequest(format!("backpressure {b:?} is not valid")))?,
        };
        let window = match self.window {
            None => DEFAULT_WINDOW,
            Some(w @ 1..=MAX_WINDOW) => w,
            Some(w) => {
                return Err(ApiError::BadRequest(format!(
                    "window {w} is not valid: 1 to {MAX_WINDOW} messages"
                )))
            }
        };
        Ok(SubscriptionConfig {
            window,
            backpressure,
            group: self.queue.clone().filter(|q| !q.is_empty()),
            start,
        })
    }
}

/// Waits for the owner's answer for the next run of a publisher's
/// messages: how many, and (delivered, targets) of each.
pub async fn ack(acks: &Acks) -> Result<(u64, (u32, u32)), ApiError> {
    match acks.take(OWNER_TIMEOUT).await {
        Some(AckRun {
            count,
            result: Ok(counts),
        }) => Ok((count, counts)),
        Some(AckRun {
            result: Err(reason),
            ..
        }) => Err(reason_error(reason)),
        None => Err(op("timeout", "the owner did not acknowledge in time")),
    }
}

/// Waits (up to [`OWNER_TIMEOUT`]) for room in a full session.
async fn wait_for_room(mut progress: tokio::sync::watch::Receiver<u64>) -> Result<(), ApiError> {
    match tokio::time::timeout(OWNER_TIMEOUT, progress.changed()).await {
        Ok(_) => Ok(()),
        Err(_) => Err(op("timeout", "the owner did not take messages in time")),
    }
}

/// `{"error": {kind, detail}}` for a link that ended.
pub fn end_json(r: Reason) -> Value {
    let e = reason_error(r);
    json!({"error": {"kind": e.kind(), "detail": e.detail()}})
}

/// The policy as JSON.
pub fn policy_json(p: &Policy) -> Value {
    json!({
        "require_token": p.require_token,
        "reliable": p.reliable,
        "max_rate": p.max_rate,
        "history": p.history.text(),
    })
}

/// An error of a channels route, with its status: `no-such-channel` 404,
/// `channel-exists` 409, `token` 403, `throttled` and `too-many` 429,
/// `invalid-*` 400, else by [`super::error::status_for_kind`].
pub fn op(kind: impl Into<String>, detail: impl Into<String>) -> ApiError {
    let kind = kind.into();
    let status = match kind.as_str() {
        "no-such-channel" => 404,
        "channel-exists" => 409,
        "token" => 403,
        "throttled" | "too-many" => 429,
        k if k.starts_with("invalid-") => 400,
        k => super::error::status_for_kind(k).as_u16(),
    };
    // Errors print as `kind: detail`; keep the kind out of the detail.
    let detail: String = detail.into();
    let detail = detail
        .strip_prefix(&format!("{kind}: "))
        .map(str::to_string)
        .unwrap_or(detail);
    ApiError::Operation {
        kind,
        detail,
        status,
    }
}

/// The error of a link the owner denied or ended.
pub fn reason_error(r: Reason) -> ApiError {
    let detail = match r {
        Reason::Token(k) => k.as_str().to_string(),
        Reason::NoSuchChannel => "the owner has no such channel".into(),
        Reason::Throttled => "too many authentication failures; try later".into(),
        other => format!("the owner ended the link ({})", other.kind()),
    };
    op(r.kind(), detail)
}

/// A token's text (`rnk1...`) as chain bytes; none is empty.
pub fn token_bytes(text: Option<&str>) -> Result<Vec<u8>, ApiError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(Vec::new()),
        Some(t) => TokenChain::from_text(t)
            .map(|c| c.encode())
            .map_err(|e| op("token", e.kind())),
    }
}

/// Percent-decodes a query value (`+` is a space).
pub fn pct_decode(text: &str) -> Result<String, ApiError> {
    let bad = || ApiError::BadRequest(format!("bad percent-encoding in {text:?}"));
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

impl ChannelsApi {
    fn me(&self) -> NodeId {
        lock(&self.hub).me()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> Result<T, crate::ledger::LedgerError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || f(&ledger))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| op(e.kind(), e.to_string()))
    }

    /// The owner of `name`: this node if it owns it, else the ledger's.
    async fn owner(&self, name: &str) -> Result<NodeId, ApiError> {
        if lock(&self.hub).owner().owns(name) {
            return Ok(self.me());
        }
        let n = name.to_string();
        self.blocking(move |l| owner_of(l, &n))
            .await?
            .ok_or_else(|| {
                op(
                    "no-such-channel",
                    format!("no channel {name:?} is registered"),
                )
            })
    }

    /// `POST /v1/channels/create`.
    pub async fn create(&self, r: CreateRequest) -> Result<Value, ApiError> {
        let history = match r.history.as_deref() {
            None => History::None,
            Some(h) => History::parse(h).map_err(|e| op(e.kind(), e.to_string()))?,
        };
        let policy = Policy {
            require_token: r.require_token,
            reliable: !r.best_effort,
            max_rate: r.max_rate,
            history,
        }
        .checked()
        .map_err(|e| op(e.kind(), e.to_string()))?;
        lock(&self.hub)
            .owner_mut()
            .create(&r.name, policy, unix_ms())
            .map_err(|e| op(e.kind(), e.to_string()))?;
        // Registered after the node's first announcement, or peers learn
        // of the channel only at their next re-sync (about 30 s later).
        self.ledger.wait_own_feed(REGISTER_GRACE).await;
        if let Err(e) = self
            .ledger
            .append(registration(&r.name, &policy, false))
            .await
        {
            let _ = lock(&self.hub).owner_mut().remove(&r.name);
            return Err(op(e.kind(), e.to_string()));
        }
        Ok(json!({"name": r.name, "owner": self.me().to_string(), "policy": policy_json(&policy)}))
    }

    /// `POST /v1/channels/rm`.
    pub async fn remove(&self, r: RemoveRequest) -> Result<Value, ApiError> {
        let policy = lock(&self.hub)
            .owner()
            .channels()
            .into_iter()
            .find(|c| c.name == r.name)
            .map(|c| c.policy)
            .ok_or_else(|| {
                op(
                    "no-such-channel",
                    format!("{:?} is not owned by this node", r.name),
                )
            })?;
        self.ledger
            .append(registration(&r.name, &policy, true))
            .await
            .map_err(|e| op(e.kind(), e.to_string()))?;
        let _ = lock(&self.hub).owner_mut().remove(&r.name);
        self.wake.notify_one();
        Ok(json!({"name": r.name, "removed": true}))
    }

    /// `POST /v1/channels/refresh`.
    pub fn refresh(&self, r: &RefreshRequest) -> Result<Value, ApiError> {
        let token = token_bytes(Some(&r.token))?;
        let n = lock(&self.hub).refresh(&r.name, &token);
        self.wake.notify_one();
        Ok(json!({"name": r.name, "subscriptions": n}))
    }

    /// `GET /v1/channels`.
    pub async fn list(&self) -> Result<Value, ApiError> {
        let all = self.blocking(registered).await?;
        let me = self.me();
        let owned = lock(&self.hub).owner().channels();
        let list: Vec<Value> = all
            .values()
            .map(|r| {
                let stats = owned
                    .iter()
                    .find(|c| c.name == r.name && r.owner == me)
                    .map(|c| {
                        json!({
                            "subscribers": c.stats.subscribers,
                            "publishers": c.stats.publishers,
                            "published": c.stats.published,
                            "delivered": c.stats.delivered,
                            "dropped": c.stats.dropped,
                            "duplicates": c.stats.duplicates,
                            "retained": c.stats.retained,
                        })
                    });
                json!({
                    "name": r.name,
                    "owner": r.owner.to_string(),
                    "owned": r.owner == me,
                    "policy": r.policy.as_ref().map(policy_json),
                    "stats": stats,
                })
            })
            .collect();
        Ok(json!({ "channels": list }))
    }

    /// Queues one message on this node's session with `owner`, waiting
    /// while its window is full; the owner's answer goes to `acks` (none:
    /// nobody waits for it).
    pub async fn queue_publish(
        &self,
        owner: NodeId,
        name: &str,
        token: &[u8],
        data: impl Into<Bytes>,
        acks: Option<&Acks>,
    ) -> Result<(), ApiError> {
        let data = data.into();
        loop {
            let attempt = lock(&self.hub).publish(owner, name, token, data.clone(), acks);
            self.wake.notify_one();
            match attempt {
                Ok(()) => return Ok(()),
                Err(PublishWait::Full(progress)) => wait_for_room(progress).await?,
                Err(PublishWait::Refused(e)) => return Err(op(e.kind(), e.to_string())),
            }
        }
    }

    /// Queues every message of `batch`, in order, on this node's session
    /// with `owner`: as many as the session's window takes under one lock
    /// of the hub and one wake-up of the driver, waiting while it is full.
    /// The owner's answers go to `acks`. On an error the messages not
    /// queued stay in `batch`.
    pub async fn queue_publish_many(
        &self,
        owner: NodeId,
        name: &str,
        token: &[u8],
        batch: &mut VecDeque<Bytes>,
        acks: Option<&Acks>,
    ) -> Result<(), ApiError> {
        while !batch.is_empty() {
            let attempt = lock(&self.hub).publish_many(owner, name, token, batch, acks);
            self.wake.notify_one();
            match attempt {
                Ok(()) => {}
                Err(PublishWait::Full(progress)) => wait_for_room(progress).await?,
                Err(PublishWait::Refused(e)) => return Err(op(e.kind(), e.to_string())),
            }
        }
        Ok(())
    }

    /// `POST /v1/pub`.
    pub async fn publish(&self, r: PublishRequest) -> Result<Value, ApiError> {
        let token = token_bytes(r.token.as_deref())?;
        let owner = self.owner(&r.name).await?;
        let total = r.messages.len() as u64;
        let mut batch: VecDeque<Bytes> = r
            .messages
            .into_iter()
            .map(|m| Bytes::from(m.into_bytes()))
            .collect();
        let acks = Acks::new();
        self.queue_publish_many(owner, &r.name, &token, &mut batch, Some(&acks))
            .await?;
        let mut results = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        let mut answered = 0;
        while answered < total {
            let (count, (delivered, targets)) = ack(&acks).await?;
            answered += count;
            for _ in 0..count {
                results.push(json!({"delivered": delivered, "targets": targets}));
            }
        }
        Ok(json!({ "results": results }))
    }

    /// `GET /v1/sub`.
    pub async fn subscribe(
        &self,
        query: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<super::body::ApiResponse, ApiError> {
        let param = |n: &str| query_param(query, n).map(pct_decode).transpose();
        let options = SubOptions {
            name: param("name")?.ok_or_else(|| ApiError::BadRequest("name is required".into()))?,
            token: param("token")?,
            queue: param("queue")?,
            start: param("start")?,
            backpressure: param("backpressure")?,
            window: match param("window")?.as_deref() {
                None => None,
                Some(w) => Some(
                    w.parse::<u32>()
                        .map_err(|_| ApiError::BadRequest(format!("window {w:?} is not valid")))?,
                ),
            },
        };
        let count = match param("count")?.as_deref() {
            None => None,
            Some(c) => Some(
                c.parse::<u64>()
                    .map_err(|_| ApiError::BadRequest(format!("count {c:?} is not valid")))?,
            ),
        };
        let permit = ctx.stream_permit()?;
        let (link, notify) = self.open_subscription(&options).await?;
        let (tx, rx) = mpsc::channel(LINE_BUFFER);
        let this = self.clone();
        let shutdown = ctx.shutdown.clone();
        ctx.tasks.spawn(async move {
            tokio::select! {
                () = this.feed(link, &notify, count, &tx) => {}
                () = shutdown.cancelled() => {}
                () = tx.closed() => {}
            }
            this.close_subscription(link);
        });
        Ok(with_type(
            hyper::StatusCode::OK,
            NDJSON,
            http_body_util::BodyExt::boxed(ChannelBody::new(rx, permit)),
        ))
    }

    /// Subscribes as `options` say and waits until the owner accepted.
    pub async fn open_subscription(
        &self,
        options: &SubOptions,
    ) -> Result<(u64, Arc<Notify>), ApiError> {
        let config = options.config()?;
        let token = token_bytes(options.token.as_deref())?;
        let owner = self.owner(&options.name).await?;
        let (link, notify) = lock(&self.hub).subscribe(owner, &options.name, token, config);
        self.wake.notify_one();
        if let Err(e) = self.accepted(link, &notify).await {
            lock(&self.hub).unsubscribe(link);
            self.wake.notify_one();
            return Err(e);
        }
        Ok((link, notify))
    }

    /// Closes a subscription.
    pub fn close_subscription(&self, link: u64) {
        lock(&self.hub).unsubscribe(link);
        self.wake.notify_one();
    }

    /// Up to a batch of a subscription's events (returning their credit);
    /// `None` once it is gone.
    pub fn events(&self, link: u64) -> Option<Vec<SubEvent>> {
        let events = lock(&self.hub).take_events(link, EVENT_BATCH);
        self.wake.notify_one();
        events
    }

    /// The owner of `name` (this node, or the ledger's registration).
    pub async fn owner_of(&self, name: &str) -> Result<NodeId, ApiError> {
        self.owner(name).await
    }

    /// Waits for the owner to accept (or deny) subscription `link`.
    async fn accepted(&self, link: u64, notify: &Notify) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + OWNER_TIMEOUT;
        loop {
            let first = lock(&self.hub).take_events(link, 1);
            match first.as_deref() {
                None => return Err(reason_error(Reason::Closed)),
                Some([SubEvent::Accepted { .. }]) => return Ok(()),
                Some([SubEvent::Denied(r) | SubEvent::Ended(r)]) => return Err(reason_error(*r)),
                Some(_) => {}
            }
            if tokio::time::timeout_at(deadline, notify.notified())
                .await
                .is_err()
            {
                return Err(op("timeout", "the channel's owner did not answer"));
            }
        }
    }

    /// Writes a subscription's events as lines until it ends or `count`
    /// messages went out.
    async fn feed(&self, link: u64, notify: &Notify, count: Option<u64>, tx: &mpsc::Sender<Bytes>) {
        let mut sent = 0u64;
        loop {
            let Some(events) = self.events(link) else {
                return;
            };
            if events.is_empty() {
                notify.notified().await;
                continue;
            }
            for event in events {
                let (value, last) = match event {
                    SubEvent::Message {
                        publisher,
                        seq,
                        ts,
                        data,
                    } => {
                        sent += 1;
                        (
                            json!({
                                "seq": seq,
                                "publisher": publisher.to_string(),
                                "ts": ts,
                                "data": String::from_utf8_lossy(&data),
                            }),
                            count.is_some_and(|c| sent >= c),
                        )
                    }
                    SubEvent::Gap {
                        publisher,
                        from,
                        to,
                    } => (
                        json!({"gap": {"publisher": publisher.to_string(), "from": from, "to": to}}),
                        false,
                    ),
                    SubEvent::Denied(r) | SubEvent::Ended(r) => {
                        let e = reason_error(r);
                        (
                            json!({"error": {"kind": e.kind(), "detail": e.detail()}}),
                            true,
                        )
                    }
                    SubEvent::Accepted { .. } => continue,
                };
                let mut line = serde_json::to_vec(&value).unwrap_or_default();
                line.push(b'\n');
                if tx.send(Bytes::from(line)).await.is_err() || last {
                    return;
                }
            }
        }
    }
}

/// Adds the channels' routes.
pub fn register(routes: &mut Routes, api: ChannelsApi) -> Result<(), RouteError> {
    let a = api.clone();
    routes.post("/v1/channels/create", move |req: ApiRequest, _ctx| {
        let a = a.clone();
        async move {
            let r: CreateRequest = read_json(req, MAX_BODY, BODY_TIMEOUT).await?;
            Ok(ok(&a.create(r).await?))
        }
    })?;
    let a = api.clone();
    routes.post("/v1/channels/rm", move |req: ApiRequest, _ctx| {
        let a = a.clone();
        async move {
            let r: RemoveRequest = read_json(req, MAX_BODY, BODY_TIMEOUT).await?;
            Ok(ok(&a.remove(r).await?))
        }
    })?;
    let a = api.clone();
    routes.post("/v1/channels/refresh", move |req: ApiRequest, _ctx| {
        let a = a.clone();
        async move {
            let r: RefreshRequest = read_json(req, MAX_BODY, BODY_TIMEOUT).await?;
            Ok(ok(&a.refresh(&r)?))
        }
    })?;
    let a = api.clone();
    routes.get("/v1/channels", move |_req: ApiRequest, _ctx| {
        let a = a.clone();
        async move { Ok(ok(&a.list().await?)) }
    })?;
    let a = api.clone();
    routes.post("/v1/pub", move |req: ApiRequest, _ctx| {
        let a = a.clone();
        async move {
            let r: PublishRequest = read_json(req, MAX_BODY, BODY_TIMEOUT).await?;
            Ok(ok(&a.publish(r).await?))
        }
    })?;
    routes.stream(
        "channels",
        super::channels_stream::ChannelsStream(api.clone()),
    )?;
    routes.get("/v1/sub", move |req: ApiRequest, ctx: RequestContext| {
        let a = api.clone();
        async move {
            let query = req.uri().query().map(str::to_string);
            a.subscribe(query.as_deref(), &ctx).await
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(pct_decode("news%2Feu+x").unwrap(), "news/eu x");
        assert!(pct_decode("%zz").is_err());
        assert!(pct_decode("%2").is_err());
        assert!(pct_decode("%ff").is_err());
    }

    #[test]
    fn a_subscription_window_is_checked() {
        let options = |window| SubOptions {
            name: "news".into(),
            token: None,
            queue: None,
            start: None,
            backpressure: None,
            window,
        };
        assert_eq!(options(None).config().unwrap().window, DEFAULT_WINDOW);
        assert_eq!(options(Some(1)).config().unwrap().window, 1);
        assert_eq!(
            options(Some(MAX_WINDOW)).config().unwrap().window,
            MAX_WINDOW
        );
        for bad in [0, MAX_WINDOW + 1] {
            let err = options(Some(bad)).config().unwrap_err();
            assert!(err.to_string().contains("window"), "{err}");
        }
    }
}
