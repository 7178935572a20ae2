//! The local API server: binds `DIR/api.sock` (0600), checks each
//! connecting process's uid, bounds connections ([`super::conns`]), serves
//! HTTP/1.1 with hyper, and drains within a bound on shutdown.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::body::{error, ApiResponse, Guarded};
use super::conns::{Admit, ConnId, ConnTable};
use super::error::ApiError;
use super::peercred;
use super::request::head_size;
use super::router::{ApiRequest, RequestContext, Routes};
use super::{DRAIN_TIMEOUT, HEAD_TIMEOUT, MAX_CONNECTIONS, MAX_HEAD, MAX_STREAMS};

/// hyper's read buffer: heads between [`MAX_HEAD`] and this get a typed
/// `head-too-large`; larger ones get hyper's own bodiless 431.
const READ_BUFFER: usize = 4 * MAX_HEAD;
/// Most header fields in one head (hyper answers 431 beyond).
const MAX_HEADER_FIELDS: usize = 64;
/// How long writing a refusal may take once its head is in.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Most refusals (foreign uid, all busy) being answered at once; beyond
/// that a refused connection is closed without an answer.
const MAX_REFUSALS: usize = 16;

/// The server's tunables (tests shorten them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most open connections.
    pub max_connections: usize,
    /// Most open streams.
    pub max_streams: usize,
    /// Time to send a request head (and idle time between requests).
    pub head_timeout: Duration,
    /// Time in-flight work gets after shutdown starts.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            max_streams: MAX_STREAMS,
            head_timeout: HEAD_TIMEOUT,
            drain: DRAIN_TIMEOUT,
        }
    }
}

/// The server's counters (metrics `relay_node_api_*`).
#[derive(Debug, Default)]
pub struct ApiStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused for their uid.
    pub refused: AtomicU64,
    /// Waiting connections closed to make room.
    pub evicted: AtomicU64,
    /// Connections refused because every slot was busy.
    pub busy: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
}

/// A bound local API socket; its file is removed when it stops accepting
/// (or is dropped).
#[derive(Debug)]
pub struct ApiServer {
    listener: UnixListener,
    file: SocketFile,
    own_uid: u32,
    routes: Arc<Routes>,
    limits: Limits,
    stats: Arc<ApiStats>,
}

impl ApiServer {
    /// Binds `path` with mode 0600, replacing a stale socket file. Call only
    /// while holding the run lock (any existing file is then stale), from
    /// within the runtime.
    pub fn bind(path: &Path, routes: Routes) -> std::io::Result<Self> {
        match std::fs::remove_file(path) {
            Ok(()) => tracing::debug!(path = %path.display(), "removed a stale api socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self {
            listener,
            file: SocketFile(path.to_path_buf()),
            own_uid: peercred::own_uid()?,
            routes: Arc::new(routes),
            limits: Limits::default(),
            stats: Arc::new(ApiStats::default()),
        })
    }

    /// Replaces the default limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The counters.
    pub fn stats(&self) -> Arc<ApiStats> {
        self.stats.clone()
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.file.0
    }

    /// Serves until `shutdown` fires, then stops accepting, lets requests in
    /// flight finish and streams end for at most the drain time, and
    /// returns. Every connection and stream task is owned here.
    pub async fn serve(self, shutdown: CancellationToken) {
        let table = Arc::new(Mutex::new(ConnTable::new(self.limits.max_connections)));
        let tasks = TaskTracker::new();
        let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
        let ctx = RequestContext {
            streams: Arc::new(Semaphore::new(self.limits.max_streams)),
            tasks: tasks.clone(),
            shutdown: shutdown.clone(),
        };
        loop {
            let stream = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, typically: let connections close.
                        tracing::warn!(error = %e, "api accept failed");
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                        }
                    }
                },
            };
            self.stats.connections.fetch_add(1, Relaxed);
            let uid = match stream.peer_cred() {
                Ok(cred) => cred.uid(),
                Err(e) => {
                    tracing::debug!(error = %e, "api peer credentials unreadable; closing");
                    continue;
                }
            };
            if !peercred::allowed(uid, self.own_uid) {
                self.stats.refused.fetch_add(1, Relaxed);
                tracing::warn!(uid, "api connection from a foreign uid refused");
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    let e = ApiError::Forbidden(uid);
                    let head_timeout = self.limits.head_timeout;
                    tasks.spawn(refuse(stream, e, head_timeout, permit, shutdown.clone()));
                }
                continue;
            }
            let token = shutdown.child_token();
            let admitted = lock(&table).admit(Instant::now(), token.clone());
            let id = match admitted {
                Admit::Full => {
                    self.stats.busy.fetch_add(1, Relaxed);
                    if let Ok(permit) = refusals.clone().try_acquire_owned() {
                        let e = ApiError::Busy("every api connection is busy".into());
                        let head_timeout = self.limits.head_timeout;
                        tasks.spawn(refuse(stream, e, head_timeout, permit, shutdown.clone()));
                    }
                    continue;
                }
                Admit::Admitted { id, evicted } => {
                    if let Some(evicted) = evicted {
                        self.stats.evicted.fetch_add(1, Relaxed);
                        evicted.cancel();
                    }
                    id
                }
            };
            let conn = Connection {
                id,
                table: table.clone(),
                routes: self.routes.clone(),
                ctx: ctx.clone(),
                stats: self.stats.clone(),
                limits: self.limits,
            };
            tasks.spawn(conn.serve(stream, token));
        }
        // Stop taking connections at once: a client now sees `not-running`
        // rather than waiting on a socket nobody accepts from.
        drop(self.listener);
        drop(self.file);
        tasks.close();
        if tokio::time::timeout(self.limits.drain, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("api connections still open after the drain time");
        }
    }
}

/// Removes the socket file when dropped.
#[derive(Debug)]
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn lock<T>(table: &Mutex<T>) -> MutexGuard<'_, T> {
    table
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One admitted connection.
struct Connection {
    id: ConnId,
    table: Arc<Mutex<ConnTable<CancellationToken>>>,
    routes: Arc<Routes>,
    ctx: RequestContext,
    stats: Arc<ApiStats>,
    limits: Limits,
}

impl Connection {
    /// Serves requests until the client closes, the head timeout hits, the
    /// connection is evicted (`token`), or the node shuts down (then in
    /// flight requests get the drain time).
    async fn serve(self, stream: UnixStream, token: CancellationToken) {
        let Self {
            id,
            table,
            routes,
            ctx,
            stats,
            limits,
        } = self;
        let shutdown = ctx.shutdown.clone();
        let service_table = table.clone();
        let service = service_fn(move |req: ApiRequest| {
            let guard = BusyGuard::new(service_table.clone(), id);
            let routes = routes.clone();
            let ctx = ctx.clone();
            stats.requests.fetch_add(1, Relaxed);
            async move {
                let response = answer(&routes, req, ctx).await;
                Ok::<_, Infallible>(response.map(|body| Guarded::new(body, guard).boxed()))
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.head_timeout)
            .max_buf_size(READ_BUFFER)
            .max_headers(MAX_HEADER_FIELDS)
            .keep_alive(true);
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(error = %e, "api connection ended");
                }
            }
            () = token.cancelled() => {
                if shutdown.is_cancelled() {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(limits.drain, conn.as_mut()).await;
                }
                // Else evicted: dropping the connection closes it.
            }
        }
        lock(&table).remove(id);
    }
}

/// Marks a connection busy from a request's start until its response body
/// is dropped (sent, or abandoned).
struct BusyGuard {
    table: Arc<Mutex<ConnTable<CancellationToken>>>,
    id: ConnId,
}

impl BusyGuard {
    fn new(table: Arc<Mutex<ConnTable<CancellationToken>>>, id: ConnId) -> Self {
        lock(&table).begin(id);
        Self { table, id }
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        lock(&self.table).end(self.id, Instant::now());
    }
}

/// Checks the head's size, then routes.
async fn answer(routes: &Routes, req: ApiRequest, ctx: RequestContext) -> ApiResponse {
    if head_size(&req) > MAX_HEAD {
        return error(&ApiError::HeadTooLarge(MAX_HEAD));
    }
    routes.dispatch(req, ctx).await
}

/// Reads one request head (within the head timeout) and answers it with
/// `e`, then closes. Holds a refusal permit, so refusals are bounded too.
async fn refuse(
    stream: UnixStream,
    e: ApiError,
    head_timeout: Duration,
    permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    let _permit = permit;
    let service = service_fn(move |_req: ApiRequest| {
        let response = error(&e);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_buf_size(READ_BUFFER)
        .keep_alive(false);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = tokio::time::timeout(head_timeout + REFUSAL_TIMEOUT, conn) => {}
        () = shutdown.cancelled() => {}
    }
}
