//! The `rpc-calls` frame stream (`GET /v1/stream/rpc-calls` + upgrade): a
//! peer process makes many unary nRPC calls of one service at once over
//! one connection (docs/LOCAL_API.md, "Many unary calls on one
//! connection"), the high-rate path next to `POST /v1/call`.
//!
//! The client's first frame is JSON, `{"op":"calls","service",...}` (see
//! [`parse_opening`]): the options every call of the connection gets. The
//! node answers `{"ok":true}` or `{"error":{kind,detail}}` (and closes). Then
//! binary frames both ways (`relay_proto::wire::rpc_calls`): `call` and
//! `cancel` from the process, one `reply` or `error` per call from the
//! node, in the order the calls end. Each call is made as `POST /v1/call`
//! makes it (`Rpc::call`: retry and hedging by the options), on a task of
//! its own; at most [`MAX_IN_FLIGHT`] run at once per connection, and
//! past that the node reads no more frames until one ends (the socket's
//! flow control holds the process back). When the process closes the
//! connection, the calls still running are cancelled.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use relay_proto::wire::rpc::Code;
use relay_proto::wire::rpc_calls::{CallsFrame, CallsFrameError};
use relay_rpc::Status;
use tokio::task::{self, AbortHandle, JoinError, JoinSet};

use super::frames::{FrameStream, FrameStreamError};
use super::router::StreamService;
use super::rpc_open::{parse_opening, Calling};
use crate::subsystem::BoxFuture;
use crate::subsystems::rpc::Rpc;
use crate::subsystems::rpc_client::CallOptions;

/// Calls one connection runs at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// The `rpc-calls` stream service.
#[derive(Debug, Clone)]
pub struct RpcCalls(pub Rpc);

/// Why a calling connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnEnd {
    #[error(transparent)]
    Stream(#[from] FrameStreamError),
    #[error(transparent)]
    Frame(#[from] CallsFrameError),
    /// A frame the process may not send (a node's frame, or a call id
    /// already in flight).
    #[error("protocol: {0}")]
    Protocol(&'static str),
}

/// What every call of one connection shares.
struct Target {
    rpc: Rpc,
    service: Arc<str>,
    options: Arc<CallOptions>,
}

/// What a call's task ends with: the call's id and its outcome.
type CallEnd = (u32, Result<Bytes, Status>);

/// The calls of one connection in flight, by the process's id.
struct Flight {
    tasks: JoinSet<CallEnd>,
    ids: HashMap<u32, AbortHandle>,
    /// One frame's encoding (kept: no allocation per frame).
    scratch: Vec<u8>,
}

impl Flight {
    fn queue(&mut self, stream: &mut FrameStream, frame: &CallsFrame<'_>) -> Result<(), ConnEnd> {
        self.scratch.clear();
        frame.encode(&mut self.scratch)?;
        stream.queue(&self.scratch)?;
        Ok(())
    }

    /// One frame from the process.
    fn handle(
        &mut self,
        stream: &mut FrameStream,
        target: &Target,
        payload: Vec<u8>,
    ) -> Result<(), ConnEnd> {
        let payload = Bytes::from(payload);
        match CallsFrame::decode(&payload)? {
            CallsFrame::Call { id, method, body } => {
                if self.ids.contains_key(&id) {
                    return Err(ConnEnd::Protocol("a call id already in flight"));
                }
                // The body stays in the frame it came in.
                let body = payload.slice(payload.len() - body.len()..);
                let method = method.to_owned();
                let (rpc, service) = (target.rpc.clone(), target.service.clone());
                let options = target.options.clone();
                let task = self
                    .tasks
                    .spawn(async move { (id, rpc.call(&service, &method, body, &options).await) });
                self.ids.insert(id, task);
            }
            CallsFrame::Cancel(id) => {
                // A call that already ended has had its answer.
                if let Some(task) = self.ids.remove(&id) {
                    task.abort();
                    let s = Status::new(Code::Cancelled, "the process cancelled the call");
                    let trailer = s.to_trailer();
                    self.queue(stream, &CallsFrame::Error { id, trailer })?;
                }
            }
            CallsFrame::Reply { .. } | CallsFrame::Error { .. } => {
                return Err(ConnEnd::Protocol("a node's frame from the process"))
            }
        }
        Ok(())
    }

    /// One call's task ended: its answer, unless it was cancelled. The
    /// task must be the one its id names now: a cancelled call's id may
    /// already be in use again when its task ends.
    fn ended(
        &mut self,
        stream: &mut FrameStream,
        done: Result<(task::Id, CallEnd), JoinError>,
    ) -> Result<(), ConnEnd> {
        match done {
            Ok((task, (id, result))) => {
                if self.ids.get(&id).map(AbortHandle::id) != Some(task) {
                    return Ok(());
                }
                self.ids.remove(&id);
                match result {
                    Ok(body) => self.queue(stream, &CallsFrame::Reply { id, body: &body }),
                    Err(s) => {
                        let trailer = s.to_trailer();
                        self.queue(stream, &CallsFrame::Error { id, trailer })
                    }
                }
            }
            Err(e) if e.is_cancelled() => Ok(()),
            Err(e) => {
                // A call's task failed: its id gets an `internal` error.
                let task = e.id();
                let id = self
                    .ids
                    .iter()
                    .find(|(_, h)| h.id() == task)
                    .map(|(id, _)| *id);
                let Some(id) = id else { return Ok(()) };
                self.ids.remove(&id);
                let s = Status::new(Code::Internal, "the call's task failed");
                let trailer = s.to_trailer();
                self.queue(stream, &CallsFrame::Error { id, trailer })
            }
        }
    }

    /// Whether another call may start: the tasks not yet reaped count,
    /// cancelled ones included, so the connection's tasks stay bounded.
    fn room(&self) -> bool {
        self.tasks.len() < MAX_IN_FLIGHT
    }
}

/// Runs the connection's calls until the process closes it (the calls
/// still running are then cancelled, by dropping their tasks).
async fn pump(stream: &mut FrameStream, target: &Target) -> Result<(), ConnEnd> {
    let mut flight = Flight {
        tasks: JoinSet::new(),
        ids: HashMap::new(),
        scratch: Vec::new(),
    };
    loop {
        // Nothing is queued now, so `recv` below only waits for input
        // (cancel-safe).
        stream.flush().await?;
        let room = flight.room();
        tokio::select! {
            Some(done) = flight.tasks.join_next_with_id(), if !flight.tasks.is_empty() => {
                flight.ended(stream, done)?;
                // Every answer ready now goes out in one write.
                while let Some(done) = flight.tasks.try_join_next_with_id() {
                    flight.ended(stream, done)?;
                }
            }
            read = stream.recv(), if room => {
                let Some(payload) = read? else { return Ok(()) };
                flight.handle(stream, target, payload)?;
                // The frames that came in the same read.
                while flight.room() {
                    match stream.try_recv()? {
                        Some(payload) => flight.handle(stream, target, payload)?,
                        None => break,
                    }
                }
            }
        }
    }
}

async fn calls_conn(rpc: Rpc, mut stream: FrameStream) {
    let first = match stream.recv().await {
        Ok(Some(f)) => f,
        _ => return,
    };
    let (open, options) = match parse_opening(&first, Calling::Many) {
        Ok(x) => x,
        Err(e) => {
            let _ = stream.send_error(e.kind(), &e.detail()).await;
            return;
        }
    };
    if stream.send(br#"{"ok":true}"#).await.is_err() {
        return;
    }
    let target = Target {
        rpc,
        service: open.service.as_str().into(),
        options: Arc::new(options),
    };
    match pump(&mut stream, &target).await {
        Ok(()) => {
            let _ = stream.close().await;
        }
        Err(e) => tracing::debug!(
            service = %open.service,
            error = %e,
            "rpc-calls: the calling connection ended with an error"
        ),
    }
}

impl StreamService for RpcCalls {
    fn serve(&self, stream: FrameStream) -> BoxFuture<'static, ()> {
        Box::pin(calls_conn(self.0.clone(), stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    /// A cancelled call that ended before its cancel took effect, whose
    /// id is in use again: its end is not the new call's answer.
    #[tokio::test]
    async fn an_answer_goes_only_to_the_task_that_has_the_id_now() {
        let (ours, theirs) = tokio::io::duplex(4096);
        let mut stream = FrameStream::new(Box::new(theirs), CancellationToken::new());
        let mut process = FrameStream::new(Box::new(ours), CancellationToken::new());
        let mut flight = Flight {
            tasks: JoinSet::new(),
            ids: HashMap::new(),
            scratch: Vec::new(),
        };
        let old = flight
            .tasks
            .spawn(async { (5, Ok(Bytes::from_static(b"old"))) });
        while !old.is_finished() {
            tokio::task::yield_now().await;
        }
        let new = flight.tasks.spawn(std::future::pending::<CallEnd>());
        flight.ids.insert(5, new);
        let done = flight.tasks.join_next_with_id().await.unwrap();
        flight.ended(&mut stream, done).unwrap();
        assert!(flight.ids.contains_key(&5), "the new call is in flight");
        // Nothing was answered; a frame sent after it is the first read.
        stream.send(b"marker").await.unwrap();
        assert_eq!(process.recv().await.unwrap().unwrap(), b"marker");
    }
}
