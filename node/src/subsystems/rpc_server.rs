//! Serving nRPC calls: the handler that takes the protocol's streams from
//! the mux, and one task per call that reads the call header, answers the
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
use relay_proto::wire::rpc::CallHeader;
use relay_proto::NodeId;
use relay_rpc::{Code, Deadline, Status};
use relay_transport::mux::{
    reset_bi, stop_uni, ProtocolRx, StreamHandler, RESET_BAD_FRAME, RESET_BUSY,
};
use relay_transport::{Incoming, RecvStream, SendStream};
use tokio::sync::{mpsc, Mutex, Semaphore};
use tokio_util::sync::CancellationToken;

use super::rpc_auth::{authorize, take_token};
use super::rpc_builtin::builtin;
use super::rpc_io::{abandon_protocol, now_or_never, FrameReader, Inbound};
use super::rpc_service::{ServiceEntry, Services};
use super::rpc_sink::{CallRx, CallTx, LocalFrame};

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
    recv: Option<CallRx>,
    sink: Arc<Mutex<Option<CallTx>>>,
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

    /// The next request message; `None` once the caller finished sending
    /// (or after [`Self::take_requests`]).
    pub async fn recv(&mut self) -> Result<Option<Bytes>, Status> {
        let Some(recv) = self.recv.as_mut() else {
            return Ok(None);
        };
        next_request(recv, &self.token).await
    }

    /// Takes the request side out of the call, to read it while sending
    /// (duplex); `None` when taken already.
    pub fn take_requests(&mut self) -> Option<Requests> {
        Some(Requests {
            recv: self.recv.take()?,
            token: self.token.clone(),
        })
    }

    /// Sends one response message now (server streaming, duplex).
    pub async fn send(&self, item: &[u8]) -> Result<(), Status> {
        if self.token.is_cancelled() {
            return Err(cancelled());
        }
        // Biased, the write first: one that completes at once never
        // registers with the token.
        tokio::select! {
            biased;
            r = async {
                let mut sink = self.sink.lock().await;
                sink.as_mut().ok_or_else(cancelled)?.message(item).await
            } => r,
            () = self.token.cancelled() => Err(cancelled()),
        }
    }
}

/// The request messages of a call, taken from its [`ServerCall`].
#[derive(Debug)]
pub struct Requests {
    recv: CallRx,
    token: CancellationToken,
}

impl Requests {
    /// The next request message; `None` once the caller finished sending.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Status> {
        next_request(&mut self.recv, &self.token).await
    }
}

/// The next request message, unless the call is cancelled first. A
/// message already there is taken without registering with the token.
async fn next_request(
    recv: &mut CallRx,
    token: &CancellationToken,
) -> Result<Option<Bytes>, Status> {
    if token.is_cancelled() {
        return Err(cancelled());
    }
    tokio::select! {
        biased;
        r = recv.next() => r,
        () = token.cancelled() => Err(cancelled()),
    }
}

fn cancelled() -> Status {
    Status::new(Code::Cancelled, "the call was cancelled")
}

/// Calls being served from peers' streams: at most [`MAX_CALLS`] at once,
/// all ended when the protocol's registration ends (the mux closed or the
/// subsystem stopped).
#[derive(Debug, Clone)]
pub struct Calls {
    slots: Arc<Semaphore>,
    stop: CancellationToken,
}

impl Default for Calls {
    fn default() -> Self {
        Self {
            slots: Arc::new(Semaphore::new(MAX_CALLS)),
            stop: CancellationToken::new(),
        }
    }
}

/// Takes the rpc protocol's streams as the mux routes them: each
/// bidirectional stream is a call, served on a task of its own (spawned at
/// once, no queue or loop between the mux and the call). Past
/// [`MAX_CALLS`] a stream is handed back, and the mux resets it with its
/// `busy` code; a unidirectional stream is refused as a bad frame.
pub fn stream_handler(services: Arc<Services>, calls: Calls) -> StreamHandler {
    // On a runtime of one thread a task of its own gains a call nothing
    // (no other worker could run it meanwhile): its first poll runs at once.
    let first_poll_here = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
    Arc::new(move |incoming: Incoming| match incoming {
        Incoming::Bi { from, send, recv } => {
            let Ok(slot) = calls.slots.clone().try_acquire_owned() else {
                return Err(Incoming::Bi { from, send, recv });
            };
            let services = services.clone();
            let stop = calls.stop.clone();
            // Boxed once here: the call's future is several KiB, and a
            // task would otherwise copy it whole on every change of its
            // stage (spawn, completion).
            let mut call = Box::pin(async move {
                tokio::select! {
                    biased;
                    () = serve_call(services, from, send, recv) => {}
                    () = stop.cancelled() => {}
                }
                drop(slot);
            });
            // On one thread the call's first poll runs here, on the
            // connection's task: a call whose request came with its stream
            // and whose handler answers at once is over without a task of
            // its own. One that waits goes on as a task, which polls it
            // again with its own waker. With more workers the call is a
            // task from the start, so another worker can run it while this
            // connection's next streams are taken.
            if !first_poll_here || now_or_never(call.as_mut()).is_none() {
                tokio::spawn(call);
            }
            Ok(())
        }
        Incoming::Uni { mut recv, .. } => {
            stop_uni(&mut recv, RESET_BAD_FRAME);
            Ok(())
        }
        Incoming::Datagram { .. } => Ok(()),
    })
}

/// Holds the rpc protocol's registration until the mux closes (its
/// streams go to [`stream_handler`]; datagrams are not used), then ends
/// every call still served, as does dropping it.
pub async fn serve(mut rx: ProtocolRx, calls: Calls) {
    let _stop = calls.stop.drop_guard();
    while let Some(incoming) = rx.next().await {
        match incoming {
            Incoming::Bi {
                mut send, mut recv, ..
            } => reset_bi(&mut send, &mut recv, RESET_BUSY),
            Incoming::Uni { mut recv, .. } => stop_uni(&mut recv, RESET_BAD_FRAME),
            Incoming::Datagram { .. } => {}
        }
    }
}

/// One call, from its header to its trailer.
async fn serve_call(services: Arc<Services>, from: NodeId, mut send: SendStream, recv: RecvStream) {
    let mut recv = FrameReader::new(recv);
    // The header usually came with the stream: no timer then.
    let header = match now_or_never(recv.next(0)) {
        Some(read) => Ok(read),
        None => tokio::time::timeout(HEADER_TIMEOUT, recv.next(0)).await,
    };
    let header = match header {
        Ok(Ok(Inbound::Header(h))) => h,
        Ok(Err(s)) if s.code == Code::Cancelled => return,
        _ => {
            tracing::debug!(peer = %from.fmt_short(), "rpc: no valid call header");
            abandon_protocol(&mut send, recv.stream());
            return;
        }
    };
    dispatch(
        &services,
        from,
        header,
        CallRx::Quic(recv),
        CallTx::Quic(send),
    )
    .await;
}

/// One call of this node's own caller (in-process, no stream).
pub async fn serve_local(
    services: Arc<Services>,
    header: CallHeader,
    recv: mpsc::Receiver<Bytes>,
    send: mpsc::Sender<LocalFrame>,
) {
    let me = services.node();
    dispatch(
        &services,
        me,
        header,
        CallRx::Local(recv),
        CallTx::Local(send),
    )
    .await;
}

/// A call whose header is read: answers it.
async fn dispatch(
    services: &Services,
    from: NodeId,
    header: CallHeader,
    recv: CallRx,
    mut send: CallTx,
) {
    let started = tokio::time::Instant::now();
    let deadline = Deadline::from_wire(started.into_std(), header.deadline_ms, MAX_DEADLINE);
    let Some(entry) = services.get(&header.service) else {
        send.reply(None, &Err(Status::not_served(&header.service)))
            .await;
        return;
    };
    let mut header = header;
    let token = take_token(&mut header.metadata);
    if let Some(answer) = builtin(services.node(), &entry, &header.method) {
        send.reply(Some(&answer), &Ok(())).await;
        return;
    }
    if entry.options.token_required {
        let now = crate::revocations_set::unix_ms();
        let revocations = services.revocations();
        let node = services.node();
        if let Err(s) = authorize(node, from, &entry.name, token.as_deref(), now, revocations) {
            send.reply(None, &Err(s)).await;
            return;
        }
    }
    if !entry.has_method(&header.method) {
        let s = Status::new(
            Code::Unimplemented,
            format!("{} has no method {}", entry.name, header.method),
        );
        send.reply(None, &Err(s)).await;
        return;
    }
    let until = deadline
        .instant()
        .map_or(started + MAX_DEADLINE, tokio::time::Instant::from_std);
    let admitted = match entry.try_admit() {
        Some(p) => Ok(Ok(p)),
        None => tokio::time::timeout_at(until, entry.admit()).await,
    };
    let permit = match admitted {
        Ok(Ok(p)) => p,
        Ok(Err(s)) => {
            send.reply(None, &Err(s)).await;
            return;
        }
        Err(_) => {
            let s = Status::new(Code::Timeout, "the deadline passed in the queue");
            send.reply(None, &Err(s)).await;
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
    send: CallTx,
    recv: CallRx,
) -> bool {
    // Not boxed: it stays in this call's future (already on the heap).
    let stopped = send.stopped();
    let sink = Arc::new(Mutex::new(Some(send)));
    let token = CancellationToken::new();
    let call = ServerCall {
        peer: from,
        header,
        deadline,
        recv: Some(recv),
        sink: sink.clone(),
        token: token.clone(),
    };
    let mut handler = (entry.handler)(call);
    // A handler done at its first poll (the request was already read)
    // ends the call without the deadline's timer.
    let outcome = match now_or_never(&mut handler) {
        Some(r) => Some(r),
        None => tokio::select! {
            biased;
            r = &mut handler => Some(r),
            () = tokio::time::sleep_until(until) => None,
            _ = stopped => {
                // The caller gave up: nothing more is written.
                token.cancel();
                if let Some(mut s) = sink.lock().await.take() {
                    s.cancel();
                }
                let _ = tokio::time::timeout(CANCEL_GRACE, handler).await;
                return false;
            }
        },
    };
    let (message, result) = match outcome {
        Some(Ok(m)) => (m, Ok(())),
        Some(Err(s)) => (None, Err(s)),
        None => {
            token.cancel();
            let s = Status::new(Code::Timeout, "the deadline passed while the handler ran");
            let taken = sink.lock().await.take();
            if let Some(mut send) = taken {
                send.reply(None, &Err(s)).await;
            }
            let _ = tokio::time::timeout(CANCEL_GRACE, handler).await;
            return false;
        }
    };
    let ok = result.is_ok();
    let taken = sink.lock().await.take();
    if let Some(mut send) = taken {
        send.reply(message.as_deref(), &result).await;
    }
    ok
}
