//! The relay server core, sans-IO: which frames to forward where, within
//! which limits. The driver ([`super::driver`]) owns the clock, the socket
//! and the connections.
//!
//! ## Who is served
//!
//! Only *registered* clients: a client registers over its authenticated
//! QUIC connection to the relay (a control message), and the driver calls
//! [`RelayServer::register`] with the client's NodeId, the real address
//! of that connection's path and the frame keys of that connection (see
//! [`super::auth`]). A relay-send frame is accepted only when it arrives
//! from the real source address of a registered client, carries a valid
//! tag under that client's key and a sequence number not seen before, and
//! names a registered destination. Anything else is dropped and counted
//! (unauthenticated frames under their own reason), and an
//! unauthenticated frame is never answered. Forwarded frames are sealed
//! with the destination client's key.
//!
//! ## Limits (per client, stated in [`RelayLimits`])
//!
//! - a token bucket on the bytes a client sends through the relay
//!   (`rate_bytes_per_sec`, `burst_bytes`);
//! - a bounded queue of frames waiting to go out (`queue_packets`,
//!   `queue_bytes`), drained round-robin across clients by
//!   [`RelayServer::poll_transmit`];
//! - at most `max_sessions_per_client` distinct peers per client, and
//!   `max_clients` clients;
//! - a budget of "unknown peer" replies (`gone_replies_per_sec`), so a
//!   client naming unknown NodeIds cannot make the relay talk without
//!   bound.
//!
//! Frames beyond a limit are dropped and counted, never queued without
//! bound.
//!
//! ## Peer gone
//!
//! A session is a pair of clients the relay forwarded between. When a client
//! leaves ([`RelayServer::unregister`]), every client that had a session
//! with it gets a `PeerGone { reason: Left }` ([`RelayServer::poll_control`]);
//! a frame for an unknown destination gets `PeerGone { reason: Unknown }`
//! (within the reply budget). Replies travel over the authenticated
//! connection and are smaller than the frame that caused them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay_proto::wire::control::{ControlMsg, GoneReason, RelayLimitsMsg};
use relay_proto::wire::relay::{self, RelayFrame, RelayFrameKind, MAX_PACKET};
use relay_proto::NodeId;
use thiserror::Error;

use super::auth::{FrameKeys, Opener, Sealer};
use super::sessions::SessionLog;

/// Per-client limits a relay enforces and states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Sustained bytes per second a client may send through the relay.
    pub rate_bytes_per_sec: u64,
    /// Bytes a client may send in a burst above the rate.
    pub burst_bytes: u64,
    /// Frames of one client waiting to go out, at most.
    pub queue_packets: usize,
    /// Bytes of one client waiting to go out, at most.
    pub queue_bytes: usize,
    /// Clients served at once, at most.
    pub max_clients: usize,
    /// Distinct peers one client may reach through the relay.
    pub max_sessions_per_client: usize,
    /// "Unknown peer" replies per second per client (also the burst).
    pub gone_replies_per_sec: u32,
}

impl Default for RelayLimits {
    /// 8 MiB/s per client with a 1 MiB burst, 256 frames / 512 KiB queued
    /// per client, 1024 clients, 256 peers per client, 10 replies/s.
    fn default() -> Self {
        Self {
            rate_bytes_per_sec: 8 << 20,
            burst_bytes: 1 << 20,
            queue_packets: 256,
            queue_bytes: 512 << 10,
            max_clients: 1024,
            max_sessions_per_client: 256,
            gone_replies_per_sec: 10,
        }
    }
}

impl RelayLimits {
    /// The limits as stated to clients.
    pub fn to_msg(&self) -> RelayLimitsMsg {
        RelayLimitsMsg {
            rate_bytes_per_sec: self.rate_bytes_per_sec,
            burst_bytes: self.burst_bytes,
            queue_packets: u32::try_from(self.queue_packets).unwrap_or(u32::MAX),
            queue_bytes: u32::try_from(self.queue_bytes).unwrap_or(u32::MAX),
            max_packet: MAX_PACKET as u32,
        }
    }
}

/// Counters of a relay server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Registered clients now.
    pub clients: usize,
    /// Live sessions (distinct client pairs forwarded between) now.
    pub sessions: usize,
    /// Sessions ever started.
    pub sessions_total: u64,
    /// Inner packet bytes forwarded.
    pub bytes_forwarded: u64,
    /// Frames forwarded.
    pub packets_forwarded: u64,
    /// Frames dropped, all reasons.
    pub packets_dropped: u64,
    /// Dropped: not a valid relay-send frame.
    pub dropped_malformed: u64,
    /// Dropped: not from a registered client's address.
    pub dropped_unknown_source: u64,
    /// Dropped: the destination is not a client (or is the sender).
    pub dropped_unknown_dest: u64,
    /// Dropped: over the sender's rate.
    pub dropped_rate: u64,
    /// Dropped: the sender's queue is full.
    pub dropped_queue: u64,
    /// Dropped: too many sessions.
    pub dropped_sessions: u64,
    /// Dropped: the tag did not verify under the sender's key, or the
    /// sequence number was replayed.
    pub dropped_auth: u64,
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a valid relay-send frame.
    Malformed,
    /// Not from a registered client's address.
    UnknownSource,
    /// The destination is not a client, or is the sender.
    UnknownDest,
    /// Over the sender's rate.
    RateLimited,
    /// The sender's queue is full.
    QueueFull,
    /// The sender or destination has too many sessions.
    TooManySessions,
    /// The frame failed authentication (bad tag or replay).
    Unauthenticated,
}

/// What happened to one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Queued for forwarding.
    Queued,
    /// Dropped and counted.
    Dropped(DropReason),
}

/// A frame to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The destination client's real address.
    pub dest: SocketAddr,
    /// A relay-recv frame.
    pub data: Vec<u8>,
}

/// Registration refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RegisterError {
    /// `max_clients` reached.
    #[error("full: the relay serves its maximum number of clients")]
    Full,
    /// The frame keys could not be set up.
    #[error("keys: the frame authentication keys could not be set up")]
    Keys,
}

type RawId = [u8; 32];

/// A token bucket over a byte (or reply) budget.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u64, burst: u64, now: Instant) -> Self {
        let burst = burst.max(1) as f64;
        Self {
            rate: rate as f64,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn take(&mut self, now: Instant, amount: u64) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        let amount = amount as f64;
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Queued {
    dest: RawId,
    data: Vec<u8>,
}

#[derive(Debug)]
struct Client {
    id: NodeId,
    addr: SocketAddr,
    bucket: Bucket,
    replies: Bucket,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    ready: bool,
    peers: HashSet<RawId>,
    keys: FrameKeys,
    /// Seals the relay-recv frames this client receives.
    sealer: Sealer,
    /// Opens the relay-send frames this client sends.
    opener: Opener,
}

/// The relay core. See the module docs.
#[derive(Debug)]
pub struct RelayServer {
    limits: RelayLimits,
    clients: HashMap<RawId, Client>,
    by_addr: HashMap<SocketAddr, RawId>,
    /// Clients with queued frames, in round-robin order.
    ready: VecDeque<RawId>,
    control: VecDeque<(NodeId, ControlMsg)>,
    sessions: usize,
    stats: RelayStats,
    /// Per-session counters for accounting ([`super::sessions`]).
    log: SessionLog,
}

impl RelayServer {
    /// A relay with these limits and no clients.
    pub fn new(limits: RelayLimits) -> Self {
        Self {
            limits,
            clients: HashMap::new(),
            by_addr: HashMap::new(),
            ready: VecDeque::new(),
            control: VecDeque::new(),
            sessions: 0,
            stats: RelayStats::default(),
            log: SessionLog::new(),
        }
    }

    /// The record of sessions carried ([`super::sessions`]).
    pub fn session_log(&mut self) -> &mut SessionLog {
        &mut self.log
    }

    /// The limits.
    pub fn limits(&self) -> &RelayLimits {
        &self.limits
    }

    /// Counters.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            clients: self.clients.len(),
            sessions: self.sessions,
            ..self.stats
        }
    }

    /// Whether `id` is a registered client.
    pub fn is_client(&self, id: &NodeId) -> bool {
        self.clients.contains_key(id.as_bytes())
    }

    /// Registers (or re-registers) a client whose authenticated connection
    /// comes from `addr` and yields `keys`. Re-registering with new keys
    /// (a new connection) restarts its frame numbering; with the same
    /// keys it keeps it.
    pub fn register(
        &mut self,
        now: Instant,
        id: NodeId,
        addr: SocketAddr,
        keys: FrameKeys,
    ) -> Result<(), RegisterError> {
        let raw = *id.as_bytes();
        if let Some(client) = self.clients.get_mut(&raw) {
            if client.keys != keys {
                let (sealer, opener) = keys.relay().ok_or(RegisterError::Keys)?;
                client.keys = keys;
                client.sealer = sealer;
                client.opener = opener;
            }
            self.update_addr(&id, addr);
            return Ok(());
        }
        if self.clients.len() >= self.limits.max_clients {
            return Err(RegisterError::Full);
        }
        let (sealer, opener) = keys.relay().ok_or(RegisterError::Keys)?;
        let replies = u64::from(self.limits.gone_replies_per_sec.max(1));
        self.clients.insert(
            raw,
            Client {
                id,
                addr,
                bucket: Bucket::new(self.limits.rate_bytes_per_sec, self.limits.burst_bytes, now),
                replies: Bucket::new(replies, replies, now),
                queue: VecDeque::new(),
                queued_bytes: 0,
                ready: false,
                peers: HashSet::new(),
                keys,
                sealer,
                opener,
            },
        );
        // A client that had this address before has moved on.
        self.by_addr.insert(addr, raw);
        Ok(())
    }

    /// A registered client's connection moved to `addr`.
    pub fn update_addr(&mut self, id: &NodeId, addr: SocketAddr) {
        let raw = *id.as_bytes();
        let Some(client) = self.clients.get_mut(&raw) else {
            return;
        };
        if client.addr != addr {
            if self.by_addr.get(&client.addr) == Some(&raw) {
                self.by_addr.remove(&client.addr);
            }
            client.addr = addr;
        }
        self.by_addr.insert(addr, raw);
    }

    /// A client left (its connection closed). Every client that had a
    /// session with it is told. Returns whether it was a client.
    pub fn unregister(&mut self, id: &NodeId) -> bool {
        let raw = *id.as_bytes();
        let Some(client) = self.clients.remove(&raw) else {
            return false;
        };
        if self.by_addr.get(&client.addr) == Some(&raw) {
            self.by_addr.remove(&client.addr);
        }
        let dropped = client.queue.len() as u64;
        self.stats.packets_dropped += dropped;
        self.stats.dropped_queue += dropped;
        for peer in client.peers {
            if let Some(other) = self.clients.get_mut(&peer) {
                other.peers.remove(&raw);
                self.sessions = self.sessions.saturating_sub(1);
                self.log.left(*id, other.id);
                self.control.push_back((
                    other.id,
                    ControlMsg::PeerGone {
                        node_id: *id,
                        reason: GoneReason::Left,
                    },
                ));
            }
        }
        true
    }

    fn drop_frame(&mut self, reason: DropReason) -> Verdict {
        let s = &mut self.stats;
        s.packets_dropped += 1;
        match reason {
            DropReason::Malformed => s.dropped_malformed += 1,
            DropReason::UnknownSource => s.dropped_unknown_source += 1,
            DropReason::UnknownDest => s.dropped_unknown_dest += 1,
            DropReason::RateLimited => s.dropped_rate += 1,
            DropReason::QueueFull => s.dropped_queue += 1,
            DropReason::TooManySessions => s.dropped_sessions += 1,
            DropReason::Unauthenticated => s.dropped_auth += 1,
        }
        Verdict::Dropped(reason)
    }

    /// Handles one datagram that arrived at the relay from `src`.
    pub fn handle_frame(&mut self, now: Instant, src: SocketAddr, data: &[u8]) -> Verdict {
        let frame = match RelayFrame::parse(data) {
            Ok(frame) if frame.kind == RelayFrameKind::Send => frame,
            _ => return self.drop_frame(DropReason::Malformed),
        };
        let Some(src_raw) = self.by_addr.get(&src).copied() else {
            return self.drop_frame(DropReason::UnknownSource);
        };
        let authentic = match self.clients.get_mut(&src_raw) {
            Some(client) => client.opener.open(&frame).is_ok(),
            None => return self.drop_frame(DropReason::UnknownSource),
        };
        if !authentic {
            return self.drop_frame(DropReason::Unauthenticated);
        }
        let dst_raw = frame.peer;
        if dst_raw == src_raw || !self.clients.contains_key(&dst_raw) {
            self.reply_unknown(now, src_raw, &frame);
            return self.drop_frame(DropReason::UnknownDest);
        }
        let limits = self.limits;
        let new_session = {
            let Some(client) = self.clients.get(&src_raw) else {
                return self.drop_frame(DropReason::UnknownSource);
            };
            !client.peers.contains(&dst_raw)
        };
        if new_session {
            let full = |c: Option<&Client>| {
                c.is_none_or(|c| c.peers.len() >= limits.max_sessions_per_client)
            };
            if full(self.clients.get(&src_raw)) || full(self.clients.get(&dst_raw)) {
                return self.drop_frame(DropReason::TooManySessions);
            }
        }
        let len = data.len();
        {
            let Some(client) = self.clients.get_mut(&src_raw) else {
                return self.drop_frame(DropReason::UnknownSource);
            };
            if client.queue.len() >= limits.queue_packets
                || client.queued_bytes + len > limits.queue_bytes
            {
                return self.drop_frame(DropReason::QueueFull);
            }
            if !client.bucket.take(now, len as u64) {
                return self.drop_frame(DropReason::RateLimited);
            }
        }
        let mut out = Vec::with_capacity(relay::HEADER_LEN + frame.packet.len());
        relay::emit_header(RelayFrameKind::Recv, &src_raw, 0, &mut out);
        out.extend_from_slice(frame.packet);
        let sealed = self
            .clients
            .get(&dst_raw)
            .is_some_and(|dst| dst.sealer.seal(&mut out).is_ok());
        if !sealed {
            return self.drop_frame(DropReason::UnknownDest);
        }
        let Some(client) = self.clients.get_mut(&src_raw) else {
            return self.drop_frame(DropReason::UnknownSource);
        };
        client.queue.push_back(Queued {
            dest: dst_raw,
            data: out,
        });
        client.queued_bytes += len;
        if !client.ready {
            client.ready = true;
            self.ready.push_back(src_raw);
        }
        let src_id = client.id;
        if new_session {
            client.peers.insert(dst_raw);
            if let Some(dst) = self.clients.get_mut(&dst_raw) {
                dst.peers.insert(src_raw);
            }
            self.sessions += 1;
            self.stats.sessions_total += 1;
        }
        if let Some(dst) = self.clients.get(&dst_raw) {
            self.log.carried(now, src_id, dst.id, frame.packet.len());
        }
        Verdict::Queued
    }

    /// Queues a `PeerGone { Unknown }` to `src` if its reply budget allows
    /// and the named NodeId is a valid key.
    fn reply_unknown(&mut self, now: Instant, src: RawId, frame: &RelayFrame<'_>) {
        let Some(client) = self.clients.get_mut(&src) else {
            return;
        };
        let Ok(node_id) = frame.peer_id() else {
            return;
        };
        if client.replies.take(now, 1) {
            self.control.push_back((
                client.id,
                ControlMsg::PeerGone {
                    node_id,
                    reason: GoneReason::Unknown,
                },
            ));
        }
    }

    /// The next frame to send, round-robin across clients.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        while let Some(raw) = self.ready.pop_front() {
            let Some(client) = self.clients.get_mut(&raw) else {
                continue;
            };
            let Some(item) = client.queue.pop_front() else {
                client.ready = false;
                continue;
            };
            client.queued_bytes = client.queued_bytes.saturating_sub(item.data.len());
            if client.queue.is_empty() {
                client.ready = false;
            } else {
                self.ready.push_back(raw);
            }
            match self.clients.get(&item.dest) {
                Some(dest) => {
                    self.stats.packets_forwarded += 1;
                    self.stats.bytes_forwarded +=
                        item.data.len().saturating_sub(relay::HEADER_LEN) as u64;
                    return Some(Transmit {
                        dest: dest.addr,
                        data: item.data,
                    });
                }
                None => {
                    self.drop_frame(DropReason::UnknownDest);
                }
            }
        }
        None
    }

    /// The next control message to send to a client.
    pub fn poll_control(&mut self) -> Option<(NodeId, ControlMsg)> {
        self.control.pop_front()
    }

    /// Frames queued for `id` as a sender (for tests and status).
    pub fn queued(&self, id: &NodeId) -> usize {
        self.clients.get(id.as_bytes()).map_or(0, |c| c.queue.len())
    }

    /// How long until a client's bucket refills enough for `bytes` (a hint
    /// for tests and benchmarks).
    pub fn refill_time(&self, bytes: u64) -> Duration {
        if self.limits.rate_bytes_per_sec == 0 {
            return Duration::MAX;
        }
        Duration::from_secs_f64(bytes as f64 / self.limits.rate_bytes_per_sec as f64)
    }
}

#[cfg(test)]
mod tests;
