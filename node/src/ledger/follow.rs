//! [`Follower`]: every entry after a cursor, then every new one, with no gap
//! and no duplicate. The basis of `ledger --follow` and the SSE tail
//! (`Last-Event-ID` = the last cursor a client saw).
//!
//! It subscribes before it reads, so nothing stored in between is missed,
//! and skips subscribed entries at or below the last cursor it returned. A
//! subscriber that falls behind (`Lagged`) reads the gap back from the
//! store.

use tokio::sync::broadcast;

use super::cursor::Cursor;
use super::error::LedgerError;
use super::handle::Ledger;
use super::store::{Filter, StoredEntry};

/// Entries read from the store per step while catching up.
const PAGE: usize = 256;

/// See the module docs.
#[derive(Debug)]
pub struct Follower {
    ledger: Ledger,
    filter: Filter,
    live: broadcast::Receiver<StoredEntry>,
    /// The last cursor returned (or the starting point).
    last: Option<Cursor>,
    backlog: std::collections::VecDeque<StoredEntry>,
    /// Whether the store may hold entries after `last` not yet returned.
    catching_up: bool,
}

impl Follower {
    pub(crate) fn new(ledger: Ledger, after: Option<Cursor>, filter: Filter) -> Self {
        let live = ledger.subscribe();
        Self {
            ledger,
            filter,
            live,
            last: after,
            backlog: Default::default(),
            catching_up: true,
        }
    }

    /// The last cursor returned (where a reconnecting client resumes).
    pub fn last_cursor(&self) -> Option<Cursor> {
        self.last
    }

    /// The next entry; waits for one if there is none yet.
    pub async fn next(&mut self) -> Result<StoredEntry, LedgerError> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                self.last = Some(e.cursor);
                return Ok(e);
            }
            if self.catching_up {
                let page = self.ledger.read(self.last, PAGE, &self.filter)?;
                if page.len() < PAGE {
                    self.catching_up = false;
                }
                self.backlog.extend(page);
                continue;
            }
            match self.live.recv().await {
                Ok(e) => {
                    if self.last.is_some_and(|l| e.cursor <= l) {
                        continue;
                    }
                    if !self.matches(&e) {
                        continue;
                    }
                    self.last = Some(e.cursor);
                    return Ok(e);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.catching_up = true,
                Err(broadcast::error::RecvError::Closed) => return Err(LedgerError::Closed),
            }
        }
    }

    fn matches(&self, e: &StoredEntry) -> bool {
        self.filter.origin.is_none_or(|o| o == e.entry.origin)
            && self.filter.kind.is_none_or(|k| k == e.entry.kind)
    }
}

impl Ledger {
    /// Follows the ledger from after `after` (from the start if `None`).
    pub fn follow(&self, after: Option<Cursor>, filter: Filter) -> Follower {
        Follower::new(self.clone(), after, filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_dir;
    use relay_proto::ledger::body::{PathOutcome, TraversalOutcome};
    use relay_proto::ledger::Body;
    use relay_proto::SecretKey;

    fn event(n: u64) -> Body {
        Body::TraversalOutcome(TraversalOutcome {
            peer: SecretKey::from_bytes(&[9; 32]).node_id(),
            outcome: PathOutcome::Direct,
            time_to_direct_ms: Some(n),
            why: String::new(),
            birthday_packets: 0,
        })
    }

    #[tokio::test]
    async fn a_resumed_follower_misses_nothing_and_repeats_nothing() {
        let dir = temp_dir("ledger-follow");
        let ledger = Ledger::open(&dir, SecretKey::from_bytes(&[1; 32])).unwrap();
        for i in 0..10 {
            ledger.append_at(i, event(i)).await.unwrap();
        }
        // A client reads 4 entries, "disconnects", and resumes from the
        // last cursor it saw while appends keep coming.
        let mut first = ledger.follow(None, Filter::default());
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(first.next().await.unwrap().cursor);
        }
        let resume_at = first.last_cursor();
        drop(first);
        let writer = {
            let l = ledger.clone();
            tokio::spawn(async move {
                for i in 10..40 {
                    l.append_at(i, event(i)).await.unwrap();
                }
            })
        };
        let mut resumed = ledger.follow(resume_at, Filter::default());
        while seen.len() < 40 {
            seen.push(resumed.next().await.unwrap().cursor);
        }
        writer.await.unwrap();
        let expected: Vec<Cursor> = (1..=40).map(Cursor).collect();
        assert_eq!(seen, expected);
        ledger.close();
    }

    #[tokio::test(start_paused = true)]
    async fn a_filtered_follower_sees_only_its_origin() {
        let dir = temp_dir("ledger-follow-filter");
        let ledger = Ledger::open(&dir, SecretKey::from_bytes(&[1; 32])).unwrap();
        ledger.append_at(1, event(1)).await.unwrap();
        let other = Filter {
            origin: Some(SecretKey::from_bytes(&[2; 32]).node_id()),
            kind: None,
        };
        let mut f = ledger.follow(None, other);
        let got = tokio::time::timeout(std::time::Duration::from_millis(50), f.next()).await;
        assert!(got.is_err(), "nothing of that origin");
        ledger.close();
    }
}
