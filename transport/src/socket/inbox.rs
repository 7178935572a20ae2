//! A queue of already-unwrapped QUIC packets (from relay frames or probe
//! ports) waiting for quinn, and the poison-tolerant lock both use.

use std::collections::VecDeque;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use quinn::udp::RecvMeta;

/// Locks `m`, taking the data even if a holder panicked.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Moves queued `(mapped source, packet)` pairs into quinn's buffers, one
/// packet per buffer; a packet larger than its buffer is dropped and
/// counted in `dropped`. Returns how many buffers were filled.
pub(super) fn drain(
    inbox: &Mutex<VecDeque<(SocketAddr, Bytes)>>,
    dropped: &AtomicU64,
    bufs: &mut [IoSliceMut<'_>],
    meta: &mut [RecvMeta],
) -> usize {
    let mut inbox = lock(inbox);
    let mut filled = 0;
    while filled < bufs.len().min(meta.len()) {
        let Some((mapped, packet)) = inbox.pop_front() else {
            break;
        };
        let Some(dst) = bufs[filled].get_mut(..packet.len()) else {
            dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        dst.copy_from_slice(&packet);
        meta[filled] = RecvMeta {
            addr: mapped,
            len: packet.len(),
            stride: packet.len(),
            ecn: None,
            dst_ip: None,
        };
        filled += 1;
    }
    filled
}
