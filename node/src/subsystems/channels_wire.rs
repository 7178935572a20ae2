//! Channel frames on the mux (protocol id [`CHANNELS`]).
//!
//! Reliable frames: each node opens one unidirectional stream to each peer
//! it has frames for (per connection) and writes them as length-prefixed
//! frames (`relay_proto::frame_stream`: u32 big-endian length, then the
//! encoded `ChannelFrame`), everything buffered in one write
//! (see [`super::channels_outbox`]: a busy peer's frames wait, in order,
//! never dropped). Every
//! link's frames share that stream, so they stay in order. Best-effort
//! deliveries go as datagrams, one frame each; a datagram that cannot be
//! sent is dropped and counted. A frame over the limit, or one that does
//! not decode, resets the stream with [`RESET_BAD_FRAME`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use relay_proto::frame_stream::FrameDecoder;
use relay_proto::wire::channel::{ChannelFrame, MAX_FRAME_LEN};
use relay_transport::mux::{stop_uni, Mux, ProtocolId, RESET_BAD_FRAME};
use relay_transport::{NodeId, RecvStream};
use tokio::sync::{mpsc, Notify};

use super::channels_outbox::Outbox;

/// The channels protocol's id on the mux.
pub const CHANNELS: ProtocolId = ProtocolId::new(3);
/// Bytes read from a stream at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The wire's counters.
#[derive(Debug, Default)]
pub struct WireCounters {
    /// Frames received (streams and datagrams).
    pub frames_in: AtomicU64,
    /// Frames sent (streams and datagrams).
    pub frames_out: AtomicU64,
    /// Best-effort datagrams that could not be sent.
    pub datagrams_dropped: AtomicU64,
    /// Frames that did not decode.
    pub bad_frames: AtomicU64,
}

/// Why a writer stopped.
#[derive(Debug)]
pub struct WriterEnded {
    /// The peer.
    pub peer: NodeId,
    /// The connection generation it served (0: not known when opened).
    pub generation: u64,
}

/// Writes `outbox`'s frames to `peer` on one stream (opened, and the peer
/// dialed if needed, at the first frame), everything buffered in one write;
/// wakes the driver (`wake`) when it held frames back for room. Finishes
/// the stream once the outbox is closed and empty.
pub async fn write_to_peer(
    mux: Mux,
    peer: NodeId,
    generation: u64,
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
    ended: mpsc::Sender<WriterEnded>,
) {
    let stop = |why: String| {
        tracing::debug!(peer = %peer.fmt_short(), why, "channels writer stopped");
        let _ = ended.try_send(WriterEnded { peer, generation });
    };
    let mut batch = Vec::new();
    let Some(mut held) = outbox.take(&mut batch).await else {
        return;
    };
    let mut send = match mux.open_uni(peer, CHANNELS).await {
        Ok(s) => s,
        Err(e) => return stop(e.to_string()),
    };
    loop {
        if held {
            wake.notify_one();
        }
        if let Err(e) = send.write_all(&batch).await {
            return stop(e.to_string());
        }
        match outbox.take(&mut batch).await {
            Some(h) => held = h,
            None => break,
        }
    }
    let _ = send.finish();
}

/// Reads frames from a stream `from` opened until it ends, handing the
/// frames of each read to `frames` in one send (waiting when the driver is
/// behind, which holds the peer back through QUIC flow control).
pub async fn read_from_peer(
    from: NodeId,
    mut recv: RecvStream,
    frames: mpsc::Sender<(NodeId, Vec<ChannelFrame>)>,
    counters: Arc<WireCounters>,
) {
    let mut decoder = FrameDecoder::new(MAX_FRAME_LEN);
    let mut buf = vec![0u8; READ_CHUNK];
    while let Ok(Some(n)) = recv.read(&mut buf).await {
        decoder.push(&buf[..n]);
        // About as many frames as a read holds (a delivery of a small
        // message is about 100 bytes), so the batch rarely regrows.
        let mut batch = Vec::with_capacity(n / 64 + 1);
        let bad = loop {
            let frame = match decoder.next_payload() {
                Ok(Some(bytes)) => ChannelFrame::decode(bytes).map_err(|e| e.to_string()),
                Ok(None) => break None,
                Err(e) => Err(e.to_string()),
            };
            match frame {
                Ok(frame) => batch.push(frame),
                Err(why) => break Some(why),
            }
        };
        counters.frames_in.fetch_add(batch.len() as u64, Relaxed);
        if !batch.is_empty() && frames.send((from, batch)).await.is_err() {
            return;
        }
        if let Some(why) = bad {
            counters.bad_frames.fetch_add(1, Relaxed);
            tracing::debug!(peer = %from.fmt_short(), why, "bad channel frame");
            stop_uni(&mut recv, RESET_BAD_FRAME);
            return;
        }
    }
}

/// Sends one best-effort frame as a datagram; counts it dropped when it
/// cannot go (too large for the path, no connection).
pub fn send_datagram(mux: &Mux, peer: NodeId, frame: &ChannelFrame, counters: &WireCounters) {
    let sent = frame
        .encode()
        .ok()
        .is_some_and(|bytes| mux.send_datagram(peer, CHANNELS, &bytes).is_ok());
    let counter = if sent {
        &counters.frames_out
    } else {
        &counters.datagrams_dropped
    };
    counter.fetch_add(1, Relaxed);
}
