//! `relay-node run`: the node process. Takes the run lock, loads (or
//! creates) the identity, binds the transport, dials the configured peers,
//! serves the control socket, the node's protocols on the transport's mux
//! and (if configured) the read-only HTTP endpoint, and shuts down cleanly
//! on Ctrl-C or SIGTERM.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use relay_transport::mux::RegisterError;
use relay_transport::{BindError, Mux, MuxConfig, NodeId, Transport, TransportConfig};
use thiserror::Error;
use tokio::signal::unix::{signal, SignalKind};

use crate::bootstrap::{Bootstrap, BootstrapError};
use crate::control::server::ControlSocket;
use crate::datadir::{DataDir, DataDirError};
use crate::http::{HttpError, HttpOptions, HttpServer};
use crate::init::{init, InitError};
use crate::keystore::{self, LoadKeyError};
use crate::lock::{LockError, RunLock};
use crate::metrics::collector::{self, NodeStats};
use crate::protocols;
use crate::service::NodeService;
use crate::traversal_view::TransportTraversal;

/// The default UDP listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7420";

/// What `run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// UDP address to bind.
    pub listen: SocketAddr,
    /// Peers to keep connected, in addition to the bootstrap file's.
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// Relay for authenticated mesh members.
    pub relay: bool,
    /// A known public address (pins the NAT type; `--public-addr`).
    pub public_addr: Option<SocketAddr>,
    /// Run NAT traversal (off with `--no-traversal`).
    pub traversal: bool,
    /// Map our port on the gateway (off with `--no-port-map`).
    pub port_map: bool,
    /// The port-mapping protocols to try, in order (`--port-map-protocols`;
    /// `None`: the transport's default).
    pub port_map_protocols: Option<Vec<relay_transport::portmap::Protocol>>,
    /// Birthday-paradox probing for cone x symmetric pairs (off with
    /// `--no-birthday`).
    pub birthday: bool,
    /// The read-only HTTP endpoint, if configured.
    pub http: Option<HttpOptions>,
}

/// Running the node failed.
#[derive(Debug, Error)]
pub enum RunError {
    /// The data dir could not be created.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// Another node holds the data dir.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Creating a first identity failed.
    #[error(transparent)]
    Init(#[from] InitError),
    /// The keys could not be loaded.
    #[error(transparent)]
    Key(#[from] LoadKeyError),
    /// The bootstrap file is unreadable.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// The transport could not start.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The control socket could not be bound.
    #[error("control-socket: cannot bind {path}: {source}")]
    Control {
        /// The socket path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("signal: {0}")]
    Signal(std::io::Error),
    /// The HTTP endpoint could not start.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A protocol could not be registered on the mux.
    #[error(transparent)]
    Protocol(#[from] RegisterError),
}

impl RunError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DataDir(e) => e.kind(),
            Self::Lock(e) => e.kind(),
            Self::Init(e) => e.kind(),
            Self::Key(e) => e.kind(),
            Self::Bootstrap(e) => e.kind(),
            Self::Bind(BindError::Io { .. }) => "bind",
            Self::Bind(BindError::Config(_)) => "config",
            Self::Control { .. } => "control-socket",
            Self::Signal(_) => "signal",
            Self::Http(e) => e.kind(),
            Self::Protocol(e) => e.kind(),
        }
    }
}

/// Runs the node until Ctrl-C or SIGTERM.
pub async fn run(dir: &DataDir, options: RunOptions) -> Result<(), RunError> {
    crate::preflight::preflight(dir, &options)?;
    dir.create()?;
    let _lock = RunLock::acquire(dir).await?;
    if !keystore::identity_exists(dir) {
        let id = init(dir, None)?;
        crate::logging::stderr_line(&format!(
            "relay-node: no identity in {dir}; created a new one: {id}"
        ));
    }
    let keys = keystore::load_keys(dir)?;
    let bootstrap = Bootstrap::load(dir)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signal)?;

    let mut config = TransportConfig::new(
        keys.secret_key.clone(),
        Some(keys.network_key.clone()),
        options.listen,
    );
    config.relay = options.relay;
    config.public_addr = options.public_addr;
    config.traversal = options.traversal;
    config.port_map.enabled = options.port_map;
    if let Some(protocols) = &options.port_map_protocols {
        config.port_map.protocols = protocols.clone();
    }
    config.birthday = options.birthday;
    let transport = Transport::bind(config).await?;
    let node_id = transport.node_id();
    let listen = transport.local_addrs();
    let control_path = dir.control_socket_path();
    let control = ControlSocket::bind(&control_path).map_err(|source| RunError::Control {
        path: control_path.display().to_string(),
        source,
    })?;
    let http = match &options.http {
        Some(http) => Some(HttpServer::bind(http).await?),
        None => None,
    };

    for addr in &listen {
        tracing::info!(node_id = %node_id, %addr, data_dir = %dir, "relay-node listening");
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "relay-node {node_id} listening on {addr}");
        let _ = stdout.flush();
    }
    if let Some(http) = &http {
        let addr = http.local_addr();
        tracing::info!(%addr, "http listening");
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "http listening on {addr}");
        let _ = stdout.flush();
    }

    let known = dial_peers(&transport, &options.peers, &bootstrap);
    let stats = Arc::new(NodeStats::new());
    let collect = tokio::spawn(collector::collect(transport.clone(), stats.clone()));
    let mux = Mux::new(transport.clone(), MuxConfig::default());
    let served = protocols::serve_builtins(&mux)?;
    mux.start();
    let service = Arc::new(
        NodeService::new(mux.clone(), known)
            .with_stats(stats)
            .with_traversal(Arc::new(TransportTraversal::new(transport.clone()))),
    );
    let http = http.map(|http| tokio::spawn(http.serve(service.clone())));

    tokio::select! {
        () = control.serve(service) => {}
        result = tokio::signal::ctrl_c() => {
            if let Err(e) = result {
                tracing::warn!(error = %e, "Ctrl-C handler failed; shutting down");
            }
            tracing::info!("interrupted; shutting down");
        }
        _ = sigterm.recv() => tracing::info!("SIGTERM; shutting down"),
    }

    mux.close();
    drop(served);
    collect.abort();
    if let Some(http) = http {
        http.abort();
    }
    drop(control);
    transport.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Asks the transport to keep every configured peer connected; returns the
/// addresses used, for later dials.
fn dial_peers(
    transport: &Transport,
    peers: &[(NodeId, SocketAddr)],
    bootstrap: &Bootstrap,
) -> HashMap<NodeId, SocketAddr> {
    let mut all: HashMap<NodeId, Vec<SocketAddr>> = HashMap::new();
    for p in &bootstrap.peers {
        if !p.addrs.is_empty() {
            all.insert(p.node_id, p.addrs.clone());
        }
    }
    // `--peer` comes last so it overrides a bootstrap address.
    for (id, addr) in peers.iter().copied() {
        all.insert(id, vec![addr]);
    }
    all.retain(|id, addrs| {
        if *id == transport.node_id() {
            tracing::warn!(?addrs, "ignoring a peer entry for this node itself");
            return false;
        }
        true
    });
    let mut known = HashMap::new();
    for (id, addrs) in all {
        tracing::info!(peer = %id, ?addrs, "dialing peer");
        if let Some(first) = addrs.first() {
            known.insert(id, *first);
        }
        transport.add_peer_addrs(id, addrs);
    }
    known
}
