//! The read-only HTTP endpoint: `GET /metrics` (Prometheus text format),
//! `GET /status` (the JSON of `status --json`), `GET /healthz`, and the
//! ledger: `GET /ledger` (a page) and `GET /ledger/events` (server-sent
//! events, resumed by `Last-Event-ID`; [`ledger`]).
//!
//! - **Off** unless `run --http ADDR` is given (suggested:
//!   `127.0.0.1:9742`).
//! - **Loopback by default**: a non-loopback address is refused unless
//!   `--http-allow-remote` is given together with `--http-token-file FILE`;
//!   with a token file, every request needs `Authorization: Bearer <token>`
//!   (on any address), checked as soon as the request head is in. The node
//!   keeps only the token's SHA-256 digest ([`auth`]).
//! - **Read-only**: nothing it serves changes node state; other methods get
//!   405.
//! - **HTTP/1.1 on hyper** (the local API's stack): one request per
//!   connection ([`conn`]), a head of at most [`MAX_HEAD`] bytes (431
//!   beyond) read within [`HEAD_TIMEOUT`] (408 after), malformed heads get
//!   400.
//! - **Slow clients cannot starve it** ([`admission`]): at most
//!   [`MAX_PER_SOURCE`] connections per source address and
//!   [`MAX_CONNECTIONS`] in all; when full, the oldest connection still
//!   without a head makes room. Accepting never waits on a connection.
//! - **Server-sent events** ([`sse`]) for streaming resources: a streamed
//!   answer is exempt from the exchange's time bound; its handler bounds it
//!   (a client that falls behind is disconnected).
//!
//! It knows nothing of the node beyond [`HttpSource`]; it shares the local
//! API's response bodies and connection table ([`crate::api`]).

pub mod admission;
pub mod auth;
mod conn;
pub mod ledger;
pub mod router;
mod server;
mod source;
pub mod sse;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

pub use router::HttpSource;
pub use server::HttpServer;
pub use source::NodeHttp;

/// The suggested address for `run --http`.
pub const SUGGESTED_ADDR: &str = "127.0.0.1:9742";
/// How long a client may take to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long answering may take once the head is in.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted (hyper's smallest buffer limit).
pub const MAX_HEAD: usize = 8 * 1024;
/// Most connections open at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Most connections open at once from one source (an IPv4 address or an
/// IPv6 /64).
pub const MAX_PER_SOURCE: usize = 16;

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

#[cfg(test)]
mod ledger_tests;
#[cfg(test)]
mod tests;
