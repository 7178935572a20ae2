//! Bulk replication over a real connection: two in-process nodes, each a
//! `Transport` (Noise in QUIC over loopback UDP), a `Mux` and the node's
//! ledger subsystem (the same driver, core and redb store `relay-node run`
//! uses). The sender's ledger holds `total` entries from 10 origins
//! (signed beforehand, not timed); the receiver starts empty. Timed: from
//! the receiver's dial until its store's frontiers cover every entry, so the
//! handshake, both version vectors, every `Entries` message (read from
//! redb, encrypted, sent, decrypted, decoded, run heads signature-checked,
//! committed durably) is inside the figure.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, Durability, TableDefinition};
use relay_node::ledger::{Ledger, ReplicaStore};
use relay_node::metrics::text::TextWriter;
use relay_node::subsystem::{Subsystem, Tasks};
use relay_node::subsystems::ledger::LedgerSubsystem;
use relay_proto::ledger::body::{NatType, NodeAnnouncement};
use relay_proto::ledger::{Body, Entry, EntryHash, MemberProof};
use relay_proto::{NodeId, SecretKey};
use relay_tests::TempDir;
use relay_transport::{Mux, MuxConfig, NetworkKey, Transport, TransportConfig};

use super::ledger_common::event_body;

const ORIGINS: u64 = 10;
const RAW_BATCH: TableDefinition<u64, &[u8]> = TableDefinition::new("raw");

/// One node: transport, mux and ledger subsystem.
struct Node {
    transport: Transport,
    mux: Mux,
    tasks: Tasks,
    ledger: LedgerSubsystem,
}

impl Node {
    async fn start(network_key: &NetworkKey, secret: SecretKey, ledger: Ledger) -> Self {
        let mut config = TransportConfig::new(
            secret,
            Some(network_key.clone()),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        );
        config.port_map.enabled = false;
        let transport = Transport::bind(config).await.unwrap();
        let mux = Mux::new(transport.clone(), MuxConfig::default());
        let tasks = Tasks::new();
        let ledger = LedgerSubsystem::new(mux.clone(), ledger);
        ledger.register_protocols(&mux, &tasks).unwrap();
        mux.start();
        ledger.start(&tasks);
        Self {
            transport,
            mux,
            tasks,
            ledger,
        }
    }

    fn addr(&self) -> SocketAddr {
        let port = self.transport.local_addrs()[0].port();
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    fn metrics(&self) -> String {
        let mut out = TextWriter::new();
        self.ledger.metrics(&mut out);
        out.finish()
    }

    async fn stop(self) {
        self.mux.close();
        self.tasks.shutdown(Duration::from_secs(5)).await;
        self.transport.close().await;
    }
}

fn unix_ms() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(d.as_millis()).unwrap()
}

/// `per` entries for each of [`ORIGINS`] origins, stored in `ledger`: an
/// announcement with the origin's membership proof (so it is a member)
/// and events,
/// stamped now so that retention keeps them all.
fn fill(ledger: &mut Ledger, network_key: &NetworkKey, per: u64) -> Vec<NodeId> {
    let now = unix_ms();
    (0..ORIGINS)
        .map(|o| {
            let key = SecretKey::from_bytes(&[o as u8 + 10; 32]);
            let mut prev = EntryHash::ZERO;
            let mut feed = Vec::with_capacity(per as usize);
            for seq in 1..=per {
                let body = if seq == 1 {
                    Body::NodeAnnouncement(NodeAnnouncement {
                        addrs: vec![SocketAddr::from(([127, 0, 0, 1], 1 + o as u16))],
                        nat: NatType::Unknown,
                        relay: false,
                        version: "bench".into(),
                        member_proof: Some(MemberProof::new(network_key, &key.node_id())),
                    })
                } else {
                    event_body(seq)
                };
                let e = Entry::sign(&key, seq, prev, now + seq, &body).unwrap();
                prev = e.hash();
                feed.push(e);
            }
            for chunk in feed.chunks(4096) {
                let last = chunk.last().unwrap();
                ledger
                    .insert_verified(&key.node_id(), chunk, (last.seq, last.hash()))
                    .unwrap();
            }
            key.node_id()
        })
        .collect()
}

/// Entries of `origins` the ledger holds (the sum of their frontiers).
fn held(ledger: &Ledger, origins: &[NodeId]) -> u64 {
    ledger
        .vector()
        .unwrap()
        .iter()
        .filter(|v| origins.contains(&v.origin))
        .map(|v| v.seq)
        .sum()
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// CPU time (user + system) this process has used so far, from
/// `/proc/self/stat` (clock ticks of 10 ms).
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// One bulk run over loopback.
#[derive(Debug, Clone, Copy)]
pub struct BulkRun {
    /// Wall time from the dial until the receiver holds every entry.
    pub wall: Duration,
    /// CPU time both nodes used meanwhile (all threads of the process).
    pub cpu: Duration,
}

/// The bulk run over loopback.
pub fn bulk_over_loopback(total: u64) -> BulkRun {
    let per = total / ORIGINS;
    let dir = TempDir::new("ledger-bench-net").unwrap();
    let (s_key, r_key) = (
        SecretKey::from_bytes(&[3; 32]),
        SecretKey::from_bytes(&[2; 32]),
    );
    std::fs::create_dir_all(dir.join("s")).unwrap();
    std::fs::create_dir_all(dir.join("r")).unwrap();
    let mut sender = Ledger::open(&dir.join("s"), s_key.clone()).unwrap();
    let network_key = NetworkKey::generate();
    let origins = fill(&mut sender, &network_key, per);
    let receiver = Ledger::open(&dir.join("r"), r_key.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (s, r) = rt.block_on(async {
        let s = Node::start(&network_key, s_key.clone(), sender.clone()).await;
        let r = Node::start(&network_key, r_key, receiver.clone()).await;
        (s, r)
    });
    if std::env::var_os("RELAY_BENCH_ONLY_NET").is_some() {
        // A mark for attaching a profiler to the timed part only.
        eprintln!(
            "bulk over loopback: feeds signed, dialing (pid {})",
            std::process::id()
        );
    }
    let start = Instant::now();
    let cpu_start = cpu_time();
    rt.block_on(r.transport.connect(s_key.node_id(), s.addr()))
        .unwrap();
    let deadline = start + Duration::from_secs(120);
    while held(&receiver, &origins) < per * ORIGINS {
        assert!(Instant::now() < deadline, "bulk sync did not complete");
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_start);
    // The counters are copied after each call into the core: the last
    // copy may trail the store for a moment.
    let mut m = r.metrics();
    while metric(&m, "relay_node_ledger_replicated_total ") < per * ORIGINS {
        assert!(Instant::now() < deadline, "{m}");
        std::thread::sleep(Duration::from_millis(2));
        m = r.metrics();
    }
    assert_eq!(
        metric(&m, "relay_node_ledger_rejected_total{reason=\"tampered\"} "),
        0
    );
    rt.block_on(async {
        r.stop().await;
        s.stop().await;
    });
    sender.close();
    receiver.close();
    BulkRun { wall: elapsed, cpu }
}

/// redb alone: `total` 200-byte rows in durable commits of `batch` rows
/// (the receiver's unit of work: one `Entries` message); rows per second.
pub fn raw_batched(total: u64, batch: u64) -> f64 {
    let dir = TempDir::new("ledger-bench-raw-batched").unwrap();
    let db = Database::create(dir.join("raw.redb")).unwrap();
    let row = [7u8; 200];
    let start = Instant::now();
    let mut i = 0;
    while i < total {
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(Durability::Immediate).unwrap();
        {
            let mut t = txn.open_table(RAW_BATCH).unwrap();
            for _ in 0..batch.min(total - i) {
                t.insert(i, row.as_slice()).unwrap();
                i += 1;
            }
        }
        txn.commit().unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}
