//! The node's live view of token revocations: a [`RevocationTable`] kept up
//! to date from the ledger (every `token-revocation` entry, then new ones
//! as they are stored, local or replicated) and shared by whoever checks
//! tokens.
//!
//! - [`RevocationSet::is_revoked`]: whether any member revoked an id;
//!   [`relay_proto::token::Revocations`] (for `verify`) counts only the
//!   revocations of authorities over the link;
//! - [`RevocationSet::subscribe`]: a broadcast of each new revocation, so a
//!   channel owner can end the subscriptions it covers as soon as the entry
//!   is stored (no polling).

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use relay_proto::ledger::{Body, Entry, EntryKind};
use relay_proto::token::{Revocations, TokenId};
use relay_proto::NodeId;
use tokio::sync::broadcast;

use crate::ledger::{Filter, Ledger};
use crate::revocations::{Applied, RevocationTable, Revoked};
use crate::subsystem::Tasks;

/// New revocations buffered for a slow subscriber (it then sees `Lagged`
/// and should re-check its tokens with [`RevocationSet::is_revoked`]).
const BROADCAST: usize = 1024;
/// Expired revocations are dropped at most this often (unix ms).
const PRUNE_EVERY_MS: u64 = 60_000;

/// A shared, live set of revoked token ids. Clones share the set.
#[derive(Debug, Clone)]
pub struct RevocationSet {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    table: RwLock<State>,
    tx: broadcast::Sender<Revoked>,
}

#[derive(Debug, Default)]
struct State {
    table: RevocationTable,
    last_prune: u64,
}

impl Default for RevocationSet {
    fn default() -> Self {
        Self::new()
    }
}

impl RevocationSet {
    /// An empty set that nothing feeds yet (see [`Self::follow`]).
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(BROADCAST);
        Self {
            shared: Arc::new(Shared {
                table: RwLock::new(State::default()),
                tx,
            }),
        }
    }

    /// A set fed from `ledger` by a task on `tasks`: every stored
    /// `token-revocation` entry, then each new one.
    pub fn follow(ledger: &Ledger, tasks: &Tasks) -> Self {
        let set = Self::new();
        tasks.spawn("revocations", set.clone().run(ledger.clone()));
        set
    }

    /// Feeds the set from `ledger` until the ledger closes.
    pub async fn run(self, ledger: Ledger) {
        let filter = Filter {
            origin: None,
            kind: Some(EntryKind::TokenRevocation),
        };
        let mut follower = ledger.follow(None, filter);
        loop {
            match follower.next().await {
                Ok(stored) => {
                    self.apply(&stored.entry, unix_ms());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "revocations: ledger follow ended");
                    return;
                }
            }
        }
    }

    /// Applies one ledger entry at `now` (unix ms); other kinds are
    /// ignored. Returns the revocation if it is new, after announcing it.
    pub fn apply(&self, entry: &Entry, now: u64) -> Option<Revoked> {
        let Ok(Body::TokenRevocation(body)) = entry.body() else {
            return None;
        };
        let applied = {
            let mut state = self.write();
            if now.saturating_sub(state.last_prune) >= PRUNE_EVERY_MS {
                state.table.prune(now);
                state.last_prune = now;
            }
            state.table.apply(entry.origin, &body, now)
        };
        match applied {
            Applied::Added(revoked) => {
                // No subscriber is fine: the set is still updated.
                let _ = self.shared.tx.send(revoked);
                Some(revoked)
            }
            Applied::OverLimit => {
                tracing::warn!(origin = %entry.origin, "revocations: origin over its limit; ignored");
                None
            }
            Applied::Known | Applied::Expired | Applied::NotAToken => None,
        }
    }

    /// Whether any member revoked `id` (authorities are not checked: use
    /// the [`Revocations`] impl when verifying a chain).
    pub fn is_revoked(&self, id: &TokenId) -> bool {
        self.read().table.is_revoked_by_anyone(id)
    }

    /// Each new revocation from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Revoked> {
        self.shared.tx.subscribe()
    }

    /// Every live revocation.
    pub fn all(&self) -> Vec<Revoked> {
        self.read().table.all()
    }

    /// Live revocations held.
    pub fn len(&self) -> usize {
        self.read().table.len()
    }

    /// Whether no revocation is held.
    pub fn is_empty(&self) -> bool {
        self.read().table.is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.shared.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.shared.table.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Revocations for RevocationSet {
    fn is_revoked(&self, id: &TokenId, authorities: &[NodeId]) -> bool {
        self.read().table.is_revoked(id, authorities)
    }
}

/// The wall clock in unix ms (0 before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_dir;
    use relay_proto::ledger::body::TokenRevocation;
    use relay_proto::SecretKey;

    fn revocation(token: u8) -> Body {
        Body::TokenRevocation(TokenRevocation {
            token_id: TokenId::from_bytes([token; 16]).revocation_key(),
            expires_unix_ms: u64::MAX,
            reason: "test".into(),
        })
    }

    #[tokio::test]
    async fn follows_old_and_new_revocations_and_announces_new_ones() {
        let key = SecretKey::from_bytes(&[4; 32]);
        let ledger = Ledger::open(&temp_dir("revocation-set"), key.clone()).unwrap();
        ledger.append(revocation(1)).await.unwrap();
        let tasks = Tasks::new();
        let set = RevocationSet::follow(&ledger, &tasks);
        let mut rx = set.subscribe();
        // The stored one arrives first, then the new one: both announced.
        let first = rx.recv().await.unwrap();
        assert_eq!(first.id, TokenId::from_bytes([1; 16]));
        assert_eq!(first.by, key.node_id());
        ledger.append(revocation(2)).await.unwrap();
        let second = rx.recv().await.unwrap();
        assert_eq!(second.id, TokenId::from_bytes([2; 16]));
        assert!(set.is_revoked(&second.id));
        assert!(!set.is_revoked(&TokenId::from_bytes([3; 16])));
        assert!(Revocations::is_revoked(&set, &second.id, &[key.node_id()]));
        let stranger = SecretKey::from_bytes(&[5; 32]).node_id();
        assert!(!Revocations::is_revoked(&set, &second.id, &[stranger]));
        assert_eq!(set.len(), 2);
        assert_eq!(set.all().len(), 2);
        // The same entry again is not announced twice.
        ledger.append(revocation(2)).await.unwrap();
        ledger.append(revocation(3)).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().id, TokenId::from_bytes([3; 16]));
        tasks.token().cancel();
        ledger.close();
    }
}
