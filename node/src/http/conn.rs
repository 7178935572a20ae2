//! One connection of the HTTP endpoint: hyper reads the request head (at
//! most [`MAX_HEAD`] bytes, else 431; malformed, 400) and the router answers
//! it as soon as it is in; one request per connection. Around hyper, this
//! driver enforces the time limits: a head not complete within the head
//! timeout gets 408, the whole exchange is bounded (except a streamed
//! answer, which ends when its handler says so), and a connection that
//! the admission state evicts (still without a head) is dropped. After an
//! answer it stops sending and reads what the client still sends for a
//! moment, so closing does not reset the connection under the answer.

use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::auth::TokenDigest;
use super::router::{route, Exchange, HttpSource};
use super::server::Ticket;
use super::{MAX_HEAD, WRITE_TIMEOUT};

/// How long to keep reading (and discarding) after an answer.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How much to read (and discard) after an answer at most.
const DRAIN_LIMIT: usize = 64 * 1024;

/// The answer to a head that did not arrive in time.
pub(super) const TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\n\
    Cache-Control: no-store\r\nConnection: close\r\n\r\nrequest timeout\n";

/// What one connection needs.
pub(super) struct Connection {
    /// Its place in the admission state (released when dropped).
    pub ticket: Ticket,
    /// Fires if the admission state evicts it.
    pub evicted: oneshot::Receiver<()>,
    /// The bearer token, if one is configured.
    pub token: Option<Arc<TokenDigest>>,
    /// What to serve.
    pub source: Arc<dyn HttpSource>,
    /// How long the client has to send its head.
    pub head_timeout: Duration,
    /// Fires when the endpoint stops; a handler may fire it to drop the
    /// connection (a stream whose client fell behind).
    pub close: CancellationToken,
}

/// How the exchange ended.
enum End {
    /// hyper is done: it answered, or the client went away.
    Done,
    /// No complete head within the head timeout.
    HeadTimeout,
    /// Evicted, or the answer could not be sent in time: just close.
    Drop,
}

/// Serves one connection to its end.
pub(super) async fn serve(stream: TcpStream, connection: Connection) {
    let Connection {
        ticket,
        mut evicted,
        token,
        source,
        head_timeout,
        close,
    } = connection;
    // Whatever the connection leaves running (a stream's feeder) stops
    // when it ends.
    let _closed = close.clone().drop_guard();
    let exchange = Exchange::new(close);
    let ticket = Arc::new(ticket);
    let head_seen = Arc::new(AtomicBool::new(false));
    let service = {
        let head_seen = head_seen.clone();
        let ticket = ticket.clone();
        let exchange = exchange.clone();
        service_fn(move |request: Request<Incoming>| {
            head_seen.store(true, Ordering::Release);
            ticket.head_received();
            let (token, source, exchange) = (token.clone(), source.clone(), exchange.clone());
            Box::pin(async move {
                let response = route(&request, token.as_deref(), source.as_ref(), &exchange);
                Ok::<_, Infallible>(response.await)
            })
        })
    };
    let mut conn = http1::Builder::new()
        .keep_alive(false)
        // `Content-Type`, as the endpoint always wrote, for scripts that
        // match header names exactly.
        .title_case_headers(true)
        .max_buf_size(MAX_HEAD)
        // The driver below enforces the head timeout (hyper would close
        // without a 408).
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    let end = {
        let mut drive = pin!(poll_fn(|cx| conn.poll_without_shutdown(cx)));
        let mut head_deadline = pin!(tokio::time::sleep(head_timeout));
        let mut exchange_deadline = pin!(tokio::time::sleep(head_timeout + WRITE_TIMEOUT));
        let mut head_checked = false;
        let mut streaming = false;
        loop {
            tokio::select! {
                result = &mut drive => {
                    if let Err(e) = result {
                        tracing::trace!(error = %e, "http connection failed");
                    }
                    break End::Done;
                }
                () = &mut head_deadline, if !head_checked => {
                    head_checked = true;
                    if !head_seen.load(Ordering::Acquire) {
                        break End::HeadTimeout;
                    }
                }
                () = &mut exchange_deadline, if !streaming => {
                    if !exchange.is_streaming() {
                        break End::Drop;
                    }
                    streaming = true;
                }
                () = exchange.closing().cancelled() => break End::Drop,
                // Only a connection without a head is evicted; checked again
                // here in case the head came in meanwhile.
                Ok(()) = &mut evicted => {
                    if !head_seen.load(Ordering::Acquire) {
                        break End::Drop;
                    }
                }
            }
        }
    };
    let mut stream = conn.into_parts().io.into_inner();
    match end {
        End::Drop => return,
        End::HeadTimeout => {
            let write = stream.write_all(TIMEOUT_RESPONSE);
            if !matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(()))) {
                return;
            }
        }
        End::Done => {}
    }
    if let Ok(Ok(())) = tokio::time::timeout(WRITE_TIMEOUT, stream.shutdown()).await {
        // Closing with unread request bytes would reset the connection and
        // could destroy the answer before the client reads it.
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain(&mut stream)).await;
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
