//! The HTTP endpoint's listener: binds (after checking the options), then
//! accepts connections, asks the [`Admission`] state about each, and hands
//! the ones it takes to [`conn::serve`]. Accepting never waits for a
//! connection to end, so slow clients cannot hold up a prompt one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::admission::{Admission, Admit, ConnId, Limits};
use super::auth::TokenDigest;
use super::conn::{self, Connection};
use super::router::HttpSource;
use super::{HttpError, HttpOptions, HEAD_TIMEOUT, MAX_CONNECTIONS, MAX_PER_SOURCE};

/// The answer to a connection the endpoint has no room for.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\
    Retry-After: 1\r\nConnection: close\r\n\r\nbusy\n";

/// A bound endpoint.
#[derive(Debug)]
pub struct HttpServer {
    listener: TcpListener,
    local: SocketAddr,
    token: Option<Arc<TokenDigest>>,
    head_timeout: Duration,
    limits: Limits,
}

impl HttpServer {
    /// Checks the options, reads the token file and binds.
    pub async fn bind(options: &HttpOptions) -> Result<Self, HttpError> {
        let addr = options.addr;
        if !addr.ip().is_loopback() {
            if !options.allow_remote {
                return Err(HttpError::NotLoopback(addr));
            }
            if options.token_file.is_none() {
                return Err(HttpError::TokenRequired(addr));
            }
        }
        let token = options
            .token_file
            .as_deref()
            .map(TokenDigest::from_file)
            .transpose()
            .map_err(HttpError::Token)?
            .map(Arc::new);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| HttpError::Bind { addr, source })?;
        Ok(Self {
            listener,
            local,
            token,
            head_timeout: HEAD_TIMEOUT,
            limits: Limits {
                total: MAX_CONNECTIONS,
                per_source: MAX_PER_SOURCE,
            },
        })
    }

    /// The bound address (with the real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Replaces [`HEAD_TIMEOUT`] (tests).
    pub fn with_head_timeout(mut self, timeout: Duration) -> Self {
        self.head_timeout = timeout;
        self
    }

    /// Replaces [`MAX_CONNECTIONS`] and [`MAX_PER_SOURCE`] (tests).
    pub fn with_limits(mut self, total: usize, per_source: usize) -> Self {
        self.limits = Limits { total, per_source };
        self
    }

    /// Serves until the returned future is dropped (which drops every open
    /// connection too).
    pub async fn serve(self, source: Arc<dyn HttpSource>) {
        let gate = Arc::new(Gate::new(self.limits));
        let mut tasks = JoinSet::new();
        // Stops the streams' feeders, which run outside `tasks`.
        let stop = CancellationToken::new();
        let _stop = stop.clone().drop_guard();
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, say: let connections end first.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            while tasks.try_join_next().is_some() {}
            match Gate::admit(&gate, peer) {
                Some((ticket, evicted)) => {
                    let connection = Connection {
                        ticket,
                        evicted,
                        token: self.token.clone(),
                        source: source.clone(),
                        head_timeout: self.head_timeout,
                        close: stop.child_token(),
                    };
                    tasks.spawn(conn::serve(stream, connection));
                }
                None => refuse(stream),
            }
        }
    }
}

/// Tells a client there is no room, without waiting on it, and closes.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(BUSY_RESPONSE);
}

/// The [`Admission`] state shared by the connections; each one's value is
/// the way to tell it to close.
#[derive(Debug)]
struct Gate(Mutex<Admission<oneshot::Sender<()>>>);

impl Gate {
    fn new(limits: Limits) -> Self {
        Self(Mutex::new(Admission::new(limits)))
    }

    fn lock(&self) -> MutexGuard<'_, Admission<oneshot::Sender<()>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A ticket for a new connection from `peer`, or `None` when refused.
    fn admit(gate: &Arc<Self>, peer: SocketAddr) -> Option<(Ticket, oneshot::Receiver<()>)> {
        let (tx, rx) = oneshot::channel();
        let admitted = gate.lock().admit(Instant::now(), peer.ip(), tx);
        match admitted {
            Admit::Accept { id, evicted } => {
                if let Some(tx) = evicted {
                    let _ = tx.send(());
                    tracing::debug!(%peer, "http endpoint full: evicted the connection that waited longest for its head");
                }
                let ticket = Ticket {
                    gate: gate.clone(),
                    id,
                };
                Some((ticket, rx))
            }
            refused @ (Admit::SourceFull | Admit::Full) => {
                tracing::debug!(%peer, ?refused, "http connection refused");
                None
            }
        }
    }
}

/// A connection's place in the admission state; dropping it frees the place.
#[derive(Debug)]
pub(super) struct Ticket {
    gate: Arc<Gate>,
    id: ConnId,
}

impl Ticket {
    /// The connection's head is in: it can no longer be evicted.
    pub(super) fn head_received(&self) {
        self.gate.lock().head_received(self.id);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.lock().closed(self.id);
    }
}
