//! The reliable control channel of one connection, sans-IO: sequence
//! numbers, acknowledgements, retransmission on a timeout derived from the
//! connection's RTT, in-order delivery once.
//!
//! Contract (wire: `relay_proto::wire::control::ReliableFrame` on datagram
//! prefix `0x02`):
//!
//! - **Sender.** Every message gets the next sequence number of the
//!   connection (from 0). At most [`SEND_WINDOW`] messages are unacknowledged
//!   on the wire; the rest wait, at most [`MAX_QUEUED`] in all (beyond that
//!   [`Reliable::send`] refuses with [`ReliableError::QueueFull`]: a peer
//!   that acknowledges nothing of 128 messages is gone, and its connection's
//!   idle timeout ends it). A message not acknowledged within the
//!   retransmission timeout ([`rto`]: 1.5 x the smoothed RTT plus
//!   [`ACK_SLACK`], at least [`MIN_RTO`]) is sent again, with the timeout
//!   doubling per retransmission up to [`MAX_BACKOFF`] (never below the
//!   first timeout). There is no give-up: the connection's lifetime bounds
//!   the retries.
//! - **Receiver.** It acknowledges every frame it receives (duplicates
//!   too: their acknowledgement was lost) with one cumulative ack per
//!   batch: the lowest sequence number missing and a bitmap of the
//!   [`ACK_BITMAP_LEN`] after it. It holds out-of-order messages within a
//!   window of [`ACK_BITMAP_LEN`] and delivers in sequence order, each
//!   message once; frames beyond the window are dropped unacknowledged
//!   (a correct sender never sends them). So its state is bounded by the
//!   window, whatever the peer sends.
//!
//! The driver (`relay_transport`'s `endpoint::channel`) feeds it received frames, the clock
//! and quinn's RTT, sends what [`Reliable::poll_transmit`] returns as QUIC
//! datagrams, wakes at [`Reliable::poll_timeout`] and dispatches what
//! [`Reliable::poll_message`] returns.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_proto::wire::control::{ControlMsg, ControlMsgError, ReliableFrame, ACK_BITMAP_LEN};
use thiserror::Error;

/// Most messages unacknowledged on the wire at once (at most the
/// receiver's window, [`ACK_BITMAP_LEN`]).
pub const SEND_WINDOW: u64 = 32;
/// Most messages queued per connection, on the wire or waiting.
pub const MAX_QUEUED: usize = 128;
/// Lowest retransmission timeout.
pub const MIN_RTO: Duration = Duration::from_millis(25);
/// Added to 1.5 x RTT: the receiver's time to read and acknowledge.
pub const ACK_SLACK: Duration = Duration::from_millis(10);
/// Longest retransmission timeout after backoff (unless the first timeout
/// is longer already).
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

const _: () = assert!(SEND_WINDOW <= ACK_BITMAP_LEN);

/// The retransmission timeout for a smoothed RTT.
pub fn rto(rtt: Duration) -> Duration {
    (rtt + rtt / 2 + ACK_SLACK).max(MIN_RTO)
}

/// The timeout after `retries` retransmissions.
fn backoff(rtt: Duration, retries: u32) -> Duration {
    let first = rto(rtt);
    let grown = first.saturating_mul(1u32 << retries.min(16));
    grown.min(MAX_BACKOFF.max(first))
}

/// Why a message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReliableError {
    /// [`MAX_QUEUED`] messages are waiting for acknowledgement.
    #[error("control-queue-full: {MAX_QUEUED} control messages wait for acknowledgement")]
    QueueFull,
    /// The message cannot be encoded (too long).
    #[error("control-encode: {0}")]
    Encode(#[from] ControlMsgError),
}

/// Counters of one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReliableStats {
    /// Messages queued.
    pub sent: u64,
    /// Retransmissions.
    pub retransmits: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Duplicate frames received (and acknowledged again).
    pub duplicates: u64,
    /// Frames dropped: beyond the receive window, or acknowledgements of
    /// messages never sent.
    pub invalid: u64,
}

/// One message in the send queue.
#[derive(Debug)]
struct Outgoing {
    seq: u64,
    /// The whole datagram.
    datagram: Bytes,
    /// When to retransmit; `None` until first sent.
    deadline: Option<Instant>,
    retries: u32,
    acked: bool,
}

/// The state machine; see the module docs.
#[derive(Debug, Default)]
pub struct Reliable {
    /// Sequence number of the next message queued.
    next_seq: u64,
    /// Unacknowledged or unsent messages, by sequence number, contiguous
    /// from the lowest unacknowledged one.
    queue: VecDeque<Outgoing>,
    /// Datagrams to send now.
    transmit: VecDeque<Bytes>,
    /// Lowest sequence number not yet received.
    recv_next: u64,
    /// Messages received ahead of `recv_next`, within the window.
    held: BTreeMap<u64, ControlMsg>,
    /// Messages ready for the application, in order.
    ready: VecDeque<ControlMsg>,
    /// An acknowledgement is owed.
    ack_due: bool,
    stats: ReliableStats,
}

impl Reliable {
    /// A fresh channel (both directions at sequence number 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters so far.
    pub fn stats(&self) -> ReliableStats {
        self.stats
    }

    /// Messages queued and not yet acknowledged.
    #[cfg(test)]
    pub fn unacked(&self) -> usize {
        self.queue.iter().filter(|o| !o.acked).count()
    }

    /// Queues `msg`; it goes out now if the window allows. Returns its
    /// sequence number.
    pub fn send(
        &mut self,
        now: Instant,
        rtt: Duration,
        msg: ControlMsg,
    ) -> Result<u64, ReliableError> {
        if self.queue.len() >= MAX_QUEUED {
            return Err(ReliableError::QueueFull);
        }
        let seq = self.next_seq;
        let datagram = ReliableFrame::Msg { seq, msg }.encode_datagram()?;
        self.next_seq += 1;
        self.stats.sent += 1;
        self.queue.push_back(Outgoing {
            seq,
            datagram: Bytes::from(datagram),
            deadline: None,
            retries: 0,
            acked: false,
        });
        self.fill_window(now, rtt);
        Ok(seq)
    }

    /// Handles one received frame (datagram prefix stripped). A malformed
    /// frame changes nothing and is returned as an error.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        rtt: Duration,
        data: &[u8],
    ) -> Result<(), ControlMsgError> {
        match ReliableFrame::decode(data)? {
            ReliableFrame::Msg { seq, msg } => self.on_msg(seq, msg),
            ReliableFrame::Ack { next, above } => self.on_ack(now, rtt, next, above),
        }
        Ok(())
    }

    /// Retransmits what timed out by `now`.
    pub fn handle_timeout(&mut self, now: Instant, rtt: Duration) {
        for out in &mut self.queue {
            let Some(deadline) = out.deadline else {
                break;
            };
            if out.acked || deadline > now {
                continue;
            }
            out.retries = out.retries.saturating_add(1);
            out.deadline = Some(now + backoff(rtt, out.retries));
            self.transmit.push_back(out.datagram.clone());
            self.stats.retransmits += 1;
        }
    }

    /// When [`Reliable::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue
            .iter()
            .filter(|o| !o.acked)
            .filter_map(|o| o.deadline)
            .min()
    }

    /// The next datagram to send (prefix included): an acknowledgement
    /// first when one is owed.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.ack_due {
            self.ack_due = false;
            let mut above = 0u64;
            for seq in self.held.keys() {
                // `held` only has seq in (recv_next, recv_next + window].
                if let Some(bit) = seq.checked_sub(self.recv_next + 1) {
                    if bit < ACK_BITMAP_LEN {
                        above |= 1 << bit;
                    }
                }
            }
            let ack = ReliableFrame::Ack {
                next: self.recv_next,
                above,
            };
            // An acknowledgement always encodes (fixed-size fields).
            if let Ok(bytes) = ack.encode_datagram() {
                return Some(Bytes::from(bytes));
            }
        }
        self.transmit.pop_front()
    }

    /// The next message received, in sequence order.
    pub fn poll_message(&mut self) -> Option<ControlMsg> {
        self.ready.pop_front()
    }

    fn on_msg(&mut self, seq: u64, msg: ControlMsg) {
        if seq < self.recv_next {
            self.stats.duplicates += 1;
            self.ack_due = true;
            return;
        }
        if seq - self.recv_next > ACK_BITMAP_LEN {
            // Beyond the window: a correct sender never sends it. Say
            // where we are.
            self.stats.invalid += 1;
            self.ack_due = true;
            return;
        }
        self.ack_due = true;
        if seq > self.recv_next {
            if self.held.insert(seq, msg).is_some() {
                self.stats.duplicates += 1;
            }
            return;
        }
        self.deliver(msg);
        while let Some(msg) = self.held.remove(&self.recv_next) {
            self.deliver(msg);
        }
    }

    fn deliver(&mut self, msg: ControlMsg) {
        self.ready.push_back(msg);
        self.recv_next += 1;
        self.stats.delivered += 1;
    }

    fn on_ack(&mut self, now: Instant, rtt: Duration, next: u64, above: u64) {
        if next > self.next_seq {
            // Acknowledges messages never sent.
            self.stats.invalid += 1;
            return;
        }
        for out in &mut self.queue {
            let acked = out.seq < next
                || out
                    .seq
                    .checked_sub(next + 1)
                    .is_some_and(|bit| bit < ACK_BITMAP_LEN && above & (1 << bit) != 0);
            // Only what was sent can be acknowledged.
            if acked && out.deadline.is_some() {
                out.acked = true;
            }
        }
        while self.queue.front().is_some_and(|o| o.acked) {
            self.queue.pop_front();
        }
        self.fill_window(now, rtt);
    }

    /// Sends the waiting messages the window admits.
    fn fill_window(&mut self, now: Instant, rtt: Duration) {
        let Some(base) = self.queue.front().map(|o| o.seq) else {
            return;
        };
        for out in &mut self.queue {
            if out.seq >= base + SEND_WINDOW {
                break;
            }
            if out.deadline.is_none() {
                out.deadline = Some(now + rto(rtt));
                self.transmit.push_back(out.datagram.clone());
            }
        }
    }
}

#[cfg(test)]
#[path = "reliable_tests.rs"]
mod tests;
