//! Feeding one client a tail of the ledger: a [`Follower`] (every entry
//! after a cursor, then every new one, no gap and no duplicate) pumped into
//! the bounded channel behind the client's response body, as NDJSON lines
//! (`GET /v1/ledger?follow=1`) or server-sent events (`/v1/ledger/events`
//! and the HTTP endpoint's `/ledger/events`).
//!
//! Bounded: at most [`TAIL_BUFFER`] encoded entries wait for a client. A
//! client that reads slowly costs nothing more, since the follower reads
//! what it missed back from the store. With a stall limit (SSE), a client
//! that leaves the buffer full for that long has fallen too far behind: the
//! tail ends with [`TailEnd::Stalled`] and the caller drops the connection;
//! the client resumes with `Last-Event-ID`.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::body::{with_type, ApiResponse, ChannelBody, NDJSON};
use super::error::ApiError;
use super::ledger_json::entry_json;
use crate::http::sse::{last_event_id, sse_response, SseEvent, KEEPALIVE};
use crate::ledger::{Cursor, Follower, LedgerError, StoredEntry};

/// Encoded entries buffered for one client.
pub const TAIL_BUFFER: usize = 64;

/// How a tail is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailFormat {
    /// One JSON object per line; an error is a last `{"error": ...}` line.
    Ndjson,
    /// Server-sent events: `id:` the cursor, `data:` the entry's JSON; an
    /// error is a last `event: error`; comments keep the connection alive.
    Sse,
}

/// One client's tail.
#[derive(Debug)]
pub struct Tail {
    /// Where the entries come from.
    pub follower: Follower,
    /// Ends the tail (shutdown, or the connection is going away).
    pub stop: CancellationToken,
    /// How long a full buffer may wait for the client before the tail gives
    /// up on it; `None` waits as long as the client stays connected.
    pub stall: Option<Duration>,
    /// Period of keep-alive comments (SSE only).
    pub keepalive: Option<Duration>,
    /// The format.
    pub format: TailFormat,
}

/// Why a tail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailEnd {
    /// The client went away.
    ClientGone,
    /// The stop token fired.
    Stopped,
    /// The buffer stayed full for the stall limit.
    Stalled,
    /// Reading the ledger failed (the client got the error).
    Failed,
}

/// The ledger error as the API reports it (`kind`, `detail`, 500).
pub fn ledger_error(e: &LedgerError) -> ApiError {
    let text = e.to_string();
    let prefix = format!("{}: ", e.kind());
    ApiError::Operation {
        kind: e.kind().to_string(),
        detail: text.strip_prefix(&prefix).unwrap_or(&text).to_string(),
        status: StatusCode::INTERNAL_SERVER_ERROR.as_u16(),
    }
}

/// Where a reconnecting SSE client resumes: after its `Last-Event-ID` if it
/// sent one, else after the query's `after`.
pub fn resume_after<B>(
    request: &Request<B>,
    after: Option<Cursor>,
) -> Result<Option<Cursor>, ApiError> {
    match last_event_id(request) {
        Some(id) => id
            .parse::<Cursor>()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("Last-Event-ID {id:?} is not a cursor"))),
        None => Ok(after),
    }
}

impl TailFormat {
    fn entry(self, s: &StoredEntry) -> Bytes {
        let value = entry_json(s);
        match self {
            Self::Ndjson => line(&value),
            Self::Sse => SseEvent::new(s.cursor.to_string(), value.to_string()).encode(),
        }
    }

    fn error(self, e: &ApiError) -> Bytes {
        let value = json!({"error": {"kind": e.kind(), "detail": e.detail()}});
        match self {
            Self::Ndjson => line(&value),
            Self::Sse => SseEvent {
                id: None,
                event: Some("error".into()),
                data: value.to_string(),
            }
            .encode(),
        }
    }
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

impl Tail {
    /// The `200` response, holding `guard` until the client goes, and the
    /// pump that feeds it (the caller spawns it).
    pub fn start<G>(self, guard: G) -> (ApiResponse, impl Future<Output = TailEnd> + Send)
    where
        G: Unpin + Send + Sync + 'static,
    {
        let (tx, rx) = mpsc::channel(TAIL_BUFFER);
        let response = match self.format {
            TailFormat::Ndjson => {
                let body = http_body_util::BodyExt::boxed(ChannelBody::new(rx, guard));
                with_type(StatusCode::OK, NDJSON, body)
            }
            TailFormat::Sse => sse_response(rx, guard),
        };
        (response, self.pump(tx))
    }

    async fn pump(mut self, tx: mpsc::Sender<Bytes>) -> TailEnd {
        let mut keepalive = self.keepalive.map(|period| {
            let first = tokio::time::Instant::now() + period;
            let mut i = tokio::time::interval_at(first, period);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        loop {
            let tick = async {
                match &mut keepalive {
                    Some(i) => i.tick().await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                () = self.stop.cancelled() => return TailEnd::Stopped,
                () = tx.closed() => return TailEnd::ClientGone,
                _ = tick => {
                    // A client with a full buffer needs no keep-alive.
                    let _ = tx.try_send(Bytes::from_static(KEEPALIVE));
                    continue;
                }
                next = self.follower.next() => next,
            };
            let (chunk, failed) = match next {
                Ok(s) => (self.format.entry(&s), false),
                Err(e) => (self.format.error(&ledger_error(&e)), true),
            };
            if let Some(end) = self.send(&tx, chunk).await {
                return end;
            }
            if failed {
                return TailEnd::Failed;
            }
        }
    }

    /// Sends one chunk; `Some` when the tail must end.
    async fn send(&self, tx: &mpsc::Sender<Bytes>, chunk: Bytes) -> Option<TailEnd> {
        let send = async {
            match self.stall {
                Some(limit) => match tokio::time::timeout(limit, tx.send(chunk)).await {
                    Ok(sent) => sent.map_err(|_| TailEnd::ClientGone),
                    Err(_) => Err(TailEnd::Stalled),
                },
                None => tx.send(chunk).await.map_err(|_| TailEnd::ClientGone),
            }
        };
        tokio::select! {
            () = self.stop.cancelled() => Some(TailEnd::Stopped),
            sent = send => sent.err(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Filter, Ledger};
    use crate::testutil::temp_dir;
    use crate::testutil::traversal_event as event;
    use http_body_util::BodyExt;
    use relay_proto::SecretKey;

    fn tail(ledger: &Ledger, stall: Option<Duration>, format: TailFormat) -> Tail {
        Tail {
            follower: ledger.follow(None, Filter::default()),
            stop: CancellationToken::new(),
            stall,
            keepalive: None,
            format,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_nothing_is_given_up_after_the_stall_limit() {
        let ledger =
            Ledger::open(&temp_dir("tail-stall"), SecretKey::from_bytes(&[1; 32])).unwrap();
        for i in 0..(TAIL_BUFFER as u64 + 10) {
            ledger.append_at(i, event(i)).await.unwrap();
        }
        let stall = Duration::from_secs(10);
        let (response, pump) = tail(&ledger, Some(stall), TailFormat::Sse).start(());
        let started = tokio::time::Instant::now();
        assert_eq!(pump.await, TailEnd::Stalled);
        assert!(started.elapsed() >= stall);
        // What was buffered is still there, and no more than the bound.
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let events = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(events.matches("\nid: ").count() + 1, TAIL_BUFFER);
        assert!(events.starts_with("id: 1\ndata: {"));
        ledger.close();
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_stall_limit_a_slow_client_is_waited_for() {
        let ledger = Ledger::open(&temp_dir("tail-wait"), SecretKey::from_bytes(&[1; 32])).unwrap();
        for i in 0..(TAIL_BUFFER as u64 + 10) {
            ledger.append_at(i, event(i)).await.unwrap();
        }
        let (response, pump) = tail(&ledger, None, TailFormat::Ndjson).start(());
        let pump = tokio::spawn(pump);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!pump.is_finished());
        let mut body = response.into_body();
        for seq in 1..=(TAIL_BUFFER as u64 + 10) {
            let chunk = body.frame().await.unwrap().unwrap().into_data().unwrap();
            let v: Value = serde_json::from_slice(&chunk).unwrap();
            assert_eq!(v["seq"], seq);
        }
        drop(body);
        assert_eq!(pump.await.unwrap(), TailEnd::ClientGone);
        ledger.close();
    }

    #[test]
    fn last_event_id_wins_over_after_and_must_be_a_cursor() {
        let req = |id: Option<&str>| {
            let mut b = Request::builder().uri("/ledger/events");
            if let Some(id) = id {
                b = b.header("last-event-id", id);
            }
            b.body(()).unwrap()
        };
        assert_eq!(
            resume_after(&req(None), Some(Cursor(3))),
            Ok(Some(Cursor(3)))
        );
        assert_eq!(resume_after(&req(None), None), Ok(None));
        assert_eq!(
            resume_after(&req(Some("9")), Some(Cursor(3))),
            Ok(Some(Cursor(9)))
        );
        let e = resume_after(&req(Some("x9")), None).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}
