//! [`NoncePool`]: signing nonces for the node's own ledger appends,
//! prepared on a thread of their own so that an append signs in about 1 µs
//! instead of about 20 (see `relay_proto::PreparedNonce` for why such a
//! signature is as valid and as strong as a deterministic one).
//!
//! A lone writer's append is sign, insert, durable commit, and the next
//! append starts only once the commit is acknowledged, so signing sits on
//! the append's critical path; the base-point multiplication that dominates
//! it does not depend on the message. The pool's thread keeps between
//! [`LOW_WATER`] and [`HIGH_WATER`] nonces ready. A taker wakes it only when
//! the pool falls below [`LOW_WATER`] and the thread is asleep, so the
//! wake-up is paid once per `HIGH_WATER - LOW_WATER` appends, never per
//! append. An empty pool (a burst, or an OS RNG failure) only means the
//! entry is signed deterministically, as before.
//!
//! Nonces live in memory only and each is handed out once; they are zeroed
//! when dropped, with the pool.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use relay_proto::{NodeId, PreparedKey, PreparedNonce, SecretKey};

/// Below this many ready nonces, a taker wakes the thread.
pub const LOW_WATER: usize = 32;
/// The thread fills the pool up to this many.
pub const HIGH_WATER: usize = 64;
/// Nonces prepared between two looks at the pool (about 17 µs each), so a
/// close is seen within a fraction of a millisecond.
const CHUNK: usize = 8;

/// Who signs local appends: a key alone signs deterministically; a
/// [`NoncePool`] signs with its prepared nonces.
pub trait LocalSigner {
    /// The feed's origin: the signing key's public half.
    fn node_id(&self) -> NodeId;
    /// An ed25519 signature of `message` by that key.
    fn sign(&self, message: &[u8]) -> [u8; 64];
}

impl LocalSigner for SecretKey {
    fn node_id(&self) -> NodeId {
        SecretKey::node_id(self)
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        SecretKey::sign(self, message)
    }
}

struct Inner {
    key: PreparedKey,
    ready: Mutex<Ready>,
    more: Condvar,
    closed: AtomicBool,
    /// Takers that found the pool empty (and signed deterministically).
    missed: AtomicU64,
}

#[derive(Default)]
struct Ready {
    nonces: Vec<PreparedNonce>,
    /// The thread is waiting on `more` (set and read under the lock, so a
    /// wake-up is never lost and never sent needlessly).
    asleep: bool,
}

/// See the module docs. Stops its thread when dropped.
pub struct NoncePool {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for NoncePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoncePool")
            .field("key", &self.inner.key.node_id())
            .field("ready", &self.ready())
            .finish()
    }
}

impl NoncePool {
    /// Starts the pool's thread for `secret`; it fills the pool at once.
    pub fn start(secret: SecretKey) -> std::io::Result<Self> {
        let inner = Arc::new(Inner {
            key: PreparedKey::new(&secret),
            ready: Mutex::new(Ready::default()),
            more: Condvar::new(),
            closed: AtomicBool::new(false),
            missed: AtomicU64::new(0),
        });
        let worker = inner.clone();
        let thread = std::thread::Builder::new()
            .name("ledger-nonces".into())
            .spawn(move || fill_loop(&worker))?;
        Ok(Self {
            inner,
            thread: Some(thread),
        })
    }

    /// A pool whose thread never runs: it stays empty (for tests).
    #[cfg(test)]
    fn empty(secret: SecretKey) -> Self {
        Self {
            inner: Arc::new(Inner {
                key: PreparedKey::new(&secret),
                ready: Mutex::new(Ready::default()),
                more: Condvar::new(),
                closed: AtomicBool::new(false),
                missed: AtomicU64::new(0),
            }),
            thread: None,
        }
    }

    /// Nonces ready now.
    pub fn ready(&self) -> usize {
        self.inner.ready.lock().map_or(0, |r| r.nonces.len())
    }

    /// Takers so far that found the pool empty and signed
    /// deterministically.
    pub fn missed(&self) -> u64 {
        self.inner.missed.load(Ordering::Relaxed)
    }

    /// Waits (on a real thread, for tests) until the pool holds at least
    /// `n` nonces; `n` above [`HIGH_WATER`] never returns.
    #[cfg(test)]
    pub(crate) fn wait_ready(&self, n: usize) {
        while self.ready() < n {
            std::thread::yield_now();
        }
    }
}

impl NoncePool {
    /// A prepared nonce for the next signature, if one is ready; wakes the
    /// thread when the pool falls below [`LOW_WATER`].
    fn take(&self) -> Option<PreparedNonce> {
        let mut ready = self.inner.ready.lock().ok()?;
        let nonce = ready.nonces.pop();
        if ready.nonces.len() < LOW_WATER && ready.asleep {
            ready.asleep = false;
            self.inner.more.notify_one();
        }
        nonce
    }
}

impl LocalSigner for NoncePool {
    fn node_id(&self) -> NodeId {
        self.inner.key.node_id()
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        match self.take() {
            Some(nonce) => self.inner.key.sign(nonce, message),
            None => {
                self.inner.missed.fetch_add(1, Ordering::Relaxed);
                self.inner.key.secret().sign(message)
            }
        }
    }
}

impl Drop for NoncePool {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        if let Ok(mut ready) = self.inner.ready.lock() {
            ready.asleep = false;
            self.inner.more.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The pool's thread: sleep while at least [`LOW_WATER`] are ready, then
/// fill to [`HIGH_WATER`], [`CHUNK`] at a time outside the lock.
fn fill_loop(inner: &Inner) {
    loop {
        let want = {
            let Ok(mut ready) = inner.ready.lock() else {
                return;
            };
            loop {
                if inner.closed.load(Ordering::Acquire) {
                    return;
                }
                if ready.nonces.len() < LOW_WATER
                    || !ready.asleep && ready.nonces.len() < HIGH_WATER
                {
                    break;
                }
                ready.asleep = true;
                ready = match inner.more.wait(ready) {
                    Ok(r) => r,
                    Err(_) => return,
                };
            }
            ready.asleep = false;
            HIGH_WATER.saturating_sub(ready.nonces.len()).min(CHUNK)
        };
        let mut made = Vec::with_capacity(want);
        for _ in 0..want {
            match PreparedNonce::generate(inner.key.secret()) {
                Some(n) => made.push(n),
                // The OS RNG failed: leave the pool as it is; appends sign
                // deterministically until the next wake-up.
                None => break,
            }
        }
        let failed = made.len() < want;
        let Ok(mut ready) = inner.ready.lock() else {
            return;
        };
        let room = HIGH_WATER.saturating_sub(ready.nonces.len());
        made.truncate(room);
        ready.nonces.append(&mut made);
        if failed {
            // Sleep until a taker wakes the thread again, not in a loop.
            ready.asleep = true;
            if inner.more.wait(ready).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> NoncePool {
        NoncePool::start(SecretKey::from_bytes(&[3; 32])).unwrap()
    }

    #[test]
    fn the_pool_fills_to_the_high_water_mark_and_stops() {
        let p = pool();
        p.wait_ready(HIGH_WATER);
        assert_eq!(p.ready(), HIGH_WATER);
    }

    #[test]
    fn taking_below_the_low_water_mark_refills_the_pool() {
        let p = pool();
        p.wait_ready(HIGH_WATER);
        let mut sigs = Vec::new();
        for _ in 0..HIGH_WATER - LOW_WATER + 1 {
            sigs.push(p.sign(b"same message"));
        }
        assert_eq!(p.missed(), 0);
        // One below the low-water mark: the taker woke the thread.
        p.wait_ready(HIGH_WATER);
        assert_eq!(p.ready(), HIGH_WATER);
        // Every nonce handed out is a different one, and every signature
        // verifies.
        for sig in &sigs {
            assert!(p.node_id().verify(b"same message", sig));
        }
        sigs.sort_unstable();
        sigs.dedup();
        assert_eq!(sigs.len(), HIGH_WATER - LOW_WATER + 1);
    }

    #[test]
    fn a_key_alone_signs_deterministically() {
        let key = SecretKey::from_bytes(&[4; 32]);
        assert_eq!(LocalSigner::sign(&key, b"m"), key.sign(b"m"));
        assert_eq!(LocalSigner::node_id(&key), key.node_id());
    }

    #[test]
    fn an_empty_pool_signs_deterministically_and_counts_it() {
        let key = SecretKey::from_bytes(&[3; 32]);
        let p = NoncePool::empty(key.clone());
        let sig = p.sign(b"m");
        assert_eq!(p.missed(), 1);
        assert_eq!(sig, key.sign(b"m"));
    }

    #[test]
    fn dropping_the_pool_stops_its_thread() {
        let p = pool();
        let inner = Arc::downgrade(&p.inner);
        drop(p);
        // The thread held the other reference; it has been joined.
        assert!(inner.upgrade().is_none());
    }
}
