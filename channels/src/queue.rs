//! One subscription's outgoing buffer at the owner: messages waiting for
//! credit, and the gap notices standing in for those dropped.
//!
//! When the buffer holds `limit` messages and another arrives:
//! - `block`: the buffer refuses it ([`Push::Full`]) and the owner makes
//!   the publisher wait;
//! - `drop-oldest`: the oldest buffered message is dropped;
//! - `drop-newest`: the new message is dropped.
//!
//! A dropped message becomes (or extends) a gap item in its place, so the
//! subscriber learns the exact missed range, in order. Gap items never
//! count against the limit; they stay few because consecutive drops of one
//! publisher merge into one item (the gap items sit together at the front,
//! for drop-oldest, or at the back, for drop-newest, at most one per
//! publisher there).

use std::collections::VecDeque;

use bytes::Bytes;
use relay_proto::wire::channel::Backpressure;
use relay_proto::NodeId;

/// One published message (each buffer that holds it has a copy of this
/// header; the payload is shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Who published it.
    pub publisher: NodeId,
    /// Its sequence number from that publisher.
    pub seq: u64,
    /// When the owner took it (unix ms).
    pub ts: u64,
    /// The payload.
    pub data: Bytes,
}

/// What a buffer hands out next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A message (needs one credit).
    Msg(Message),
    /// Dropped messages of `publisher`, `from..=to` (needs no credit).
    Gap {
        /// Whose.
        publisher: NodeId,
        /// First dropped.
        from: u64,
        /// Last dropped.
        to: u64,
    },
}

/// What happened to a pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Buffered.
    Queued,
    /// Buffered; the oldest message was dropped for it.
    DroppedOldest,
    /// Dropped itself.
    DroppedNewest,
    /// Refused (block mode, full): nothing changed.
    Full,
}

/// A subscription's buffer.
#[derive(Debug)]
pub struct SubQueue {
    items: VecDeque<Item>,
    msgs: usize,
    limit: usize,
    mode: Backpressure,
    dropped: u64,
}

impl SubQueue {
    /// An empty buffer of `limit` messages.
    pub fn new(limit: usize, mode: Backpressure) -> Self {
        Self {
            items: VecDeque::new(),
            msgs: 0,
            limit: limit.max(1),
            mode,
            dropped: 0,
        }
    }

    /// Messages buffered.
    pub fn len(&self) -> usize {
        self.msgs
    }

    /// Whether nothing (message or gap) waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The limit (messages).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The next item, if any.
    pub fn front(&self) -> Option<&Item> {
        self.items.front()
    }

    /// Room left before the limit.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.msgs)
    }

    /// The backpressure mode.
    pub fn mode(&self) -> Backpressure {
        self.mode
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether a push now would be refused.
    pub fn would_block(&self) -> bool {
        self.mode == Backpressure::Block && self.room() == 0
    }

    /// Adds a message without looking at the limit (history replay).
    pub fn push_unbounded(&mut self, msg: Message) {
        self.items.push_back(Item::Msg(msg));
        self.msgs += 1;
    }

    /// Adds a gap notice at the back (missed before the buffer saw them).
    pub fn push_gap(&mut self, publisher: NodeId, from: u64, to: u64) {
        if from <= to {
            let at = self.items.len();
            self.merge_gap(at, publisher, from, to, false);
        }
    }

    /// Adds a live message, applying the backpressure mode when full.
    pub fn push(&mut self, msg: Message) -> Push {
        if self.room() > 0 {
            self.push_unbounded(msg);
            return Push::Queued;
        }
        match self.mode {
            Backpressure::Block => Push::Full,
            Backpressure::DropNewest => {
                self.dropped += 1;
                let at = self.items.len();
                self.merge_gap(at, msg.publisher, msg.seq, msg.seq, false);
                Push::DroppedNewest
            }
            Backpressure::DropOldest => {
                if let Some(i) = self.items.iter().position(|x| matches!(x, Item::Msg(_))) {
                    if let Some(Item::Msg(old)) = self.items.remove(i) {
                        self.msgs -= 1;
                        self.dropped += 1;
                        self.merge_gap(i, old.publisher, old.seq, old.seq, true);
                    }
                }
                self.push_unbounded(msg);
                Push::DroppedOldest
            }
        }
    }

    /// Puts a gap for `publisher` at index `at`, merging it into a gap of
    /// the same publisher that ends just before `from` in the run of gap
    /// items before `at` (`front`) or ending at `at` (back).
    fn merge_gap(&mut self, at: usize, publisher: NodeId, from: u64, to: u64, front: bool) {
        let run_start = if front {
            0
        } else {
            self.items
                .iter()
                .rposition(|x| matches!(x, Item::Msg(_)))
                .map_or(0, |i| i + 1)
        };
        for item in self.items.range_mut(run_start..at) {
            if let Item::Gap {
                publisher: p,
                to: end,
                ..
            } = item
            {
                if *p == publisher && end.checked_add(1) == Some(from) {
                    *end = to;
                    return;
                }
            }
        }
        self.items.insert(
            at,
            Item::Gap {
                publisher,
                from,
                to,
            },
        );
    }

    /// Takes the next item if there is credit (a message uses one credit;
    /// a gap uses none, but waits for credit too, so that a stalled
    /// subscriber gets no stream of notices and consecutive drops merge).
    pub fn pop(&mut self, credit: u32) -> Option<Item> {
        if credit == 0 {
            return None;
        }
        let item = self.items.pop_front()?;
        if matches!(item, Item::Msg(_)) {
            self.msgs -= 1;
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::node;

    fn msg(p: u8, seq: u64) -> Message {
        Message {
            publisher: node(p),
            seq,
            ts: 0,
            data: Bytes::new(),
        }
    }

    fn drain(q: &mut SubQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop(1))
            .map(|i| match i {
                Item::Msg(m) => format!("{}:{}", m.publisher == node(1), m.seq),
                Item::Gap {
                    publisher,
                    from,
                    to,
                } => {
                    format!("gap {}:{from}-{to}", publisher == node(1))
                }
            })
            .collect()
    }

    #[test]
    fn block_refuses_when_full() {
        let mut q = SubQueue::new(2, Backpressure::Block);
        assert_eq!(q.push(msg(1, 1)), Push::Queued);
        assert_eq!(q.push(msg(1, 2)), Push::Queued);
        assert!(q.would_block());
        assert_eq!(q.push(msg(1, 3)), Push::Full);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(0), None);
        assert_eq!(drain(&mut q), ["true:1", "true:2"]);
        assert_eq!(q.dropped(), 0);
    }

    #[test]
    fn drop_oldest_merges_gaps_per_publisher() {
        let mut q = SubQueue::new(2, Backpressure::DropOldest);
        for seq in 1..=2 {
            q.push(msg(1, seq));
        }
        q.push(msg(2, 1));
        q.push(msg(2, 2));
        assert_eq!(q.push(msg(1, 3)), Push::DroppedOldest);
        q.push(msg(1, 4));
        assert_eq!(q.dropped(), 4);
        assert_eq!(
            drain(&mut q),
            ["gap true:1-2", "gap false:1-2", "true:3", "true:4"]
        );
    }

    #[test]
    fn drop_newest_keeps_the_buffer_and_reports_the_rest() {
        let mut q = SubQueue::new(1, Backpressure::DropNewest);
        q.push(msg(1, 1));
        assert_eq!(q.push(msg(1, 2)), Push::DroppedNewest);
        q.push(msg(2, 7));
        q.push(msg(1, 3));
        assert_eq!(q.dropped(), 3);
        assert_eq!(drain(&mut q), ["true:1", "gap true:2-3", "gap false:7-7"]);
        q.push(msg(1, 4));
        assert_eq!(drain(&mut q), ["true:4"]);
    }
}
