//! The path socket: a quinn `AsyncUdpSocket` that shows quinn one stable
//! mapped address per peer and picks the real path underneath.
//!
//! ## What quinn sees
//!
//! quinn only ever sees mapped addresses (see [`mapping`]): `try_send`
//! rewrites each transmit's destination from mapped to real, `poll_recv`
//! rewrites each received datagram's source from real to mapped. Changing a
//! peer's path ([`PathSocket::set_path`]) is therefore invisible to quinn:
//! the connection keeps its address, keys and streams, with no new
//! handshake. The socket reports an unspecified IPv6 local address (with the
//! real port) to quinn, because mapped addresses are IPv6.
//!
//! ## Demux
//!
//! One UDP port carries QUIC packets and our own frames; see [`demux`]. Any
//! datagram whose first byte is `0x00..=0x3f` is ours and goes to the frame
//! channel ([`PathSocket::take_frames`]); it never reaches quinn.
//!
//! Relay-recv frames (`0x02`) are the exception: they carry QUIC packets of
//! relayed connections, which are unwrapped and handed to quinn; see
//! [`relayed`].
//!
//! ## Probe ports
//!
//! Birthday probing (NAT traversal against a symmetric NAT) opens extra UDP
//! sockets; the one that wins carries its peer's connection. See [`ports`].
//!
//! ## Batching
//!
//! The direct path keeps quinn-udp's batching: real I/O goes through
//! `quinn_udp::UdpSocketState` (GSO on send, GRO on receive, ECN), and the
//! segment limits quinn asks for come from that state. The common path costs
//! one table lookup per transmit / per receive buffer, never an extra
//! syscall or copy.

pub mod demux;
mod inbox;
mod poller;
pub mod ports;
mod relayed;

pub use relay_transport_core::socket::{mapping, rebind};

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use relay_proto::wire::relay::RELAY_RECV;
use relay_proto::NodeId;
use tokio::io::Interest;
use tokio::sync::mpsc;

pub use demux::Frame;
pub use mapping::{is_mapped, Path};
pub use ports::{run_probe_port, PortFrame, MAX_PROBE_PORTS};

use demux::FrameSink;
use mapping::{canonical, MappedTable};
use poller::WritePoller;

/// How often [`PathSocket::sweep_expired`] looks for expired entries: an
/// un-adopted entry lives at most its TTL plus this.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Tunables for a [`PathSocket`].
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// Bound on un-adopted (unauthenticated) mapped entries.
    pub max_unadopted: usize,
    /// Lifetime of an un-adopted entry.
    pub unadopted_ttl: Duration,
    /// Capacity of the frame channel.
    pub frame_queue: usize,
    /// Capacity of the inbox of unwrapped relayed packets.
    pub relayed_queue: usize,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            max_unadopted: mapping::DEFAULT_MAX_UNADOPTED,
            unadopted_ttl: Duration::from_secs(30),
            frame_queue: demux::DEFAULT_FRAME_QUEUE,
            relayed_queue: relayed::DEFAULT_RELAYED_QUEUE,
        }
    }
}

/// Counters of the path socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Transmits dropped because no usable path stands behind the address.
    pub unroutable: u64,
    /// Frames handed to the frame channel.
    pub frames_delivered: u64,
    /// Frames dropped because the frame channel was full or unclaimed.
    pub frames_dropped: u64,
    /// Mapped entries (adopted and not).
    pub mapped_entries: usize,
    /// Un-adopted mapped entries.
    pub unadopted_entries: usize,
    /// QUIC datagrams sent on relayed paths.
    pub relayed_sent: u64,
    /// Relayed QUIC datagrams received and handed to quinn.
    pub relayed_received: u64,
    /// Relayed datagrams dropped (malformed, not from a relay we use,
    /// failed authentication, inbox full, oversized).
    pub relayed_dropped: u64,
    /// Relay-recv frames dropped because their tag did not verify under
    /// the relay's key or their sequence number was replayed.
    pub relayed_auth_failed: u64,
    /// Probe ports open (birthday probing; see [`ports`]).
    pub probe_ports: usize,
    /// QUIC transmits sent from probe ports.
    pub port_sent: u64,
    /// QUIC datagrams received on probe ports and handed to quinn.
    pub port_received: u64,
    /// Datagrams dropped on probe ports (unknown source, queue or send
    /// buffer full).
    pub port_dropped: u64,
}

/// The path socket. See the module docs.
pub struct PathSocket {
    io: Arc<tokio::net::UdpSocket>,
    state: UdpSocketState,
    local: SocketAddr,
    table: RwLock<MappedTable>,
    frames: FrameSink,
    frames_rx: Mutex<Option<mpsc::Receiver<Frame>>>,
    unroutable: AtomicU64,
    relayed: relayed::RelayedIo,
    ports: ports::ProbePorts,
    /// Fault injection for tests: traffic to and from this address is
    /// dropped (see [`PathSocket::drop_traffic_with`]).
    blackhole: RwLock<Option<SocketAddr>>,
    blackhole_set: AtomicBool,
    cids: rebind::CidRoutes,
}

impl fmt::Debug for PathSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PathSocket")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl PathSocket {
    /// Binds the real UDP socket. Must run inside a tokio runtime.
    pub fn bind(addr: SocketAddr, options: &SocketOptions) -> io::Result<Self> {
        let std_socket = std::net::UdpSocket::bind(addr)?;
        std_socket.set_nonblocking(true)?;
        let state = UdpSocketState::new((&std_socket).into())?;
        let io = tokio::net::UdpSocket::from_std(std_socket)?;
        let local = io.local_addr()?;
        let (frames, frames_rx) = FrameSink::new(options.frame_queue);
        Ok(Self {
            io: Arc::new(io),
            state,
            local,
            table: RwLock::new(MappedTable::new(
                options.max_unadopted,
                options.unadopted_ttl,
            )),
            frames,
            frames_rx: Mutex::new(Some(frames_rx)),
            unroutable: AtomicU64::new(0),
            relayed: relayed::RelayedIo::new(options.relayed_queue),
            ports: ports::ProbePorts::default(),
            blackhole: RwLock::new(None),
            blackhole_set: AtomicBool::new(false),
            cids: rebind::CidRoutes::default(),
        })
    }

    /// The real address the UDP socket is bound to.
    pub fn real_local_addr(&self) -> SocketAddr {
        self.local
    }

    fn read(&self) -> RwLockReadGuard<'_, MappedTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, MappedTable> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this socket can reach `addr` at all (address family).
    pub fn can_reach(&self, addr: &SocketAddr) -> bool {
        self.to_socket_family(canonical(*addr)).is_some()
    }

    /// The mapped address to dial `node` at `real` with (allocated or
    /// reused; see [`MappedTable::outbound`]).
    pub fn map_outbound(&self, node: NodeId, real: SocketAddr) -> SocketAddr {
        self.write().outbound(node, canonical(real))
    }

    /// Marks an inbound mapped address as `node`'s after its handshake.
    pub fn adopt(&self, mapped: &SocketAddr, node: NodeId) -> bool {
        self.write().adopt(mapped, node)
    }

    /// Moves the peer behind `mapped` to a new path; quinn does not notice.
    /// Returns the old path, or `None` if `mapped` is unknown.
    pub fn set_path(&self, mapped: &SocketAddr, path: Path) -> Option<Path> {
        let path = match path {
            Path::Direct(real) => Path::Direct(canonical(real)),
            other => other,
        };
        self.write().set_path(mapped, path)
    }

    /// Maps packets from `real` to `node`'s mapped address too, without
    /// moving where its packets go (an address the authenticated peer was
    /// seen at while punching: its packets from there must reach the same
    /// connection, never look like a new peer). Only a real address no
    /// entry receives from yet is taken; see [`MappedTable::alias`].
    pub fn alias_inbound(&self, node: &NodeId, real: SocketAddr) -> bool {
        let real = canonical(real);
        let Some(mapped) = self.mapped_addr(node) else {
            return false;
        };
        if let Some(current) = self.read().lookup_real(&real) {
            return current == mapped;
        }
        self.write().alias(&mapped, real)
    }

    /// How many receive batches from `node` arrived on its current direct
    /// path (relayed packets and packets from other addresses do not
    /// count): traversal's "the direct path is alive" signal.
    pub fn direct_received(&self, node: &NodeId) -> Option<u64> {
        let table = self.read();
        let mapped = table.mapped_of(node)?;
        table.direct_received(&mapped)
    }

    /// How many relayed packets from `node` arrived while its path was
    /// direct: the peer reaches us through a relay, so our direct path to
    /// it may be dead (traversal then probes it at once).
    pub fn relayed_while_direct(&self, node: &NodeId) -> Option<u64> {
        let table = self.read();
        let mapped = table.mapped_of(node)?;
        table.relayed_while_direct(&mapped)
    }

    /// Fault injection for tests: drops every datagram (QUIC or frame) sent
    /// to or received from `addr`, as a path that died would; `None` ends
    /// it. Costs one relaxed atomic load per batch when unused.
    #[doc(hidden)]
    pub fn drop_traffic_with(&self, addr: Option<SocketAddr>) {
        *self.blackhole.write().unwrap_or_else(|e| e.into_inner()) = addr.map(canonical);
        self.blackhole_set.store(addr.is_some(), Ordering::Relaxed);
    }

    /// Whether traffic with `real` (canonical) is being dropped.
    fn blackholed(&self, real: &SocketAddr) -> bool {
        self.blackhole_set.load(Ordering::Relaxed)
            && *self.blackhole.read().unwrap_or_else(|e| e.into_inner()) == Some(*real)
    }

    /// The address `node`'s packets (recognized by connection ID) lately
    /// arrived from although it is not their path: a NAT rebinding not yet
    /// followed. Unauthenticated; see [`rebind`].
    pub fn rebind_candidate(&self, node: &NodeId) -> Option<rebind::RebindCandidate> {
        let mapped = self.mapped_addr(node)?;
        self.cids.candidate(&mapped)
    }

    /// Starts recognizing packets for the connection on `mapped` by their
    /// connection ID when they come from an unknown address (a dialed
    /// connection; see [`rebind`]). Pair with [`Self::unfollow_rebinding`].
    pub fn follow_rebinding(&self, mapped: SocketAddr) {
        self.cids.follow(mapped);
    }

    /// Ends one [`Self::follow_rebinding`].
    pub fn unfollow_rebinding(&self, mapped: &SocketAddr) {
        self.cids.unfollow(mapped);
    }

    /// Drops `node`'s rebind candidate.
    pub fn clear_rebind_candidate(&self, node: &NodeId) {
        if let Some(mapped) = self.mapped_addr(node) {
            self.cids.clear_candidate(&mapped);
        }
    }

    /// The path behind a mapped address.
    pub fn path(&self, mapped: &SocketAddr) -> Option<Path> {
        self.read().route(mapped)
    }

    /// `node`'s current mapped address.
    pub fn mapped_addr(&self, node: &NodeId) -> Option<SocketAddr> {
        self.read().mapped_of(node)
    }

    /// Forgets `node`'s current mapped address entirely (a failed dial
    /// leaves nothing behind).
    pub fn forget_node(&self, node: &NodeId) {
        if let Some(mapped) = self.mapped_addr(node) {
            self.cids.forget(&mapped);
        }
        self.write().remove_node(node);
    }

    /// Hands `node`'s address back to the bounded un-adopted pool (its
    /// connection ended; a handshake in flight on it may still adopt it).
    pub fn demote_node(&self, node: &NodeId) {
        self.write().demote_node(node, Instant::now());
    }

    /// Demotes `mapped` unless it is its owner's current address.
    pub fn demote_retired(&self, mapped: &SocketAddr) {
        self.write().demote_retired(mapped, Instant::now());
    }

    /// Removes the un-adopted entries whose TTL ran out by `now`; returns
    /// how many went. Takes the write lock only when one is due.
    pub fn expire_unadopted(&self, now: Instant) -> usize {
        let due = self.read().next_expiry().is_some_and(|at| at <= now);
        if !due {
            return 0;
        }
        self.write().expire_due(now)
    }

    /// Sweeps expired un-adopted entries every [`SWEEP_INTERVAL`] until
    /// `stop` turns true, so entries made by unauthenticated packets leave
    /// the table after their TTL even when no packet follows them. The
    /// transport runs this for its socket.
    pub async fn sweep_expired(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let gone = self.expire_unadopted(tokio::time::Instant::now().into_std());
                    if gone > 0 {
                        tracing::debug!(gone, "expired unauthenticated mapped entries");
                    }
                }
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// The receiver of our own frames (traversal, relay). Only the first
    /// caller gets it; until it is taken, frames are dropped and counted.
    pub fn take_frames(&self) -> Option<mpsc::Receiver<Frame>> {
        self.frames_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Sends one of our own frames to a real address. The first byte must
    /// be a frame type (`0x00..=0x3f`) so the receiver does not take it for
    /// QUIC.
    pub async fn send_frame(&self, real: SocketAddr, data: &[u8]) -> io::Result<()> {
        match data.first() {
            Some(first) if !demux::is_quic(*first) => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "frame must start with a type byte 0x00..=0x3f",
                ))
            }
        }
        if self.blackholed(&canonical(real)) {
            return Ok(());
        }
        let dest = self
            .to_socket_family(canonical(real))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "address family"))?;
        self.io.send_to(data, dest).await.map(|_| ())
    }

    /// Counters.
    pub fn stats(&self) -> SocketStats {
        let table = self.read();
        SocketStats {
            unroutable: self.unroutable.load(Ordering::Relaxed),
            frames_delivered: self.frames.delivered(),
            frames_dropped: self.frames.dropped(),
            mapped_entries: table.len(),
            unadopted_entries: table.unadopted_len(),
            relayed_sent: self.relayed.sent.load(Ordering::Relaxed),
            relayed_received: self.relayed.received.load(Ordering::Relaxed),
            relayed_dropped: self.relayed.dropped.load(Ordering::Relaxed),
            relayed_auth_failed: self.relayed.auth_failed.load(Ordering::Relaxed),
            probe_ports: self.ports.len(),
            port_sent: self.ports.sent.load(Ordering::Relaxed),
            port_received: self.ports.received.load(Ordering::Relaxed),
            port_dropped: self.ports.dropped.load(Ordering::Relaxed),
        }
    }

    /// A real (canonical) address in the form the bound socket sends to, or
    /// `None` if the socket's family cannot reach it.
    fn to_socket_family(&self, real: SocketAddr) -> Option<SocketAddr> {
        match (self.local, real) {
            (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
                Some(real)
            }
            (SocketAddr::V6(_), SocketAddr::V4(v4)) => Some(SocketAddr::new(
                IpAddr::V6(v4.ip().to_ipv6_mapped()),
                v4.port(),
            )),
            (SocketAddr::V4(_), SocketAddr::V6(_)) => None,
        }
    }

    /// Rewrites a batch of received buffers for quinn: pulls out our frames,
    /// maps real sources to mapped addresses, and packs the remaining
    /// buffers to the front. Returns how many are left.
    fn rewrite_received(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
        count: usize,
    ) -> usize {
        let mut out = 0;
        for i in 0..count.min(meta.len()).min(bufs.len()) {
            let real = canonical(meta[i].addr);
            if self.blackholed(&real) {
                continue;
            }
            let len = meta[i].len.min(bufs[i].len());
            let stride = meta[i].stride;
            let buf = &mut bufs[i][..len];
            let len = if demux::all_quic(buf, stride) {
                len
            } else {
                demux::split_frames(buf, stride, |frame| {
                    if frame.first() == Some(&RELAY_RECV) {
                        self.accept_relayed(real, frame);
                    } else {
                        self.frames.deliver(real, frame);
                    }
                })
            };
            if len == 0 {
                continue;
            }
            let known = {
                let table = self.read();
                table.receive_from(&real).map(|m| {
                    let off_path =
                        matches!(table.route(&m), Some(Path::Direct(cur)) if cur != real);
                    (m, table.owner(&m).is_some(), off_path)
                })
            };
            let mapped = match known {
                Some((mapped, adopted, off_path)) => {
                    if off_path {
                        self.cids.off_path(mapped, real);
                    } else if adopted {
                        self.cids.learn(&bufs[i][..len], mapped);
                    }
                    mapped
                }
                None => match self.cids.route_unknown(&bufs[i][..len], real) {
                    Some(mapped) => mapped,
                    None => self.write().inbound(real, Instant::now()),
                },
            };
            meta[i].addr = mapped;
            meta[i].len = len;
            if meta[i].stride > len || meta[i].stride == 0 {
                meta[i].stride = len;
            }
            if out != i {
                // quinn hands buffers of one size, so `len` fits every one;
                // were it not so, the datagram is dropped, not a panic.
                let (head, tail) = bufs.split_at_mut(i);
                let dst = head.get_mut(out).and_then(|b| b.get_mut(..len));
                let src = tail.first().and_then(|b| b.get(..len));
                let (Some(dst), Some(src)) = (dst, src) else {
                    continue;
                };
                dst.copy_from_slice(src);
                meta[out] = meta[i];
            }
            out += 1;
        }
        out
    }
}

/// Whether a receive of `count` datagrams into room for `batch` emptied
/// the socket's queue. On Linux quinn-udp reads with `recvmmsg`, which
/// returns fewer than asked only when the queue ran dry (or on an error,
/// which the kernel keeps for the next read and which a later datagram's
/// readiness reaches). Elsewhere a read may take one datagram at a time,
/// so nothing is concluded.
fn drains_queue(count: usize, batch: usize) -> bool {
    cfg!(any(target_os = "linux", target_os = "android")) && count > 0 && count < batch
}

impl quinn::AsyncUdpSocket for PathSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        Box::pin(WritePoller::new(self.io.clone()))
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let route = self.read().route(&transmit.destination);
        if let Some(relay) = route.as_ref().and_then(relayed::relay_of) {
            return self.send_relayed(transmit, &relay);
        }
        let dest = match route {
            Some(Path::Direct(real)) => self.to_socket_family(real),
            Some(Path::Relayed { .. }) | None => None,
        };
        let Some(destination) = dest else {
            // Like a packet lost on the way: quinn's loss recovery copes.
            self.unroutable.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        if self.blackholed(&canonical(destination)) {
            return Ok(());
        }
        if let Some(port) = self.ports.route(&canonical(destination)) {
            let via = Transmit {
                destination,
                ecn: transmit.ecn,
                contents: transmit.contents,
                segment_size: transmit.segment_size,
                src_ip: None,
            };
            return self.send_via_port(port, &via);
        }
        let src_ip = transmit
            .src_ip
            .filter(|ip| ip.is_ipv4() == destination.is_ipv4() || self.local.is_ipv6());
        let real = Transmit {
            destination,
            ecn: transmit.ecn,
            contents: transmit.contents,
            segment_size: transmit.segment_size,
            src_ip,
        };
        self.io.try_io(Interest::WRITABLE, || {
            self.state.send((&*self.io).into(), &real)
        })
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            if self.ports_pending(cx.waker()) {
                let filled = self.drain_ports(bufs, meta);
                if filled > 0 {
                    return Poll::Ready(Ok(filled));
                }
            }
            if self.relayed_pending() {
                let filled = self.drain_relayed(bufs, meta);
                if filled > 0 {
                    return Poll::Ready(Ok(filled));
                }
            }
            match self.io.poll_recv_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            let batch = bufs.len().min(quinn_udp::BATCH_SIZE);
            let mut drained = None;
            let received = self.io.try_io(Interest::READABLE, || {
                let count = self.state.recv((&*self.io).into(), bufs, meta)?;
                if drains_queue(count, batch) {
                    // The queue is empty: report WouldBlock so tokio clears
                    // the readiness seen before this read, sparing the next
                    // poll a receive that can only fail. A datagram that
                    // came after the read brings readiness back.
                    drained = Some(count);
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(count)
            });
            // As quinn's own socket does: any receive error (WouldBlock,
            // ICMP-induced resets) means "try again".
            let count = match (received, drained) {
                (_, Some(count)) | (Ok(count), None) => count,
                (Err(_), None) => continue,
            };
            let left = self.rewrite_received(bufs, meta, count);
            if left > 0 {
                return Poll::Ready(Ok(left));
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            self.local.port(),
        ))
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }
}

#[cfg(test)]
mod tests;
