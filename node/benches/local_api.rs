//! Local API figures for docs/PERFORMANCE.md: `GET /v1/status` over
//! `DIR/api.sock` against the JSON-lines control socket of an older build
//! (`{"op":"status"}` over `DIR/control.sock`), measured in the same run
//! with the same client loop.
//!
//! ```text
//! RELAY_NODE_OLD_BIN=/path/to/old/relay-node \
//!   cargo bench -p relay-node --bench local_api --profile dev
//! ```
//!
//! Without `RELAY_NODE_OLD_BIN` only the local API is measured.
//! `RELAY_NODE_NEW_BIN` replaces the binary built with the bench (e.g. a
//! release build, to compare with a release build of the old one). It starts
//! one node per binary (loopback, no port mapping, no traversal), then for
//! each round, old and new alternating:
//! - **kept-alive**: `N` sequential requests over one connection (Rust);
//! - **per connection**: `N` requests, each on a fresh connection (Rust);
//! - **CLI**: `relay-node status --json`, one process per request;
//! - **curl**: one `curl` process per request, and one `curl` fetching
//!   `N` URLs over one kept-alive connection (local API only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUILT_BIN: &str = env!("CARGO_BIN_EXE_relay-node");
const REQUESTS: usize = 2000;
const PROCESSES: usize = 100;
const ROUNDS: usize = 3;

struct Node {
    child: Child,
    dir: PathBuf,
}

impl Node {
    fn start(bin: &str, dir: PathBuf) -> Self {
        let _ = std::fs::remove_dir_all(&dir);
        let mut child = Command::new(bin)
            .arg("--data-dir")
            .arg(&dir)
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--no-port-map",
                "--no-traversal",
            ])
            .env_remove("RELAY_NODE_DATA_DIR")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening on"), "{line}");
        Self { child, dir }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One client protocol.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    /// HTTP/1.1 `GET /v1/status` on `api.sock`.
    Http,
    /// `{"op":"status"}` lines on `control.sock`.
    Lines,
}

impl Api {
    fn socket(self, dir: &Path) -> PathBuf {
        match self {
            Self::Http => dir.join("api.sock"),
            Self::Lines => dir.join("control.sock"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Http => "local API (HTTP)",
            Self::Lines => "control socket (JSON lines)",
        }
    }
}

/// Sends one status request on `stream` and reads the whole answer.
fn exchange(api: Api, stream: &mut BufReader<UnixStream>, close: bool) -> usize {
    match api {
        Api::Lines => {
            stream
                .get_mut()
                .write_all(b"{\"op\":\"status\"}\n")
                .unwrap();
            let mut line = String::new();
            stream.read_line(&mut line).unwrap();
            assert!(line.starts_with("{\"ok\":true"), "{line}");
            line.len()
        }
        Api::Http => {
            let request: &[u8] = if close {
                b"GET /v1/status HTTP/1.1\r\nHost: relay-node\r\nConnection: close\r\n\r\n"
            } else {
                b"GET /v1/status HTTP/1.1\r\nHost: relay-node\r\n\r\n"
            };
            stream.get_mut().write_all(request).unwrap();
            let mut length = 0usize;
            let mut first = true;
            loop {
                let mut line = String::new();
                stream.read_line(&mut line).unwrap();
                if first {
                    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
                    first = false;
                }
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0u8; length];
            stream.read_exact(&mut body).unwrap();
            length
        }
    }
}

struct Figures {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn figures(mut samples: Vec<Duration>, total: Duration) -> Figures {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Figures {
        per_sec: samples.len() as f64 / total.as_secs_f64(),
        p50: at(0.5),
        p99: at(0.99),
    }
}

fn kept_alive(api: Api, dir: &Path) -> Figures {
    let mut stream = BufReader::new(UnixStream::connect(api.socket(dir)).unwrap());
    for _ in 0..100 {
        exchange(api, &mut stream, false);
    }
    let mut samples = Vec::with_capacity(REQUESTS);
    let start = Instant::now();
    for _ in 0..REQUESTS {
        let t = Instant::now();
        exchange(api, &mut stream, false);
        samples.push(t.elapsed());
    }
    figures(samples, start.elapsed())
}

fn per_connection(api: Api, dir: &Path) -> Figures {
    let socket = api.socket(dir);
    let mut samples = Vec::with_capacity(REQUESTS);
    let start = Instant::now();
    for _ in 0..REQUESTS {
        let t = Instant::now();
        let mut stream = BufReader::new(UnixStream::connect(&socket).unwrap());
        exchange(api, &mut stream, true);
        samples.push(t.elapsed());
    }
    figures(samples, start.elapsed())
}

fn processes(mut run: impl FnMut() -> bool) -> Figures {
    let mut samples = Vec::with_capacity(PROCESSES);
    let start = Instant::now();
    for _ in 0..PROCESSES {
        let t = Instant::now();
        assert!(run());
        samples.push(t.elapsed());
    }
    figures(samples, start.elapsed())
}

fn cli(bin: &str, dir: &Path) -> Figures {
    processes(|| {
        Command::new(bin)
            .arg("--data-dir")
            .arg(dir)
            .args(["status", "--json"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    })
}

fn curl_each(dir: &Path) -> Figures {
    let socket = dir.join("api.sock");
    processes(|| {
        Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "--unix-socket"])
            .arg(&socket)
            .arg("http://relay-node/v1/status")
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// One curl process fetching `REQUESTS` URLs over one connection: req/s.
fn curl_kept_alive(dir: &Path) -> f64 {
    let config = dir.with_extension("curl.conf");
    let mut text = String::new();
    for _ in 0..REQUESTS {
        text.push_str("url = \"http://relay-node/v1/status\"\noutput = \"/dev/null\"\n");
    }
    std::fs::write(&config, text).unwrap();
    let start = Instant::now();
    let ok = Command::new("curl")
        .args(["-sf", "--unix-socket"])
        .arg(dir.join("api.sock"))
        .arg("-K")
        .arg(&config)
        .status()
        .is_ok_and(|s| s.success());
    let took = start.elapsed();
    let _ = std::fs::remove_file(&config);
    assert!(ok, "curl failed");
    REQUESTS as f64 / took.as_secs_f64()
}

fn line(what: &str, api: &str, f: &Figures) {
    println!(
        "| {what} | {api} | {:.0} | {:.1} | {:.1} |",
        f.per_sec,
        f.p50.as_secs_f64() * 1e6,
        f.p99.as_secs_f64() * 1e6
    );
}

fn main() {
    let old_bin = std::env::var("RELAY_NODE_OLD_BIN").ok();
    let new_bin = std::env::var("RELAY_NODE_NEW_BIN").unwrap_or_else(|_| BUILT_BIN.to_string());
    let new_bin = new_bin.as_str();
    let has_curl = Command::new("curl").arg("--version").output().is_ok();
    let base = std::env::temp_dir().join(format!("rn-bench-api-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let new = Node::start(new_bin, base.join("new"));
    let old = old_bin
        .as_deref()
        .map(|bin| Node::start(bin, base.join("old")));
    // Let both finish starting.
    std::thread::sleep(Duration::from_millis(500));
    println!("| client | server | req/s | p50 µs | p99 µs |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for round in 1..=ROUNDS {
        println!("| round {round} | | | | |");
        if let Some(old) = &old {
            line(
                "Rust, kept alive",
                Api::Lines.name(),
                &kept_alive(Api::Lines, &old.dir),
            );
        }
        line(
            "Rust, kept alive",
            Api::Http.name(),
            &kept_alive(Api::Http, &new.dir),
        );
        if let Some(old) = &old {
            line(
                "Rust, connection per request",
                Api::Lines.name(),
                &per_connection(Api::Lines, &old.dir),
            );
        }
        line(
            "Rust, connection per request",
            Api::Http.name(),
            &per_connection(Api::Http, &new.dir),
        );
        if let (Some(old), Some(bin)) = (&old, old_bin.as_deref()) {
            line(
                "`relay-node status --json` (process)",
                Api::Lines.name(),
                &cli(bin, &old.dir),
            );
        }
        line(
            "`relay-node status --json` (process)",
            Api::Http.name(),
            &cli(new_bin, &new.dir),
        );
        if has_curl {
            line(
                "curl, process per request",
                Api::Http.name(),
                &curl_each(&new.dir),
            );
            println!(
                "| curl, {REQUESTS} URLs kept alive | {} | {:.0} | | |",
                Api::Http.name(),
                curl_kept_alive(&new.dir)
            );
        }
    }
    drop(old);
    drop(new);
    let _ = std::fs::remove_dir_all(&base);
}
