//! The driver of one connection's reliable control channel: runs the
//! sans-IO [`Reliable`] core, hands it quinn's smoothed RTT and the clock,
//! sends what it emits as QUIC datagrams and wakes it for retransmissions.
//!
//! Sending never waits: [`ControlChannel::send`] queues in the core and
//! puts the datagrams the window admits straight onto the connection.
//! Received frames come from the connection's datagram reader
//! (`conn::forward_datagrams`), which dispatches the messages this returns.
//! One task per connection ([`ControlChannel::run`]) sleeps until the
//! core's next retransmission deadline.
//!
//! Also here: the transport-wide counters of the control channels and of
//! application datagrams dropped on a full accept queue
//! ([`ChannelStats`]).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_proto::wire::control::ControlMsg;
use tokio::sync::{watch, Notify};

use super::reliable::{Reliable, ReliableError, ReliableStats};

/// Counters of the control channels and application datagrams, summed
/// over every connection of a transport ([`crate::Transport::channel_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Application datagrams received and dropped because the accept queue
    /// was full (nobody read them fast enough).
    pub app_datagrams_dropped: u64,
    /// Control messages sent reliably.
    pub control_sent: u64,
    /// Control messages retransmitted (after a retransmission timeout).
    pub control_retransmits: u64,
    /// Control messages received and delivered.
    pub control_delivered: u64,
    /// Control messages refused because a peer acknowledged nothing of a
    /// full queue.
    pub control_queue_full: u64,
    /// Control frames received and dropped: malformed, beyond the receive
    /// window, or acknowledging what was never sent.
    pub control_invalid: u64,
}

/// The transport-wide counters behind [`ChannelStats`].
#[derive(Debug, Default)]
pub(crate) struct ChannelCounters {
    pub(crate) app_datagrams_dropped: AtomicU64,
    control_sent: AtomicU64,
    control_retransmits: AtomicU64,
    control_delivered: AtomicU64,
    control_queue_full: AtomicU64,
    control_invalid: AtomicU64,
}

impl ChannelCounters {
    pub(crate) fn snapshot(&self) -> ChannelStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ChannelStats {
            app_datagrams_dropped: get(&self.app_datagrams_dropped),
            control_sent: get(&self.control_sent),
            control_retransmits: get(&self.control_retransmits),
            control_delivered: get(&self.control_delivered),
            control_queue_full: get(&self.control_queue_full),
            control_invalid: get(&self.control_invalid),
        }
    }

    /// Adds what a core counted since `before`.
    fn add(&self, before: ReliableStats, after: ReliableStats) {
        let add = |c: &AtomicU64, a: u64, b: u64| {
            if b > a {
                c.fetch_add(b - a, Ordering::Relaxed);
            }
        };
        add(&self.control_sent, before.sent, after.sent);
        add(
            &self.control_retransmits,
            before.retransmits,
            after.retransmits,
        );
        add(&self.control_delivered, before.delivered, after.delivered);
        add(&self.control_invalid, before.invalid, after.invalid);
    }
}

/// One connection's reliable control channel.
pub(crate) struct ControlChannel {
    conn: quinn::Connection,
    core: Mutex<Reliable>,
    /// Wakes [`ControlChannel::run`] when the next deadline may have moved.
    wake: Notify,
    counters: Arc<ChannelCounters>,
}

impl fmt::Debug for ControlChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlChannel")
            .field("conn", &self.conn.stable_id())
            .finish_non_exhaustive()
    }
}

/// The clock the core runs on: tokio's (so a paused test clock drives it).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl ControlChannel {
    pub(crate) fn new(conn: quinn::Connection, counters: Arc<ChannelCounters>) -> Self {
        Self {
            conn,
            core: Mutex::new(Reliable::new()),
            wake: Notify::new(),
            counters,
        }
    }

    /// The connection it runs on.
    pub(crate) fn conn(&self) -> &quinn::Connection {
        &self.conn
    }

    fn core(&self) -> MutexGuard<'_, Reliable> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    /// Sends `msg` reliably. Never waits; an error means it was not queued
    /// (the peer acknowledges nothing, or the message is too long).
    pub(crate) fn send(&self, msg: &ControlMsg) -> Result<(), ReliableError> {
        let name = msg.name();
        let (rtt, now) = (self.rtt(), now());
        let result = self.with_core(|core| core.send(now, rtt, msg.clone()).map(|_| ()));
        match &result {
            Ok(()) => self.wake.notify_one(),
            Err(ReliableError::QueueFull) => {
                self.counters
                    .control_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    msg = name,
                    "control message not queued: the peer acknowledges nothing"
                );
            }
            Err(e) => tracing::warn!(msg = name, error = %e, "control message not encodable"),
        }
        result
    }

    /// Handles one reliable frame (prefix stripped) and returns the
    /// messages it completes, in order, for dispatch.
    pub(crate) fn receive(&self, data: &[u8]) -> Vec<ControlMsg> {
        let (rtt, now) = (self.rtt(), now());
        let (result, messages) = self.with_core(|core| {
            let result = core.handle_frame(now, rtt, data);
            (result, std::iter::from_fn(|| core.poll_message()).collect())
        });
        if let Err(e) = result {
            self.counters
                .control_invalid
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "bad reliable control frame");
        }
        // An ack may have freed the window: the deadline moved.
        self.wake.notify_one();
        messages
    }

    /// Runs `f` on the core, then sends what it emitted and counts.
    fn with_core<T>(&self, f: impl FnOnce(&mut Reliable) -> T) -> T {
        let (out, datagrams) = {
            let mut core = self.core();
            let before = core.stats();
            let out = f(&mut core);
            let datagrams: Vec<Bytes> = std::iter::from_fn(|| core.poll_transmit()).collect();
            self.counters.add(before, core.stats());
            (out, datagrams)
        };
        for d in datagrams {
            if let Err(e) = self.conn.send_datagram(d) {
                // Lost like any datagram: the core retransmits it.
                tracing::trace!(error = %e, "control frame not sent");
            }
        }
        out
    }

    /// Retransmits on the core's deadlines until the connection closes or
    /// the transport shuts down.
    pub(crate) async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let deadline = self.core().poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.conn.closed() => return,
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = self.wake.notified() => {}
                _ = sleep => {
                    let (rtt, now) = (self.rtt(), now());
                    self.with_core(|core| core.handle_timeout(now, rtt));
                }
            }
        }
    }
}
