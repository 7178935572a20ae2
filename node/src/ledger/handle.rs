//! [`Ledger`]: the node's handle on its ledger. Appends go through one
//! writer thread that batches whatever is queued into one durable commit
//! (group commit); each append's future resolves once its batch is
//! durable. A lone append made on a multi-thread runtime while the writer
//! is idle commits on the caller's thread instead (in
//! `tokio::task::block_in_place`), which saves the two thread hand-offs.
//! Reads go straight to the store. Subscribers get every entry stored
//! here, local or replicated, in cursor order.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use relay_proto::ledger::{Body, Entry, EntryHash, VectorItem};
use relay_proto::{NodeId, SecretKey};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{broadcast, oneshot};

use super::cursor::Cursor;
use super::error::LedgerError;
use super::nonce_pool::NoncePool;
use super::replica::ReplicaStore;
use super::retention::Retention;
use super::store::{Filter, OriginState, RangeRead, Store, StoredEntry, VerifyReport};

/// Most appends in one group commit.
pub const MAX_GROUP: usize = 1024;
/// Entries a subscriber may fall behind before it sees `Lagged` (it then
/// re-reads from its last cursor with [`Ledger::read`]).
pub const SUBSCRIBER_BUFFER: usize = 4096;

struct Append {
    ts_unix_ms: u64,
    body: Body,
    reply: oneshot::Sender<Result<StoredEntry, LedgerError>>,
}

struct Shared {
    store: Store,
    /// The node's key, with nonces prepared for its appends.
    signer: NoncePool,
    node_id: NodeId,
    events: broadcast::Sender<StoredEntry>,
    /// Serialises commits (the writer's and inline ones) and keeps the
    /// broadcast order the commit order.
    publish: Mutex<()>,
    commits: AtomicU64,
    /// Of `commits`, those made on an appender's thread.
    inline_commits: AtomicU64,
    /// Appends sent to the writer and not yet taken into a batch.
    queued: AtomicUsize,
}

/// What [`Ledger::append_inline`] did.
enum Inline {
    /// Committed on the caller's thread, with this result.
    Done(Result<StoredEntry, LedgerError>),
    /// Not possible now; the body goes to the writer.
    Queue(Body),
}

impl Shared {
    fn publish(&self, stored: &[StoredEntry]) {
        for s in stored {
            // No subscribers is fine.
            let _ = self.events.send(s.clone());
        }
    }
}

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    shared: Arc<Shared>,
    tx: Arc<Mutex<Option<mpsc::Sender<Append>>>>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.shared.store.path())
            .field("node_id", &self.shared.node_id)
            .finish()
    }
}

impl Ledger {
    /// Opens `dir/ledger.redb` for the node `secret`, with the default
    /// retention.
    pub fn open(dir: &Path, secret: SecretKey) -> Result<Self, LedgerError> {
        Self::from_store(Store::open_with(dir, Retention::default())?, secret)
    }

    /// Wraps an open store and starts the writer thread.
    pub fn from_store(store: Store, secret: SecretKey) -> Result<Self, LedgerError> {
        Self::from_store_with_spin(store, secret, WRITER_SPIN)
    }

    /// [`Ledger::from_store`] with the writer polling for `spin` after each
    /// commit before it sleeps ([`WRITER_SPIN`] by default; the benchmark
    /// compares it with none).
    pub fn from_store_with_spin(
        store: Store,
        secret: SecretKey,
        spin: Duration,
    ) -> Result<Self, LedgerError> {
        let (events, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        let shared = Arc::new(Shared {
            store,
            node_id: secret.node_id(),
            signer: NoncePool::start(secret).map_err(|e| {
                LedgerError::Io(format!("cannot start the ledger's nonce thread: {e}"))
            })?,
            events,
            publish: Mutex::new(()),
            commits: AtomicU64::new(0),
            inline_commits: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
        });
        let (tx, rx) = mpsc::channel::<Append>();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer_loop(&writer_shared, &rx, spin))
            .map_err(|e| LedgerError::Io(format!("cannot start the ledger writer: {e}")))?;
        Ok(Self {
            shared,
            tx: Arc::new(Mutex::new(Some(tx))),
            writer: Arc::new(Mutex::new(Some(writer))),
        })
    }

    /// This node's id (the origin of its appends).
    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// The store, for reads and maintenance.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Waits at most `grace` until this node's own feed holds an entry
    /// (a fresh node's first is its announcement, which leads the feed
    /// with its membership proof; peers take nothing of a feed before
    /// it, so an entry appended ahead of it would wait for a re-sync).
    pub async fn wait_own_feed(&self, grace: std::time::Duration) {
        let since = tokio::time::Instant::now();
        while since.elapsed() < grace {
            let frontier = self
                .store()
                .origin(&self.node_id())
                .ok()
                .flatten()
                .map_or(0, |o| o.frontier);
            if frontier > 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Appends `body` (its kind is the body's) to this node's feed, stamped
    /// with the current time. Resolves once the entry is durable.
    pub async fn append(&self, body: Body) -> Result<Cursor, LedgerError> {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Ok(self.append_at(ts, body).await?.cursor)
    }

    /// Appends with an explicit timestamp (unix ms).
    pub async fn append_at(&self, ts_unix_ms: u64, body: Body) -> Result<StoredEntry, LedgerError> {
        let body = match self.append_inline(ts_unix_ms, body) {
            Inline::Done(result) => return result,
            Inline::Queue(body) => body,
        };
        let (reply, rx) = oneshot::channel();
        {
            let tx = self.tx.lock().map_err(|_| LedgerError::Closed)?;
            let tx = tx.as_ref().ok_or(LedgerError::Closed)?;
            self.shared.queued.fetch_add(1, Ordering::AcqRel);
            if tx
                .send(Append {
                    ts_unix_ms,
                    body,
                    reply,
                })
                .is_err()
            {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                return Err(LedgerError::Closed);
            }
        }
        rx.await.map_err(|_| LedgerError::Closed)?
    }

    /// Commits one append on the caller's thread when that is safe and
    /// cheaper than the writer: on a multi-thread runtime (so that
    /// `block_in_place` can hand the worker's other tasks on), with nothing
    /// queued for the writer and no commit running. Otherwise the body is
    /// given back for the writer, which batches concurrent appends.
    fn append_inline(&self, ts_unix_ms: u64, body: Body) -> Inline {
        let multi_thread =
            Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
        if !multi_thread || self.shared.queued.load(Ordering::Acquire) != 0 {
            return Inline::Queue(body);
        }
        let open = self.tx.lock().is_ok_and(|tx| tx.is_some());
        if !open {
            return Inline::Done(Err(LedgerError::Closed));
        }
        let Ok(guard) = self.shared.publish.try_lock() else {
            return Inline::Queue(body);
        };
        let shared = &self.shared;
        let result = tokio::task::block_in_place(|| {
            shared
                .store
                .append_local(&shared.signer, &[(ts_unix_ms, body)])
        });
        shared.commits.fetch_add(1, Ordering::Relaxed);
        shared.inline_commits.fetch_add(1, Ordering::Relaxed);
        let result = match result {
            Ok(stored) => {
                shared.publish(&stored);
                let mut stored = stored.into_iter();
                match (stored.next(), stored.next()) {
                    (Some(one), None) => Ok(one),
                    _ => Err(LedgerError::Io("append stored partially".into())),
                }
            }
            Err(e) => Err(e),
        };
        drop(guard);
        Inline::Done(result)
    }

    /// Entries after `after`, in cursor order (see `Store::read`).
    pub fn read(
        &self,
        after: Option<Cursor>,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<StoredEntry>, LedgerError> {
        self.shared.store.read(after, limit, filter)
    }

    /// Every entry stored from now on. To follow without gaps: subscribe
    /// first, then [`Ledger::read`] from the last cursor seen, then skip
    /// subscribed entries whose cursor is not above the last one read.
    pub fn subscribe(&self) -> broadcast::Receiver<StoredEntry> {
        self.shared.events.subscribe()
    }

    /// Re-checks every signature and link; lists forks.
    pub fn verify(&self) -> Result<VerifyReport, LedgerError> {
        self.shared.store.verify()
    }

    /// Group commits made so far.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// Own appends signed without a prepared nonce (the pool was empty).
    pub fn unprepared_signatures(&self) -> u64 {
        self.shared.signer.missed()
    }

    /// Of [`Ledger::commits`], those a lone append made on its caller's
    /// thread instead of the writer's.
    pub fn inline_commits(&self) -> u64 {
        self.shared.inline_commits.load(Ordering::Relaxed)
    }

    /// Stops the writer after the queued appends; later appends fail with
    /// `ledger-closed`.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// How long the writer keeps polling for the next append after a commit
/// before it sleeps. A lone appender awaiting each append sends its next
/// one within about this long; catching it awake saves a sleep and a
/// wake-up of the writer (tens of µs on a virtual machine) per append. At
/// most this much CPU is spent per commit when no append follows.
pub const WRITER_SPIN: Duration = Duration::from_micros(100);

/// The next append: polled for `spin`, then waited for. `None` once every
/// sender is gone.
fn next_append(rx: &mpsc::Receiver<Append>, spin: Duration) -> Option<Append> {
    let start = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(a) => return Some(a),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if start.elapsed() < spin => {
                std::hint::spin_loop();
            }
            Err(mpsc::TryRecvError::Empty) => return rx.recv().ok(),
        }
    }
}

fn writer_loop(shared: &Shared, rx: &mpsc::Receiver<Append>, spin: Duration) {
    while let Some(first) = next_append(rx, spin) {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        shared.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        let (replies, items): (Vec<_>, Vec<(u64, Body)>) = batch
            .into_iter()
            .map(|a| (a.reply, (a.ts_unix_ms, a.body)))
            .unzip();
        let guard = shared.publish.lock();
        let result = shared.store.append_local(&shared.signer, &items);
        shared.commits.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(stored) if stored.len() == replies.len() => {
                shared.publish(&stored);
                drop(guard);
                for (reply, s) in replies.into_iter().zip(stored) {
                    let _ = reply.send(Ok(s));
                }
            }
            Ok(_) => {
                drop(guard);
                for reply in replies {
                    let _ =
                        reply.send(Err(LedgerError::Io("append batch stored partially".into())));
                }
            }
            Err(e) => {
                drop(guard);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

impl ReplicaStore for Ledger {
    fn vector(&self) -> Result<Vec<VectorItem>, LedgerError> {
        self.shared.store.vector()
    }

    fn origin(&self, origin: &NodeId) -> Result<Option<OriginState>, LedgerError> {
        self.shared.store.origin(origin)
    }

    fn entry(&self, origin: &NodeId, seq: u64) -> Result<Option<Entry>, LedgerError> {
        self.shared.store.entry(origin, seq)
    }

    fn range(
        &self,
        origin: &NodeId,
        from_seq: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Option<RangeRead>, LedgerError> {
        self.shared
            .store
            .range(origin, from_seq, max_entries, max_bytes)
    }

    fn insert_verified(
        &mut self,
        origin: &NodeId,
        entries: &[Entry],
        frontier: (u64, EntryHash),
    ) -> Result<Vec<StoredEntry>, LedgerError> {
        let _guard = self.shared.publish.lock();
        let stored = self
            .shared
            .store
            .insert_verified(origin, entries, frontier)?;
        self.shared.publish(&stored);
        Ok(stored)
    }

    fn record_fork(&mut self, evidence: &[Entry]) -> Result<(), LedgerError> {
        self.shared.store.record_fork(evidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_dir;
    use relay_proto::ledger::body::{PathOutcome, TraversalOutcome};

    fn event(n: u32) -> Body {
        Body::TraversalOutcome(TraversalOutcome {
            peer: SecretKey::from_bytes(&[9; 32]).node_id(),
            outcome: PathOutcome::Direct,
            time_to_direct_ms: Some(u64::from(n)),
            why: String::new(),
            birthday_packets: 0,
        })
    }

    /// The ledger verifies; once closed, it refuses appends.
    async fn verify_and_close(ledger: &Ledger) {
        assert!(ledger.verify().unwrap().is_ok());
        ledger.close();
        assert!(matches!(
            ledger.append(event(0)).await,
            Err(LedgerError::Closed)
        ));
    }

    #[tokio::test]
    #[allow(clippy::await_holding_lock)] // the held lock is the point: it parks the writer
    async fn concurrent_appends_share_a_commit_and_reach_subscribers_in_order() {
        let dir = temp_dir("ledger-group");
        let ledger = Ledger::open(&dir, SecretKey::from_bytes(&[1; 32])).unwrap();
        let mut sub = ledger.subscribe();
        // Hold the writer at its commit so that all 16 appends queue up.
        let guard = ledger.shared.publish.lock().unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..16 {
            let l = ledger.clone();
            tasks.spawn(async move { l.append_at(i, event(i as u32)).await });
        }
        tokio::task::yield_now().await;
        drop(guard);
        let mut seqs = Vec::new();
        while let Some(r) = tasks.join_next().await {
            seqs.push(r.unwrap().unwrap().entry.seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=16).collect::<Vec<u64>>());
        assert!(ledger.commits() <= 2, "{} commits", ledger.commits());
        // A current-thread runtime cannot lend its thread to a commit.
        assert_eq!(ledger.inline_commits(), 0);
        for expect in 1..=16u64 {
            let got = sub.recv().await.unwrap();
            assert_eq!(got.cursor, Cursor(expect));
        }
        verify_and_close(&ledger).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_sign_with_prepared_nonces_and_survive_a_restart() {
        let dir = temp_dir("ledger-nonces");
        let key = SecretKey::from_bytes(&[1; 32]);
        let ledger = Ledger::open(&dir, key.clone()).unwrap();
        ledger.shared.signer.wait_ready(2);
        let mut stored = Vec::new();
        for i in 1..=2u64 {
            stored.push(ledger.append_at(i, event(i as u32)).await.unwrap());
        }
        for s in &stored {
            let e = &s.entry;
            let plain = Entry::sign(&key, e.seq, e.prev_hash, e.ts_unix_ms, &event(e.seq as u32));
            assert_ne!(
                e.signature,
                plain.unwrap().signature,
                "signed deterministically"
            );
            e.verify_signature().unwrap();
        }
        ledger.close();
        drop(ledger);
        let again = Ledger::open(&dir, key).unwrap();
        assert!(again.verify().unwrap().is_ok());
        let read = again.read(None, 10, &Filter::default()).unwrap();
        assert_eq!(read, stored);
        verify_and_close(&again).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_append_on_a_multi_thread_runtime_commits_inline_in_order() {
        let dir = temp_dir("ledger-inline");
        let ledger = Ledger::open(&dir, SecretKey::from_bytes(&[1; 32])).unwrap();
        let mut sub = ledger.subscribe();
        for i in 1..=8u64 {
            let stored = ledger.append_at(i, event(i as u32)).await.unwrap();
            assert_eq!(stored.entry.seq, i);
            assert_eq!(stored.cursor, Cursor(i));
            let got = sub.recv().await.unwrap();
            assert_eq!(got.cursor, Cursor(i));
        }
        assert_eq!(ledger.commits(), 8);
        assert_eq!(ledger.inline_commits(), 8);
        verify_and_close(&ledger).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inline_and_writer_commits_mix_without_gaps_or_forks() {
        let dir = temp_dir("ledger-inline-mixed");
        let ledger = Ledger::open(&dir, SecretKey::from_bytes(&[1; 32])).unwrap();
        let mut sub = ledger.subscribe();
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..16u64 {
            let l = ledger.clone();
            tasks.spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..8 {
                    seqs.push(
                        l.append_at(t * 8 + i, event(i as u32))
                            .await
                            .unwrap()
                            .entry
                            .seq,
                    );
                }
                seqs
            });
        }
        let mut seqs = Vec::new();
        while let Some(r) = tasks.join_next().await {
            let mine = r.unwrap();
            // One task's appends are stored in the order it made them.
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
            seqs.extend(mine);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=128).collect::<Vec<u64>>());
        for expect in 1..=128u64 {
            assert_eq!(sub.recv().await.unwrap().cursor, Cursor(expect));
        }
        assert!(ledger.commits() <= 128);
        assert!(ledger.verify().unwrap().is_ok());
    }
}
