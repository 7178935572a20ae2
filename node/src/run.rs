//! `relay-node run`: the node process. Takes the run lock, loads (or
//! creates) the identity, binds the transport, dials the configured peers,
//! builds the subsystems ([`crate::subsystems`]), serves the local API
//! (`DIR/api.sock`), incoming streams and (if configured) the read-only
//! HTTP endpoint, and on Ctrl-C or SIGTERM lets the subsystems tell peers
//! they stop (within [`STOPPING_BOUND`]), then cancels every task and
//! drains them within [`SHUTDOWN_BOUND`].

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use relay_transport::mux::RegisterError;
use relay_transport::{BindError, Mux, MuxConfig, NodeId, Transport, TransportConfig};
use thiserror::Error;
use tokio::signal::unix::{signal, SignalKind};

use crate::api::core::{self as api_core, Core};
use crate::api::router::{RouteError, Routes};
use crate::api::server::ApiServer;
use crate::bootstrap::{Bootstrap, BootstrapError};
use crate::datadir::{DataDir, DataDirError};
use crate::http::{HttpError, HttpOptions, HttpServer, NodeHttp};
use crate::init::{init, InitError};
use crate::keystore::{self, LoadKeyError};
use crate::lock::{LockError, RunLock};
use crate::metrics::collector::{self, NodeStats};
use crate::recent_peers_driver;
use crate::recent_peers_store::RecentPeersStore;
use crate::service::NodeService;
use crate::subsystem::Tasks;
use crate::subsystems::{self, NodeContext};
use crate::traversal_view::TransportTraversal;

/// How long shutdown waits for the node's tasks to drain.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);
/// How long shutdown lets the subsystems tell peers they stop (withdrawn
/// service registrations replicated) before the mux closes.
pub const STOPPING_BOUND: Duration = Duration::from_secs(2);

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
    /// Serve the built-in nRPC `echo` service (`--serve-echo`).
    pub serve_echo: bool,
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
    /// The local API socket could not be bound.
    #[error("api-socket: cannot bind {path}: {source}")]
    Api {
        /// The socket path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Two subsystems claim the same local API route (a bug).
    #[error(transparent)]
    Route(#[from] RouteError),
    /// A protocol could not be registered on the mux (a bug).
    #[error(transparent)]
    Protocol(#[from] RegisterError),
    /// Signal handlers could not be installed.
    #[error("signal: {0}")]
    Signal(std::io::Error),
    /// The HTTP endpoint could not start.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The ledger could not be opened (`ledger-corrupt` says how to
    /// recover).
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
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
            Self::Api { .. } => "api-socket",
            Self::Route(e) => e.kind(),
            Self::Signal(_) => "signal",
            Self::Http(e) => e.kind(),
            Self::Protocol(e) => e.kind(),
            Self::Ledger(e) => e.kind(),
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
    // Before binding anything: a damaged ledger stops `run` at once.
    let ledger = crate::ledger::Ledger::open(dir.root(), keys.secret_key.clone())?;
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
    let recent_events = transport.subscribe();
    let known = dial_peers(&transport, &options.peers, &bootstrap);
    let configured: HashSet<NodeId> = known.keys().copied().collect();
    let mux = Mux::new(transport.clone(), MuxConfig::default());
    for (peer, addr) in known {
        mux.remember_addr(peer, addr);
    }
    let subsystems = subsystems::builtins(&NodeContext {
        mux: mux.clone(),
        ledger: ledger.clone(),
        serve_echo: options.serve_echo,
    });
    let stats = Arc::new(NodeStats::new());
    let service = NodeService::new(mux.clone())
        .with_stats(stats.clone())
        .with_traversal(Arc::new(TransportTraversal::new(transport.clone())))
        .with_subsystems(subsystems.clone());
    let api = bind_api(dir, &keys.secret_key, &service, &transport, &subsystems)?;
    let service = service.with_api_stats(api.stats());
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

    let tasks = Tasks::new();
    tasks.spawn("collector", collector::collect(transport.clone(), stats));
    tasks.spawn(
        "recent-peers",
        recent_peers_driver::run(
            transport.clone(),
            recent_events,
            RecentPeersStore::new(dir),
            configured,
        ),
    );
    subsystems.register_protocols(&mux, &tasks)?;
    mux.start();
    if let Some(http) = http {
        let source = NodeHttp::new(service.clone(), ledger.clone());
        tasks.spawn("http", http.serve(Arc::new(source)));
    }
    subsystems.start(&tasks);
    tasks.spawn_draining("api", api.serve(tasks.token()));

    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            if let Err(e) = result {
                tracing::warn!(error = %e, "Ctrl-C handler failed; shutting down");
            }
            tracing::info!("interrupted; shutting down");
        }
        _ = sigterm.recv() => tracing::info!("SIGTERM; shutting down"),
    }

    // While the connections are up: withdrawals reach the peers.
    if !subsystems.stopping(STOPPING_BOUND).await {
        tracing::debug!("subsystems still stopping after {STOPPING_BOUND:?}");
    }
    mux.close();
    if !tasks.shutdown(SHUTDOWN_BOUND).await {
        tracing::warn!(
            left = tasks.len(),
            "tasks still running after {} s; stopping anyway",
            SHUTDOWN_BOUND.as_secs()
        );
    }
    transport.close().await;
    tokio::task::spawn_blocking(move || ledger.close())
        .await
        .ok();
    tracing::info!("stopped");
    Ok(())
}

/// Builds the local API (the core routes and every subsystem's) and binds
/// `DIR/api.sock`.
fn bind_api(
    dir: &DataDir,
    identity: &relay_transport::SecretKey,
    service: &NodeService,
    transport: &Transport,
    subsystems: &crate::subsystem::SubsystemSet,
) -> Result<ApiServer, RunError> {
    let mut routes = Routes::new();
    let status = service.clone();
    let netcheck = service.clone();
    let events = transport.clone();
    api_core::register(
        &mut routes,
        Core {
            identity: identity.clone(),
            status: Arc::new(move || serde_json::to_value(status.status()).unwrap_or_default()),
            netcheck: Arc::new(move || {
                serde_json::to_value(netcheck.netcheck()).unwrap_or_default()
            }),
            events: Arc::new(move || events.subscribe()),
        },
    )?;
    subsystems.register_routes(&mut routes)?;
    let path = dir.api_socket_path();
    ApiServer::bind(&path, routes).map_err(|source| RunError::Api {
        path: path.display().to_string(),
        source,
    })
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
