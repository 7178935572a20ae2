//! # The protocol mux: application streams and datagrams by protocol id
//!
//! Upper layers (ping, and next the ledger, channels and RPC) share each
//! peer connection. The mux routes what peers open or send to the handler
//! registered for its protocol, and opens streams to a NodeId, dialing it
//! when needed. It sits on the public [`Transport`] API only; once a mux
//! runs, nothing else calls [`Transport::accept`].
//!
//! ## Use
//!
//! [`Mux::new`] over a transport; [`Mux::register`] each protocol (id,
//! name, queue bounds), which returns its [`ProtocolRx`]; then
//! [`Mux::start`]. A handler drains its `ProtocolRx` at its own pace;
//! [`Mux::open_bi`], [`Mux::open_uni`] and [`Mux::send_datagram`] reach a
//! peer's handler of the same id; [`Mux::stats`] gives the counters.
//!
//! ## Wire
//!
//! Every application stream, bidirectional or unidirectional, starts with
//! its protocol id: a 16-bit unsigned integer, big-endian
//! ([`HEADER_LEN`] = 2 bytes), written by the opener before anything else.
//! Every application datagram's payload starts with the same 2 bytes (after
//! the transport's own one-byte datagram prefix, which upper layers never
//! see). Id 0 is reserved. Assigned ids: 1 ping; 2 ledger, 3 channels,
//! 4 rpc are reserved for those layers.
//!
//! ## Refusals
//!
//! A stream the mux cannot hand to a handler is reset (our send half) and
//! stopped (our receive half) with an application code; a datagram is
//! dropped. Each is counted ([`Mux::stats`]):
//!
//! | code | kind | when |
//! |------|------|------|
//! | [`RESET_UNKNOWN_PROTOCOL`] 0x10 | `unknown-protocol` | no handler for the id |
//! | [`RESET_BAD_FRAME`] 0x11 | `bad-header` | the stream ended before its 2-byte id (protocols also use this code for their own malformed frames) |
//! | [`RESET_ID_TIMEOUT`] 0x12 | `id-timeout` | no id within [`MuxConfig::id_timeout`] |
//! | [`RESET_BUSY`] 0x13 | `busy` | the protocol's queue, or the opener's share of it, is full |
//! | [`RESET_TOO_MANY_PENDING`] 0x14 | `too-many-pending` | too many streams await their id |
//! | [`RESET_SHUTDOWN`] 0x15 | `shutdown` | the mux or the handler is gone |
//!
//! ## No head-of-line blocking
//!
//! - Routing never waits on a handler or a peer: a datagram is routed at
//!   once; so is a new stream whose id has arrived (the usual case: it
//!   came in the packet that opened the stream), right on the connection's
//!   forwarding task (the transport's stream hook,
//!   [`Transport::set_stream_hook`], installed by [`Mux::start`]); any
//!   other stream's id is read on a task of its own, bounded in time
//!   ([`MuxConfig::id_timeout`]) and in number, in all and per peer
//!   ([`MuxConfig::max_pending`], [`MuxConfig::max_pending_per_peer`]).
//!   So the transport's accept queue keeps draining, and with it the
//!   connections' control messages.
//! - A protocol may take its streams without a queue
//!   ([`Mux::register_with_handler`]): a function that must not wait
//!   starts each stream's task (nRPC does, one task per call).
//! - Each protocol has its own bounded queues, one for streams and one for
//!   datagrams, with a cap on one peer's share ([`QueueConfig`]). What does
//!   not fit is refused at once and counted against the protocol
//!   ([`ProtocolStats`]); a stalled handler only ever loses its own
//!   traffic.
//!
//! ## Open by NodeId
//!
//! [`Mux::open_bi`] and [`Mux::open_uni`] use the live connection to the
//! peer; without one they dial it first with
//! [`Transport::connect_best`]: through a relay that serves us, else at
//! the address [`Mux::remember_addr`] stored. [`Mux::send_datagram`] never
//! dials (a datagram may be lost anyway).
//!
//! ## Reconnects
//!
//! Streams belong to one connection. [`crate::PeerEvent::Connected`]
//! carries the connection's generation: a layer that keeps streams open to
//! a peer reopens them when it sees a new generation for that peer; a
//! [`crate::PeerEvent::PathChanged`] keeps the connection and its streams.
//!
//! ## What this module must not know about
//!
//! What any protocol means: it only reads and writes the 2-byte id.

mod addrs;
mod batch;
pub mod buffered;
pub mod coalesce;
mod config;
mod driver;
mod error;
pub mod framing;
mod id;
mod open;
mod pending;
mod protocol;
mod queue;
pub mod reader;
mod refuse;
mod registry;
mod stats;
pub mod writer;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use relay_proto::NodeId;
use tokio::sync::watch;

pub use addrs::MAX_KNOWN_ADDRS;
pub use buffered::{BufferedSendStream, BufferedWriteError};
pub use config::{MuxConfig, QueueConfig};
pub use error::{OpenError, RegisterError};
pub use id::{frame_datagram, read_header, split_datagram, HeaderError, ProtocolId, HEADER_LEN};
pub use protocol::ProtocolRx;
pub use refuse::{
    reset_bi, stop_uni, Refusal, RESET_BAD_FRAME, RESET_BUSY, RESET_ID_TIMEOUT, RESET_SHUTDOWN,
    RESET_TOO_MANY_PENDING, RESET_UNKNOWN_PROTOCOL,
};
pub use registry::StreamHandler;
pub use stats::{MuxStats, ProtocolStats};

use crate::{RecvStream, SendStream, StreamError, StreamHook, Transport};

/// State shared by the mux's handles and its routing task.
#[derive(Debug)]
struct Shared {
    transport: Transport,
    router: Arc<driver::Router>,
    addrs: addrs::AddrBook,
    shutdown: watch::Sender<bool>,
    /// Taken by the first [`Mux::start`].
    not_started: Mutex<Option<watch::Receiver<bool>>>,
}

/// The last handle: dropping it stops the routing task.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

/// The protocol mux over one [`Transport`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Mux {
    handle: Arc<Handle>,
}

impl Mux {
    /// A mux over `transport`, not routing yet: register the protocols,
    /// then [`Mux::start`] it, so that nothing already queued on the
    /// transport is refused for want of its handler.
    pub fn new(transport: Transport, config: MuxConfig) -> Self {
        let router = Arc::new(driver::Router {
            registry: Arc::default(),
            pending: Arc::new(pending::Pending::new(
                config.max_pending,
                config.max_pending_per_peer,
            )),
            id_timeout: config.id_timeout,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        Self {
            handle: Arc::new(Handle {
                shared: Arc::new(Shared {
                    transport,
                    router,
                    addrs: addrs::AddrBook::default(),
                    shutdown,
                    not_started: Mutex::new(Some(shutdown_rx)),
                }),
            }),
        }
    }

    /// Starts routing what peers open or send on the transport (later
    /// calls do nothing). Must be called within a tokio runtime. Routing
    /// stops when the transport closes, on [`Mux::close`], or when the last
    /// handle is dropped.
    pub fn start(&self) {
        let shared = self.shared();
        let shutdown = shared
            .not_started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(shutdown) = shutdown {
            let router = shared.router.clone();
            let hook: StreamHook =
                Arc::new(move |incoming: crate::Incoming| router.take_now(incoming));
            shared.transport.set_stream_hook(hook.clone());
            tokio::spawn(driver::run(
                shared.transport.clone(),
                shared.router.clone(),
                hook,
                shutdown,
            ));
        }
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The transport underneath.
    pub fn transport(&self) -> &Transport {
        &self.shared().transport
    }

    /// Registers the handler of protocol `id` (`name` labels its counters
    /// and logs). Dropping the returned [`ProtocolRx`] unregisters it.
    pub fn register(
        &self,
        id: ProtocolId,
        name: &'static str,
        queue: QueueConfig,
    ) -> Result<ProtocolRx, RegisterError> {
        self.shared().router.registry.register(id, name, queue)
    }

    /// Registers protocol `id` like [`Mux::register`], except that its
    /// incoming streams are not queued: `streams` takes each one as soon
    /// as its id is read, where it is routed (it must not wait; a stream
    /// it hands back is refused as `busy`). This saves the queue and a
    /// task wake-up per stream for protocols that start a task per stream
    /// anyway. Datagrams still queue on the returned [`ProtocolRx`], and
    /// dropping it unregisters the protocol; its `next_stream` yields
    /// nothing until the mux closes.
    pub fn register_with_handler(
        &self,
        id: ProtocolId,
        name: &'static str,
        queue: QueueConfig,
        streams: StreamHandler,
    ) -> Result<ProtocolRx, RegisterError> {
        self.shared()
            .router
            .registry
            .register_with(id, name, queue, Some(streams))
    }

    /// Whether a handler is registered for `id`.
    pub fn is_registered(&self, id: ProtocolId) -> bool {
        self.shared().router.registry.is_registered(id)
    }

    /// Remembers an address to dial `peer` at when a stream is opened to it
    /// without a connection. Returns false (and remembers nothing) when
    /// [`MAX_KNOWN_ADDRS`] other peers are remembered.
    pub fn remember_addr(&self, peer: NodeId, addr: SocketAddr) -> bool {
        self.shared().addrs.remember(peer, addr)
    }

    /// Opens a bidirectional stream of protocol `id` to `peer`, dialing it
    /// first when there is no connection; the id is already written.
    pub async fn open_bi(
        &self,
        peer: NodeId,
        id: ProtocolId,
    ) -> Result<(SendStream, RecvStream), OpenError> {
        let shared = self.shared();
        open::open_bi(&shared.transport, &shared.addrs, peer, id, &[]).await
    }

    /// As [`Mux::open_bi`], and writes `first` right after the id, in the
    /// same write: a protocol whose streams start with a request it knows
    /// up front (an RPC call) saves a write and a send-buffer segment.
    /// A failed write of `first` is [`OpenError::ConnectionLost`].
    pub async fn open_bi_with(
        &self,
        peer: NodeId,
        id: ProtocolId,
        first: &[u8],
    ) -> Result<(SendStream, RecvStream), OpenError> {
        let shared = self.shared();
        open::open_bi(&shared.transport, &shared.addrs, peer, id, first).await
    }

    /// As [`Mux::open_bi_with`], for a request built in a buffer whose
    /// first [`HEADER_LEN`] bytes are left for the id: the id is put there
    /// and the buffer goes to the stream as it is, not copied (quinn's
    /// `write_all` copies what it is given).
    pub async fn open_bi_owned(
        &self,
        peer: NodeId,
        id: ProtocolId,
        request: Vec<u8>,
    ) -> Result<(SendStream, RecvStream), OpenError> {
        let shared = self.shared();
        open::open_bi_owned(&shared.transport, &shared.addrs, peer, id, request).await
    }

    /// Opens a unidirectional stream of protocol `id` to `peer`, dialing it
    /// first when there is no connection; the id is already written.
    pub async fn open_uni(&self, peer: NodeId, id: ProtocolId) -> Result<SendStream, OpenError> {
        let shared = self.shared();
        open::open_uni(&shared.transport, &shared.addrs, peer, id).await
    }

    /// Sends an unreliable datagram of protocol `id` to a connected peer
    /// (never dials). The payload must leave room for the 2-byte id.
    pub fn send_datagram(
        &self,
        peer: NodeId,
        id: ProtocolId,
        payload: &[u8],
    ) -> Result<(), StreamError> {
        self.shared()
            .transport
            .send_datagram(peer, frame_datagram(id, payload))
    }

    /// The counters: per protocol, and refusals before a protocol was
    /// known.
    pub fn stats(&self) -> MuxStats {
        let router = &self.shared().router;
        let mut stats = MuxStats {
            protocols: router.registry.protocol_stats(),
            pending: router.pending.count(),
            ..MuxStats::default()
        };
        router.registry.refusals.fill(&mut stats);
        stats
    }

    /// Stops routing: new streams and datagrams are no longer taken from
    /// the transport, and handlers see the end of their queues once
    /// drained. The transport itself stays up.
    pub fn close(&self) {
        self.shared().shutdown.send_replace(true);
    }
}
