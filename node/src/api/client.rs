//! The blocking local API client the CLI verbs use: one connection to
//! `DIR/api.sock`, kept alive across calls and reopened when the node has
//! closed it (idle connections time out on the node's side).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;
use tokio::net::UnixStream;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::error::{kind_for_status, ErrorBody};
use super::health::HealthProof;
use super::request::hex_encode;
use crate::datadir::DataDir;
use crate::netcheck::NetcheckReport;
use crate::protocols::ping::PongReport;
use crate::status::StatusReport;

/// How long the CLI waits for any single answer (pings wait at most 60 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);
/// Largest response body the client reads.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// A local API request failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// No node is serving the data dir.
    #[error(
        "not-running: no relay-node is running for data dir {dir} (start it with relay-node run)"
    )]
    NotRunning {
        /// The data directory.
        dir: String,
    },
    /// The node answered with an error; printed as the node's own
    /// `kind: detail`.
    #[error("{kind}: {detail}")]
    Remote {
        /// Stable kind from the node.
        kind: String,
        /// Detail from the node.
        detail: String,
    },
    /// The answer could not be understood.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The socket failed.
    #[error("io: api socket: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// The stable kind.
    pub fn kind(&self) -> &str {
        match self {
            Self::NotRunning { .. } => "not-running",
            Self::Remote { kind, .. } => kind,
            Self::Protocol(_) => "protocol",
            Self::Io(_) => "io",
        }
    }
}

/// A connection to a running node.
#[derive(Debug)]
pub struct ApiClient {
    runtime: Runtime,
    path: PathBuf,
    dir: String,
    conn: Option<Conn>,
}

#[derive(Debug)]
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl ApiClient {
    /// Connects to the node serving `dir`.
    pub fn connect(dir: &DataDir) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut client = Self {
            runtime,
            path: dir.api_socket_path(),
            dir: dir.to_string(),
            conn: None,
        };
        let conn = client.runtime.block_on(open(&client.path, &client.dir))?;
        client.conn = Some(conn);
        Ok(client)
    }

    /// `GET path`, decoded as `T`.
    pub fn get<T: DeserializeOwned>(&mut self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None)
    }

    /// `POST path` with `body` as JSON, decoded as `T`.
    pub fn post<T: DeserializeOwned, B: Serialize>(
        &mut self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.call(Method::POST, path, Some(Bytes::from(body)))
    }

    /// `GET /v1/status`.
    pub fn status(&mut self) -> Result<StatusReport, ClientError> {
        self.get("/v1/status")
    }

    /// `GET /v1/netcheck`.
    pub fn netcheck(&mut self) -> Result<NetcheckReport, ClientError> {
        self.get("/v1/netcheck")
    }

    /// `POST /v1/ping`.
    pub fn ping(
        &mut self,
        node_id: &relay_proto::NodeId,
        timeout_ms: u64,
    ) -> Result<PongReport, ClientError> {
        self.post(
            "/v1/ping",
            &serde_json::json!({"node_id": node_id.to_string(), "timeout_ms": timeout_ms}),
        )
    }

    /// `GET /v1/health?nonce=...`.
    pub fn health(&mut self, nonce: &[u8]) -> Result<HealthProof, ClientError> {
        self.get(&format!("/v1/health?nonce={}", hex_encode(nonce)))
    }

    /// `GET path` as an NDJSON stream: `on_line` gets each line until it
    /// returns false or the stream ends (no overall deadline: a tail runs
    /// until stopped).
    pub fn get_lines(
        &mut self,
        path: &str,
        mut on_line: impl FnMut(&str) -> bool,
    ) -> Result<(), ClientError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(HOST, "relay-node")
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let Self {
            runtime,
            path: socket,
            dir,
            conn,
        } = self;
        runtime.block_on(async {
            // A stream keeps its connection; the next call opens another.
            let mut current = open(socket, dir).await?;
            conn.take();
            current
                .sender
                .ready()
                .await
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let response = current
                .sender
                .send_request(request)
                .await
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            if !response.status().is_success() {
                return read_response::<serde_json::Value>(response)
                    .await
                    .map(|_| ());
            }
            let mut body = response.into_body();
            let mut buf: Vec<u8> = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| ClientError::Protocol(e.to_string()))?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    let text = String::from_utf8_lossy(&line[..end]);
                    if !on_line(&text) {
                        return Ok(());
                    }
                }
                if buf.len() > MAX_RESPONSE {
                    return Err(ClientError::Protocol("a line over the size limit".into()));
                }
            }
            Ok(())
        })
    }

    fn call<T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<T, ClientError> {
        let build = || {
            let mut builder = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(HOST, "relay-node");
            if body.is_some() {
                builder = builder.header(CONTENT_TYPE, super::body::JSON);
            }
            builder
                .body(Full::new(body.clone().unwrap_or_default()))
                .map_err(|e| ClientError::Protocol(e.to_string()))
        };
        let Self {
            runtime,
            path: socket,
            dir,
            conn,
        } = self;
        runtime.block_on(async {
            let exchange = async {
                // A kept-alive connection the node has closed meanwhile
                // (idle connections time out there) fails before any
                // answer: the request is sent once more on a new one.
                // Every route is safe to repeat.
                let mut last = String::new();
                for _attempt in 0..2 {
                    let mut current = match conn.take() {
                        Some(c) if !c.sender.is_closed() => c,
                        _ => open(socket, dir).await?,
                    };
                    if let Err(e) = current.sender.ready().await {
                        last = e.to_string();
                        continue;
                    }
                    match current.sender.send_request(build()?).await {
                        Ok(response) => {
                            *conn = Some(current);
                            return read_response(response).await;
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(ClientError::Protocol(format!(
                    "the node closed the connection: {last}"
                )))
            };
            match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
                Ok(result) => result,
                Err(_) => Err(ClientError::Protocol(format!(
                    "no answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ))),
            }
        })
    }
}

/// Opens a connection; a missing socket or no listener is `not-running`.
async fn open(path: &PathBuf, dir: &str) -> Result<Conn, ClientError> {
    let stream = match UnixStream::connect(path).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ClientError::NotRunning {
                dir: dir.to_string(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn { sender, driver })
}

/// Decodes a success as `T`, an error as [`ClientError::Remote`].
async fn read_response<T: DeserializeOwned>(
    response: hyper::Response<hyper::body::Incoming>,
) -> Result<T, ClientError> {
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| ClientError::Protocol(format!("cannot read the answer: {e}")))?
        .to_bytes();
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|e| ClientError::Protocol(format!("bad answer: {e}")));
    }
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(error) => Err(ClientError::Remote {
            kind: error.error.kind,
            detail: error.error.detail,
        }),
        Err(_) => Err(ClientError::Remote {
            kind: kind_for_status(status.as_u16()).to_string(),
            detail: format!("HTTP {status}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_socket_is_not_running() {
        let root = crate::testutil::temp_dir("client");
        let dir = DataDir::new(&root);
        let err = ApiClient::connect(&dir).unwrap_err();
        assert_eq!(err.kind(), "not-running");
        assert!(err
            .to_string()
            .starts_with("not-running: no relay-node is running for data dir "));
        // A stale socket file with no listener is also not-running.
        let listener = std::os::unix::net::UnixListener::bind(dir.api_socket_path()).unwrap();
        drop(listener);
        assert_eq!(ApiClient::connect(&dir).unwrap_err().kind(), "not-running");
        std::fs::remove_dir_all(root).unwrap();
    }

    /// A server that answers one request per connection and then closes
    /// it, as the node does with a connection left idle.
    fn one_per_connection(listener: std::os::unix::net::UnixListener, connections: usize) {
        use std::io::{BufRead, BufReader, Write};
        for _ in 0..connections {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
            }
            let body = br#"{"kind":"ok"}"#;
            let mut stream = reader.into_inner();
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .unwrap();
            stream.write_all(body).unwrap();
            // Closed here, without `Connection: close`.
        }
    }

    #[test]
    fn a_connection_the_node_closed_is_reopened() {
        let root = crate::testutil::temp_dir("reopen");
        let dir = DataDir::new(&root);
        let listener = std::os::unix::net::UnixListener::bind(dir.api_socket_path()).unwrap();
        let server = std::thread::spawn(move || one_per_connection(listener, 3));
        let mut client = ApiClient::connect(&dir).unwrap();
        for _ in 0..3 {
            let v: serde_json::Value = client.get("/v1/anything").unwrap();
            assert_eq!(v["kind"], "ok");
        }
        server.join().unwrap();
        std::fs::remove_dir_all(root).unwrap();
    }
}
