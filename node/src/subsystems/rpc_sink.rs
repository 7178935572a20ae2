//! The two ends a served call can have: a QUIC stream from a peer, or
//! in-process channels from this node's own caller (a service this node
//! serves itself is called without the network). [`CallRx`] reads the
//! request messages, [`CallTx`] writes the response messages and the
//! status.

use std::future::Future;

use bytes::Bytes;
use quinn::VarInt;
use relay_proto::wire::rpc::{FRAME_HEAD_LEN, OK_TRAILER, RESET_CANCELLED};
use relay_rpc::{Code, Status};
use relay_transport::SendStream;
use tokio::sync::mpsc;

use super::rpc_io::{
    put_message, put_trailer, write_and_finish, write_error, FrameReader, Inbound,
};
use super::rpc_server::MAX_MESSAGE;

/// What a local call's server sends its caller.
#[derive(Debug)]
pub enum LocalFrame {
    /// A response message.
    Message(Bytes),
    /// The status; nothing follows.
    End(Result<(), Status>),
}

/// Where a served call's request messages come from.
#[derive(Debug)]
pub enum CallRx {
    /// A peer's stream.
    Quic(FrameReader),
    /// This node's caller.
    Local(mpsc::Receiver<Bytes>),
}

impl CallRx {
    /// The next request message; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Status> {
        match self {
            Self::Quic(recv) => match recv.next(MAX_MESSAGE).await? {
                Inbound::Message(m) => Ok(Some(m)),
                Inbound::End => Ok(None),
                Inbound::Header(_) | Inbound::Trailer(_) => Err(Status::new(
                    Code::Transport,
                    "unexpected frame from the caller",
                )),
            },
            Self::Local(rx) => Ok(rx.recv().await),
        }
    }
}

/// Where a served call's responses go.
#[derive(Debug)]
pub enum CallTx {
    /// A peer's stream.
    Quic(SendStream),
    /// This node's caller.
    Local(mpsc::Sender<LocalFrame>),
}

fn gone() -> Status {
    Status::new(Code::Cancelled, "the caller gave up")
}

impl CallTx {
    /// Resolves when the caller gives up (stops the stream, or drops its
    /// end of the channel). Not boxed: a served call keeps it in its own
    /// future.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let (quic, local) = match self {
            Self::Quic(send) => (Some(send.stopped()), None),
            Self::Local(tx) => (None, Some(tx.clone())),
        };
        async move {
            if let Some(stopped) = quic {
                let _ = stopped.await;
            } else if let Some(tx) = local {
                tx.closed().await;
            }
        }
    }

    /// Sends one response message.
    pub async fn message(&mut self, item: &[u8]) -> Result<(), Status> {
        match self {
            Self::Quic(send) => {
                // Exactly sized: quinn takes it as it is, not copied.
                let mut buf = Vec::with_capacity(FRAME_HEAD_LEN + item.len());
                put_message(&mut buf, item)?;
                send.write_chunk(Bytes::from(buf))
                    .await
                    .map_err(|e| write_error(&e))
            }
            Self::Local(tx) => tx
                .send(LocalFrame::Message(Bytes::copy_from_slice(item)))
                .await
                .map_err(|_| gone()),
        }
    }

    /// Sends an optional final message and the status, then ends.
    pub async fn reply(&mut self, message: Option<&[u8]>, result: &Result<(), Status>) {
        match self {
            Self::Quic(send) => {
                // Sized for a message and the plain ok trailer, so quinn
                // takes the buffer as it is.
                let message_len = message.map_or(0, |m| FRAME_HEAD_LEN + m.len());
                let mut buf = Vec::with_capacity(message_len + OK_TRAILER.len());
                let failed = match message.map(|m| put_message(&mut buf, m)) {
                    Some(Err(e)) => Some(Err(e)),
                    _ => None,
                };
                let result = failed.as_ref().unwrap_or(result);
                if result.is_err() {
                    buf.clear();
                }
                put_trailer(&mut buf, result);
                if write_and_finish(send, buf).await.is_err() {
                    tracing::debug!("rpc: the caller left before the reply");
                }
            }
            Self::Local(tx) => {
                if let (Some(m), Ok(())) = (message, result) {
                    let _ = tx
                        .send(LocalFrame::Message(Bytes::copy_from_slice(m)))
                        .await;
                }
                let _ = tx.send(LocalFrame::End(result.clone())).await;
            }
        }
    }

    /// The caller gave up: abandon the stream.
    pub fn cancel(&mut self) {
        if let Self::Quic(send) = self {
            let _ = send.reset(VarInt::from_u32(RESET_CANCELLED));
        }
    }
}
