//! The `rpc-call` frame stream (`GET /v1/stream/rpc-call` + upgrade): a
//! peer process makes one streaming nRPC call (client streaming, duplex,
//! server streaming) through this node (docs/LOCAL_API.md, "Streaming
//! calls from a peer process").
//!
//! The client's first frame is JSON, `{"op":"call","service","method",...}`
//! (see [`parse_opening`]); the node opens the call (`Rpc::open`: one
//! picked node, no retry) and answers `{"ok":true,"node_id"}` or
//! `{"error":{kind,detail}}` (and closes). Then binary frames both ways
//! (`relay_proto::wire::rpc_call`): `message` and `finish` from the
//! process, `message` and `end` from the node. The request and response
//! directions flow independently (duplex), each with one message in
//! flight: the node reads the process's next frame only once the previous
//! request message is written to the call's stream (so a server that does
//! not read holds the process back), and reads the next response only once
//! the previous one is written to the process. When the process closes the
//! connection before the `end`, the call is cancelled.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use relay_proto::wire::rpc::{Code, Trailer};
use relay_proto::wire::rpc_call::{CallFrame, CallFrameError};
use relay_rpc::Status;
use serde_json::json;

use super::frames::{FrameStream, FrameStreamError};
use super::router::StreamService;
use super::rpc_open::{parse_opening, Calling};
use crate::subsystem::BoxFuture;
use crate::subsystems::rpc::Rpc;
use crate::subsystems::rpc_client::{CallReceiver, CallSender};

/// The `rpc-call` stream service.
#[derive(Debug, Clone)]
pub struct RpcCall(pub Rpc);

/// Why a calling connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnEnd {
    #[error(transparent)]
    Stream(#[from] FrameStreamError),
    #[error(transparent)]
    Frame(#[from] CallFrameError),
    /// A frame the process may not send (a node's frame, or a message
    /// after `finish`).
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// The process left before the call ended (the call is cancelled).
    #[error("cancelled: the process closed the connection")]
    Left,
}

type Sending = Pin<Box<dyn Future<Output = (CallSender, Result<(), Status>)> + Send>>;
type Receiving =
    Pin<Box<dyn Future<Output = (CallReceiver, Result<Option<Bytes>, Status>)> + Send>>;

fn receive(mut rx: CallReceiver) -> Receiving {
    Box::pin(async move {
        let r = rx.recv().await;
        (rx, r)
    })
}

fn send(mut tx: CallSender, message: Bytes) -> Sending {
    Box::pin(async move {
        let r = tx.send(&message).await;
        (tx, r)
    })
}

async fn sent(sending: &mut Option<Sending>) -> (CallSender, Result<(), Status>) {
    match sending {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

fn frame(f: &CallFrame<'_>) -> Result<Vec<u8>, ConnEnd> {
    let mut out = Vec::new();
    f.encode(&mut out)?;
    Ok(out)
}

/// Moves the call's messages until it ends: the `end` frame sent, or the
/// connection ended.
async fn pump(stream: &mut FrameStream, tx: CallSender, rx: CallReceiver) -> Result<(), ConnEnd> {
    // The request side: idle (`idle`), or writing one message (`sending`).
    let mut idle = Some(tx);
    let mut sending: Option<Sending> = None;
    let mut finished = false;
    let mut receiving = receive(rx);
    loop {
        // Nothing is queued now, so `recv` below only waits for input
        // (cancel-safe).
        stream.flush().await?;
        tokio::select! {
            (tx, result) = sent(&mut sending) => {
                sending = None;
                if let Err(e) = result {
                    // The response side ends the call with its status.
                    tracing::debug!(error = %e, "rpc-call: a request was not sent");
                }
                let mut tx = tx;
                if finished {
                    tx.finish();
                }
                idle = Some(tx);
            }
            (rx, result) = &mut receiving => match result {
                Ok(Some(m)) => {
                    stream.queue(&frame(&CallFrame::Message(&m))?)?;
                    receiving = receive(rx);
                }
                Ok(None) => {
                    stream.queue(&frame(&CallFrame::End(Trailer::new(Code::Ok, "")))?)?;
                    stream.flush().await?;
                    return Ok(());
                }
                Err(s) => {
                    stream.queue(&frame(&CallFrame::End(s.to_trailer()))?)?;
                    stream.flush().await?;
                    return Ok(());
                }
            },
            read = stream.recv(), if sending.is_none() => {
                let Some(payload) = read? else { return Err(ConnEnd::Left) };
                match CallFrame::decode(&payload)? {
                    CallFrame::Send(_) if finished => {
                        return Err(ConnEnd::Protocol("a message after finish"))
                    }
                    CallFrame::Send(body) => {
                        if let Some(tx) = idle.take() {
                            sending = Some(send(tx, Bytes::copy_from_slice(body)));
                        }
                    }
                    CallFrame::Finish => {
                        finished = true;
                        if let Some(tx) = idle.as_mut() {
                            tx.finish();
                        }
                    }
                    CallFrame::Message(_) | CallFrame::End(_) => {
                        return Err(ConnEnd::Protocol("a node's frame from the process"))
                    }
                }
            }
        }
    }
}

async fn call_conn(rpc: Rpc, mut stream: FrameStream) {
    let first = match stream.recv().await {
        Ok(Some(f)) => f,
        _ => return,
    };
    let (open, options) = match parse_opening(&first, Calling::One) {
        Ok(x) => x,
        Err(e) => {
            let _ = stream.send_error(e.kind(), &e.detail()).await;
            return;
        }
    };
    let call = match rpc.open(&open.service, &open.method, &options).await {
        Ok(call) => call,
        Err(s) => {
            let _ = stream.send_error(&s.kind, &s.detail).await;
            return;
        }
    };
    let ok = json!({"ok": true, "node_id": call.node().to_string()});
    if stream
        .send(&serde_json::to_vec(&ok).unwrap_or_default())
        .await
        .is_err()
    {
        return;
    }
    let (tx, rx) = call.into_split();
    match pump(&mut stream, tx, rx).await {
        Ok(()) => {
            let _ = stream.close().await;
        }
        Err(e) => tracing::debug!(
            service = %open.service,
            error = %e,
            "rpc-call: the calling connection ended before the call"
        ),
    }
}

impl StreamService for RpcCall {
    fn serve(&self, stream: FrameStream) -> BoxFuture<'static, ()> {
        Box::pin(call_conn(self.0.clone(), stream))
    }
}
