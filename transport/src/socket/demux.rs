//! Demultiplexing one UDP port between quinn and our own frames.
//!
//! Every QUIC packet has the fixed bit (0x40) set in its first byte, or the
//! long-header bit (0x80) for packets such as Version Negotiation; our
//! endpoint config never greases the fixed bit. A datagram whose first byte
//! is `0x00..=0x3f` is therefore never QUIC: it is one of *our* frames
//! (traversal probes, relay frames). Those go to a bounded channel
//! ([`FrameSink`]); when it is full they are dropped and counted, never
//! queued without bound and never handed to quinn. Empty datagrams are
//! dropped.
//!
//! With GRO one receive buffer holds several datagrams of `stride` bytes
//! (the last may be shorter). [`split_frames`] pulls our frames out of such
//! a buffer and packs the QUIC datagrams left in it back together, keeping
//! the stride layout quinn expects.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Highest first byte of our own frames.
pub const MAX_FRAME_TYPE: u8 = 0x3f;

/// Default capacity of the frame channel.
pub const DEFAULT_FRAME_QUEUE: usize = 1024;

/// Whether a datagram starting with `first` is a QUIC packet.
pub fn is_quic(first: u8) -> bool {
    first > MAX_FRAME_TYPE
}

/// One of our frames, received on the path socket.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The real address it came from.
    pub src: SocketAddr,
    /// The whole datagram, first byte included.
    pub data: Bytes,
}

/// The bounded hand-off for received frames.
#[derive(Debug)]
pub struct FrameSink {
    tx: mpsc::Sender<Frame>,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl FrameSink {
    /// A sink with `capacity` slots and its receiver.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let sink = Self {
            tx,
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        };
        (sink, rx)
    }

    /// Hands a frame on, or drops and counts it when the channel is full or
    /// nobody listens.
    pub fn deliver(&self, src: SocketAddr, data: &[u8]) {
        let frame = Frame {
            src,
            data: Bytes::copy_from_slice(data),
        };
        match self.tx.try_send(frame) {
            Ok(()) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Frames handed on so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Frames dropped so far (channel full or closed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Whether every datagram in `buf` (datagrams of `stride` bytes) is QUIC.
pub fn all_quic(buf: &[u8], stride: usize) -> bool {
    let stride = if stride == 0 { buf.len() } else { stride };
    !buf.is_empty() && buf.chunks(stride).all(|d| is_quic(d[0]))
}

/// Passes every non-QUIC datagram in `buf` to `on_frame` and moves the QUIC
/// datagrams to the front, keeping their `stride` spacing. Returns the new
/// length of the QUIC part (0 if nothing is left for quinn).
pub fn split_frames(buf: &mut [u8], stride: usize, mut on_frame: impl FnMut(&[u8])) -> usize {
    let len = buf.len();
    let stride = if stride == 0 { len } else { stride };
    let mut write = 0;
    let mut read = 0;
    while read < len {
        let end = (read + stride).min(len);
        if is_quic(buf[read]) {
            if write != read {
                buf.copy_within(read..end, write);
            }
            write += end - read;
        } else {
            on_frame(&buf[read..end]);
        }
        read = end;
    }
    write
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(!is_quic(0x00));
        assert!(!is_quic(0x3f));
        assert!(is_quic(0x40), "short header, fixed bit");
        assert!(
            is_quic(0x80),
            "long header without fixed bit (version negotiation)"
        );
        assert!(is_quic(0xc3));
    }

    #[test]
    fn all_quic_single_and_gro() {
        assert!(all_quic(&[0x40, 1, 2], 3));
        assert!(!all_quic(&[0x01, 1, 2], 3));
        assert!(all_quic(&[0x40, 1, 0xc0, 2, 0x41], 2));
        assert!(!all_quic(&[0x40, 1, 0x02, 2, 0x41], 2));
        assert!(!all_quic(&[], 0));
    }

    #[test]
    fn split_keeps_stride_layout() {
        // Segments of 3: QUIC, frame, QUIC, frame(short 2).
        let mut buf = [0x40, 1, 1, 0x05, 2, 2, 0x41, 3, 3, 0x06, 4];
        let mut frames = Vec::new();
        let n = split_frames(&mut buf, 3, |f| frames.push(f.to_vec()));
        assert_eq!(n, 6);
        assert_eq!(&buf[..n], &[0x40, 1, 1, 0x41, 3, 3]);
        assert_eq!(frames, vec![vec![0x05, 2, 2], vec![0x06, 4]]);
    }

    #[test]
    fn split_moves_short_last_segment() {
        let mut buf = [0x05, 1, 1, 0x40, 2];
        let mut frames = 0;
        let n = split_frames(&mut buf, 3, |_| frames += 1);
        assert_eq!(n, 2);
        assert_eq!(&buf[..n], &[0x40, 2]);
        assert_eq!(frames, 1);
    }

    #[test]
    fn split_only_frames() {
        let mut buf = [0x01, 9, 9];
        let mut got = Vec::new();
        let n = split_frames(&mut buf, 0, |f| got.push(f.to_vec()));
        assert_eq!(n, 0);
        assert_eq!(got, vec![vec![0x01, 9, 9]]);
    }

    #[tokio::test]
    async fn sink_is_bounded() {
        let (sink, mut rx) = FrameSink::new(2);
        let src: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for _ in 0..5 {
            sink.deliver(src, &[0x01, 2]);
        }
        assert_eq!(sink.delivered(), 2);
        assert_eq!(sink.dropped(), 3);
        let f = rx.recv().await.unwrap();
        assert_eq!(f.src, src);
        assert_eq!(&f.data[..], &[0x01, 2]);
    }
}
