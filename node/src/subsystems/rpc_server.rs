//! Serving nRPC calls: the loop that takes the protocol's streams from the
//! mux, and one task per call that reads the call header, answers the
//! built-in verbs, admits the call (concurrency limit, bounded queue),
//! runs the handler under the call's deadline and watches for the caller's
//! cancellation.
//!
//! When the deadline passes, the handler's call is cancelled and the
//! caller gets a `timeout` trailer; when the caller cancels (stops the
//! stream), the handler's call is cancelled and nothing more is written.
//! Either way the handler is polled for at most [`CANCEL_GRACE`] more, so
//! it sees the cancellation, and then dropped.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use relay_proto::wire::rpc::{CallHeader, RESET_CANCELLED};
use relay_proto::NodeId;
use relay_rpc::{Code, Deadline, Status};
use relay_transport::mux::{reset_bi, ProtocolRx, RESET_BUSY};
use relay_transport::{Incoming, RecvStream, SendStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::rpc_builtin::builtin;
use super::rpc_io::{
    abandon_protocol, put_message, put_trailer, read_frame, write_and_finish, write_error, Inbound,
};
use super::rpc_service::{ServiceEntry, Services};

/// Longest wait for a call header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest deadline a server grants (and the deadline of calls without
/// one).
pub const MAX_DEADLINE: Duration = Duration::from_secs(3600);
/// Calls this node serves at once, all services together; past it a new
/// call's stream is reset with the mux's `busy` code.
pub const MAX_CALLS: usize = 4096;
/// How long a cancelled handler keeps being polled.
pub const CANCEL_GRACE: Duration = Duration::from_millis(200);
/// Largest message a server reads.
pub const MAX_MESSAGE: usize = relay_proto::wire::rpc::MAX_MESSAGE_LEN;

/// One call, as its handler sees it.
#[derive(Debug)]
pub struct ServerCall {
    peer: NodeId,
    header: CallHeader,
    deadline: Deadline,
    recv: RecvStream,
    sink: Arc<Mutex<Option<SendStream>>>,
    token: CancellationToken,
}

impl ServerCall {
    /// The caller's node.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.header.method
    }

    /// The service.
    pub fn service(&self) -> &str {
        &self.header.service
    }

    /// The metadata pairs.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.header.metadata
    }

    /// Whether the caller marked the call idempotent.
    pub fn idempotent(&self) -> bool {
        self.header.idempotent
    }

    /// The deadline (this node's clock).
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// Resolves when the call is cancelled: its deadline passed or its
    /// caller gave up.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// Whether the call is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The next request message; `None` once the caller finished sending.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, Status> {
        let read = tokio::select! {
            () = self.token.cancelled() => return Err(cancelled()),
            r = read_frame(&mut self.recv, MAX_MESSAGE) => r?,
        };
        match read {
            Inbound::Message(m) => Ok(Some(m)),
            Inbound::End => Ok(None),
            Inbound::Header(_) | Inbound::Trailer(_) => Err(Status::new(
                Code::Transport,
                "unexpected frame from the caller",
            )),
        }
    }

    /// Sends one response message now (server streaming, duplex).
    pub async fn send(&self, item: &[u8]) -> Result<(), Status> {
        let mut buf = Vec::with_capacity(item.len() + 5);
        put_message(&mut buf, item)?;
        tokio::select! {
            () = self.token.cancelled() => Err(cancelled()),
            r = async {
                let mut sink = self.sink.lock().await;
                let send = sink.as_mut().ok_or_else(cancelled)?;
                send.write_all(&buf).await.map_err(|e| write_error(&e))
            } => r,
        }
    }
}

fn cancelled() -> Status {
    Status::new(Code::Cancelled, "the call was cancelled")
}

/// Serves the calls queued on `rx` until the mux closes.
pub async fn serve(mut rx: ProtocolRx, services: Arc<Services>) {
    let mut calls = JoinSet::new();
    loop {
        tokio::select! {
            incoming = rx.next_stream() => match incoming {
                Some(Incoming::Bi { from, mut send, mut recv }) => {
                    if calls.len() >= MAX_CALLS {
                        reset_bi(&mut send, &mut recv, RESET_BUSY);
                    } else {
                        calls.spawn(serve_call(services.clone(), from, send, recv));
                    }
                }
                Some(Incoming::Uni { mut recv, .. }) => {
                    relay_transport::mux::stop_uni(&mut recv, relay_transport::mux::RESET_BAD_FRAME);
                }
                Some(Incoming::Datagram { .. }) => {}
                None => break,
            },
            Some(_) = calls.join_next(), if !calls.is_empty() => {}
        }
    }
    calls.shutdown().await;
}

/// One call, from its header to its trailer.
async fn serve_call(
    services: Arc<Services>,
    from: NodeId,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let header = match tokio::time::timeout(HEADER_TIMEOUT, read_frame(&mut recv, 0)).await {
        Ok(Ok(Inbound::Header(h))) => h,
        Ok(Err(s)) if s.code == Code::Cancelled => return,
        _ => {
            tracing::debug!(peer = %from.fmt_short(), "rpc: no valid call header");
            abandon_protocol(&mut send, &mut recv);
            return;
        }
    };
    let started = tokio::time::Instant::now();
    let deadline = Deadline::from_wire(started.into_std(), header.deadline_ms, MAX_DEADLINE);
    let Some(entry) = services.get(&header.service) else {
        let s = Status::new(
            Code::Unavailable,
            format!("this node does not serve {}", header.service),
        );
        reply(&mut send, None, &Err(s)).await;
        return;
    };
    if let Some(answer) = builtin(services.node(), &entry, &header.method) {
        reply(&mut send, Some(&answer), &Ok(())).await;
        return;
    }
    if !entry.has_method(&header.method) {
        let s = Status::new(
            Code::Unimplemented,
            format!("{} has no method {}", entry.name, header.method),
        );
        reply(&mut send, None, &Err(s)).await;
        return;
    }
    let until = deadline
        .instant()
        .map_or(started + MAX_DEADLINE, tokio::time::Instant::from_std);
    let permit = match tokio::time::timeout_at(until, entry.admit()).await {
        Ok(Ok(p)) => p,
        Ok(Err(s)) => {
            reply(&mut send, None, &Err(s)).await;
            return;
        }
        Err(_) => {
            let s = Status::new(Code::Timeout, "the deadline passed in the queue");
            reply(&mut send, None, &Err(s)).await;
            return;
        }
    };
    if let Ok(mut s) = entry.stats.lock() {
        s.started();
    }
    let ok = run(&entry, from, header, deadline, until, send, recv).await;
    drop(permit);
    if let Ok(mut s) = entry.stats.lock() {
        s.finished(started.elapsed(), ok);
    };
}

/// Runs the handler; returns whether the call ended `ok`.
async fn run(
    entry: &ServiceEntry,
    from: NodeId,
    header: CallHeader,
    deadline: Deadline,
    until: tokio::time::Instant,
    send: SendStream,
    recv: RecvStream,
) -> bool {
    let stopped = send.stopped();
    let sink = Arc::new(Mutex::new(Some(send)));
    let token = CancellationToken::new();
    let call = ServerCall {
        peer: from,
        header,
        deadline,
        recv,
        sink: sink.clone(),
        token: token.clone(),
    };
    let mut handler = (entry.handler)(call);
    let outcome = tokio::select! {
        r = &mut handler => Some(r),
        () = tokio::time::sleep_until(until) => None,
        _ = stopped => {
            // The caller gave up: nothing more is written.
            token.cancel();
            if let Some(mut s) = sink.lock().await.take() {
                let _ = s.reset(quinn::VarInt::from_u32(RESET_CANCELLED));
            }
            let _ = tokio::time::timeout(CANCEL_GRACE, handler).await;
            return false;
        }
    };
    let (message, result) = match outcome {
        Some(Ok(m)) => (m, Ok(())),
        Some(Err(s)) => (None, Err(s)),
        None => {
            token.cancel();
            let s = Status::new(Code::Timeout, "the deadline passed while the handler ran");
            let taken = sink.lock().await.take();
            if let Some(mut send) = taken {
                reply(&mut send, None, &Err(s)).await;
            }
            let _ = tokio::time::timeout(CANCEL_GRACE, handler).await;
            return false;
        }
    };
    let ok = result.is_ok();
    let taken = sink.lock().await.take();
    if let Some(mut send) = taken {
        reply(&mut send, message.as_deref(), &result).await;
    }
    ok
}

/// Writes an optional final message and the trailer, then finishes.
async fn reply(send: &mut SendStream, message: Option<&[u8]>, result: &Result<(), Status>) {
    let mut buf = Vec::with_capacity(64 + message.map_or(0, <[u8]>::len));
    let result = match message.map(|m| put_message(&mut buf, m)) {
        Some(Err(e)) => Err(e),
        _ => result.clone(),
    };
    if result.is_err() {
        buf.clear();
    }
    put_trailer(&mut buf, &result);
    if write_and_finish(send, &buf).await.is_err() {
        tracing::debug!("rpc: the caller left before the reply");
    }
}
