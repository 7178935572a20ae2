//! The three stacks of the iroh comparison behind one interface, so
//! [`crate::workloads`] runs the same code on each: stock quinn + rustls,
//! iroh (its own QUIC stack and TLS), and relay-node's Transport. Each side
//! of a connection is a [`Conn`]; streams are [`Tx`] / [`Rx`].

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use relay_transport::mux::buffered::BufferedSendStream;
use relay_transport::{NetworkKey, NodeId, SecretKey, Transport, TransportConfig};

use crate::common;

/// The send half of a stream.
pub trait Tx: Send + 'static {
    /// Writes all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> impl Future<Output = ()> + Send;
    /// Ends the stream.
    fn finish(&mut self);
}

/// The receive half of a stream.
pub trait Rx: Send + 'static {
    /// The next chunk in order; `None` at the end of the stream.
    fn next_chunk(&mut self) -> impl Future<Output = Option<Bytes>> + Send;
    /// The whole stream, up to `limit` bytes.
    fn read_all(&mut self, limit: usize) -> impl Future<Output = Vec<u8>> + Send;
}

/// One side of a connection: opens streams and accepts the peer's.
pub trait Conn: Clone + Send + Sync + 'static {
    /// Send halves.
    type Tx: Tx;
    /// Receive halves.
    type Rx: Rx;
    /// Opens a unidirectional stream.
    fn open_uni(&self) -> impl Future<Output = Self::Tx> + Send;
    /// Opens a bidirectional stream.
    fn open_bi(&self) -> impl Future<Output = (Self::Tx, Self::Rx)> + Send;
    /// The next unidirectional stream the peer opens.
    fn accept_uni(&self) -> impl Future<Output = Option<Self::Rx>> + Send;
    /// The next bidirectional stream the peer opens.
    fn accept_bi(&self) -> impl Future<Output = Option<(Self::Tx, Self::Rx)>> + Send;
}

impl Tx for quinn::SendStream {
    async fn write_all(&mut self, buf: &[u8]) {
        quinn::SendStream::write_all(self, buf).await.unwrap();
    }
    fn finish(&mut self) {
        let _ = quinn::SendStream::finish(self);
    }
}

/// relay-node's send half: what a user gets from wrapping
/// `Transport::open_*`'s stream, small writes coalesced.
impl Tx for BufferedSendStream {
    async fn write_all(&mut self, buf: &[u8]) {
        BufferedSendStream::write_all(self, buf).await.unwrap();
    }
    fn finish(&mut self) {
        let _ = BufferedSendStream::finish(self);
    }
}

impl Rx for quinn::RecvStream {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        self.read_chunk(usize::MAX, true)
            .await
            .unwrap()
            .map(|c| c.bytes)
    }
    async fn read_all(&mut self, limit: usize) -> Vec<u8> {
        self.read_to_end(limit).await.unwrap()
    }
}

impl Tx for iroh::endpoint::SendStream {
    async fn write_all(&mut self, buf: &[u8]) {
        iroh::endpoint::SendStream::write_all(self, buf)
            .await
            .unwrap();
    }
    fn finish(&mut self) {
        let _ = iroh::endpoint::SendStream::finish(self);
    }
}

impl Rx for iroh::endpoint::RecvStream {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        self.read_chunk(usize::MAX).await.unwrap()
    }
    async fn read_all(&mut self, limit: usize) -> Vec<u8> {
        self.read_to_end(limit).await.unwrap()
    }
}

impl Conn for quinn::Connection {
    type Tx = quinn::SendStream;
    type Rx = quinn::RecvStream;
    async fn open_uni(&self) -> Self::Tx {
        quinn::Connection::open_uni(self).await.unwrap()
    }
    async fn open_bi(&self) -> (Self::Tx, Self::Rx) {
        quinn::Connection::open_bi(self).await.unwrap()
    }
    async fn accept_uni(&self) -> Option<Self::Rx> {
        quinn::Connection::accept_uni(self).await.ok()
    }
    async fn accept_bi(&self) -> Option<(Self::Tx, Self::Rx)> {
        quinn::Connection::accept_bi(self).await.ok()
    }
}

impl Conn for iroh::endpoint::Connection {
    type Tx = iroh::endpoint::SendStream;
    type Rx = iroh::endpoint::RecvStream;
    async fn open_uni(&self) -> Self::Tx {
        iroh::endpoint::Connection::open_uni(self).await.unwrap()
    }
    async fn open_bi(&self) -> (Self::Tx, Self::Rx) {
        iroh::endpoint::Connection::open_bi(self).await.unwrap()
    }
    async fn accept_uni(&self) -> Option<Self::Rx> {
        iroh::endpoint::Connection::accept_uni(self).await.ok()
    }
    async fn accept_bi(&self) -> Option<(Self::Tx, Self::Rx)> {
        iroh::endpoint::Connection::accept_bi(self).await.ok()
    }
}

/// One side of a relay-node connection: our Transport and the peer's id.
#[derive(Debug, Clone)]
pub struct RelaySide {
    /// Our Transport.
    pub transport: Transport,
    /// The peer.
    pub peer: NodeId,
}

impl Conn for RelaySide {
    type Tx = BufferedSendStream;
    type Rx = quinn::RecvStream;
    async fn open_uni(&self) -> Self::Tx {
        BufferedSendStream::new(self.transport.open_uni(self.peer).await.unwrap())
    }
    async fn open_bi(&self) -> (Self::Tx, Self::Rx) {
        let (send, recv) = self.transport.open_bi(self.peer).await.unwrap();
        (BufferedSendStream::new(send), recv)
    }
    async fn accept_uni(&self) -> Option<Self::Rx> {
        Some(common::relay::accept_uni(&self.transport).await)
    }
    async fn accept_bi(&self) -> Option<(Self::Tx, Self::Rx)> {
        let (send, recv) = common::relay::accept_bi(&self.transport).await;
        Some((BufferedSendStream::new(send), recv))
    }
}

/// relay-node's sides writing on quinn's own send stream, as
/// `Transport::open_*` hands it out, with no coalescing (the baseline of
/// [`BufferedSendStream`]).
#[derive(Debug, Clone)]
pub struct QuinnRelaySide(pub RelaySide);

impl Conn for QuinnRelaySide {
    type Tx = quinn::SendStream;
    type Rx = quinn::RecvStream;
    async fn open_uni(&self) -> Self::Tx {
        self.0.transport.open_uni(self.0.peer).await.unwrap()
    }
    async fn open_bi(&self) -> (Self::Tx, Self::Rx) {
        self.0.transport.open_bi(self.0.peer).await.unwrap()
    }
    async fn accept_uni(&self) -> Option<Self::Rx> {
        self.0.accept_uni().await
    }
    async fn accept_bi(&self) -> Option<(Self::Tx, Self::Rx)> {
        Some(common::relay::accept_bi(&self.0.transport).await)
    }
}

/// The ALPN of the iroh endpoints.
pub const IROH_ALPN: &[u8] = b"relay-bench/0";

/// An iroh endpoint on 127.0.0.1 only, with no relay and no address lookup
/// (the `Minimal` preset: ring crypto provider, defaults otherwise).
pub async fn iroh_endpoint() -> iroh::Endpoint {
    iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .relay_mode(iroh::RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap()
        .alpns(vec![IROH_ALPN.to_vec()])
        .bind()
        .await
        .unwrap()
}

/// Where to dial an iroh endpoint: its id and loopback address.
pub fn iroh_addr(endpoint: &iroh::Endpoint) -> iroh::EndpointAddr {
    let sock = endpoint
        .bound_sockets()
        .into_iter()
        .find(|a| a.is_ipv4())
        .unwrap();
    iroh::EndpointAddr::new(endpoint.id()).with_ip_addr(sock)
}

/// Connects `client` to `server`: (client side, server side).
pub async fn iroh_connect(
    server: &iroh::Endpoint,
    client: &iroh::Endpoint,
) -> (iroh::endpoint::Connection, iroh::endpoint::Connection) {
    let addr = iroh_addr(server);
    let accept = async { server.accept().await.unwrap().await.unwrap() };
    let dial = async { client.connect(addr, IROH_ALPN).await.unwrap() };
    let (server_side, client_side) = tokio::join!(accept, dial);
    (client_side, server_side)
}

/// A relay-node Transport on loopback with the default config, except for
/// the [`relay_transport::QuicTuning`] fields the environment overrides
/// (`RELAY_BENCH_TUNE_<FIELD>`, e.g. `RELAY_BENCH_TUNE_SEND_WINDOW=262144`;
/// for sweeping the tuning in fresh processes).
pub async fn tuned_transport(key: &NetworkKey) -> Transport {
    let mut config = TransportConfig::new(
        SecretKey::generate(),
        Some(key.clone()),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
    );
    let tune = |name: &str| std::env::var(format!("RELAY_BENCH_TUNE_{name}")).ok();
    let q = &mut config.quic;
    if let Some(v) = tune("STREAM_RECEIVE_WINDOW") {
        q.stream_receive_window = v.parse().unwrap();
    }
    if let Some(v) = tune("RECEIVE_WINDOW") {
        q.receive_window = v.parse().unwrap();
    }
    if let Some(v) = tune("SEND_WINDOW") {
        q.send_window = v.parse().unwrap();
    }
    if let Some(v) = tune("ACK_ELICITING_THRESHOLD") {
        q.ack_eliciting_threshold = Some(v.parse().unwrap());
    }
    if let Some(v) = tune("MAX_ACK_DELAY_US") {
        q.max_ack_delay = Some(std::time::Duration::from_micros(v.parse().unwrap()));
    }
    if let Some(v) = tune("INITIAL_WINDOW") {
        q.initial_window = v.parse().unwrap();
    }
    if let Some(v) = tune("SEGMENTATION_OFFLOAD") {
        q.segmentation_offload = v == "1" || v == "true";
    }
    Transport::bind(config).await.unwrap()
}

/// A connected pair of one stack, with what keeps it alive.
pub enum Pair {
    /// Stock quinn + rustls.
    Stock {
        /// Server and client endpoints.
        endpoints: (quinn::Endpoint, quinn::Endpoint),
        /// Client side, server side.
        conns: (quinn::Connection, quinn::Connection),
    },
    /// iroh.
    Iroh {
        /// Server and client endpoints.
        endpoints: (iroh::Endpoint, iroh::Endpoint),
        /// Client side, server side.
        conns: (iroh::endpoint::Connection, iroh::endpoint::Connection),
    },
    /// relay-node: two connected Transports.
    Relay {
        /// Client side, server side.
        sides: (RelaySide, RelaySide),
    },
}

impl Pair {
    /// A fresh connected pair of `stack`.
    pub async fn new(stack: Stack) -> Self {
        match stack {
            Stack::Stock => {
                let configs = common::stock::configs(None);
                let (server, client, addr) = common::stock::endpoints(&configs);
                let conns = common::stock::connect(&server, &client, addr).await;
                Pair::Stock {
                    endpoints: (server, client),
                    conns,
                }
            }
            Stack::Iroh => {
                let server = iroh_endpoint().await;
                let client = iroh_endpoint().await;
                let conns = iroh_connect(&server, &client).await;
                Pair::Iroh {
                    endpoints: (server, client),
                    conns,
                }
            }
            Stack::Relay => {
                let key = NetworkKey::generate();
                let server = tuned_transport(&key).await;
                let client = tuned_transport(&key).await;
                client
                    .connect(server.node_id(), common::relay::transport_addr(&server))
                    .await
                    .unwrap();
                let sides = (
                    RelaySide {
                        peer: server.node_id(),
                        transport: client.clone(),
                    },
                    RelaySide {
                        peer: client.node_id(),
                        transport: server,
                    },
                );
                Pair::Relay { sides }
            }
        }
    }

    /// Closes both sides.
    pub async fn close(self) {
        match self {
            Pair::Stock { endpoints, conns } => {
                conns.0.close(0u32.into(), b"done");
                endpoints.1.wait_idle().await;
                drop(endpoints.0);
            }
            Pair::Iroh { endpoints, conns } => {
                conns.0.close(0u32.into(), b"done");
                endpoints.1.close().await;
                endpoints.0.close().await;
            }
            Pair::Relay { sides } => {
                sides.0.transport.close().await;
                sides.1.transport.close().await;
            }
        }
    }
}

/// Which stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// quinn + rustls, ChaCha20-Poly1305 only.
    Stock,
    /// iroh with its defaults (rustls, ring).
    Iroh,
    /// relay-node's Transport.
    Relay,
}

impl Stack {
    /// Every stack, in the order runs interleave them.
    pub const ALL: [Stack; 3] = [Stack::Stock, Stack::Iroh, Stack::Relay];

    /// Short name (also the `RELAY_BENCH_ONLY` key).
    pub fn key(self) -> &'static str {
        match self {
            Stack::Stock => "stock",
            Stack::Iroh => "iroh",
            Stack::Relay => "relay",
        }
    }
}
