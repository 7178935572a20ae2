//! Calling: the driver around `relay_rpc::CallCore`. A unary call polls
//! its attempts (one QUIC stream each) on the caller's task, feeds their
//! outcomes to the core and performs what the core says: start an
//! attempt, cancel one (its stream is reset, so the server's handler sees
//! the cancellation), or finish. Streaming calls ([`ClientCall`],
//! `super::rpc_client_stream`) go to one picked node, without retry.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use quinn::VarInt;
use relay_proto::wire::rpc::{CallHeader, CallHeaderParts, FRAME_HEAD_LEN, RESET_CANCELLED};
use relay_proto::NodeId;
use relay_rpc::{
    Action, CallConfig, CallCore, Candidate, Code, Deadline, HedgePolicy, Resilience, RetryPolicy,
    SplitMix64, Status, Strategy, MAX_ATTEMPTS,
};
use relay_transport::mux::{Mux, OpenError, HEADER_LEN};
use relay_transport::SendStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use super::rpc_client_stream::{CallReceiver, CallSender, ClientCall};
use super::rpc_client_stream::{RecvHalf, SendHalf};
use super::rpc_io::{put_message, FrameReader, Inbound, RPC};
use super::rpc_server::serve_local;
use super::rpc_service::Services;
use super::rpc_sink::LocalFrame;

/// Timeout of a call whose options name none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How one call is made.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// The whole call's deadline, retries included.
    pub timeout: Duration,
    /// Whether the call may run more than once (retried after it may have
    /// run, hedged).
    pub idempotent: bool,
    /// Metadata pairs.
    pub metadata: Vec<(String, String)>,
    /// Only this node.
    pub node: Option<NodeId>,
    /// How nodes are picked.
    pub strategy: Strategy,
    /// Retries.
    pub retry: RetryPolicy,
    /// Hedging (idempotent calls only).
    pub hedge: Option<HedgePolicy>,
    /// Largest response message accepted.
    pub max_response: usize,
}

impl Default for CallOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            idempotent: false,
            metadata: Vec::new(),
            node: None,
            strategy: Strategy::RoundRobin,
            retry: RetryPolicy::default(),
            hedge: None,
            max_response: relay_proto::wire::rpc::MAX_MESSAGE_LEN,
        }
    }
}

/// Shared resilience state (breakers, throttles, picker, jitter).
pub type SharedResilience = Arc<Mutex<Resilience<SplitMix64>>>;

/// Both halves of a call's stream; each, dropped before the call ended,
/// abandons its half with the cancel code.
#[derive(Debug)]
pub(super) struct CallStream {
    pub(super) send: SendHalf,
    pub(super) recv: RecvHalf,
}

fn open_error(node: NodeId, e: &OpenError) -> Status {
    let code = match e {
        OpenError::ConnectionLost(_) => Code::Transport,
        _ => Code::NoRoute,
    };
    Status::new(code, format!("{}: {e}", node.fmt_short()))
}

/// A call's header, sent at `now` (the deadline's remaining milliseconds
/// are taken at that instant).
pub(super) fn header_parts<'a>(
    service: &'a str,
    method: &'a str,
    options: &'a CallOptions,
    deadline: Deadline,
    now: std::time::Instant,
) -> CallHeaderParts<'a> {
    CallHeaderParts {
        service,
        method,
        deadline_ms: deadline.wire_ms(now),
        idempotent: options.idempotent,
        metadata: &options.metadata,
    }
}

/// A call's header, owned (for a call this node serves itself).
pub(super) fn header(
    service: &str,
    method: &str,
    options: &CallOptions,
    deadline: Deadline,
    now: std::time::Instant,
) -> CallHeader {
    let parts = header_parts(service, method, options, deadline, now);
    CallHeader {
        service: service.to_string(),
        method: method.to_string(),
        deadline_ms: parts.deadline_ms,
        idempotent: parts.idempotent,
        metadata: options.metadata.clone(),
    }
}

/// The bytes that open a call's stream: room for the mux's protocol id,
/// the header and the `first` message, in one buffer of exactly their
/// size (the mux hands it to quinn without a copy).
pub(super) fn request(
    header: CallHeaderParts<'_>,
    first: Option<&[u8]>,
) -> Result<Vec<u8>, Status> {
    let len = HEADER_LEN + header.encoded_len() + first.map_or(0, |m| FRAME_HEAD_LEN + m.len());
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&[0; HEADER_LEN]);
    header
        .encode(&mut buf)
        .map_err(|e| Status::new(Code::CodecEncode, e.to_string()))?;
    if let Some(m) = first {
        put_message(&mut buf, m)?;
    }
    Ok(buf)
}

/// Opens a call on `node` with `request` (see [`request`]).
pub(super) async fn open(
    mux: &Mux,
    node: NodeId,
    request: Vec<u8>,
    finish: bool,
) -> Result<CallStream, Status> {
    // The id, the header and the first message go in one write.
    let (send, recv) = mux
        .open_bi_owned(node, RPC, request)
        .await
        .map_err(|e| open_error(node, &e))?;
    let done = Arc::new(AtomicBool::new(false));
    let mut stream = CallStream {
        send: SendHalf::new(send, done.clone()),
        recv: RecvHalf::new(recv, done),
    };
    if finish {
        let _ = stream.send.stream().finish();
    }
    Ok(stream)
}

/// A unary attempt's stream: both halves abandoned with the cancel code
/// if it is dropped before the trailer came.
struct UnaryStream {
    send: SendStream,
    recv: FrameReader,
    done: bool,
}

impl Drop for UnaryStream {
    fn drop(&mut self) {
        if !self.done {
            let code = VarInt::from_u32(RESET_CANCELLED);
            let _ = self.send.reset(code);
            let _ = self.recv.stream().stop(code);
        }
    }
}

/// One unary attempt: the response message.
async fn unary_attempt(
    mux: Mux,
    node: NodeId,
    request: Result<Vec<u8>, Status>,
    max: usize,
) -> Result<Bytes, Status> {
    let (mut send, recv) = mux
        .open_bi_owned(node, RPC, request?)
        .await
        .map_err(|e| open_error(node, &e))?;
    let _ = send.finish();
    let mut stream = UnaryStream {
        send,
        recv: FrameReader::new(recv),
        done: false,
    };
    let mut message = None;
    loop {
        match stream.recv.next(max).await? {
            Inbound::Message(m) if message.is_none() => message = Some(m),
            Inbound::Trailer(status) => {
                stream.done = true;
                return status.map(|()| message.unwrap_or_default());
            }
            Inbound::End => {
                return Err(Status::new(
                    Code::Transport,
                    "the stream ended without a trailer",
                ))
            }
            Inbound::Message(_) => return Err(more_than_one_message()),
            Inbound::Header(_) => {
                return Err(Status::new(
                    Code::Transport,
                    "unexpected frame in a unary reply",
                ))
            }
        }
    }
}

/// A unary call answered with a second message: the method streams. Not
/// the node's failure, and no retry would change it.
fn more_than_one_message() -> Status {
    Status::new(
        Code::Unimplemented,
        "more than one response message to a unary call (a streaming method? call it as a stream)",
    )
}

/// One unary attempt on this node itself: the service's handler runs
/// in-process, without a stream. Dropping it cancels the call.
async fn local_attempt(
    services: Arc<Services>,
    header: CallHeader,
    body: Bytes,
) -> Result<Bytes, Status> {
    let (req_tx, req_rx) = mpsc::channel(1);
    let _ = req_tx.send(body).await;
    drop(req_tx);
    let (resp_tx, mut resp_rx) = mpsc::channel(LOCAL_QUEUE);
    tokio::spawn(serve_local(services, header, req_rx, resp_tx));
    let mut message = None;
    while let Some(frame) = resp_rx.recv().await {
        match frame {
            LocalFrame::Message(m) if message.is_none() => message = Some(m),
            LocalFrame::Message(_) => return Err(more_than_one_message()),
            LocalFrame::End(result) => return result.map(|()| message.unwrap_or_default()),
        }
    }
    Err(Status::new(
        Code::Transport,
        "the local handler ended without a status",
    ))
}

/// Response messages a local call's server may queue ahead of its caller.
pub const LOCAL_QUEUE: usize = 16;

/// A unary call to one of `candidates` (this node's own services run
/// in-process), with retries and hedging.
#[allow(clippy::too_many_arguments)]
pub async fn call(
    mux: &Mux,
    services: &Arc<Services>,
    env: &SharedResilience,
    candidates: Vec<Candidate>,
    service: &str,
    method: &str,
    body: Bytes,
    options: &CallOptions,
) -> Result<Bytes, Status> {
    let start = Instant::now();
    let deadline = Deadline::after(start.into_std(), options.timeout);
    let config = CallConfig {
        service,
        deadline,
        idempotent: options.idempotent,
        retry: &options.retry,
        hedge: options.hedge,
        strategy: options.strategy,
    };
    let lock = || env.lock().unwrap_or_else(|e| e.into_inner());
    let mut core = CallCore::new(start.into_std(), config, candidates, &mut lock());
    // Attempts are polled here, on the caller's task (no spawn, no
    // cross-thread wake-up), each in the slot of its number; dropping one
    // cancels it (its stream is reset).
    let mut running: [Option<Attempt>; MAX_ATTEMPTS as usize] = Default::default();
    // The answer: a success ends the call, so there is at most one.
    let mut answer: Option<(u32, Bytes)> = None;
    // The clock is read once per turn: when the call starts, and when an
    // attempt ends or the timer fires.
    let mut now = start.into_std();
    loop {
        let action = core.poll(now, &mut lock());
        match action {
            Some(Action::Start { attempt, node }) => {
                let fut: Attempt = if node == services.node() {
                    let h = header(service, method, options, deadline, now);
                    Box::pin(local_attempt(services.clone(), h, body.clone()))
                } else {
                    let h = header_parts(service, method, options, deadline, now);
                    Box::pin(unary_attempt(
                        mux.clone(),
                        node,
                        request(h, Some(&body)),
                        options.max_response,
                    ))
                };
                // The core starts at most MAX_ATTEMPTS, numbered from 0.
                if let Some(slot) = running.get_mut(attempt as usize) {
                    *slot = Some(fut);
                }
                continue;
            }
            Some(Action::Cancel { attempt }) => {
                if let Some(slot) = running.get_mut(attempt as usize) {
                    *slot = None;
                }
                continue;
            }
            Some(Action::Done(result)) => {
                return result.map(|a| {
                    answer
                        .filter(|(attempt, _)| *attempt == a)
                        .map(|(_, m)| m)
                        .unwrap_or_default()
                });
            }
            None => {}
        }
        let wake = core.poll_timeout().map_or(
            start + crate::subsystems::rpc_server::MAX_DEADLINE,
            Instant::from_std,
        );
        let next = std::future::poll_fn(|cx| {
            for (attempt, slot) in (0u32..).zip(running.iter_mut()) {
                let Some(fut) = slot else { continue };
                if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                    *slot = None;
                    return Poll::Ready((attempt, r));
                }
            }
            Poll::Pending
        });
        // Biased, the attempts first: the deadline's timer is registered
        // only when no attempt is ready.
        tokio::select! {
            biased;
            (attempt, result) = next => {
                let result = result.map(|m| answer = Some((attempt, m)));
                now = Instant::now().into_std();
                core.handle_result(now, attempt, result, &mut lock());
            }
            () = tokio::time::sleep_until(wake) => now = Instant::now().into_std(),
        }
    }
}

/// One attempt in flight.
type Attempt = Pin<Box<dyn Future<Output = Result<Bytes, Status>> + Send>>;

/// The status of a call whose deadline passed.
pub(super) fn timeout() -> Status {
    Status::new(Code::Timeout, "the call's deadline passed")
}
