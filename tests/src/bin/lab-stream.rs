//! `lab-stream`: a NAT-lab endpoint that embeds the transport library and
//! streams numbered words to a peer it knows only by NodeId, through a
//! relay, while reporting the path under the stream.
//!
//! ```text
//! lab-stream recv --ticket-file F [--listen ADDR]
//! lab-stream send --ticket-file F --peer NODEID [--listen ADDR] [--rate-kib N]
//! ```
//!
//! Both join the mesh of the join ticket in `F` (a `relay-node invite` of
//! the relay), dial the relay at the ticket's address and wait for their
//! relay registration, then print `ready <own NodeId>`.
//!
//! - `recv` accepts one bidirectional stream and checks that it carries the
//!   u64 words 0, 1, 2, ... (little endian), each exactly once and in
//!   order. When the stream ends it takes its report, finishes its own
//!   half and waits (at most 30 s) for the sender to close the connection.
//! - `send` dials the peer through the relay (`connect_relayed`), opens a
//!   stream and writes numbered words without pause (at most `--rate-kib`
//!   KiB/s when given) until stdin says `finish MIB`: then it writes MIB
//!   more MiB, finishes the stream, waits for the receiver to finish its
//!   half, takes its report and closes. Stdin `direct` calls `Transport::request_direct` for the peer.
//!
//! While streaming, both print `path <direct|relayed|none> words <N>` when
//! the peer's path changes, `remote <ADDR> words <N>` when the peer's
//! direct address changes (a new direct path, or a NAT rebinding
//! followed) and `why <reason>` when the reason it is not direct changes
//! (checked every 20 ms), and `progress <N>` every MiB. At
//! the end each prints `summary <json>` (words, words carried while the
//! path was relayed / direct, the paths seen, Noise handshake counts from
//! the first connection to the peer to the end, whether the connection's
//! `since` stayed the same, errors) and exits 0 only without errors.
//! Logs go to stderr, filtered by `RUST_LOG`.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use relay_proto::Ticket;
use relay_transport::{
    Incoming, NodeId, PathKind, PeerInfo, PeerState, RecvStream, SendStream, Transport,
    TransportConfig,
};
use tokio::sync::mpsc;

/// Words (u64) per write.
const CHUNK_WORDS: u64 = 8192;
/// Words per MiB.
const MIB_WORDS: u64 = (1 << 20) / 8;
/// How often the path and the reason are checked.
const WATCH_EVERY: Duration = Duration::from_millis(20);
/// Bound on the whole run: a stuck run fails instead of hanging.
const RUN_LIMIT: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Options::parse(&args) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("lab-stream: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lab-stream: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match tokio::time::timeout(RUN_LIMIT, run(opts)).await {
            Ok(result) => result,
            Err(_) => Err(format!("timeout: gave up after {} s", RUN_LIMIT.as_secs())),
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("lab-stream: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: lab-stream recv --ticket-file F [--listen ADDR]\n       \
    lab-stream send --ticket-file F --peer NODEID [--listen ADDR] [--rate-kib N]";

#[derive(Debug)]
struct Options {
    send: bool,
    ticket: Ticket,
    listen: SocketAddr,
    peer: Option<NodeId>,
    rate_kib: Option<u64>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let (mode, rest) = args.split_first().ok_or("no mode")?;
        let send = match mode.as_str() {
            "send" => true,
            "recv" => false,
            other => return Err(format!("unknown mode {other:?}")),
        };
        let mut ticket = None;
        let mut listen: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut peer = None;
        let mut rate_kib = None;
        let mut it = rest.iter();
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--ticket-file" => {
                    let text = std::fs::read_to_string(value)
                        .map_err(|e| format!("reading {value}: {e}"))?;
                    ticket = Some(
                        Ticket::decode(text.trim()).map_err(|e| format!("invalid-ticket: {e}"))?,
                    );
                }
                "--listen" => listen = value.parse().map_err(|e| format!("--listen: {e}"))?,
                "--peer" => peer = Some(value.parse().map_err(|e| format!("--peer: {e}"))?),
                "--rate-kib" => {
                    rate_kib = Some(value.parse().map_err(|e| format!("--rate-kib: {e}"))?)
                }
                other => return Err(format!("unknown flag {other}")),
            }
        }
        if send && peer.is_none() {
            return Err("send needs --peer".into());
        }
        Ok(Self {
            send,
            ticket: ticket.ok_or("--ticket-file is required")?,
            listen,
            peer,
            rate_kib,
        })
    }
}

async fn run(opts: Options) -> Result<bool, String> {
    let mut config = TransportConfig::new(
        relay_proto::SecretKey::generate(),
        Some(opts.ticket.network_key.clone()),
        opts.listen,
    );
    config.traversal = true;
    let transport = Transport::bind(config)
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let relay = opts.ticket.node_id;
    let relay_addr = *opts
        .ticket
        .addrs
        .first()
        .ok_or("the ticket has no address")?;
    transport
        .connect(relay, relay_addr)
        .await
        .map_err(|e| format!("connect to the relay: {e}"))?;
    let registered = async {
        while !transport.relays().contains(&relay) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), registered)
        .await
        .map_err(|_| "the relay never confirmed our registration".to_string())?;
    println!("ready {}", transport.node_id());

    let ok = match opts.peer {
        Some(peer) if opts.send => send(&transport, peer, opts.rate_kib).await?,
        _ => receive(&transport).await?,
    };
    transport.close().await;
    Ok(ok)
}

/// What both sides track about the peer while the stream runs.
#[derive(Debug)]
struct Watch {
    peer: NodeId,
    /// 0 none, 1 relayed, 2 direct.
    path: AtomicU8,
    words: AtomicU64,
    seen: Mutex<Vec<String>>,
}

impl Watch {
    fn new(peer: NodeId, info: &PeerInfo) -> Arc<Self> {
        let watch = Arc::new(Self {
            peer,
            path: AtomicU8::new(code(info.path)),
            words: AtomicU64::new(0),
            seen: Mutex::new(vec![info.path.as_str().to_string()]),
        });
        println!("path {} words 0", info.path.as_str());
        watch
    }

    fn direct(&self) -> bool {
        self.path.load(Ordering::Relaxed) == 2
    }

    fn paths(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Checks the peer's path and reason every [`WATCH_EVERY`] and prints
    /// changes, until the transport forgets the peer.
    fn spawn(self: &Arc<Self>, transport: &Transport) {
        let (watch, transport) = (self.clone(), transport.clone());
        tokio::spawn(async move {
            let mut why: Option<String> = None;
            let mut remote: Option<SocketAddr> = None;
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let Some(info) = peer_info(&transport, watch.peer) else {
                    continue;
                };
                if info.remote_addr.is_some() && info.remote_addr != remote {
                    remote = info.remote_addr;
                    if let Some(addr) = remote {
                        let words = watch.words.load(Ordering::Relaxed);
                        println!("remote {addr} words {words}");
                    }
                }
                let now = code(info.path);
                if watch.path.swap(now, Ordering::Relaxed) != now {
                    let words = watch.words.load(Ordering::Relaxed);
                    println!("path {} words {words}", info.path.as_str());
                    if let Ok(mut seen) = watch.seen.lock() {
                        seen.push(info.path.as_str().to_string());
                    }
                }
                if info.why != why {
                    if let Some(w) = &info.why {
                        println!("why {w}");
                    }
                    why = info.why;
                }
            }
        });
    }
}

fn code(path: PathKind) -> u8 {
    match path {
        PathKind::None => 0,
        PathKind::Relayed => 1,
        PathKind::Direct => 2,
    }
}

fn peer_info(transport: &Transport, peer: NodeId) -> Option<PeerInfo> {
    transport.peers().into_iter().find(|p| p.node_id == peer)
}

fn handshakes(transport: &Transport) -> u64 {
    transport.noise_stats().handshakes.load(Ordering::Relaxed)
}

/// What is known at the first connection to the peer.
struct Start {
    handshakes: u64,
    since: Option<SystemTime>,
}

impl Start {
    fn take(transport: &Transport, info: &PeerInfo) -> Self {
        Self {
            handshakes: handshakes(transport),
            since: info.since,
        }
    }
}

/// Counts words by the path they went over.
#[derive(Default)]
struct Split {
    relayed: u64,
    direct: u64,
}

impl Split {
    fn add(&mut self, watch: &Watch, words: u64) {
        if watch.direct() {
            self.direct += words;
        } else {
            self.relayed += words;
        }
    }
}

/// What a side counted over the stream.
struct Tally {
    words: u64,
    split: Split,
    errors: u64,
    first_error: Option<String>,
}

/// The `summary` JSON.
fn summary(
    role: &str,
    transport: &Transport,
    watch: &Watch,
    start: &Start,
    tally: &Tally,
) -> serde_json::Value {
    let info = peer_info(transport, watch.peer);
    serde_json::json!({
        "role": role,
        "peer": watch.peer.to_string(),
        "words": tally.words,
        "relayed_words": tally.split.relayed,
        "direct_words": tally.split.direct,
        "paths": watch.paths(),
        "final_path": info.as_ref().map(|i| i.path.as_str()),
        "path_changes": info.as_ref().map(|i| i.path_changes),
        "handshakes_at_connect": start.handshakes,
        "handshakes_at_end": handshakes(transport),
        "same_since": info.as_ref().is_some_and(|i| i.since.is_some() && i.since == start.since),
        "errors": tally.errors,
        "first_error": tally.first_error,
    })
}

async fn receive(transport: &Transport) -> Result<bool, String> {
    let (peer, mut send, mut recv) = loop {
        match transport.accept().await.ok_or("transport closed")? {
            Incoming::Bi { from, send, recv } => break (from, send, recv),
            _ => continue,
        }
    };
    let info = peer_info(transport, peer).ok_or("the sender is not listed")?;
    let start = Start::take(transport, &info);
    let watch = Watch::new(peer, &info);
    watch.spawn(transport);

    let mut expected = 0u64;
    let mut errors = 0u64;
    let mut first_error = None;
    let mut split = Split::default();
    let mut partial: Vec<u8> = Vec::new();
    let mut next_progress = MIB_WORDS;
    loop {
        let chunk = recv
            .read_chunk(1 << 16, true)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let Some(chunk) = chunk else { break };
        partial.extend_from_slice(&chunk.bytes);
        let whole = partial.len() / 8 * 8;
        let mut words = 0;
        for word in partial[..whole].chunks_exact(8) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            let n = u64::from_le_bytes(bytes);
            if n != expected {
                errors += 1;
                first_error.get_or_insert_with(|| format!("word {expected} was {n}"));
            }
            // Resynchronize on what arrived, to count every later error.
            expected = n.wrapping_add(1);
            words += 1;
        }
        partial.drain(..whole);
        split.add(&watch, words);
        let total = watch.words.fetch_add(words, Ordering::Relaxed) + words;
        if total >= next_progress {
            println!("progress {total}");
            next_progress = total + MIB_WORDS;
        }
    }
    if !partial.is_empty() {
        errors += 1;
        first_error.get_or_insert_with(|| format!("{} stray bytes at the end", partial.len()));
    }
    // Everything arrived: report while the connection is still up, then
    // tell the sender (which closes the connection once it knows).
    let tally = Tally {
        words: watch.words.load(Ordering::Relaxed),
        split,
        errors,
        first_error,
    };
    let report = summary("recv", transport, &watch, &start, &tally);
    send.finish().map_err(|e| format!("finish: {e}"))?;
    let _ = send.stopped().await;
    let gone = async {
        while peer_info(transport, peer).is_some_and(|p| p.state == PeerState::Connected) {
            tokio::time::sleep(WATCH_EVERY).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), gone).await;
    println!("summary {report}");
    Ok(errors == 0)
}

/// Commands from stdin.
enum Command {
    Direct,
    Finish(u64),
}

fn stdin_commands() -> mpsc::UnboundedReceiver<Command> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let words: Vec<&str> = line.split_whitespace().collect();
            let cmd = match words[..] {
                ["direct"] => Command::Direct,
                ["finish", mib] => match mib.parse() {
                    Ok(mib) => Command::Finish(mib),
                    Err(_) => {
                        eprintln!("lab-stream: bad command {line:?}");
                        continue;
                    }
                },
                _ => {
                    eprintln!("lab-stream: bad command {line:?}");
                    continue;
                }
            };
            if tx.send(cmd).is_err() {
                break;
            }
        }
    });
    rx
}

async fn send(transport: &Transport, peer: NodeId, rate_kib: Option<u64>) -> Result<bool, String> {
    let mut commands = stdin_commands();
    transport
        .connect_relayed(peer)
        .await
        .map_err(|e| format!("connect_relayed: {e}"))?;
    let info = peer_info(transport, peer).ok_or("the receiver is not listed")?;
    let start = Start::take(transport, &info);
    println!("connected {peer}");
    let watch = Watch::new(peer, &info);
    watch.spawn(transport);
    let (mut out, mut back): (SendStream, RecvStream) = transport
        .open_bi(peer)
        .await
        .map_err(|e| format!("open_bi: {e}"))?;

    let began = Instant::now();
    let mut next = 0u64;
    let mut limit = u64::MAX;
    let mut split = Split::default();
    let mut buf = Vec::with_capacity((CHUNK_WORDS * 8) as usize);
    let mut next_progress = MIB_WORDS;
    while next < limit {
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                Command::Direct => match transport.request_direct(peer) {
                    Ok(()) => println!("request-direct ok"),
                    Err(e) => println!("request-direct error {e}"),
                },
                Command::Finish(mib) if limit == u64::MAX => {
                    limit = next.saturating_add(mib.saturating_mul(MIB_WORDS));
                }
                Command::Finish(_) => {}
            }
        }
        buf.clear();
        let end = next.saturating_add(CHUNK_WORDS).min(limit);
        for n in next..end {
            buf.extend_from_slice(&n.to_le_bytes());
        }
        out.write_all(&buf)
            .await
            .map_err(|e| format!("write: {e}"))?;
        split.add(&watch, end - next);
        next = end;
        watch.words.store(next, Ordering::Relaxed);
        if next >= next_progress {
            println!("progress {next}");
            next_progress = next + MIB_WORDS;
        }
        if let Some(kib) = rate_kib.filter(|k| *k > 0) {
            let due = Duration::from_secs_f64(next as f64 * 8.0 / (kib as f64 * 1024.0));
            let elapsed = began.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
    }
    out.finish().map_err(|e| format!("finish: {e}"))?;
    // The receiver finishes its half once it has read everything; it
    // waits for us to close the connection after our report.
    back.read_to_end(1 << 16)
        .await
        .map_err(|e| format!("waiting for the receiver: {e}"))?;
    let tally = Tally {
        words: next,
        split,
        errors: 0,
        first_error: None,
    };
    let report = summary("send", transport, &watch, &start, &tally);
    println!("summary {report}");
    Ok(true)
}
