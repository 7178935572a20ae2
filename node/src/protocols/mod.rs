//! Stream protocols spoken over a peer connection, and the dispatcher that
//! routes each incoming bidirectional stream to one of them.
//!
//! The first byte of every bidirectional stream names its protocol
//! ([`PROTO_PING`], ...). The dispatcher reads that byte (bounded by
//! [`FIRST_BYTE_TIMEOUT`]), then hands the rest of the stream to the
//! registered [`StreamProtocol`]. An unknown byte resets the stream with
//! [`RESET_UNKNOWN_PROTOCOL`]. Higher layers (channels, RPC) register their
//! own bytes with [`Dispatcher::register`].

pub mod ping;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use relay_transport::{Incoming, NodeId, RecvStream, SendStream, StreamError, Transport};

use crate::subsystem::BoxFuture;

/// Protocol byte: ping / echo ([`ping`]).
pub const PROTO_PING: u8 = 0x01;

/// Stream reset code: the protocol byte is not registered.
pub const RESET_UNKNOWN_PROTOCOL: u32 = 0x10;
/// Stream reset code: a frame was malformed or too large.
pub const RESET_BAD_FRAME: u32 = 0x11;

/// How long a peer may take to send the protocol byte of a new stream.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// One stream protocol: serves the rest of a stream after its protocol byte.
pub trait StreamProtocol: Send + Sync + 'static {
    /// Serves one incoming stream from `from`.
    fn serve(&self, from: NodeId, send: SendStream, recv: RecvStream) -> BoxFuture<'static, ()>;
}

/// Routes incoming bidirectional streams by their first byte.
#[derive(Clone, Default)]
pub struct Dispatcher {
    protocols: HashMap<u8, Arc<dyn StreamProtocol>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<_> = self.protocols.keys().collect();
        ids.sort();
        f.debug_struct("Dispatcher")
            .field("protocols", &ids)
            .finish()
    }
}

impl Dispatcher {
    /// A dispatcher with no protocols.
    pub fn new() -> Self {
        Self::default()
    }

    /// A dispatcher with the built-in protocols (ping).
    pub fn with_builtins() -> Self {
        let mut d = Self::new();
        d.register(PROTO_PING, Arc::new(ping::PingProtocol));
        d
    }

    /// Registers `protocol` under `id`; returns the protocol it replaced.
    pub fn register(
        &mut self,
        id: u8,
        protocol: Arc<dyn StreamProtocol>,
    ) -> Option<Arc<dyn StreamProtocol>> {
        self.protocols.insert(id, protocol)
    }

    /// Whether `id` is registered.
    pub fn is_registered(&self, id: u8) -> bool {
        self.protocols.contains_key(&id)
    }

    /// Reads the protocol byte of an incoming stream and serves it.
    pub async fn dispatch(&self, from: NodeId, mut send: SendStream, mut recv: RecvStream) {
        let mut id = [0u8; 1];
        match tokio::time::timeout(FIRST_BYTE_TIMEOUT, recv.read_exact(&mut id)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(peer = %from.fmt_short(), error = %e, "stream ended before its protocol byte");
                reset(&mut send, &mut recv, RESET_BAD_FRAME);
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %from.fmt_short(), "no protocol byte in time");
                reset(&mut send, &mut recv, RESET_BAD_FRAME);
                return;
            }
        }
        match self.protocols.get(&id[0]) {
            Some(protocol) => protocol.serve(from, send, recv).await,
            None => {
                tracing::debug!(peer = %from.fmt_short(), protocol = id[0], "unknown protocol byte");
                reset(&mut send, &mut recv, RESET_UNKNOWN_PROTOCOL);
            }
        }
    }
}

/// Routes everything peers open to `dispatcher` until the endpoint closes:
/// each bidirectional stream is served on its own task; unidirectional
/// streams (no protocol uses them yet) are stopped; datagrams are dropped.
///
/// Stream tasks belong to this future: dropping it (shutdown) ends them.
pub async fn serve_incoming(transport: Transport, dispatcher: Dispatcher) {
    let dispatcher = Arc::new(dispatcher);
    let mut streams = tokio::task::JoinSet::new();
    while let Some(incoming) = transport.accept().await {
        while streams.try_join_next().is_some() {}
        match incoming {
            Incoming::Bi { from, send, recv } => {
                let dispatcher = dispatcher.clone();
                streams.spawn(async move { dispatcher.dispatch(from, send, recv).await });
            }
            Incoming::Uni { from, mut recv } => {
                tracing::debug!(peer = %from.fmt_short(), "no protocol uses uni streams; stopping");
                let _ = recv.stop(quinn::VarInt::from_u32(RESET_UNKNOWN_PROTOCOL));
            }
            Incoming::Datagram { from, data } => {
                tracing::trace!(peer = %from.fmt_short(), len = data.len(), "datagram ignored");
            }
        }
    }
}

/// Opens a bidirectional stream to `peer` and writes the protocol byte.
pub async fn open_stream(
    transport: &Transport,
    peer: NodeId,
    id: u8,
) -> Result<(SendStream, RecvStream), StreamError> {
    let (mut send, recv) = transport.open_bi(peer).await?;
    send.write_all(&[id])
        .await
        .map_err(|e| StreamError::ConnectionLost(e.to_string()))?;
    Ok((send, recv))
}

/// Abandons both halves of a stream with `code`.
pub fn reset(send: &mut SendStream, recv: &mut RecvStream, code: u32) {
    let code = quinn::VarInt::from_u32(code);
    let _ = send.reset(code);
    let _ = recv.stop(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_register_ping() {
        let d = Dispatcher::with_builtins();
        assert!(d.is_registered(PROTO_PING));
        assert!(!d.is_registered(0x7f));
        assert_eq!(format!("{d:?}"), "Dispatcher { protocols: [1] }");
    }
}
