//! The handler of a service served by a peer process (the local API's
//! `rpc-serve` stream, `crate::api::rpc_serve`): each admitted call gets an
//! id in the connection's [`RemoteCalls`], goes to the process as a
//! `request` frame, and waits for the process's `item`, `reply` or `end`
//! frames, which the connection's driver routes back here.
//!
//! The handler runs under the node's serving rules (concurrency limit,
//! queue, deadline, the caller's cancellation; `rpc_server`): when the
//! call is cancelled, or its deadline passes, the process gets a `cancel`
//! frame; when the connection ends, every open call fails with
//! `unavailable`. The process gets the call's first request message in
//! its `request` frame (unary and server-streaming calls), or, for the
//! methods it declared as streaming their requests, an empty `request`
//! frame at once and every request message after it
//! (`super::rpc_remote_requests`: client streaming and duplex).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use relay_proto::wire::rpc::CallHeader;
use relay_proto::wire::rpc_serve::{CancelReason, ServeFrame};
use relay_rpc::{Code, Status};
use tokio::sync::mpsc;

use super::rpc_remote_calls::{OpenError, RemoteCalls};
use super::rpc_remote_requests::{forward, send_frame, Credit};
use super::rpc_server::ServerCall;
use super::rpc_service::{handler, Handler};

/// Frames from the process one call buffers before the connection's
/// reader waits for it (each at most one frame of the stream).
pub const EVENTS_PER_CALL: usize = 2;

/// What the process sent about one call.
#[derive(Debug)]
pub enum RemoteEvent {
    /// A response message.
    Item(Bytes),
    /// The final response message; the call ends `ok`.
    Reply(Bytes),
    /// The call's status.
    End(Result<(), Status>),
}

/// Where the driver delivers the process's frames about one call.
#[derive(Debug, Clone)]
pub struct CallRoute {
    /// The call's events.
    pub events: mpsc::Sender<RemoteEvent>,
    /// The call's request credit, when its requests are streamed.
    pub credit: Option<Credit>,
}

/// The open calls of one connection, shared by its handler and driver.
pub type SharedCalls = Arc<Mutex<RemoteCalls<CallRoute>>>;

/// Locks `calls` (a poisoned lock is still usable: the table stays valid).
pub fn lock(calls: &SharedCalls) -> MutexGuard<'_, RemoteCalls<CallRoute>> {
    calls.lock().unwrap_or_else(|e| e.into_inner())
}

/// The handler forwarding calls to the process: `request`, `request
/// item`, `requests end` and `cancel` frames go to `out` (which the driver
/// writes to the connection). Calls of the `streamed` methods stream their
/// requests.
pub fn remote(
    calls: SharedCalls,
    out: mpsc::Sender<Vec<u8>>,
    streamed: Arc<HashSet<String>>,
) -> Handler {
    handler(move |call| serve_one(calls.clone(), out.clone(), streamed.clone(), call))
}

fn disconnected() -> Status {
    Status::new(Code::Unavailable, "the serving process disconnected")
}

/// A call open in the table: ends it there when dropped, and tells the
/// process about a call it did not end itself.
struct OpenCall {
    calls: SharedCalls,
    out: mpsc::Sender<Vec<u8>>,
    id: u32,
    deadline: relay_rpc::Deadline,
    ended: bool,
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        let was_open = lock(&self.calls).finish(self.id);
        if was_open && !self.ended {
            let now = tokio::time::Instant::now().into_std();
            let reason = if self.deadline.expired(now) {
                CancelReason::Deadline
            } else {
                CancelReason::Caller
            };
            let mut frame = Vec::with_capacity(6);
            let cancel = ServeFrame::Cancel {
                call: self.id,
                reason,
            };
            // A cancel is best effort: when the process is so far behind
            // that its queue is full, its late answer is dropped anyway.
            if cancel.encode(&mut frame).is_ok() {
                let _ = self.out.try_send(frame);
            }
        }
    }
}

async fn serve_one(
    calls: SharedCalls,
    out: mpsc::Sender<Vec<u8>>,
    streamed: Arc<HashSet<String>>,
    mut call: ServerCall,
) -> Result<Option<Bytes>, Status> {
    let requests = if streamed.contains(call.method()) {
        call.take_requests()
    } else {
        None
    };
    let body = match requests {
        Some(_) => Bytes::new(),
        None => call.recv().await?.unwrap_or_default(),
    };
    let credit = requests.as_ref().map(|_| Credit::default());
    let (tx, mut rx) = mpsc::channel(EVENTS_PER_CALL);
    let route = CallRoute {
        events: tx,
        credit: credit.clone(),
    };
    let id = lock(&calls).open(route).map_err(|e| match e {
        OpenError::Closed => disconnected(),
        OpenError::Full => Status::new(
            Code::ResourceExhausted,
            "the serving process has too many open calls",
        ),
    })?;
    let mut open = OpenCall {
        calls,
        out: out.clone(),
        id,
        deadline: call.deadline(),
        ended: false,
    };
    let now = tokio::time::Instant::now().into_std();
    let header = CallHeader {
        service: call.service().to_string(),
        method: call.method().to_string(),
        deadline_ms: call.deadline().wire_ms(now),
        idempotent: call.idempotent(),
        metadata: call.metadata().to_vec(),
    };
    let request = ServeFrame::Request {
        call: id,
        caller: call.peer(),
        header,
        body: &body,
    };
    send_frame(&out, request, body.len()).await?;
    // The requests are forwarded while the answers flow (duplex); when
    // the forwarding ends well, only the answers are left to wait for.
    let forwarding = async {
        match (requests, credit) {
            (Some(requests), Some(credit)) => forward(requests, id, out, credit).await,
            _ => Ok(()),
        }
    };
    let answers = async {
        loop {
            let event = tokio::select! {
                () = call.cancelled() => return Err(Status::new(Code::Cancelled, "the call was cancelled")),
                e = rx.recv() => e,
            };
            match event.ok_or_else(disconnected)? {
                RemoteEvent::Item(item) => call.send(&item).await?,
                RemoteEvent::Reply(reply) => {
                    open.ended = true;
                    return Ok(Some(reply));
                }
                RemoteEvent::End(result) => {
                    open.ended = true;
                    return result.map(|()| None);
                }
            }
        }
    };
    tokio::select! {
        r = answers => r,
        Err(e) = forwarding => Err(e),
    }
}
