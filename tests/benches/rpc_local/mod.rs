//! nRPC through the local API from separate processes: two real
//! `relay-node run` processes A and B on loopback (B joined by ticket,
//! `--serve-echo`), and this bench process as the caller and as a serving
//! peer process.
//!
//! - **API → A → B (echo)**: `POST /v1/call` of `echo.echo` on A's socket
//!   (one connection per call, as the Python client does), served by B's
//!   built-in echo;
//! - **API → A → B → peer process**: the same, of `pecho.echo`, which this
//!   process serves through B's `rpc-serve` stream (a task answering each
//!   `request` with a `reply` of the body).
//!
//! p50/p99 with one caller (alternating blocks) and calls/s with
//! [`CONCURRENCY`](super::CONCURRENCY) callers (alternating runs, median).
//!
//! - **rpc-calls → A → B (echo)**: the same echo calls over one `rpc-calls`
//!   connection to A ([`Calls`]): p50/p99 of one call at a time, and
//!   calls/s with 16 and with 256 calls in flight on the connection.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use relay_proto::frame_stream::{encode_frame, FrameDecoder};
use relay_proto::wire::rpc_calls::CallsFrame;
use relay_proto::wire::rpc_serve::ServeFrame;
use relay_tests::process::{run_cli, NodeProcess};
use relay_tests::relay_node_bin;
use relay_tests::tempdir::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::task::JoinSet;

const WAIT: Duration = Duration::from_secs(60);

/// The two nodes; killed on drop.
pub struct Mesh {
    _a: NodeProcess,
    _b: NodeProcess,
    /// A's API socket (the caller's node).
    pub a_sock: PathBuf,
    /// B's API socket (the serving node).
    pub b_sock: PathBuf,
    /// B's NodeId.
    pub b_id: String,
    _dir: TempDir,
}

/// Starts A and B (B serves echo), B joined to A by ticket.
pub fn mesh() -> Mesh {
    let bin = relay_node_bin().unwrap();
    let dir = TempDir::new("rpc-local-bench").unwrap();
    let (a_dir, b_dir) = (dir.join("a"), dir.join("b"));
    assert!(run_cli(&bin, &a_dir, &["init"]).unwrap().success());
    let a_args = crate::common::run_args(&["--listen", "127.0.0.1:0"]);
    let a_args: Vec<&str> = a_args.iter().map(String::as_str).collect();
    let a = NodeProcess::start(&bin, &a_dir, &a_args, WAIT).unwrap();
    let ticket = run_cli(&bin, &a_dir, &["invite"]).unwrap();
    assert!(ticket.success(), "{}", ticket.stderr);
    let join = run_cli(&bin, &b_dir, &["init", "--join", ticket.stdout.trim()]).unwrap();
    assert!(join.success(), "{}", join.stderr);
    let b_args = crate::common::run_args(&["--listen", "127.0.0.1:0", "--serve-echo"]);
    let b_args: Vec<&str> = b_args.iter().map(String::as_str).collect();
    let b = NodeProcess::start(&bin, &b_dir, &b_args, WAIT).unwrap();
    Mesh {
        b_id: b.node_id.clone(),
        _a: a,
        _b: b,
        a_sock: a_dir.join("api.sock"),
        b_sock: b_dir.join("api.sock"),
        _dir: dir,
    }
}

/// One HTTP/1.1 request on its own connection; the status and the body.
async fn http(sock: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = UnixStream::connect(sock).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: relay-node\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// A connection to `sock` upgraded to the frame stream of `service`.
async fn upgrade(sock: &Path, service: &str) -> UnixStream {
    let mut s = UnixStream::connect(sock).await.unwrap();
    let req = format!(
        "GET /v1/stream/{service} HTTP/1.1\r\nHost: relay-node\r\nConnection: Upgrade\r\n\
         Upgrade: relay-node-frames/1\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(s.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{service}");
    s
}

/// Waits until A lists `service`.
pub async fn wait_listed(sock: &Path, service: &str) {
    let needle = format!("\"name\":\"{service}\"");
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if http(sock, "GET", "/v1/services", "")
            .await
            .1
            .contains(&needle)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{service} was never listed");
}

/// Serves `pecho` through `sock` until the process ends: every request is
/// answered with its body.
pub async fn serve_pecho(sock: &Path) {
    let mut s = upgrade(sock, "rpc-serve").await;
    let mut out = Vec::new();
    let open = br#"{"op":"serve","service":"pecho","methods":["echo"],"concurrency":64}"#;
    encode_frame(open, &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    let mut decoder = FrameDecoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    let first = loop {
        if let Some(f) = decoder.next_frame().unwrap() {
            break f;
        }
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "the node closed the serving stream");
        decoder.push(&buf[..n]);
    };
    let answer = String::from_utf8_lossy(&first).into_owned();
    assert!(answer.contains(r#""ok":true"#), "{answer}");
    tokio::spawn(async move {
        let mut reply = Vec::new();
        loop {
            out.clear();
            while let Ok(Some(frame)) = decoder.next_frame() {
                if let Ok(ServeFrame::Request { call, body, .. }) = ServeFrame::decode(&frame) {
                    reply.clear();
                    ServeFrame::Reply { call, body }.encode(&mut reply).unwrap();
                    encode_frame(&reply, &mut out).unwrap();
                }
            }
            if !out.is_empty() && s.write_all(&out).await.is_err() {
                return;
            }
            match s.read(&mut buf).await {
                Ok(n) if n > 0 => decoder.push(&buf[..n]),
                _ => return,
            }
        }
    });
}

/// The `POST /v1/call` body of a 64 B echo of `service`.
pub fn request(service: &str, node: &str, item: usize) -> String {
    format!(
        r#"{{"service":"{service}","method":"echo","body":"{}","node_id":"{node}"}}"#,
        "Z".repeat(item)
    )
}

/// One call through A's API.
pub async fn call(sock: &Path, request: &str) {
    let (status, body) = http(sock, "POST", "/v1/call", request).await;
    assert_eq!(status, 200, "{body}");
}

/// Calls per second with `callers` concurrent callers for `secs`.
pub async fn rate(sock: &Path, request: &str, callers: usize, secs: f64) -> f64 {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut set = JoinSet::new();
    for _ in 0..callers {
        let (sock, request) = (sock.to_path_buf(), request.to_string());
        set.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                call(&sock, &request).await;
                n += 1;
            }
            n
        });
    }
    let start = Instant::now();
    let mut total = 0;
    while let Some(n) = set.join_next().await {
        total += n.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// A process's `rpc-calls` connection to A, calling `echo.echo` on B.
pub struct Calls {
    s: UnixStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    out: Vec<u8>,
    frame: Vec<u8>,
    body: Vec<u8>,
    next: u32,
}

impl Calls {
    /// Opens the connection on `sock` (A's API) for echo on `node`.
    pub async fn open(sock: &Path, node: &str, item: usize) -> Calls {
        let mut s = upgrade(sock, "rpc-calls").await;
        let mut out = Vec::new();
        let open = format!(r#"{{"op":"calls","service":"echo","node_id":"{node}"}}"#);
        encode_frame(open.as_bytes(), &mut out).unwrap();
        s.write_all(&out).await.unwrap();
        let mut calls = Calls {
            s,
            decoder: FrameDecoder::default(),
            buf: vec![0u8; 64 * 1024],
            out: Vec::new(),
            frame: Vec::new(),
            body: vec![b'Z'; item],
            next: 0,
        };
        let answer = calls.frames().await.remove(0);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(answer.contains(r#""ok":true"#), "{answer}");
        calls
    }

    /// Queues one call.
    fn queue(&mut self) {
        self.frame.clear();
        CallsFrame::Call {
            id: self.next,
            method: "echo",
            body: &self.body,
        }
        .encode(&mut self.frame)
        .unwrap();
        self.next = self.next.wrapping_add(1);
        encode_frame(&self.frame, &mut self.out).unwrap();
    }

    /// Writes the queued calls, then waits for at least one frame; every
    /// complete frame read.
    async fn frames(&mut self) -> Vec<Vec<u8>> {
        if !self.out.is_empty() {
            self.s.write_all(&self.out).await.unwrap();
            self.out.clear();
        }
        let mut frames = Vec::new();
        loop {
            while let Some(f) = self.decoder.next_frame().unwrap() {
                frames.push(f);
            }
            if !frames.is_empty() {
                return frames;
            }
            let n = self.s.read(&mut self.buf).await.unwrap();
            assert!(n > 0, "the node closed the calling connection");
            self.decoder.push(&self.buf[..n]);
        }
    }

    /// Counts the replies among `frames`; panics at an error.
    fn replies(frames: &[Vec<u8>]) -> usize {
        for f in frames {
            match CallsFrame::decode(f).unwrap() {
                CallsFrame::Reply { .. } => {}
                other => panic!("unexpected answer {other:?}"),
            }
        }
        frames.len()
    }

    /// One call, waited for.
    pub async fn one(&mut self) {
        self.queue();
        let frames = self.frames().await;
        assert_eq!(Self::replies(&frames), 1);
    }

    /// Calls per second with `window` calls in flight for `secs`.
    pub async fn rate(&mut self, window: usize, secs: f64) -> f64 {
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(secs);
        for _ in 0..window {
            self.queue();
        }
        let (mut in_flight, mut done) = (window, 0u64);
        while in_flight > 0 {
            let frames = self.frames().await;
            let n = Self::replies(&frames);
            in_flight -= n;
            done += n as u64;
            if Instant::now() < end {
                for _ in 0..n {
                    self.queue();
                }
                in_flight += n;
            }
        }
        done as f64 / start.elapsed().as_secs_f64()
    }
}
