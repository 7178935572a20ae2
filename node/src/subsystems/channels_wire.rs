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
//!
//! The reader copies a stream's bytes once, into one buffer, and decodes
//! each frame in place ([`ChannelFrame::decode_shared`]): payloads are
//! slices of that buffer.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use relay_proto::wire::channel::{ChannelFrame, MAX_FRAME_LEN};
use relay_transport::mux::{stop_uni, Mux, ProtocolId, RESET_BAD_FRAME};
use relay_transport::{NodeId, RecvStream};
use tokio::sync::{mpsc, Notify};

use super::channels_outbox::Outbox;

/// The channels protocol's id on the mux.
pub const CHANNELS: ProtocolId = ProtocolId::new(3);
/// The reader's buffer: its first allocation, and what it asks for when
/// it runs out (frames still in use keep the old one).
const READ_BUF: usize = 64 * 1024;
/// Most chunks taken from the stream at a time.
const READ_CHUNKS: usize = 64;
/// The length prefix of a stream frame.
const LEN_PREFIX: usize = 4;

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
/// behind, which holds the peer back through QUIC flow control). The
/// stream's bytes are copied once, into one buffer; each frame is a slice
/// of it, and so is each payload the frame carries.
pub async fn read_from_peer(
    from: NodeId,
    mut recv: RecvStream,
    frames: mpsc::Sender<(NodeId, Vec<ChannelFrame>)>,
    counters: Arc<WireCounters>,
) {
    let mut chunks = vec![Bytes::new(); READ_CHUNKS];
    let mut buf = BytesMut::with_capacity(READ_BUF);
    while let Ok(Some(n)) = recv.read_chunks(&mut chunks).await {
        let mut read = 0;
        for chunk in chunks.iter_mut().take(n) {
            read += chunk.len();
            buf.extend_from_slice(chunk);
            *chunk = Bytes::new();
        }
        // Room for as many small frames as the read may hold (a frame of
        // deliveries carries many messages, so there are fewer).
        let mut batch = Vec::with_capacity((read / 128).clamp(1, 512));
        let bad = loop {
            let frame = match split_frame(&mut buf) {
                Ok(Some(bytes)) => ChannelFrame::decode_shared(&bytes).map_err(|e| e.to_string()),
                Ok(None) => break None,
                Err(why) => Err(why),
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

/// Takes the next complete length-prefixed frame off the front of `buf`
/// (without its prefix, sharing `buf`'s memory); `None` until one is
/// complete (room for it is reserved), an error for one over
/// [`MAX_FRAME_LEN`].
fn split_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, String> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let mut len = [0u8; LEN_PREFIX];
    len.copy_from_slice(prefix);
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_LEN {
        return Err(format!("frame of {len} bytes exceeds {MAX_FRAME_LEN}"));
    }
    let Some(missing) = (LEN_PREFIX + len).checked_sub(buf.len()).filter(|m| *m > 0) else {
        buf.advance(LEN_PREFIX);
        return Ok(Some(buf.split_to(len).freeze()));
    };
    buf.reserve(missing);
    Ok(None)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn frames_split_off_in_place_across_reads() {
        let frames = [
            ChannelFrame::Credit { link: 1, n: 2 },
            ChannelFrame::Publish {
                link: 3,
                seq: 4,
                data: vec![5; 300].into(),
            },
        ];
        let mut stream = Vec::new();
        for f in &frames {
            f.encode_into(&mut stream).unwrap();
        }
        // Byte by byte, then the rest at once: the same frames come out.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let (head, tail) = stream.split_at(7);
        for b in head {
            buf.extend_from_slice(&[*b]);
            while let Some(f) = split_frame(&mut buf).unwrap() {
                got.push(ChannelFrame::decode_shared(&f).unwrap());
            }
        }
        buf.extend_from_slice(tail);
        while let Some(f) = split_frame(&mut buf).unwrap() {
            let range = f.as_ptr() as usize..f.as_ptr() as usize + f.len();
            let frame = ChannelFrame::decode_shared(&f).unwrap();
            if let ChannelFrame::Publish { data, .. } = &frame {
                assert!(range.contains(&(data.as_ptr() as usize)), "not copied");
            }
            got.push(frame);
        }
        assert_eq!(got, frames);
        assert!(buf.is_empty());
        // A length over the bound is refused before anything is buffered.
        let mut big = BytesMut::from(&((MAX_FRAME_LEN + 1) as u32).to_be_bytes()[..]);
        assert!(split_frame(&mut big).is_err());
    }
}
