//! Ledger replication on the mux (protocol id [`LEDGER`]): each side opens
//! one unidirectional stream to each connected peer (per connection) and
//! writes the replica's messages on it, each a frame of a u32 big-endian
//! length and an encoded `LedgerMsg` (at most `MAX_MSG` bytes). One writer
//! task per peer; one reader task per incoming stream, which hands whole
//! frames to the driver. A frame over the limit resets the stream with
//! [`RESET_BAD_FRAME`]; a bidirectional stream is refused the same way.

use std::time::Duration;

use relay_proto::frame_stream::{encode_frame, FrameDecoder};
use relay_proto::ledger::wire::MAX_MSG;
use relay_transport::mux::{stop_uni, Mux, ProtocolId, RESET_BAD_FRAME};
use relay_transport::{NodeId, RecvStream};
use tokio::sync::mpsc;

/// The ledger protocol's id on the mux.
pub const LEDGER: ProtocolId = ProtocolId::new(2);
/// Messages queued for one peer's writer.
pub const WRITER_QUEUE: usize = 32;
/// How long the driver waits for room in a peer's queue before it treats
/// the peer as gone (it is re-synced on its next connection).
pub const WRITE_STALL: Duration = Duration::from_secs(10);
/// Bytes read from a stream at a time.
const READ_CHUNK: usize = 64 * 1024;

/// A message from a peer, or the end of one of our writers.
#[derive(Debug)]
pub enum WireEvent {
    /// A whole frame from `from`.
    Message {
        /// The sender.
        from: NodeId,
        /// The encoded message.
        bytes: Vec<u8>,
    },
    /// Our writer to `peer` for connection `generation` failed.
    WriterFailed {
        /// The peer.
        peer: NodeId,
        /// The connection generation the writer served.
        generation: u64,
    },
}

/// Writes what arrives on `rx` to `peer` on one stream; reports a failure
/// on `events`.
pub async fn write_to_peer(
    mux: Mux,
    peer: NodeId,
    generation: u64,
    mut rx: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<WireEvent>,
) {
    let failed = |why: String| {
        tracing::debug!(peer = %peer.fmt_short(), why, "ledger writer stopped");
        events.try_send(WireEvent::WriterFailed { peer, generation })
    };
    let Some(first) = rx.recv().await else {
        return;
    };
    let mut send = match mux.open_uni(peer, LEDGER).await {
        Ok(s) => s,
        Err(e) => {
            let _ = failed(e.to_string());
            return;
        }
    };
    let mut next = Some(first);
    while let Some(msg) = next {
        let mut frame = Vec::with_capacity(msg.len() + 4);
        if let Err(e) = encode_frame(&msg, &mut frame) {
            let _ = failed(e.to_string());
            return;
        }
        if let Err(e) = send.write_all(&frame).await {
            let _ = failed(e.to_string());
            return;
        }
        next = rx.recv().await;
    }
    let _ = send.finish();
}

/// Reads frames from `recv` (a stream `from` opened) until it ends.
pub async fn read_from_peer(from: NodeId, mut recv: RecvStream, events: mpsc::Sender<WireEvent>) {
    let mut decoder = FrameDecoder::new(MAX_MSG);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match recv.read(&mut buf).await {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(peer = %from.fmt_short(), error = %e, "ledger stream ended");
                return;
            }
        };
        decoder.push(&buf[..n]);
        loop {
            match decoder.next_frame() {
                Ok(Some(bytes)) => {
                    if events
                        .send(WireEvent::Message { from, bytes })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(peer = %from.fmt_short(), error = %e, "bad ledger frame");
                    stop_uni(&mut recv, RESET_BAD_FRAME);
                    return;
                }
            }
        }
    }
}
