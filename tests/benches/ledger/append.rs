//! The one-writer append against redb's raw durable commit, interleaved
//! round by round (the disk's fsync time moves with the machine's load, so
//! only figures from the same round compare), with a breakdown:
//!
//! - **raw**: redb alone, one 200-byte row per `Durability::Immediate`
//!   commit (the baseline of the goal);
//! - **raw, ledger rows**: redb alone writing, per durable commit, the rows
//!   one event append writes (for information: what the index costs);
//! - **store**: `Store::append_local` called directly, one entry per call
//!   (sign, encode, index, durable commit; no thread);
//! - **store, nonces prepared**: the same with a `NoncePool` signing (its
//!   thread prepares each signature's base-point multiplication ahead);
//! - **ledger**: `Ledger::append_at` awaited one at a time on a 2-worker
//!   multi-thread runtime, as the node runs it: the goal's subject. A lone
//!   append commits on the caller's thread there;
//! - **ledger, through the writer**: the same on a current-thread runtime,
//!   where every append goes to the writer thread and back (two hand-offs).
//!
//! The bodies are built before the clock starts, as the raw row is.

use std::time::Instant;

use redb::{Database, Durability, TableDefinition};
use relay_node::ledger::{Ledger, NoncePool, Retention, Store};
use relay_proto::ledger::Body;
use relay_proto::SecretKey;
use relay_tests::TempDir;

use super::ledger_common::event_body;

const RAW: TableDefinition<u64, &[u8]> = TableDefinition::new("raw");
const ROW_ENTRIES: TableDefinition<&[u8; 40], &[u8]> = TableDefinition::new("entries");
const ROW_CURSORS: TableDefinition<u64, &[u8; 40]> = TableDefinition::new("cursors");
const ROW_KINDS: TableDefinition<&[u8; 41], u64> = TableDefinition::new("kinds");
const ROW_COUNTS: TableDefinition<&[u8; 33], u64> = TableDefinition::new("counts");
const ROW_ORIGINS: TableDefinition<&[u8; 32], &[u8; 41]> = TableDefinition::new("origins");

/// One of the subjects, open.
#[allow(clippy::large_enum_variant)] // six values, built once per run
enum Subject {
    Raw(Database),
    Rows(Database),
    Store(Store, SecretKey),
    Prepared(Store, NoncePool),
    /// Driven from a current-thread runtime.
    Writer(Ledger),
    /// Driven from a multi-thread runtime.
    Ledger(Ledger),
}

const NAMES: [&str; 6] = [
    "raw",
    "raw, ledger rows",
    "store",
    "store, nonces prepared",
    "ledger, through the writer",
    "ledger",
];
const SUBJECTS: usize = NAMES.len();

impl Subject {
    fn open(which: usize, dir: &TempDir) -> Self {
        let key = SecretKey::from_bytes(&[1; 32]);
        let path = dir.join(&format!("subject-{which}"));
        std::fs::create_dir_all(&path).unwrap();
        match which {
            0 => Self::Raw(Database::create(path.join("raw.redb")).unwrap()),
            1 => Self::Rows(Database::create(path.join("rows.redb")).unwrap()),
            2 => Self::Store(Store::open_with(&path, Retention::default()).unwrap(), key),
            3 => Self::Prepared(
                Store::open_with(&path, Retention::default()).unwrap(),
                NoncePool::start(key).unwrap(),
            ),
            4 => Self::Writer(Ledger::open(&path, key).unwrap()),
            _ => Self::Ledger(Ledger::open(&path, key).unwrap()),
        }
    }

    /// Operations `from..from + n`, one durable commit each (bodies built
    /// before the call).
    fn run(&self, rts: &Runtimes, from: u64, bodies: Vec<Body>) {
        match self {
            Self::Raw(db) => {
                let row = [7u8; 200];
                for i in from..from + bodies.len() as u64 {
                    let mut txn = db.begin_write().unwrap();
                    txn.set_durability(Durability::Immediate).unwrap();
                    {
                        let mut t = txn.open_table(RAW).unwrap();
                        t.insert(i, row.as_slice()).unwrap();
                    }
                    txn.commit().unwrap();
                }
            }
            Self::Rows(db) => {
                for i in from..from + bodies.len() as u64 {
                    raw_rows_commit(db, i);
                }
            }
            Self::Store(store, key) => {
                for (i, body) in (from..).zip(bodies) {
                    store.append_local(key, &[(i, body)]).unwrap();
                }
            }
            Self::Prepared(store, pool) => {
                for (i, body) in (from..).zip(bodies) {
                    store.append_local(pool, &[(i, body)]).unwrap();
                }
            }
            Self::Writer(ledger) => rts.current.block_on(appends(ledger, from, bodies)),
            Self::Ledger(ledger) => {
                let ledger = ledger.clone();
                rts.multi
                    .block_on(async move {
                        tokio::spawn(async move { appends(&ledger, from, bodies).await }).await
                    })
                    .unwrap();
            }
        }
    }
}

/// The runtimes the ledger subjects are driven from.
struct Runtimes<'a> {
    current: &'a tokio::runtime::Runtime,
    multi: tokio::runtime::Runtime,
}

/// Appends `bodies` one at a time, each awaited.
async fn appends(ledger: &Ledger, from: u64, bodies: Vec<Body>) {
    for (i, body) in (from..).zip(bodies) {
        ledger.append_at(i, body).await.unwrap();
    }
}

/// One durable commit of the rows an event append writes, each in its own
/// table as the store keeps them (entry row, cursor row, kind-index row,
/// event count, origin frontier).
fn raw_rows_commit(db: &Database, i: u64) {
    let row = [7u8; 240];
    let mut key = [1u8; 40];
    key[32..].copy_from_slice(&i.to_be_bytes());
    let mut kind = [1u8; 41];
    kind[33..].copy_from_slice(&i.to_be_bytes());
    let mut txn = db.begin_write().unwrap();
    txn.set_durability(Durability::Immediate).unwrap();
    {
        let mut t = txn.open_table(ROW_ENTRIES).unwrap();
        t.insert(&key, row.as_slice()).unwrap();
        let mut t = txn.open_table(ROW_CURSORS).unwrap();
        t.insert(i, &key).unwrap();
        let mut t = txn.open_table(ROW_KINDS).unwrap();
        t.insert(&kind, i).unwrap();
        let mut t = txn.open_table(ROW_COUNTS).unwrap();
        t.insert(&[2u8; 33], i).unwrap();
        let mut t = txn.open_table(ROW_ORIGINS).unwrap();
        t.insert(&[3u8; 32], &[4u8; 41]).unwrap();
    }
    txn.commit().unwrap();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The subjects, each `n` commits, run in `chunks` interleaved chunks (a
/// chunk of each in turn, so that neighbouring chunks see the same disk,
/// starting each round with the next subject);
/// then per subject the median µs per commit over chunks, its CPU, and the
/// median over chunks of each one's ratio to raw. Returns the median rates
/// (commits per second) of raw and of the ledger's one writer.
pub fn rounds(rt: &tokio::runtime::Runtime, chunks: u64, n: u64) -> (f64, f64) {
    let dir = TempDir::new("ledger-bench-append").unwrap();
    let subjects: Vec<Subject> = (0..SUBJECTS).map(|w| Subject::open(w, &dir)).collect();
    let rts = Runtimes {
        current: rt,
        multi: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    };
    let per = (n / chunks).max(1);
    let mut wall: [Vec<f64>; SUBJECTS] = Default::default();
    let mut cpu = [0f64; SUBJECTS];
    let mut ratio: [Vec<f64>; SUBJECTS] = Default::default();
    for chunk in 0..chunks {
        let mut us = [0f64; SUBJECTS];
        // Each chunk starts with a different subject, so that no subject
        // always follows the same neighbour's writes.
        for w in (0..SUBJECTS).map(|i| (i + chunk as usize) % SUBJECTS) {
            let s = &subjects[w];
            let bodies: Vec<Body> = (chunk * per..(chunk + 1) * per).map(event_body).collect();
            let c0 = super::net::cpu_time();
            let start = Instant::now();
            s.run(&rts, chunk * per + 1, bodies);
            us[w] = start.elapsed().as_secs_f64() * 1e6 / per as f64;
            cpu[w] += super::net::cpu_time().saturating_sub(c0).as_secs_f64() * 1e6;
        }
        for w in 0..SUBJECTS {
            wall[w].push(us[w]);
            ratio[w].push(us[0] / us[w]);
        }
    }
    let total = (per * chunks) as f64;
    for w in 0..SUBJECTS {
        println!(
            "{:44} {:>10.0} µs   {:.2}x raw (median of {chunks} chunks), {:.0} µs CPU",
            format!("{}, per commit", NAMES[w]),
            median(wall[w].clone()),
            median(ratio[w].clone()),
            cpu[w] / total
        );
    }
    for s in &subjects {
        if let Subject::Ledger(l) = s {
            println!(
                "ledger: {} of {} appends signed without a prepared nonce",
                l.unprepared_signatures(),
                per * chunks
            );
        }
    }
    for s in &subjects {
        if let Subject::Ledger(l) | Subject::Writer(l) = s {
            l.close();
        }
    }
    let [raw, _, _, _, _, ledger] = wall;
    (1e6 / median(raw), 1e6 / median(ledger))
}
