//! The read-only HTTP endpoint: `GET /metrics` (Prometheus text format),
//! `GET /status` (the JSON of `status --json`) and `GET /healthz`.
//!
//! - **Off** unless `run --http ADDR` is given (suggested:
//!   `127.0.0.1:9742`).
//! - **Loopback by default**: a non-loopback address is refused unless
//!   `--http-allow-remote` is given together with `--http-token-file FILE`;
//!   with a token file, every request needs `Authorization: Bearer <token>`
//!   (on any address). The node keeps only the token's SHA-256 digest
//!   ([`auth`]).
//! - **Read-only**: nothing it serves changes node state; other methods get
//!   405.
//! - **Minimal HTTP/1.1** on tokio ([`head`], [`router`]): one request per
//!   connection, a head of at most [`head::MAX_HEAD`] bytes (431 beyond)
//!   read within [`HEAD_TIMEOUT`] (408 after), bad heads get 400, and at most
//!   [`MAX_CONNECTIONS`] connections are served at once.

pub mod auth;
pub mod head;
pub mod router;
mod source;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use auth::TokenDigest;
use head::{head_end, parse_head, HeadError, MAX_HEAD};
use router::{route, HttpResponse};

pub use router::HttpSource;

/// The suggested address for `run --http`.
pub const SUGGESTED_ADDR: &str = "127.0.0.1:9742";
/// How long a client may take to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing a response may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to keep reading (and discarding) after a response.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How much to read (and discard) after a response at most.
const DRAIN_LIMIT: usize = 64 * 1024;
/// Most connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 32;

/// How the endpoint was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// TCP address to listen on.
    pub addr: SocketAddr,
    /// Allow a non-loopback address (needs a token file).
    pub allow_remote: bool,
    /// The bearer token file.
    pub token_file: Option<PathBuf>,
}

/// The endpoint could not start.
#[derive(Debug, Error)]
pub enum HttpError {
    /// A non-loopback address without `--http-allow-remote`.
    #[error(
        "http-not-loopback: {0} is not a loopback address; the HTTP endpoint binds to loopback \
         unless --http-allow-remote and --http-token-file are given"
    )]
    NotLoopback(SocketAddr),
    /// A non-loopback address without a token.
    #[error("http-token-required: serving HTTP on {0} requires --http-token-file")]
    TokenRequired(SocketAddr),
    /// The token file is unusable.
    #[error("http-token: {0}")]
    Token(String),
    /// The address could not be bound.
    #[error("http-bind: cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

impl HttpError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotLoopback(_) => "http-not-loopback",
            Self::TokenRequired(_) => "http-token-required",
            Self::Token(_) => "http-token",
            Self::Bind { .. } => "http-bind",
        }
    }
}

/// A bound endpoint.
#[derive(Debug)]
pub struct HttpServer {
    listener: TcpListener,
    local: SocketAddr,
    token: Option<Arc<TokenDigest>>,
    head_timeout: Duration,
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

    /// Serves until the returned future is dropped (which drops every open
    /// connection too).
    pub async fn serve(self, source: Arc<dyn HttpSource>) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut tasks = JoinSet::new();
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            while tasks.try_join_next().is_some() {}
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let source = source.clone();
                    let token = self.token.clone();
                    let timeout = self.head_timeout;
                    tasks.spawn(async move {
                        serve_connection(stream, timeout, token.as_deref(), source.as_ref()).await;
                        tracing::trace!(%peer, "http connection done");
                        drop(permit);
                    });
                }
                Err(e) => tracing::warn!(error = %e, "http accept failed"),
            }
        }
    }
}

/// Reads one request head and answers it; the connection then closes.
async fn serve_connection(
    mut stream: TcpStream,
    head_timeout: Duration,
    token: Option<&TokenDigest>,
    source: &dyn HttpSource,
) {
    let response = match tokio::time::timeout(head_timeout, read_head(&mut stream)).await {
        Err(_) => Some(HttpResponse::text(408, "request timeout\n")),
        Ok(Err(ReadHeadError::Closed)) => None,
        Ok(Err(ReadHeadError::Head(e))) => Some(HttpResponse::text(e.status(), format!("{e}\n"))),
        Ok(Ok(buf)) => Some(match parse_head(&buf) {
            Ok(head) => route(&head, token, source),
            Err(e) => HttpResponse::text(e.status(), format!("{e}\n")),
        }),
    };
    if let Some(response) = response {
        let write = async {
            stream.write_all(&response.to_bytes()).await?;
            stream.shutdown().await
        };
        if let Ok(Ok(())) = tokio::time::timeout(WRITE_TIMEOUT, write).await {
            // Closing with unread request bytes would reset the connection
            // and could destroy the response before the client reads it.
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain(&mut stream)).await;
        }
    }
}

/// Reads and discards what the client still sends, up to [`DRAIN_LIMIT`].
async fn drain(stream: &mut TcpStream) {
    let mut chunk = [0u8; 4096];
    let mut total = 0;
    while total < DRAIN_LIMIT {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

enum ReadHeadError {
    /// The client closed or failed before a complete head.
    Closed,
    /// The head is too large.
    Head(HeadError),
}

/// Reads until the end of the head; returns the head's bytes.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, ReadHeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| ReadHeadError::Closed)?;
        if n == 0 {
            return Err(ReadHeadError::Closed);
        }
        // Rescan a few bytes before the new data: the terminator may span reads.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = head_end(buf.get(from..).unwrap_or_default()) {
            buf.truncate(from + end);
            if buf.len() > MAX_HEAD {
                return Err(ReadHeadError::Head(HeadError::TooLarge));
            }
            return Ok(buf);
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadHeadError::Head(HeadError::TooLarge));
        }
    }
}

#[cfg(test)]
mod tests;
