//! The HTTP endpoint over real loopback TCP connections.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// Generous bound on every step; no test relies on it for correctness.
const STEP: Duration = Duration::from_secs(20);

struct Fake;
impl HttpSource for Fake {
    fn status_json(&self) -> String {
        r#"{"node_id":"fake"}"#.into()
    }
    fn metrics_text(&self) -> String {
        "# HELP relay_node_up Up.\n# TYPE relay_node_up gauge\nrelay_node_up 1\n".into()
    }
}

fn options(addr: &str) -> HttpOptions {
    HttpOptions {
        addr: addr.parse().unwrap(),
        allow_remote: false,
        token_file: None,
    }
}

async fn start(timeout: Duration) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let server = HttpServer::bind(&options("127.0.0.1:0"))
        .await
        .unwrap()
        .with_head_timeout(timeout);
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    (addr, tokio::spawn(server.serve(Arc::new(Fake))))
}

/// Sends `request` and, if `close`, ends the sending side; reads the whole
/// response.
async fn send(addr: SocketAddr, request: &[u8], close: bool) -> String {
    tokio::time::timeout(STEP, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        if !request.is_empty() {
            stream.write_all(request).await.unwrap();
        }
        if close {
            stream.shutdown().await.unwrap();
        }
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    })
    .await
    .expect("exchange timed out")
}

/// Sends `request`, keeping the sending side open; reads the response.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    send(addr, request, false).await
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn serves_the_three_resources() {
    let (addr, server) = start(HEAD_TIMEOUT).await;
    let r = exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status_of(&r), 200);
    assert!(r.ends_with("\r\n\r\nok\n"));
    let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(r.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert!(r.ends_with("relay_node_up 1\n"));
    let r = exchange(addr, b"GET /status?pretty HTTP/1.0\r\n\r\n").await;
    assert!(r.contains("Content-Type: application/json\r\n"));
    assert!(r.ends_with("{\"node_id\":\"fake\"}\n"));
    let r = exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n").await;
    assert_eq!(status_of(&r), 404);
    server.abort();
}

#[tokio::test]
async fn bad_requests_get_typed_status_codes() {
    let (addr, server) = start(HEAD_TIMEOUT).await;
    let r = exchange(
        addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert_eq!(status_of(&r), 405);
    assert!(r.contains("Allow: GET, HEAD\r\n"));
    let r = exchange(addr, b"hello there\r\n\r\n").await;
    assert_eq!(status_of(&r), 400);
    let r = exchange(addr, b"\x00\x01\x02\xff\r\n\r\n").await;
    assert_eq!(status_of(&r), 400);
    let r = exchange(addr, b"GET / HTTP/3\r\n\r\n").await;
    assert_eq!(status_of(&r), 505);
    // A head over the limit, with no end in sight.
    let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', MAX_HEAD + 100));
    let r = exchange(addr, &big).await;
    assert_eq!(status_of(&r), 431);
    // A client that closes before finishing its head gets nothing.
    assert_eq!(send(addr, b"GET / HT", true).await, "");
    // The server is still fine.
    let r = exchange(addr, b"GET /healthz HTTP/1.1\r\n\r\n").await;
    assert_eq!(status_of(&r), 200);
    server.abort();
}

#[tokio::test]
async fn silent_clients_time_out_with_408() {
    let (addr, server) = start(Duration::from_millis(50)).await;
    let r = exchange(addr, b"").await;
    assert_eq!(status_of(&r), 408);
    server.abort();
}

#[tokio::test]
async fn remote_addresses_need_permission_and_a_token() {
    let e = HttpServer::bind(&options("0.0.0.0:0")).await.unwrap_err();
    assert_eq!(e.kind(), "http-not-loopback");
    assert!(e.to_string().starts_with("http-not-loopback: 0.0.0.0:0 "));
    let mut o = options("0.0.0.0:0");
    o.allow_remote = true;
    let e = HttpServer::bind(&o).await.unwrap_err();
    assert_eq!(e.kind(), "http-token-required");
    o.token_file = Some("/nonexistent/token".into());
    let e = HttpServer::bind(&o).await.unwrap_err();
    assert_eq!(e.kind(), "http-token");
}

#[tokio::test]
async fn a_token_file_guards_every_request() {
    use std::os::unix::fs::PermissionsExt;
    let root = crate::testutil::temp_dir("http-token");
    let file = root.join("token");
    std::fs::write(&file, "s3cret-token-0123456789\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut o = options("127.0.0.1:0");
    o.token_file = Some(file);
    let server = HttpServer::bind(&o).await.unwrap();
    let addr = server.local_addr();
    let task = tokio::spawn(server.serve(Arc::new(Fake)));
    let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status_of(&r), 401);
    assert!(r.contains("WWW-Authenticate: Bearer\r\n"));
    let r = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer s3cret-token-0123456789\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), 200);
    task.abort();
    std::fs::remove_dir_all(root).unwrap();
}
