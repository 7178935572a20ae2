//! The `rpc-serve` frame stream (`GET /v1/stream/rpc-serve` + upgrade): a
//! peer process serves an nRPC service through this node
//! (docs/LOCAL_API.md, "Serving from a peer process").
//!
//! The client's first frame is JSON, `{"op":"serve","service",...}` (see
//! [`ServeOpen`]); the node serves the service (registering it in the
//! ledger) with a handler that forwards each call to the process
//! (`crate::subsystems::rpc_remote`), and answers `{"ok":true,"node_id"}`
//! or `{"error":{kind,detail}}` (and closes). Then binary frames both ways
//! (`relay_proto::wire::rpc_serve`): `request`, `request item`,
//! `requests end` and `cancel` from the node, `item`, `reply`, `end` and
//! `credit` from the process. When the connection ends the service is
//! withdrawn and its open calls fail with `unavailable`; a frame that does
//! not decode, or a node's frame sent by the process, closes it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use relay_proto::wire::rpc::Code;
use relay_proto::wire::rpc_serve::{ServeFrame, ServeFrameError};
use relay_rpc::Status;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc::{self, error::TrySendError, Permit, Sender};

use super::error::ApiError;
use super::frames::{FrameStream, FrameStreamError};
use super::router::StreamService;
use crate::subsystem::BoxFuture;
use crate::subsystems::rpc::Rpc;
use crate::subsystems::rpc_remote::{lock, remote, RemoteEvent, SharedCalls};
use crate::subsystems::rpc_remote_calls::RemoteCalls;
use crate::subsystems::rpc_remote_requests::REQUEST_WINDOW;
use crate::subsystems::rpc_service::ServeOptions;

/// Most calls a serving process runs at once.
pub const MAX_CONCURRENCY: usize = 256;
/// Most calls waiting for a serving process.
pub const MAX_QUEUE: usize = 4096;
/// Longest pushback a serving process may ask for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The first frame.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServeOpen {
    /// Must be `serve`.
    pub op: String,
    /// The service's name.
    pub service: String,
    /// Its methods; none: any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Its version (default "1").
    #[serde(default)]
    pub version: Option<String>,
    /// Calls the process runs at once (default 16, at most
    /// [`MAX_CONCURRENCY`]).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Calls waiting for a slot (default 256, at most [`MAX_QUEUE`]).
    #[serde(default)]
    pub queue: Option<usize>,
    /// Pushback sent past the queue (default 50 ms).
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    /// Whether callers must present a token.
    #[serde(default)]
    pub token_required: bool,
    /// The methods whose calls stream their requests (client streaming,
    /// duplex): the process gets every request message.
    #[serde(default)]
    pub stream_requests: Vec<String>,
}

impl ServeOpen {
    /// The serving options, bounds checked.
    pub fn options(&self) -> Result<ServeOptions, ApiError> {
        if self.op != "serve" {
            return Err(ApiError::BadRequest(format!(
                "unknown op {:?} (serve)",
                self.op
            )));
        }
        let concurrency = self.concurrency.unwrap_or(16);
        if concurrency == 0 || concurrency > MAX_CONCURRENCY {
            return Err(ApiError::BadRequest(format!(
                "concurrency must be 1..={MAX_CONCURRENCY}"
            )));
        }
        let queue = self.queue.unwrap_or(256);
        if queue > MAX_QUEUE {
            return Err(ApiError::BadRequest(format!(
                "queue must be at most {MAX_QUEUE}"
            )));
        }
        let defaults = ServeOptions::default();
        let retry_after = self
            .retry_after_ms
            .map_or(defaults.retry_after, Duration::from_millis);
        if retry_after > MAX_RETRY_AFTER {
            return Err(ApiError::BadRequest(
                "retry_after_ms must be at most 60000".into(),
            ));
        }
        if self.stream_requests.len() > relay_proto::wire::rpc::MAX_METHODS {
            return Err(ApiError::BadRequest(format!(
                "at most {} stream_requests methods",
                relay_proto::wire::rpc::MAX_METHODS
            )));
        }
        if let Some(m) = self.stream_requests.iter().find(|m| {
            !relay_proto::wire::rpc::valid_name(m, relay_proto::wire::rpc::MAX_METHOD)
                || !(self.methods.is_empty() || self.methods.contains(m))
        }) {
            return Err(ApiError::BadRequest(format!(
                "stream_requests: {m:?} is not a valid method of the service"
            )));
        }
        Ok(ServeOptions {
            methods: self.methods.clone(),
            version: self.version.clone().unwrap_or(defaults.version),
            concurrency,
            queue,
            retry_after,
            token_required: self.token_required,
        })
    }
}

/// The `rpc-serve` stream service.
#[derive(Debug, Clone)]
pub struct RpcServe(pub Rpc);

/// Withdraws the service and fails its open calls when the connection
/// ends, however it ends.
struct Served {
    rpc: Rpc,
    service: String,
    calls: SharedCalls,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.rpc.stop(&self.service);
        // Dropping the routes ends every waiting handler: `unavailable`.
        drop(lock(&self.calls).close());
    }
}

/// A frame from the process, routed: the call's handler and what to give
/// it; `None` when the call is not open any more (or the frame was a
/// credit, given at once).
type Routed = Option<(Sender<RemoteEvent>, RemoteEvent)>;

fn route(calls: &SharedCalls, payload: &[u8]) -> Result<Routed, ServeFrameError> {
    let frame = ServeFrame::decode(payload)?;
    if let ServeFrame::Credit { call, count } = frame {
        if let Some(credit) = lock(calls).route(call).and_then(|r| r.credit.as_ref()) {
            credit.give(count);
        }
        return Ok(None);
    }
    let event = match &frame {
        ServeFrame::Item { body, .. } => RemoteEvent::Item(Bytes::copy_from_slice(body)),
        ServeFrame::Reply { body, .. } => RemoteEvent::Reply(Bytes::copy_from_slice(body)),
        ServeFrame::End { trailer, .. } => {
            let status = Status::from_trailer(trailer.clone());
            RemoteEvent::End(if status.code == Code::Ok {
                Ok(())
            } else {
                Err(status)
            })
        }
        ServeFrame::Request { .. }
        | ServeFrame::Cancel { .. }
        | ServeFrame::RequestItem { .. }
        | ServeFrame::RequestsEnd { .. }
        | ServeFrame::Credit { .. } => {
            return Err(ServeFrameError::FrameType(
                payload.first().copied().unwrap_or(0),
            ))
        }
    };
    let tx = lock(calls).route(frame.call()).map(|r| r.events.clone());
    Ok(tx.map(|tx| (tx, event)))
}

async fn reserve(tx: Option<&Sender<RemoteEvent>>) -> Option<Permit<'_, RemoteEvent>> {
    tx?.reserve().await.ok()
}

/// Why a serving connection ended.
#[derive(Debug, thiserror::Error)]
enum ConnEnd {
    #[error(transparent)]
    Stream(#[from] FrameStreamError),
    #[error(transparent)]
    Frame(#[from] ServeFrameError),
}

/// Moves frames until the connection ends: `request`/`cancel` frames the
/// handlers queue on `out` to the process, the process's frames to their
/// calls. A call whose buffer is full holds the reader back (only that
/// frame waits; nothing more is read meanwhile).
async fn pump(
    stream: &mut FrameStream,
    calls: &SharedCalls,
    out: &mut mpsc::Receiver<Vec<u8>>,
) -> Result<(), ConnEnd> {
    let mut pending: Routed = None;
    loop {
        while let Ok(frame) = out.try_recv() {
            stream.queue(&frame)?;
        }
        // Nothing is queued now, so `recv` below only waits for input
        // (cancel-safe).
        stream.flush().await?;
        let waiting = pending.as_ref().map(|(tx, _)| tx.clone());
        tokio::select! {
            Some(frame) = out.recv() => stream.queue(&frame)?,
            room = reserve(waiting.as_ref()), if waiting.is_some() => {
                if let (Some(permit), Some((_, event))) = (room, pending.take()) {
                    permit.send(event);
                }
            }
            read = stream.recv(), if pending.is_none() => {
                let Some(payload) = read? else { return Ok(()) };
                if let Some((tx, event)) = route(calls, &payload)? {
                    if let Err(TrySendError::Full(event)) = tx.try_send(event) {
                        pending = Some((tx, event));
                    }
                }
            }
        }
    }
}

async fn serve_conn(rpc: Rpc, mut stream: FrameStream) {
    let first = match stream.recv().await {
        Ok(Some(f)) => f,
        _ => return,
    };
    let opened = serde_json::from_slice::<ServeOpen>(&first)
        .map_err(|e| ApiError::BadRequest(format!("bad first frame: {e}")))
        .and_then(|open| {
            let streamed: HashSet<String> = open.stream_requests.iter().cloned().collect();
            Ok((open.options()?, open.service, Arc::new(streamed)))
        });
    let (options, service, streamed) = match opened {
        Ok(x) => x,
        Err(e) => {
            let _ = stream.send_error(e.kind(), &e.detail()).await;
            return;
        }
    };
    let concurrency = options.concurrency;
    let calls: SharedCalls = Arc::new(Mutex::new(RemoteCalls::new(concurrency)));
    // An open call queues at most its request, REQUEST_WINDOW request
    // items (its credit), its requests end and a cancel.
    let (out_tx, mut out_rx) = mpsc::channel((REQUEST_WINDOW + 3) * concurrency + 16);
    let handler = remote(calls.clone(), out_tx, streamed);
    if let Err(e) = rpc.serve(&service, options, handler) {
        let e = ApiError::operation(e.kind(), e.to_string());
        let _ = stream.send_error(e.kind(), &e.detail()).await;
        return;
    }
    let _served = Served {
        rpc: rpc.clone(),
        service: service.clone(),
        calls: calls.clone(),
    };
    let ok: Value = json!({"ok": true, "node_id": rpc.node_id().to_string()});
    if stream
        .send(&serde_json::to_vec(&ok).unwrap_or_default())
        .await
        .is_err()
    {
        return;
    }
    tracing::info!(service = %service, "rpc: serving for a peer process");
    match pump(&mut stream, &calls, &mut out_rx).await {
        Ok(()) => tracing::info!(service = %service, "rpc: the serving process left"),
        Err(e) => tracing::info!(service = %service, error = %e, "rpc: serving connection ended"),
    }
}

impl StreamService for RpcServe {
    fn serve(&self, stream: FrameStream) -> BoxFuture<'static, ()> {
        Box::pin(serve_conn(self.0.clone(), stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(json: &str) -> Result<ServeOptions, String> {
        serde_json::from_str::<ServeOpen>(json)
            .map_err(|e| e.to_string())?
            .options()
            .map_err(|e| e.kind().to_string())
    }

    #[test]
    fn first_frame_is_bounded() {
        let o = open(r#"{"op":"serve","service":"inv","methods":["get"]}"#).unwrap();
        assert_eq!((o.concurrency, o.queue), (16, 256));
        assert_eq!(o.methods, ["get"]);
        assert_eq!(
            open(r#"{"op":"serve","service":"inv","concurrency":0}"#).unwrap_err(),
            "bad-request"
        );
        assert_eq!(
            open(r#"{"op":"serve","service":"inv","concurrency":257}"#).unwrap_err(),
            "bad-request"
        );
        assert_eq!(
            open(r#"{"op":"serve","service":"inv","queue":5000}"#).unwrap_err(),
            "bad-request"
        );
        assert_eq!(
            open(r#"{"op":"sub","service":"inv"}"#).unwrap_err(),
            "bad-request"
        );
        assert!(open(r#"{"op":"serve","service":"inv","x":1}"#).is_err());
        assert!(open(r#"{"op":"serve","service":"inv","stream_requests":["up"]}"#).is_ok());
        let not_a_method =
            r#"{"op":"serve","service":"inv","methods":["get"],"stream_requests":["up"]}"#;
        assert_eq!(open(not_a_method).unwrap_err(), "bad-request");
        assert_eq!(
            open(r#"{"op":"serve","service":"inv","stream_requests":["a b"]}"#).unwrap_err(),
            "bad-request"
        );
    }
}
