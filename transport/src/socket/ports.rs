//! Probe ports: extra UDP sockets for birthday probing
//! (`traversal::birthday`).
//!
//! Behind a symmetric NAT every local socket gets its own outside port per
//! destination, so birthday probing opens many extra sockets ("probe
//! ports"), each sending one probe to the peer. The one the peer's random
//! probes hit is the only mapping the peer's NAT accepts, so that port must
//! then carry the peer's whole connection:
//!
//! - **Routes.** [`PathSocket::route_via_port`] makes every transmit to a
//!   real address, QUIC included, leave from a probe port instead of the
//!   main socket. quinn sees nothing: the peer keeps its mapped address,
//!   and its path is still `Path::Direct(addr)`.
//! - **Receiving.** One small task per port ([`run_probe_port`]) reads it
//!   through the port's `quinn_udp` state. That state turns GRO on, so the
//!   kernel may hand over a burst of full-size packets from one source
//!   (a GSO batch, a stream's data) as one coalesced buffer; the reader
//!   splits it at the reported segment size and handles each packet on its
//!   own. A port reads into a small buffer until a peer is routed through
//!   it, then into one that holds a whole coalesced buffer, so the many
//!   ports of a birthday run stay cheap and the one that wins loses
//!   nothing. Our frames (probes and replies) go to the traversal driver
//!   with the port they came in on. QUIC is accepted only from an address routed
//!   through that very port and mapped already (nothing is allocated for
//!   an unknown source); it waits in a bounded inbox that `poll_recv`
//!   drains, and the read wakes quinn's receive task.
//! - **Sending.** A routed transmit goes out through the port's own
//!   `quinn_udp` state (GSO when the kernel has it, else one datagram per
//!   segment). When the port's send buffer is full the datagram is dropped
//!   and counted, like loss; quinn's congestion control copes.
//!
//! At most [`MAX_PROBE_PORTS`] ports are open at once. With no port open
//! the hot paths pay one relaxed atomic load per call.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::Waker;

use bytes::Bytes;
use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::sync::mpsc;

use super::demux;
use super::mapping::canonical;
use super::PathSocket;
use crate::traversal::PortId;

/// Probe ports open at once, at most.
pub const MAX_PROBE_PORTS: usize = 1024;
/// Capacity of the inbox of QUIC datagrams received on probe ports.
const PORT_QUEUE: usize = 1024;
/// Receive buffer of a probe port's reader while no peer is routed
/// through it: probes and replies, single datagrams well below this.
const PORT_BUF: usize = 2048;
/// Receive buffer of a port a peer is routed through: a GRO-coalesced
/// buffer is one UDP payload, at most this long.
const ROUTED_BUF: usize = 64 * 1024;

/// A frame received on a probe port.
#[derive(Debug, Clone)]
pub struct PortFrame {
    /// The port it arrived on.
    pub port: PortId,
    /// The real address it came from.
    pub src: SocketAddr,
    /// The whole datagram, first byte included.
    pub data: Bytes,
}

/// One probe port.
#[derive(Debug)]
struct PortSocket {
    io: Arc<tokio::net::UdpSocket>,
    state: UdpSocketState,
    /// A peer has been routed through this port (its reader then needs
    /// room for coalesced buffers).
    routed: AtomicBool,
}

use super::inbox::lock;

/// The socket's probe-port state.
#[derive(Debug, Default)]
pub(super) struct ProbePorts {
    sockets: RwLock<HashMap<PortId, Arc<PortSocket>>>,
    routes: RwLock<HashMap<SocketAddr, PortId>>,
    /// Any port open (gates the receive side).
    open: AtomicBool,
    /// Any route installed (gates the send side).
    routed: AtomicBool,
    inbox: Mutex<VecDeque<(SocketAddr, Bytes)>>,
    waker: Mutex<Option<Waker>>,
    pub(super) sent: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) dropped: AtomicU64,
}

impl ProbePorts {
    fn socket(&self, port: PortId) -> Option<Arc<PortSocket>> {
        self.sockets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&port)
            .cloned()
    }

    /// The port transmits to `real` (canonical) leave from, if any.
    pub(super) fn route(&self, real: &SocketAddr) -> Option<PortId> {
        if !self.routed.load(Ordering::Relaxed) {
            return None;
        }
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(real)
            .copied()
    }

    pub(super) fn len(&self) -> usize {
        self.sockets.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl PathSocket {
    /// Opens probe port `port` (a new UDP socket on our IP, any port) and
    /// returns its socket for [`run_probe_port`]. Fails when `port` is open
    /// already or [`MAX_PROBE_PORTS`] are open.
    pub fn open_probe_port(&self, port: PortId) -> io::Result<Arc<tokio::net::UdpSocket>> {
        let mut sockets = self
            .ports
            .sockets
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if sockets.contains_key(&port) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "probe port already open",
            ));
        }
        if sockets.len() >= MAX_PROBE_PORTS {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "too many probe ports open",
            ));
        }
        let std_socket = std::net::UdpSocket::bind(SocketAddr::new(self.local.ip(), 0))?;
        std_socket.set_nonblocking(true)?;
        let state = UdpSocketState::new((&std_socket).into())?;
        let io = Arc::new(tokio::net::UdpSocket::from_std(std_socket)?);
        sockets.insert(
            port,
            Arc::new(PortSocket {
                io: io.clone(),
                state,
                routed: AtomicBool::new(false),
            }),
        );
        self.ports.open.store(true, Ordering::Relaxed);
        Ok(io)
    }

    /// Closes probe port `port` and drops every route through it. (Its
    /// reader task ends when the caller aborts it.)
    pub fn close_probe_port(&self, port: PortId) {
        let mut sockets = self
            .ports
            .sockets
            .write()
            .unwrap_or_else(|e| e.into_inner());
        sockets.remove(&port);
        self.ports
            .open
            .store(!sockets.is_empty(), Ordering::Relaxed);
        drop(sockets);
        let mut routes = self.ports.routes.write().unwrap_or_else(|e| e.into_inner());
        routes.retain(|_, p| *p != port);
        self.ports
            .routed
            .store(!routes.is_empty(), Ordering::Relaxed);
    }

    /// Sends everything to `real` from probe port `port` from now on.
    /// Returns false when the port is not open.
    pub fn route_via_port(&self, real: SocketAddr, port: PortId) -> bool {
        let Some(socket) = self.ports.socket(port) else {
            return false;
        };
        socket.routed.store(true, Ordering::Relaxed);
        let mut routes = self.ports.routes.write().unwrap_or_else(|e| e.into_inner());
        routes.insert(canonical(real), port);
        self.ports.routed.store(true, Ordering::Relaxed);
        true
    }

    /// The probe port transmits to `real` leave from, if any.
    pub fn port_route(&self, real: &SocketAddr) -> Option<PortId> {
        self.ports.route(&canonical(*real))
    }

    /// The local address probe port `port` is bound to, if it is open.
    pub fn probe_port_addr(&self, port: PortId) -> Option<SocketAddr> {
        self.ports.socket(port)?.io.local_addr().ok()
    }

    /// Probe ports open.
    pub fn probe_ports(&self) -> usize {
        self.ports.len()
    }

    /// Sends one of our frames to `real` from probe port `port`.
    pub async fn send_frame_from_port(
        &self,
        port: PortId,
        real: SocketAddr,
        data: &[u8],
    ) -> io::Result<()> {
        match data.first() {
            Some(first) if !demux::is_quic(*first) => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "frame must start with a type byte 0x00..=0x3f",
                ))
            }
        }
        let socket = self
            .ports
            .socket(port)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "probe port not open"))?;
        let dest = self
            .to_socket_family(canonical(real))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "address family"))?;
        socket.io.send_to(data, dest).await.map(|_| ())
    }

    /// Sends a QUIC transmit (destination already real, in the socket's
    /// family) from probe port `port`.
    pub(super) fn send_via_port(&self, port: PortId, transmit: &Transmit<'_>) -> io::Result<()> {
        let Some(socket) = self.ports.socket(port) else {
            self.unroutable.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let seg = transmit
            .segment_size
            .filter(|s| *s > 0 && *s < transmit.contents.len());
        let result = match seg {
            Some(seg)
                if transmit.contents.len().div_ceil(seg) > socket.state.max_gso_segments() =>
            {
                // No GSO on this socket: one datagram per segment.
                let mut result = Ok(());
                for chunk in transmit.contents.chunks(seg) {
                    let one = Transmit {
                        destination: transmit.destination,
                        ecn: transmit.ecn,
                        contents: chunk,
                        segment_size: None,
                        src_ip: None,
                    };
                    result = socket.io.try_io(Interest::WRITABLE, || {
                        socket.state.send((&*socket.io).into(), &one)
                    });
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
            _ => {
                let real = Transmit {
                    destination: transmit.destination,
                    ecn: transmit.ecn,
                    contents: transmit.contents,
                    segment_size: transmit.segment_size,
                    src_ip: None,
                };
                socket.io.try_io(Interest::WRITABLE, || {
                    socket.state.send((&*socket.io).into(), &real)
                })
            }
        };
        match result {
            Ok(()) => {
                self.ports.sent.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // quinn's write readiness is the main socket's; a full
                // probe port drops like a lossy link instead of spinning.
                self.ports.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// A QUIC datagram arrived on probe port `port` from `src`: queue it
    /// for quinn under the peer's mapped address, if `src` is routed
    /// through this port and known; drop it otherwise.
    fn accept_port_quic(&self, port: PortId, src: SocketAddr, data: &[u8]) {
        let src = canonical(src);
        let mapped = if self.ports.route(&src) == Some(port) {
            self.read().receive_from(&src)
        } else {
            None
        };
        let Some(mapped) = mapped else {
            self.ports.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        {
            let mut inbox = lock(&self.ports.inbox);
            if inbox.len() >= PORT_QUEUE {
                drop(inbox);
                self.ports.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            inbox.push_back((mapped, Bytes::copy_from_slice(data)));
        }
        self.ports.received.fetch_add(1, Ordering::Relaxed);
        if let Some(waker) = lock(&self.ports.waker).take() {
            waker.wake();
        }
    }

    /// Whether `poll_recv` must look at the probe ports' inbox. Registers
    /// quinn's receive task to be woken by the next datagram first, so
    /// none is missed between the check and a `Pending`.
    pub(super) fn ports_pending(&self, waker: &Waker) -> bool {
        if !self.ports.open.load(Ordering::Relaxed) {
            return false;
        }
        {
            let mut slot = lock(&self.ports.waker);
            match slot.as_ref() {
                Some(w) if w.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
        !lock(&self.ports.inbox).is_empty()
    }

    /// Moves queued probe-port datagrams into quinn's buffers; returns how
    /// many buffers were filled.
    pub(super) fn drain_ports(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> usize {
        super::inbox::drain(&self.ports.inbox, &self.ports.dropped, bufs, meta)
    }
}

/// Reads probe port `port` until the task is aborted or the socket fails
/// (or the port is closed before the task starts): frames go to `frames`
/// (dropped when it is full), QUIC to the path socket's inbox. A coalesced
/// (GRO) buffer is split into its packets first.
pub async fn run_probe_port(
    socket: Arc<PathSocket>,
    port: PortId,
    io: Arc<tokio::net::UdpSocket>,
    frames: mpsc::Sender<PortFrame>,
) {
    let Some(port_socket) = socket.ports.socket(port) else {
        return;
    };
    let mut buf = vec![0u8; PORT_BUF];
    loop {
        if io.readable().await.is_err() {
            return;
        }
        if buf.len() < ROUTED_BUF && port_socket.routed.load(Ordering::Relaxed) {
            buf.resize(ROUTED_BUF, 0);
        }
        let mut meta = [RecvMeta::default()];
        let received = io.try_io(Interest::READABLE, || {
            let mut bufs = [IoSliceMut::new(&mut buf)];
            port_socket.state.recv((&*io).into(), &mut bufs, &mut meta)
        });
        match received {
            Ok(_) => {}
            // Not readable after all, or an ICMP error surfacing as a
            // receive error: keep reading.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        let [meta] = meta;
        let Some(data) = buf.get(..meta.len) else {
            continue;
        };
        let src = canonical(meta.addr);
        if socket.blackholed(&src) {
            continue;
        }
        // One datagram, or a coalesced buffer of `stride`-long packets
        // (the last may be shorter).
        let stride = if meta.stride == 0 {
            data.len()
        } else {
            meta.stride
        };
        for packet in data.chunks(stride.max(1)) {
            socket.port_packet(port, src, packet, &frames);
        }
    }
}

impl PathSocket {
    /// One packet that arrived on probe port `port` from `src`.
    fn port_packet(
        &self,
        port: PortId,
        src: SocketAddr,
        data: &[u8],
        frames: &mpsc::Sender<PortFrame>,
    ) {
        let Some(first) = data.first() else {
            return;
        };
        if demux::is_quic(*first) {
            self.accept_port_quic(port, src, data);
        } else {
            let frame = PortFrame {
                port,
                src,
                data: Bytes::copy_from_slice(data),
            };
            if frames.try_send(frame).is_err() {
                self.ports.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
#[path = "ports_tests.rs"]
mod tests;
