//! A streaming call in progress (server streaming, client streaming,
//! duplex): [`ClientCall`], which [`ClientCall::into_split`] splits into
//! a [`CallSender`] and a [`CallReceiver`] so requests can be written
//! while responses are read (each half on its own task, neither operation
//! needing to be cancelled to let the other run).
//!
//! Each half, dropped before the call's trailer arrived, abandons its half
//! of the stream with the cancel code, so dropping either cancels the
//! call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use quinn::VarInt;
use relay_proto::wire::rpc::RESET_CANCELLED;
use relay_proto::NodeId;
use relay_rpc::{Code, Deadline, Status};
use relay_transport::mux::Mux;
use relay_transport::{RecvStream, SendStream};
use tokio::time::Instant;

use super::rpc_client::{header_parts, open, request, timeout, CallOptions};
use super::rpc_io::{now_or_never, put_message, write_error, FrameReader, Inbound};

/// The send half of a call's stream; `done` is shared with the receive
/// half and set once the trailer arrived.
#[derive(Debug)]
pub(super) struct SendHalf {
    send: SendStream,
    done: Arc<AtomicBool>,
}

impl SendHalf {
    pub(super) fn new(send: SendStream, done: Arc<AtomicBool>) -> Self {
        Self { send, done }
    }

    pub(super) fn stream(&mut self) -> &mut SendStream {
        &mut self.send
    }
}

impl Drop for SendHalf {
    fn drop(&mut self) {
        if !self.done.load(Ordering::Acquire) {
            let _ = self.send.reset(VarInt::from_u32(RESET_CANCELLED));
        }
    }
}

/// The receive half of a call's stream.
#[derive(Debug)]
pub(super) struct RecvHalf {
    recv: FrameReader,
    done: Arc<AtomicBool>,
}

impl RecvHalf {
    pub(super) fn new(recv: RecvStream, done: Arc<AtomicBool>) -> Self {
        Self {
            recv: FrameReader::new(recv),
            done,
        }
    }

    pub(super) fn frames(&mut self) -> &mut FrameReader {
        &mut self.recv
    }

    /// The trailer arrived: the call ended, nothing is abandoned any more.
    pub(super) fn set_done(&self) {
        self.done.store(true, Ordering::Release);
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        if !self.is_done() {
            let _ = self.recv.stream().stop(VarInt::from_u32(RESET_CANCELLED));
        }
    }
}

/// A streaming call in progress (server streaming, client streaming or
/// duplex). Dropping it before the trailer cancels the call.
#[derive(Debug)]
pub struct ClientCall {
    tx: CallSender,
    rx: CallReceiver,
    node: NodeId,
}

/// The request side of a split [`ClientCall`].
#[derive(Debug)]
pub struct CallSender {
    send: SendHalf,
    deadline: Instant,
    finished: bool,
}

/// The response side of a split [`ClientCall`].
#[derive(Debug)]
pub struct CallReceiver {
    recv: RecvHalf,
    deadline: Instant,
    max: usize,
}

impl ClientCall {
    /// Opens a call of `service.method` on `node`.
    pub async fn open(
        mux: &Mux,
        node: NodeId,
        service: &str,
        method: &str,
        options: &CallOptions,
    ) -> Result<Self, Status> {
        let now = Instant::now();
        let deadline = now + options.timeout;
        let h = header_parts(
            service,
            method,
            options,
            Deadline::at(deadline.into_std()),
            now.into_std(),
        );
        let stream = tokio::time::timeout_at(deadline, open(mux, node, request(h, None)?, false))
            .await
            .map_err(|_| timeout())??;
        Ok(Self {
            tx: CallSender {
                send: stream.send,
                deadline,
                finished: false,
            },
            rx: CallReceiver {
                recv: stream.recv,
                deadline,
                max: options.max_response,
            },
            node,
        })
    }

    /// The node serving the call.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Sends one request message.
    pub async fn send(&mut self, item: &[u8]) -> Result<(), Status> {
        self.tx.send(item).await
    }

    /// Ends the request side (the server's `recv` returns `None`).
    pub fn finish(&mut self) {
        self.tx.finish();
    }

    /// The next response message; `None` after an `ok` trailer.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, Status> {
        self.rx.recv().await
    }

    /// The two sides, to send and receive at once (duplex).
    pub fn into_split(self) -> (CallSender, CallReceiver) {
        (self.tx, self.rx)
    }
}

impl CallSender {
    /// Sends one request message.
    pub async fn send(&mut self, item: &[u8]) -> Result<(), Status> {
        let mut buf = Vec::with_capacity(item.len() + 5);
        put_message(&mut buf, item)?;
        tokio::time::timeout_at(self.deadline, self.send.stream().write_all(&buf))
            .await
            .map_err(|_| timeout())?
            .map_err(|e| write_error(&e))
    }

    /// Ends the request side (the server's `recv` returns `None`).
    pub fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            let _ = self.send.stream().finish();
        }
    }
}

impl CallReceiver {
    /// The next response message; `None` after an `ok` trailer.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, Status> {
        if self.recv.is_done() {
            return Ok(None);
        }
        // A frame already read ahead needs no timer (a read is cancel-safe).
        let frame = match now_or_never(self.recv.frames().next(self.max)) {
            Some(frame) => frame?,
            None => tokio::time::timeout_at(self.deadline, self.recv.frames().next(self.max))
                .await
                .map_err(|_| timeout())??,
        };
        match frame {
            Inbound::Message(m) => Ok(Some(m)),
            Inbound::Trailer(status) => {
                self.recv.set_done();
                status.map(|()| None)
            }
            Inbound::End => Err(Status::new(
                Code::Transport,
                "the stream ended without a trailer",
            )),
            Inbound::Header(_) => Err(Status::new(Code::Transport, "unexpected frame")),
        }
    }
}
