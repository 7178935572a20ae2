//! The HTTP endpoint over real loopback TCP connections.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    // hyper answers an unknown version as malformed.
    let r = exchange(addr, b"GET / HTTP/3\r\n\r\n").await;
    assert_eq!(status_of(&r), 400);
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
    // Header names are case-insensitive (hyper writes `Www-Authenticate`).
    assert!(r
        .to_ascii_lowercase()
        .contains("www-authenticate: bearer\r\n"));
    let r = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer s3cret-token-0123456789\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), 200);
    task.abort();
    std::fs::remove_dir_all(root).unwrap();
}

#[tokio::test]
async fn head_answers_carry_the_length_but_no_body() {
    let (addr, server) = start(HEAD_TIMEOUT).await;
    let r = exchange(addr, b"HEAD /healthz HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("Content-Length: 3\r\n"), "{r}");
    assert!(r.contains("Connection: close\r\n"), "{r}");
    assert!(r.ends_with("\r\n\r\n"), "{r}");
    server.abort();
}

/// Connects from `source` (any 127/8 address is this host).
async fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    tokio::time::timeout(STEP, socket.connect(addr))
        .await
        .expect("connect timed out")
        .unwrap()
}

async fn read_all(mut stream: TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut out))
        .await
        .expect("read timed out")
        .unwrap_or_default();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn each_source_gets_a_few_connections() {
    let server = HttpServer::bind(&options("127.0.0.1:0"))
        .await
        .unwrap()
        .with_limits(8, 2);
    let addr = server.local_addr();
    let task = tokio::spawn(server.serve(Arc::new(Fake)));
    let _a = connect_from([127, 0, 0, 2], addr).await;
    let _b = connect_from([127, 0, 0, 2], addr).await;
    // A complete request, so the only reason to refuse it is its source.
    let mut third = connect_from([127, 0, 0, 2], addr).await;
    third
        .write_all(b"GET /healthz HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let r = read_all(third).await;
    assert_eq!(status_of(&r), 503, "{r}");
    assert!(r.contains("Retry-After: 1\r\n"));
    // Another source is served.
    let r = exchange(addr, b"GET /healthz HTTP/1.1\r\n\r\n").await;
    assert_eq!(status_of(&r), 200);
    task.abort();
}

#[tokio::test]
async fn a_full_endpoint_evicts_the_oldest_silent_connection() {
    let server = HttpServer::bind(&options("127.0.0.1:0"))
        .await
        .unwrap()
        .with_limits(3, 3);
    let addr = server.local_addr();
    let task = tokio::spawn(server.serve(Arc::new(Fake)));
    let oldest = connect_from([127, 0, 0, 2], addr).await;
    // Make sure the server has taken the first before the others.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _second = connect_from([127, 0, 0, 2], addr).await;
    let _third = connect_from([127, 0, 0, 2], addr).await;
    // Full of silent connections: a prompt client still gets its answer.
    let r = exchange(addr, b"GET /healthz HTTP/1.1\r\n\r\n").await;
    assert_eq!(status_of(&r), 200);
    // ... and the oldest silent one was closed without an answer.
    assert_eq!(read_all(oldest).await, "");
    task.abort();
}

/// The `p`-quantile of `samples` (sorted in place).
fn quantile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 * p).ceil() as usize).saturating_sub(1);
    samples[index.min(samples.len() - 1)]
}

/// 200 clients trickle request heads at a byte a second (reconnecting
/// after each 408), from 20 source addresses, as a slow-loris attack
/// would. A prompt `/metrics` scrape must still be answered at once: p99
/// under 100 ms over 100 scrapes spread across the head timeout, the 408s
/// and the reconnections. Real time (real sockets); about 7 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_starve_metrics() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    const SLOW: usize = 200;
    const SOURCES: usize = 20;
    const SCRAPES: usize = 100;
    const SPACING: Duration = Duration::from_millis(60);

    let (addr, server) = start(HEAD_TIMEOUT).await;
    let stop = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicUsize::new(0));
    let timeouts = Arc::new(AtomicUsize::new(0));
    let mut slow = tokio::task::JoinSet::new();
    for i in 0..SLOW {
        let (stop, connected, timeouts) = (stop.clone(), connected.clone(), timeouts.clone());
        let source = [127, 0, 0, 2 + (i % SOURCES) as u8];
        slow.spawn(async move {
            let head = b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa";
            let mut first = true;
            while !stop.load(Ordering::Relaxed) {
                let mut stream = connect_from(source, addr).await;
                if first {
                    connected.fetch_add(1, Ordering::Relaxed);
                    first = false;
                }
                let mut buf = [0u8; 512];
                let mut sent = 0;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    tokio::select! {
                        read = stream.read(&mut buf) => {
                            if let Ok(n) = read {
                                if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408") {
                                    timeouts.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            break;
                        }
                        () = tokio::time::sleep(Duration::from_secs(1)) => {
                            let byte = head.get(sent..=sent).unwrap_or(b"a");
                            if stream.write_all(byte).await.is_err() {
                                break;
                            }
                            sent += 1;
                        }
                    }
                }
                // Whatever ended it (408 or a refusal), come back at once.
            }
        });
    }
    tokio::time::timeout(STEP, async {
        while connected.load(Ordering::Relaxed) < SLOW {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("slow clients did not connect");

    let mut latencies = Vec::with_capacity(SCRAPES);
    for _ in 0..SCRAPES {
        let started = std::time::Instant::now();
        let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        latencies.push(started.elapsed());
        assert_eq!(status_of(&r), 200, "{r}");
        tokio::time::sleep(SPACING).await;
    }
    // The slow clients were really served, slowly: the head timeout (5 s)
    // passed during the scrapes, so (nearly) every one gets its 408.
    let _ = tokio::time::timeout(STEP, async {
        while timeouts.load(Ordering::Relaxed) < SLOW * 9 / 10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    slow.abort_all();
    server.abort();
    let timeouts = timeouts.load(Ordering::Relaxed);
    assert!(
        timeouts >= SLOW * 9 / 10,
        "only {timeouts} of {SLOW} got a 408"
    );
    let p99 = quantile(&mut latencies, 0.99);
    let p50 = quantile(&mut latencies, 0.50);
    println!("with {SLOW} slow clients: /metrics p50 {p50:?}, p99 {p99:?}");
    assert!(
        p99 < Duration::from_millis(100),
        "p99 {p99:?} (p50 {p50:?})"
    );
}
