//! A channel's retained messages, in the order the owner took them, and
//! the replay a new or resuming subscription gets.
//!
//! Retention is by count (the last N) or by age; either way at most
//! [`MAX_RETAINED_BYTES`] of payload are kept (oldest out first). Replay
//! is computed when the subscription is made, in the same step that makes
//! it live, so nothing published in between can be missed or repeated.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use bytes::Bytes;
use relay_proto::wire::channel::{Cursor, Start};
use relay_proto::NodeId;

use crate::policy::History as Retention;
use crate::queue::Message;

/// Most payload bytes one channel retains.
pub const MAX_RETAINED_BYTES: usize = 64 * 1024 * 1024;

/// Retained messages.
#[derive(Debug, Default)]
pub struct History {
    retention: Retention,
    msgs: VecDeque<Message>,
    bytes: usize,
}

/// What a subscription gets before going live: the missed ranges no longer
/// retained, then the retained messages.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// `(publisher, from, to)` ranges that were published but are gone.
    pub gaps: Vec<(NodeId, u64, u64)>,
    /// Messages to deliver, in order.
    pub msgs: Vec<Message>,
}

impl History {
    /// An empty history keeping what `retention` says.
    pub fn new(retention: Retention) -> Self {
        Self {
            retention,
            ..Self::default()
        }
    }

    /// Messages retained.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Retains `msg` (if the channel keeps history) and drops what falls
    /// out of retention.
    pub fn push(&mut self, msg: &Message, now_ms: u64) {
        if self.retention == Retention::None {
            return;
        }
        // A payload may be a slice of a larger receive buffer (frames are
        // decoded without copies); what is kept for long owns its bytes, so
        // that retention holds no more memory than it counts.
        let own = Message {
            data: Bytes::copy_from_slice(&msg.data),
            ..msg.clone()
        };
        self.bytes += own.data.len();
        self.msgs.push_back(own);
        self.prune(now_ms);
    }

    /// Drops what falls out of retention at `now_ms`.
    pub fn prune(&mut self, now_ms: u64) {
        let keep = |h: &Self, m: &Message| match h.retention {
            Retention::None => false,
            Retention::Last(n) => h.msgs.len() <= n as usize,
            Retention::DurationMs(ms) => m.ts.saturating_add(ms) > now_ms,
        };
        while let Some(front) = self.msgs.front() {
            if keep(self, front) && self.bytes <= MAX_RETAINED_BYTES {
                break;
            }
            self.bytes -= front.data.len();
            self.msgs.pop_front();
        }
    }

    /// When the oldest message ages out (duration retention only).
    pub fn next_expiry(&self) -> Option<u64> {
        match self.retention {
            Retention::DurationMs(ms) => self.msgs.front().map(|m| m.ts.saturating_add(ms)),
            Retention::None | Retention::Last(_) => None,
        }
    }

    /// What a subscription starting at `start` gets before live; `last`
    /// gives each publisher's last sequence number the owner took.
    pub fn replay<S: BuildHasher>(&self, start: &Start, last: &HashMap<NodeId, u64, S>) -> Replay {
        match start {
            Start::Live => Replay::default(),
            Start::FromStart => Replay {
                gaps: Vec::new(),
                msgs: self.msgs.iter().cloned().collect(),
            },
            Start::Last(n) => Replay {
                gaps: Vec::new(),
                msgs: self
                    .msgs
                    .iter()
                    .skip(self.msgs.len().saturating_sub(*n as usize))
                    .cloned()
                    .collect(),
            },
            Start::After(cursors) => self.resume(cursors, last),
        }
    }

    fn resume<S: BuildHasher>(&self, cursors: &[Cursor], last: &HashMap<NodeId, u64, S>) -> Replay {
        let seen: HashMap<NodeId, u64> = cursors.iter().map(|c| (c.publisher, c.seq)).collect();
        let mut gaps = Vec::new();
        for c in cursors {
            let taken = last.get(&c.publisher).copied().unwrap_or(0);
            let oldest = self
                .msgs
                .iter()
                .find(|m| m.publisher == c.publisher && m.seq > c.seq)
                .map(|m| m.seq);
            let end = oldest.map_or(taken, |s| s - 1);
            if end > c.seq {
                gaps.push((c.publisher, c.seq + 1, end));
            }
        }
        let msgs = self
            .msgs
            .iter()
            .filter(|m| seen.get(&m.publisher).is_none_or(|s| m.seq > *s))
            .cloned()
            .collect();
        Replay { gaps, msgs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::node;

    fn msg(p: u8, seq: u64, ts: u64) -> Message {
        Message {
            publisher: node(p),
            seq,
            ts,
            data: vec![0; 10].into(),
        }
    }

    fn seqs(r: &Replay) -> Vec<u64> {
        r.msgs.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn last_n_and_duration_retention() {
        let mut h = History::new(Retention::Last(3));
        for s in 1..=5 {
            h.push(&msg(1, s, s), s);
        }
        assert_eq!(
            seqs(&h.replay(&Start::FromStart, &HashMap::new())),
            [3, 4, 5]
        );
        assert_eq!(seqs(&h.replay(&Start::Last(2), &HashMap::new())), [4, 5]);
        assert!(h.replay(&Start::Live, &HashMap::new()).msgs.is_empty());

        let mut h = History::new(Retention::DurationMs(100));
        h.push(&msg(1, 1, 0), 0);
        h.push(&msg(1, 2, 50), 50);
        assert_eq!(h.next_expiry(), Some(100));
        h.prune(100);
        assert_eq!(h.len(), 1);

        let mut none = History::new(Retention::None);
        none.push(&msg(1, 1, 0), 0);
        assert!(none.is_empty());
    }

    #[test]
    fn resume_replays_after_the_cursor_and_reports_what_is_gone() {
        let mut h = History::new(Retention::Last(3));
        for s in 1..=6 {
            h.push(&msg(1, s, 0), 0);
        }
        h.push(&msg(2, 1, 0), 0);
        let last = HashMap::from([(node(1), 6), (node(2), 1)]);
        let cursor = |p, seq| Cursor {
            publisher: node(p),
            seq,
        };
        // Publisher 1 seen up to 2: 3 is gone (only 5, 6 and 2/1 remain).
        let r = h.replay(&Start::After(vec![cursor(1, 2)]), &last);
        assert_eq!(r.gaps, vec![(node(1), 3, 4)]);
        assert_eq!(seqs(&r), [5, 6, 1]);
        // Seen everything: nothing to replay, no gap.
        let r = h.replay(&Start::After(vec![cursor(1, 6), cursor(2, 1)]), &last);
        assert_eq!(r, Replay::default());
        // No history at all: the whole missed range is a gap.
        let empty = History::new(Retention::None);
        let r = empty.replay(&Start::After(vec![cursor(1, 2)]), &last);
        assert_eq!(r.gaps, vec![(node(1), 3, 6)]);
    }
}
