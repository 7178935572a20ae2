//! Where a local publisher's acknowledgements go: one [`Acks`] per
//! publisher (a `POST /v1/pub` call, a `pub` frame stream), filled by the
//! hub with runs of messages, in publish order, instead of one oneshot
//! channel per message.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use relay_proto::wire::channel::Reason;
use tokio::sync::Notify;

/// What the owner answered for a run of `count` consecutive messages of
/// one publisher: (delivered, targets) of each, or why the session ended
/// before they were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRun {
    /// Messages in the run.
    pub count: u64,
    /// What each of them got.
    pub result: Result<(u32, u32), Reason>,
}

#[derive(Debug, Default)]
struct Inner {
    ready: Mutex<VecDeque<AckRun>>,
    notify: Notify,
}

/// A publisher's acknowledgements (cheap to clone; clones share them).
#[derive(Debug, Clone, Default)]
pub struct Acks(Arc<Inner>);

impl Acks {
    /// An empty one.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<AckRun>> {
        self.0.ready.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `other` is this one (or a clone of it).
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Adds the answer for the next `count` messages (merged with the
    /// last run when equal) and wakes the waiter.
    pub fn push(&self, count: u64, result: Result<(u32, u32), Reason>) {
        if count == 0 {
            return;
        }
        {
            let mut ready = self.lock();
            match ready.back_mut() {
                Some(last) if last.result == result => last.count += count,
                _ => ready.push_back(AckRun { count, result }),
            }
        }
        self.0.notify.notify_one();
    }

    /// The oldest run not taken yet, if any.
    pub fn try_take(&self) -> Option<AckRun> {
        self.lock().pop_front()
    }

    /// Waits up to `timeout` for the oldest run not taken yet.
    pub async fn take(&self, timeout: Duration) -> Option<AckRun> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(run) = self.try_take() {
                return Some(run);
            }
            // A push between the check and here leaves a permit.
            if tokio::time::timeout_at(deadline, self.0.notify.notified())
                .await
                .is_err()
            {
                return self.try_take();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn runs_merge_in_order_and_wake_the_waiter() {
        let acks = Acks::new();
        acks.push(2, Ok((1, 1)));
        acks.push(3, Ok((1, 1)));
        acks.push(0, Ok((0, 0)));
        acks.push(1, Ok((2, 2)));
        acks.push(4, Err(Reason::Removed));
        let runs: Vec<AckRun> = std::iter::from_fn(|| acks.try_take()).collect();
        assert_eq!(
            runs,
            vec![
                AckRun {
                    count: 5,
                    result: Ok((1, 1))
                },
                AckRun {
                    count: 1,
                    result: Ok((2, 2))
                },
                AckRun {
                    count: 4,
                    result: Err(Reason::Removed)
                },
            ]
        );
        let waiter = tokio::spawn({
            let acks = acks.clone();
            async move { acks.take(Duration::from_secs(5)).await }
        });
        tokio::task::yield_now().await;
        acks.push(1, Ok((3, 3)));
        assert_eq!(
            waiter.await.unwrap(),
            Some(AckRun {
                count: 1,
                result: Ok((3, 3))
            })
        );
        assert_eq!(acks.take(Duration::from_secs(5)).await, None, "timed out");
    }
}
