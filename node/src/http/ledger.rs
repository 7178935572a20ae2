//! The ledger on the HTTP endpoint (docs/LEDGER.md, "Over HTTP"):
//!
//! - `GET /ledger?after=CURSOR&limit=N[&origin=ID][&kind=KIND]`: a page, the
//!   JSON of the local API's `GET /v1/ledger` (the same code);
//! - `GET /ledger/events[?after=CURSOR][&origin=ID][&kind=KIND]`:
//!   server-sent events, `id:` the entry's cursor and `data:` its JSON.
//!   A client that reconnects with `Last-Event-ID` (which wins over
//!   `after`) gets every entry after that cursor and then the live ones,
//!   with no gap and no duplicate ([`crate::ledger::Follower`]).
//!
//! Bounded: at most [`MAX_SSE_CLIENTS`] event streams at once (503 beyond),
//! each with a buffer of
//! [`TAIL_BUFFER`](crate::api::ledger_tail::TAIL_BUFFER) events; a client that leaves its
//! buffer full for [`SSE_STALL`] is disconnected and resumes with
//! `Last-Event-ID`. Idle streams carry a comment every [`SSE_KEEPALIVE`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hyper::{Request, Response};

use super::router::{harden, Body, Exchange};
use crate::api::body::{error, ok};
use crate::api::error::ApiError;
use crate::api::ledger::{page, Query, SSE_KEEPALIVE};
use crate::api::ledger_tail::{resume_after, Tail, TailEnd, TailFormat};
use crate::ledger::Ledger;
use crate::metrics::text::{count, Kind, TextWriter};

/// Most event streams open at once.
pub const MAX_SSE_CLIENTS: usize = 64;
/// How long a client may leave its buffer full before it is disconnected.
pub const SSE_STALL: Duration = Duration::from_secs(30);

/// Counters of the event streams.
#[derive(Debug, Default)]
pub struct SseStats {
    open: AtomicU64,
    opened: AtomicU64,
    refused: AtomicU64,
    stalled: AtomicU64,
}

impl SseStats {
    /// Event streams open now.
    pub fn open(&self) -> u64 {
        self.open.load(Relaxed)
    }

    /// Event streams opened since start.
    pub fn opened(&self) -> u64 {
        self.opened.load(Relaxed)
    }

    /// Event streams refused over [`MAX_SSE_CLIENTS`].
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// Clients disconnected for falling behind.
    pub fn stalled(&self) -> u64 {
        self.stalled.load(Relaxed)
    }
}

/// One open event stream; dropping it (when the response body goes)
/// frees its place.
#[derive(Debug)]
struct SseClient(Arc<SseStats>);

impl Drop for SseClient {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// The ledger's HTTP resources.
#[derive(Debug, Clone)]
pub struct HttpLedger {
    ledger: Ledger,
    stats: Arc<SseStats>,
    max_clients: u64,
    stall: Duration,
}

impl HttpLedger {
    /// The resources over `ledger`.
    pub fn new(ledger: Ledger) -> Self {
        Self {
            ledger,
            stats: Arc::default(),
            max_clients: MAX_SSE_CLIENTS as u64,
            stall: SSE_STALL,
        }
    }

    /// Replaces [`MAX_SSE_CLIENTS`] and [`SSE_STALL`] (tests).
    pub fn with_stream_limits(mut self, max_clients: usize, stall: Duration) -> Self {
        self.max_clients = max_clients as u64;
        self.stall = stall;
        self
    }

    /// The event streams' counters.
    pub fn stats(&self) -> &SseStats {
        &self.stats
    }

    /// `relay_node_http_sse_*` metrics.
    pub fn metrics(&self, out: &mut TextWriter) {
        let s = &self.stats;
        out.single(
            "relay_node_http_sse_clients",
            Kind::Gauge,
            "Ledger event streams open on the HTTP endpoint.",
            count(s.open()),
        );
        out.single(
            "relay_node_http_sse_opened_total",
            Kind::Counter,
            "Ledger event streams opened on the HTTP endpoint.",
            count(s.opened()),
        );
        out.single(
            "relay_node_http_sse_refused_total",
            Kind::Counter,
            "Ledger event streams refused because the most were open.",
            count(s.refused()),
        );
        out.single(
            "relay_node_http_sse_stalled_total",
            Kind::Counter,
            "Ledger event stream clients disconnected for falling behind.",
            count(s.stalled()),
        );
    }

    /// `GET /ledger`.
    pub async fn page<B>(&self, request: &Request<B>) -> Response<Body> {
        let answer = async {
            let q = Query::parse(request.uri().query())?;
            if q.follow {
                return Err(ApiError::BadRequest(
                    "follow is not served here: use /ledger/events".into(),
                ));
            }
            page(&self.ledger, q).await
        };
        harden(match answer.await {
            Ok(value) => ok(&value),
            Err(e) => error(&e),
        })
    }

    /// `GET /ledger/events`.
    pub fn events<B>(&self, request: &Request<B>, exchange: &Exchange) -> Response<Body> {
        harden(match self.start_events(request, exchange) {
            Ok(response) => response,
            Err(e) => error(&e),
        })
    }

    fn start_events<B>(
        &self,
        request: &Request<B>,
        exchange: &Exchange,
    ) -> Result<Response<Body>, ApiError> {
        let q = Query::parse(request.uri().query())?;
        let after = resume_after(request, q.after)?;
        let client = self.enter()?;
        let close = exchange.stream();
        let tail = Tail {
            follower: self.ledger.follow(after, q.filter),
            stop: close.clone(),
            stall: Some(self.stall),
            keepalive: Some(SSE_KEEPALIVE),
            format: TailFormat::Sse,
        };
        let (response, pump) = tail.start(client);
        let stats = self.stats.clone();
        tokio::spawn(async move {
            if pump.await == TailEnd::Stalled {
                stats.stalled.fetch_add(1, Relaxed);
                tracing::debug!("http: an event stream client fell behind; disconnecting it");
                close.cancel();
            }
        });
        Ok(response)
    }

    /// A place for one more event stream, or `busy`.
    fn enter(&self) -> Result<SseClient, ApiError> {
        let s = &self.stats;
        let taken = s.open.fetch_update(Relaxed, Relaxed, |n| {
            (n < self.max_clients).then_some(n + 1)
        });
        if taken.is_err() {
            s.refused.fetch_add(1, Relaxed);
            return Err(ApiError::Busy(format!(
                "{} event streams are open; try again later",
                self.max_clients
            )));
        }
        s.opened.fetch_add(1, Relaxed);
        Ok(SseClient(s.clone()))
    }
}
