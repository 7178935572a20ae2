//! One protocol's bounded queue: what the mux hands to the protocol's
//! handler, with a cap on how much of it one peer may hold. The mux side
//! never waits: what does not fit is handed back to be refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use relay_proto::NodeId;
use tokio::sync::mpsc;

use crate::Incoming;

/// How much of a queue each peer holds now.
#[derive(Debug)]
struct Shares {
    per_peer: usize,
    held: Mutex<HashMap<NodeId, usize>>,
}

impl Shares {
    fn held(&self) -> MutexGuard<'_, HashMap<NodeId, usize>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, peer: NodeId) -> bool {
        let mut held = self.held();
        let mine = held.entry(peer).or_default();
        if *mine >= self.per_peer {
            return false;
        }
        *mine += 1;
        true
    }

    fn give_back(&self, peer: &NodeId) {
        let mut held = self.held();
        if let Some(mine) = held.get_mut(peer) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                held.remove(peer);
            }
        }
    }
}

/// Why an item was not queued.
#[derive(Debug)]
pub(crate) enum PushError {
    /// The queue, or the sender's share of it, is full.
    Full(Incoming),
    /// The handler is gone.
    Closed(Incoming),
}

/// The mux's end of a queue.
#[derive(Debug)]
pub(crate) struct QueueTx {
    tx: mpsc::Sender<Incoming>,
    shares: Arc<Shares>,
}

/// The handler's end of a queue.
#[derive(Debug)]
pub(crate) struct QueueRx {
    rx: mpsc::Receiver<Incoming>,
    shares: Arc<Shares>,
}

/// A queue of `capacity` items, at most `per_peer` of them from one peer.
pub(crate) fn queue(capacity: usize, per_peer: usize) -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let shares = Arc::new(Shares {
        per_peer: per_peer.max(1),
        held: Mutex::default(),
    });
    (
        QueueTx {
            tx,
            shares: shares.clone(),
        },
        QueueRx { rx, shares },
    )
}

impl QueueTx {
    /// Queues `item` without waiting.
    pub(crate) fn push(&self, item: Incoming) -> Result<(), PushError> {
        let from = item.from();
        if self.tx.is_closed() {
            return Err(PushError::Closed(item));
        }
        if !self.shares.take(from) {
            return Err(PushError::Full(item));
        }
        match self.tx.try_send(item) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.shares.give_back(&from);
                Err(match e {
                    mpsc::error::TrySendError::Full(item) => PushError::Full(item),
                    mpsc::error::TrySendError::Closed(item) => PushError::Closed(item),
                })
            }
        }
    }
}

impl QueueRx {
    /// The next item; `None` once the mux has closed and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<Incoming> {
        let item = self.rx.recv().await?;
        self.shares.give_back(&item.from());
        Some(item)
    }

    /// The next item if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Incoming> {
        let item = self.rx.try_recv().ok()?;
        self.shares.give_back(&item.from());
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use bytes::Bytes;
    use relay_proto::SecretKey;

    fn datagram(from: NodeId, n: u8) -> Incoming {
        Incoming::Datagram {
            from,
            data: Bytes::from(vec![n]),
        }
    }

    #[tokio::test]
    async fn one_peer_cannot_fill_the_queue() {
        let (tx, mut rx) = queue(4, 2);
        let a = SecretKey::generate().node_id();
        let b = SecretKey::generate().node_id();
        tx.push(datagram(a, 1)).unwrap();
        tx.push(datagram(a, 2)).unwrap();
        assert!(matches!(tx.push(datagram(a, 3)), Err(PushError::Full(_))));
        tx.push(datagram(b, 4)).unwrap();
        tx.push(datagram(b, 5)).unwrap();
        // Taking one of a's items gives a room again.
        let first = rx.recv().await.unwrap();
        assert_eq!(first.from(), a);
        tx.push(datagram(a, 6)).unwrap();
        // Now the queue itself is full.
        let c = SecretKey::generate().node_id();
        assert!(matches!(tx.push(datagram(c, 7)), Err(PushError::Full(_))));
        let mut order = Vec::new();
        while let Some(Incoming::Datagram { data, .. }) = rx.try_recv() {
            order.push(data[0]);
        }
        assert_eq!(order, [2, 4, 5, 6]);
        assert!(rx.shares.held().is_empty(), "no shares left behind");
    }

    #[tokio::test]
    async fn a_dropped_handler_closes_the_queue() {
        let (tx, rx) = queue(4, 4);
        drop(rx);
        let a = SecretKey::generate().node_id();
        assert!(matches!(tx.push(datagram(a, 1)), Err(PushError::Closed(_))));
    }
}
