//! Relayed paths in the path socket.
//!
//! ## Sending
//!
//! A transmit to a mapped address whose path is [`Path::Relayed`] goes to
//! the relay's current real address (the direct path of our own connection
//! to it); each QUIC datagram (each GSO segment) is wrapped in a relay-send
//! frame `[0x01][peer NodeId][seq][tag][packet]` sealed with our key for
//! that relay (see [`crate::relay::auth`]). A GSO batch stays one GSO
//! batch, with the segment size grown by the 57-byte header. Relays
//! reached only through another relay are not used (no nesting): such
//! packets are dropped and counted as unroutable.
//!
//! ## Receiving
//!
//! A relay-recv frame `[0x02][source NodeId][seq][tag][packet]` is accepted
//! only from the real address of a node we use as a relay
//! ([`PathSocket::add_relay`]), with a tag that verifies under that
//! relay's key and a sequence number not seen before; other frames are
//! dropped and counted (`relayed_auth_failed`).
//! Its inner packet is handed to quinn as if it came from the source's
//! mapped address (the node's own, or a bounded un-adopted entry claimed
//! for it, see [`super::mapping`]). The unwrapped packets wait in a bounded
//! inbox that `poll_recv` drains before reading the real socket; when it is
//! full they are dropped and counted (quinn's loss recovery copes).
//!
//! ## Size
//!
//! The transport caps every connection's MTU so that a relayed packet plus
//! its header fits a 1500-byte path (see `endpoint`); a larger segment is
//! dropped and counted rather than sent as an oversized frame.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use quinn::udp::{RecvMeta, Transmit};
use relay_proto::wire::relay::{self, RelayFrame, RelayFrameKind, HEADER_LEN, MAX_PACKET};
use relay_proto::NodeId;
use tokio::io::Interest;

use super::mapping::Path;
use super::PathSocket;
use crate::relay::auth::{FrameKeys, Opener, Sealer};

/// Default capacity of the inbox of unwrapped relayed packets.
pub const DEFAULT_RELAYED_QUEUE: usize = 1024;
/// Validated source NodeIds remembered (validation decompresses a point).
const ID_CACHE: usize = 4096;

use super::inbox::lock;

/// What we hold for one relay we use: the keys of our connection to it,
/// sealing our relay-send frames and opening its relay-recv frames.
#[derive(Debug)]
pub(super) struct RelayAuth {
    keys: FrameKeys,
    sealer: Sealer,
    opener: Mutex<Opener>,
    /// False once we stopped using the relay. The entry stays, so that the
    /// same keys offered again (same connection) resume its numbering and
    /// window instead of starting over.
    active: AtomicBool,
}

/// The socket's relayed-path state.
#[derive(Debug)]
pub(super) struct RelayedIo {
    relays: RwLock<HashMap<NodeId, Arc<RelayAuth>>>,
    inbox: Mutex<VecDeque<(SocketAddr, Bytes)>>,
    inbox_cap: usize,
    ids: Mutex<HashMap<[u8; 32], NodeId>>,
    scratch: Mutex<Vec<u8>>,
    pub(super) sent: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) dropped: AtomicU64,
    /// Relay-recv frames that failed authentication (also in `dropped`).
    pub(super) auth_failed: AtomicU64,
}

impl RelayedIo {
    pub(super) fn new(inbox_cap: usize) -> Self {
        Self {
            relays: RwLock::default(),
            inbox: Mutex::default(),
            inbox_cap: inbox_cap.max(1),
            ids: Mutex::default(),
            scratch: Mutex::default(),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            auth_failed: AtomicU64::new(0),
        }
    }

    pub(super) fn auth(&self, node: &NodeId) -> Option<Arc<RelayAuth>> {
        self.relays
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .filter(|a| a.active.load(Ordering::Relaxed))
            .cloned()
    }

    /// The validated NodeId for raw bytes (cached).
    fn node_id(&self, raw: &[u8; 32]) -> Option<NodeId> {
        let mut ids = lock(&self.ids);
        if let Some(id) = ids.get(raw) {
            return Some(*id);
        }
        let id = NodeId::from_bytes(raw).ok()?;
        if ids.len() >= ID_CACHE {
            ids.clear();
        }
        ids.insert(*raw, id);
        Some(id)
    }
}

impl PathSocket {
    /// Accepts relay-recv frames from `relay` from now on (we use it as a
    /// relay), authenticated with `keys` (those of our connection to it),
    /// and seals our relay-send frames to it with them. Returns whether the
    /// keys are new; the same keys again keep the frame numbering (a
    /// sequence number is never reused under a key).
    pub fn add_relay(&self, relay: NodeId, keys: FrameKeys) -> bool {
        let mut relays = self
            .relayed
            .relays
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(auth) = relays.get(&relay).filter(|a| a.keys == keys) {
            auth.active.store(true, Ordering::Relaxed);
            return false;
        }
        let Some((sealer, opener)) = keys.client() else {
            relays.remove(&relay);
            return false;
        };
        relays.insert(
            relay,
            Arc::new(RelayAuth {
                keys,
                sealer,
                opener: Mutex::new(opener),
                active: AtomicBool::new(true),
            }),
        );
        true
    }

    /// Stops accepting relay-recv frames from `relay` (and sending relay
    /// frames through it). Its keys' state is kept for
    /// [`Self::add_relay`] with the same keys.
    pub fn remove_relay(&self, relay: &NodeId) {
        if let Some(auth) = self
            .relayed
            .relays
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(relay)
        {
            auth.active.store(false, Ordering::Relaxed);
        }
    }

    /// The mapped address to dial `node` through `relay` with (allocated
    /// or reused, now on the relayed path).
    pub fn map_outbound_relayed(&self, node: NodeId, relay: NodeId) -> SocketAddr {
        self.write().outbound_relayed(node, relay)
    }

    /// Every mapped address relayed through `relay` (connections, dials and
    /// handshakes in progress), with the NodeId it is for.
    pub fn relayed_through(&self, relay: &NodeId) -> Vec<(SocketAddr, Option<NodeId>)> {
        self.read().relayed_through(relay)
    }

    /// Where a relayed transmit to `mapped` goes: the relay's real address
    /// and the peer NodeId to name in the frame.
    fn relayed_route(&self, mapped: &SocketAddr, relay: &NodeId) -> Option<(SocketAddr, NodeId)> {
        let table = self.read();
        let target = table.relay_target(mapped)?;
        let relay_mapped = table.mapped_of(relay)?;
        let real = table.route(&relay_mapped)?.direct_addr()?;
        Some((real, target))
    }

    /// Sends one transmit on a relayed path (see the module docs).
    pub(super) fn send_relayed(&self, transmit: &Transmit<'_>, relay: &NodeId) -> io::Result<()> {
        let route = self
            .relayed_route(&transmit.destination, relay)
            .and_then(|(real, target)| Some((self.to_socket_family(real)?, target)));
        let (Some((destination, target)), Some(auth)) = (route, self.relayed.auth(relay)) else {
            self.unroutable.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let contents = transmit.contents;
        let seg = transmit
            .segment_size
            .filter(|s| *s > 0)
            .unwrap_or(contents.len())
            .max(1);
        if seg > MAX_PACKET || contents.is_empty() {
            self.relayed.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut scratch = lock(&self.relayed.scratch);
        scratch.clear();
        let mut segments = 0u64;
        for chunk in contents.chunks(seg) {
            let start = scratch.len();
            relay::emit_header(RelayFrameKind::Send, target.as_bytes(), 0, &mut scratch);
            scratch.extend_from_slice(chunk);
            if let Some(frame) = scratch.get_mut(start..) {
                // Cannot fail: the frame holds a whole header.
                let _ = auth.sealer.seal(frame);
            }
            segments += 1;
        }
        let framed = Transmit {
            destination,
            ecn: transmit.ecn,
            contents: &scratch,
            segment_size: (segments > 1).then_some(seg + HEADER_LEN),
            src_ip: transmit
                .src_ip
                .filter(|ip| ip.is_ipv4() == destination.is_ipv4() || self.local.is_ipv6()),
        };
        let result = self.io.try_io(Interest::WRITABLE, || {
            self.state.send((&*self.io).into(), &framed)
        });
        if result.is_ok() {
            self.relayed.sent.fetch_add(segments, Ordering::Relaxed);
        }
        result
    }

    /// Takes one relay-recv frame that arrived from `real`: unwraps it into
    /// the inbox, or drops and counts it.
    pub(super) fn accept_relayed(&self, real: SocketAddr, data: &[u8]) {
        let dropped = || {
            self.relayed.dropped.fetch_add(1, Ordering::Relaxed);
        };
        let Ok(frame) = RelayFrame::parse(data) else {
            return dropped();
        };
        if frame.kind != RelayFrameKind::Recv {
            return dropped();
        }
        let relay = {
            let table = self.read();
            table.lookup_real(&real).and_then(|m| table.owner(&m))
        };
        let Some((relay, auth)) = relay.and_then(|r| Some((r, self.relayed.auth(&r)?))) else {
            return dropped();
        };
        let authentic = lock(&auth.opener).open(&frame).is_ok();
        if !authentic {
            self.relayed.auth_failed.fetch_add(1, Ordering::Relaxed);
            return dropped();
        }
        let Some(src) = self.relayed.node_id(&frame.peer) else {
            return dropped();
        };
        let known = {
            let table = self.read();
            let known = table.lookup_relayed(&src);
            if let Some(mapped) = &known {
                table.note_relayed(mapped);
            }
            known
        };
        let mapped = match known {
            Some(mapped) => mapped,
            None => self.write().inbound_relayed(src, relay, Instant::now()),
        };
        let mut inbox = lock(&self.relayed.inbox);
        if inbox.len() >= self.relayed.inbox_cap {
            drop(inbox);
            return dropped();
        }
        inbox.push_back((mapped, Bytes::copy_from_slice(frame.packet)));
        self.relayed.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves unwrapped relayed packets into quinn's buffers; returns how
    /// many buffers were filled.
    pub(super) fn drain_relayed(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> usize {
        super::inbox::drain(&self.relayed.inbox, &self.relayed.dropped, bufs, meta)
    }

    /// Whether unwrapped relayed packets wait for quinn.
    pub(super) fn relayed_pending(&self) -> bool {
        !lock(&self.relayed.inbox).is_empty()
    }
}

impl PathSocket {
    /// Sends one relay-send frame carrying `packet` for `dest` to `relay`
    /// (at its current real address), sealed with our key for it, outside
    /// quinn: for benchmarks and tests of relays. `packet` must look like a
    /// QUIC packet (first byte `>= 0x40`).
    #[doc(hidden)]
    pub async fn send_to_relay(
        &self,
        relay: &NodeId,
        dest: &NodeId,
        packet: &[u8],
    ) -> io::Result<()> {
        let unusable = || io::Error::new(io::ErrorKind::NotConnected, "not a relay we use");
        let auth = self.relayed.auth(relay).ok_or_else(unusable)?;
        let real = {
            let table = self.read();
            let mapped = table.mapped_of(relay).ok_or_else(unusable)?;
            table
                .route(&mapped)
                .and_then(|p| p.direct_addr())
                .ok_or_else(unusable)?
        };
        let mut frame = Vec::with_capacity(HEADER_LEN + packet.len());
        relay::emit_header(RelayFrameKind::Send, dest.as_bytes(), 0, &mut frame);
        frame.extend_from_slice(packet);
        auth.sealer
            .seal(&mut frame)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        self.send_frame(real, &frame).await
    }
}

/// Whether a path needs the relayed send path.
pub(super) fn relay_of(path: &Path) -> Option<NodeId> {
    path.relay()
}
