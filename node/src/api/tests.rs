//! The local API server over a real Unix socket, with a fake node behind
//! the core routes: every route, the typed errors for bad input, the
//! connection bound under idle and slow clients, and shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use relay_proto::frame_stream::{encode_frame, FrameDecoder, UPGRADE_PROTOCOL};
use relay_proto::SecretKey;
use relay_transport::{PathKind, PeerEvent};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::core::{register, Core};
use super::health::{verify, HealthProof};
use super::router::Routes;
use super::server::{ApiServer, ApiStats, Limits};

struct Fixture {
    root: std::path::PathBuf,
    path: std::path::PathBuf,
    key: SecretKey,
    events: broadcast::Sender<PeerEvent>,
    stats: Arc<ApiStats>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl Fixture {
    async fn start(limits: Limits) -> Self {
        let root = crate::testutil::temp_dir("api");
        let path = root.join("api.sock");
        let key = SecretKey::generate();
        let (events, _) = broadcast::channel(16);
        let sender = events.clone();
        let mut routes = Routes::new();
        register(
            &mut routes,
            Core {
                identity: key.clone(),
                status: Arc::new(|| json!({"node_id": "fake", "peers": []})),
                netcheck: Arc::new(|| json!({"nat": {"type": "unknown"}})),
                events: Arc::new(move || sender.subscribe()),
            },
        )
        .unwrap();
        routes
            .post(
                "/v1/slow",
                |req: super::router::ApiRequest, _ctx| async move {
                    let v: Value =
                        super::request::read_json(req, super::MAX_BODY, super::BODY_TIMEOUT)
                            .await?;
                    Ok(super::body::ok(&v))
                },
            )
            .unwrap();
        let server = ApiServer::bind(&path, routes).unwrap().with_limits(limits);
        let stats = server.stats();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(server.serve(shutdown.clone()));
        Self {
            root,
            path,
            key,
            events,
            stats,
            shutdown,
            server,
        }
    }

    async fn client(&self) -> http1::SendRequest<Full<Bytes>> {
        let stream = UnixStream::connect(&self.path).await.unwrap();
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn.with_upgrades());
        sender
    }

    /// One request on a fresh connection: (status, JSON body).
    async fn call(&self, method: Method, uri: &str, body: &str) -> (StatusCode, Value) {
        let mut sender = self.client().await;
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "relay-node")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, value)
    }

    /// Raw bytes in, raw response out (the node closes the connection).
    async fn raw(&self, request: &[u8]) -> String {
        let mut stream = UnixStream::connect(&self.path).await.unwrap();
        // The node may close before reading everything we send.
        let _ = stream.write_all(request).await;
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("the server drains within its bound")
            .unwrap();
        assert!(!self.path.exists(), "the socket file is removed");
        std::fs::remove_dir_all(self.root).unwrap();
    }
}

fn kind(v: &Value) -> &str {
    v["error"]["kind"].as_str().unwrap_or("")
}

#[tokio::test]
async fn socket_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::start(Limits::default()).await;
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    f.stop().await;
}

#[tokio::test]
async fn health_status_netcheck() {
    let f = Fixture::start(Limits::default()).await;
    let (status, v) = f.call(Method::GET, "/v1/health?nonce=00ff10", "").await;
    assert_eq!(status, StatusCode::OK);
    let proof: HealthProof = serde_json::from_value(v).unwrap();
    let id = f.key.node_id();
    assert_eq!(verify(&proof, &[0x00, 0xff, 0x10], Some(&id)).unwrap(), id);
    assert_eq!(proof.version, env!("CARGO_PKG_VERSION"));

    let (status, v) = f.call(Method::GET, "/v1/health?nonce=xyz", "").await;
    assert_eq!((status.as_u16(), kind(&v)), (400, "bad-request"));
    let (status, v) = f.call(Method::GET, "/v1/health", "").await;
    assert_eq!((status.as_u16(), kind(&v)), (400, "bad-request"));

    let (status, v) = f.call(Method::GET, "/v1/status", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["node_id"], "fake");
    let (status, v) = f.call(Method::GET, "/v1/netcheck", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["nat"]["type"], "unknown");
    f.stop().await;
}

#[tokio::test]
async fn unknown_routes_methods_and_versions() {
    let f = Fixture::start(Limits::default()).await;
    let (status, v) = f.call(Method::GET, "/v1/nope", "").await;
    assert_eq!((status.as_u16(), kind(&v)), (404, "not-found"));
    let (status, v) = f.call(Method::GET, "/v2/status", "").await;
    assert_eq!((status.as_u16(), kind(&v)), (404, "not-found"));
    let (status, v) = f.call(Method::DELETE, "/v1/status", "").await;
    assert_eq!((status.as_u16(), kind(&v)), (405, "method-not-allowed"));
    let (status, v) = f.call(Method::GET, "/v1/stream/nope", "").await;
    assert_eq!((status.as_u16(), kind(&v)), (404, "not-found"));
    let (status, v) = f.call(Method::GET, "/v1/stream/echo", "").await;
    assert_eq!((status.as_u16(), kind(&v)), (426, "upgrade-required"));
    f.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_typed_errors_and_the_node_stays_up() {
    let f = Fixture::start(Limits::default()).await;
    // Not HTTP at all: hyper's own 400.
    let out = f.raw(b"\x00\x01garbage\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    // A head over 16 KiB (under hyper's buffer): typed 431.
    let big = "x".repeat(20 * 1024);
    let out = f
        .raw(format!("GET /v1/status HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await;
    assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
    assert!(out.contains(r#""kind":"head-too-large""#), "{out}");
    // A head far over any buffer: hyper's 431.
    let huge = "x".repeat(200 * 1024);
    let out = f
        .raw(format!("GET /v1/status HTTP/1.1\r\nHost: a\r\nX-Big: {huge}\r\n\r\n").as_bytes())
        .await;
    assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
    // A body over 64 KiB: typed 413.
    let body = "1".repeat(super::MAX_BODY + 1);
    let (status, v) = f.call(Method::POST, "/v1/slow", &body).await;
    assert_eq!((status.as_u16(), kind(&v)), (413, "body-too-large"));
    // Bad JSON: typed 400.
    let (status, v) = f.call(Method::POST, "/v1/slow", "{nope").await;
    assert_eq!((status.as_u16(), kind(&v)), (400, "bad-request"));
    // Still serving.
    let (status, _) = f.call(Method::GET, "/v1/status", "").await;
    assert_eq!(status, StatusCode::OK);
    f.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stops_coming_gets_408() {
    let f = Fixture::start(Limits::default()).await;
    let out = f
        .raw(b"POST /v1/slow HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n{\"a\"")
        .await;
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    assert!(out.contains(r#""kind":"request-timeout""#), "{out}");
    f.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_head_that_stops_coming_is_closed() {
    let f = Fixture::start(Limits::default()).await;
    let mut stream = UnixStream::connect(&f.path).await.unwrap();
    stream
        .write_all(b"GET /v1/status HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    // Time advances to the head timeout; the node closes without an answer.
    stream.read_to_end(&mut out).await.unwrap();
    assert!(out.is_empty() || out.starts_with(b"HTTP/1.1 408"));
    f.stop().await;
}

#[tokio::test]
async fn events_stream_as_ndjson() {
    let f = Fixture::start(Limits::default()).await;
    let mut sender = f.client().await;
    let req = Request::get("/v1/events")
        .header("host", "relay-node")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let peer = SecretKey::generate().node_id();
    f.events
        .send(PeerEvent::Connected {
            node_id: peer,
            path: PathKind::Relayed,
            remote_addr: None,
        })
        .unwrap();
    let mut body = response.into_body();
    let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let line: Value = serde_json::from_slice(&frame).unwrap();
    assert_eq!(line["type"], "connected");
    assert_eq!(line["node_id"], peer.to_string());
    assert_eq!(line["path"], "relayed");
    assert!(frame.ends_with(b"\n"));
    // Shutdown ends the stream and the server returns.
    f.shutdown.cancel();
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
    f.stop().await;
}

#[tokio::test]
async fn echo_stream_after_upgrade() {
    let f = Fixture::start(Limits::default()).await;
    let mut sender = f.client().await;
    let req = Request::get("/v1/stream/echo")
        .header("host", "relay-node")
        .header("connection", "upgrade")
        .header("upgrade", UPGRADE_PROTOCOL)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["upgrade"], UPGRADE_PROTOCOL);
    let mut io = TokioIo::new(hyper::upgrade::on(response).await.unwrap());
    let mut wire = Vec::new();
    for i in 0..50u32 {
        encode_frame(format!("frame {i}").as_bytes(), &mut wire).unwrap();
    }
    io.write_all(&wire).await.unwrap();
    let mut dec = FrameDecoder::default();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < 50 {
        let n = io.read(&mut buf).await.unwrap();
        assert!(n > 0, "echo closed early");
        dec.push(&buf[..n]);
        while let Some(frame) = dec.next_frame().unwrap() {
            got.push(String::from_utf8(frame).unwrap());
        }
    }
    assert_eq!(got[0], "frame 0");
    assert_eq!(got[49], "frame 49");
    drop(io);
    f.stop().await;
}

#[tokio::test]
async fn idle_and_slow_connections_never_lock_out_a_request() {
    let limits = Limits {
        max_connections: 32,
        ..Limits::default()
    };
    let f = Fixture::start(limits).await;
    let mut held = Vec::new();
    for i in 0..100 {
        let mut stream = UnixStream::connect(&f.path).await.unwrap();
        if i % 2 == 0 {
            // Slow: half a head.
            stream
                .write_all(b"GET /v1/status HTTP/1.1\r\nHo")
                .await
                .unwrap();
        }
        held.push(stream);
    }
    // Every one of those waits for its head; a new request evicts the
    // longest waiting and is answered at once (the head timeout is 5 s).
    let answered = tokio::time::timeout(
        Duration::from_secs(2),
        f.call(Method::GET, "/v1/status", ""),
    )
    .await
    .expect("status answered while 100 idle or slow connections are open");
    assert_eq!(answered.0, StatusCode::OK);
    assert!(f.stats.evicted.load(std::sync::atomic::Ordering::Relaxed) >= 68);
    drop(held);
    f.stop().await;
}

#[tokio::test]
async fn streams_are_bounded() {
    let limits = Limits {
        max_streams: 1,
        ..Limits::default()
    };
    let f = Fixture::start(limits).await;
    let mut first = f.client().await;
    let req = || {
        Request::get("/v1/events")
            .header("host", "relay-node")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let open = first.send_request(req()).await.unwrap();
    assert_eq!(open.status(), StatusCode::OK);
    let (status, v) = f.call(Method::GET, "/v1/events", "").await;
    assert_eq!((status.as_u16(), kind(&v)), (503, "busy"));
    drop(open);
    drop(first);
    f.stop().await;
}
