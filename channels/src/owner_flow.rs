//! How a message flows through the owner: taken from a publishing
//! session into the buffer of each subscription it targets (with the gap
//! notices and counters that go with it), then sent as frames when the
//! subscription's credit allows, consecutive messages in one batch.
//! [`crate::owner::Owner`] decides when; this file does the moving.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use foldhash::HashMap;
use relay_proto::wire::channel::{ChannelFrame, MAX_BATCH, MAX_BATCH_BYTES};
use relay_proto::NodeId;

use crate::history::History;
use crate::owner::{ChannelStats, Transmit};
use crate::owner_link::{Link, LinkKey, Role, SubLink};
use crate::policy::Policy;
use crate::queue::{Item, Message, Push};
use crate::rate::Bucket;

/// One owned channel: its policy, links, counters and history.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) policy: Policy,
    /// Subscriptions outside queue groups.
    pub(crate) subs: BTreeSet<LinkKey>,
    /// Queue groups and their members.
    pub(crate) groups: BTreeMap<String, BTreeSet<LinkKey>>,
    pub(crate) pubs: BTreeSet<LinkKey>,
    /// Each publisher's last sequence number taken.
    pub(crate) last: HashMap<NodeId, u64>,
    pub(crate) history: History,
    pub(crate) rate: Option<Bucket>,
    pub(crate) stats: ChannelStats,
}

impl Channel {
    /// A channel with no links yet.
    pub(crate) fn new(policy: Policy, rate: Option<Bucket>) -> Self {
        Self {
            policy,
            subs: BTreeSet::new(),
            groups: BTreeMap::new(),
            pubs: BTreeSet::new(),
            last: HashMap::default(),
            history: History::new(policy.history),
            rate,
            stats: ChannelStats::default(),
        }
    }

    pub(crate) fn subscriptions(&self) -> usize {
        self.subs.len() + self.groups.values().map(BTreeSet::len).sum::<usize>()
    }
}

/// The queue-group member that gets the next message: the one with the
/// most free credit (then buffer room); ties go to the lowest key.
pub(crate) fn best_member(
    links: &HashMap<LinkKey, Link>,
    members: &BTreeSet<LinkKey>,
) -> Option<LinkKey> {
    let mut best: Option<(u64, LinkKey)> = None;
    for key in members {
        if let Some(Link {
            role: Role::Sub(s), ..
        }) = links.get(key)
        {
            let free = s.free();
            if best.is_none_or(|(f, _)| free > f) {
                best = Some((free, *key));
            }
        }
    }
    best.map(|(_, k)| k)
}

pub(crate) fn sub_mut<'a>(
    links: &'a mut HashMap<LinkKey, Link>,
    key: &LinkKey,
) -> Option<&'a mut SubLink> {
    match links.get_mut(key) {
        Some(Link {
            role: Role::Sub(s), ..
        }) => Some(s),
        _ => None,
    }
}

/// Queues what subscription `key`'s credit allows of its buffer (`ch` is
/// its channel).
pub(crate) fn flush_sub(
    key: LinkKey,
    sub: &mut SubLink,
    ch: &mut Channel,
    out: &mut VecDeque<Transmit>,
) {
    let reliable = ch.policy.reliable;
    loop {
        let credit = if reliable { sub.credit } else { u32::MAX };
        let Some(item) = sub.queue.pop(credit) else {
            break;
        };
        let frame = match item {
            Item::Msg(m) => {
                if reliable {
                    sub.credit -= 1;
                }
                sub.delivered += 1;
                ch.stats.delivered += 1;
                let batch = if reliable {
                    take_batch(sub, &m, &mut ch.stats)
                } else {
                    Vec::new()
                };
                if batch.is_empty() {
                    ChannelFrame::Deliver {
                        link: key.1,
                        publisher: m.publisher,
                        seq: m.seq,
                        ts: m.ts,
                        data: m.data,
                    }
                } else {
                    ChannelFrame::DeliverBatch {
                        link: key.1,
                        publisher: m.publisher,
                        seq: m.seq,
                        ts: m.ts,
                        data: batch,
                    }
                }
            }
            Item::Gap {
                publisher,
                from,
                to,
            } => ChannelFrame::Gap {
                link: key.1,
                publisher,
                from,
                to,
            },
        };
        out.push_back(Transmit {
            peer: key.0,
            frame,
            reliable,
        });
    }
}

/// The messages after `first` (just taken from `sub`'s buffer) that go
/// in one frame with it: those the credit allows that follow it in its
/// publisher's sequence and were taken at the same time, within the
/// batch bounds. Returns every payload, `first`'s included, or nothing
/// when no message follows.
pub(crate) fn take_batch(
    sub: &mut SubLink,
    first: &Message,
    stats: &mut ChannelStats,
) -> Vec<Bytes> {
    let mut batch = Vec::new();
    let mut bytes = first.data.len();
    let mut last = first.seq;
    // `batch` holds `first` too once anything joins it.
    while sub.credit > 0 && batch.len().max(1) < MAX_BATCH {
        let follows = match sub.queue.front() {
            Some(Item::Msg(m)) => {
                m.publisher == first.publisher
                    && m.ts == first.ts
                    && last.checked_add(1) == Some(m.seq)
                    && bytes + m.data.len() <= MAX_BATCH_BYTES
            }
            _ => false,
        };
        if !follows {
            break;
        }
        let Some(Item::Msg(m)) = sub.queue.pop(sub.credit) else {
            break;
        };
        if batch.is_empty() {
            let room = (sub.credit as usize).min(sub.queue.len() + 1) + 1;
            batch.reserve(room.min(MAX_BATCH));
            batch.push(first.data.clone());
        }
        bytes += m.data.len();
        last = m.seq;
        batch.push(m.data);
        sub.credit -= 1;
        sub.delivered += 1;
        stats.delivered += 1;
    }
    batch
}

/// Records that message `seq` of session `key` was taken: it joins
/// the session's last pending acknowledgement when the counts match.
pub(crate) fn push_ack(
    acks: &mut Vec<(LinkKey, u64, u32, u32)>,
    key: LinkKey,
    seq: u64,
    delivered: u32,
    targets: u32,
) {
    if let Some(last) = acks.iter_mut().rev().find(|a| a.0 == key) {
        if (last.2, last.3) == (delivered, targets) {
            last.1 = seq;
            return;
        }
    }
    acks.push((key, seq, delivered, targets));
}

/// What taking a message touches besides its channel (the owner's
/// fields, borrowed apart from the channel's).
pub(crate) struct Sinks<'a> {
    pub(crate) links: &'a mut HashMap<LinkKey, Link>,
    /// Kept for its allocation.
    pub(crate) targets: &'a mut Vec<LinkKey>,
    pub(crate) out: &'a mut VecDeque<Transmit>,
    pub(crate) dirty: &'a mut Vec<LinkKey>,
    /// A run being taken (kept for its allocation).
    pub(crate) taking: &'a mut Vec<Taking>,
}

/// Takes message `seq` of `publisher`, the next after `last` (the last
/// one taken from it, 0 for none): its share of the rate, its place in the
/// history and the counter. Returns the message and the publisher's
/// messages skipped just before it, if any (a publisher first seen
/// mid-sequence, resuming after this owner restarted, skipped nothing
/// anyone here could have had). The caller records `seq` as the last.
#[inline]
fn take_message(
    ch: &mut Channel,
    last: u64,
    publisher: NodeId,
    seq: u64,
    now_ms: u64,
    data: Bytes,
) -> (Message, Option<(u64, u64)>) {
    if let Some(rate) = &mut ch.rate {
        rate.take(now_ms);
    }
    let skipped = if last == 0 {
        None
    } else {
        Some((last + 1, seq - 1)).filter(|(from, to)| from <= to)
    };
    let msg = Message {
        publisher,
        seq,
        ts: now_ms,
        data,
    };
    ch.history.push(&msg, now_ms);
    ch.stats.published += 1;
    (msg, skipped)
}

/// Takes a message the channel admitted; returns (delivered, targets). A
/// sequence number already taken is a duplicate: counted, not delivered.
pub(crate) fn take_in(
    ch: &mut Channel,
    s: &mut Sinks<'_>,
    now_ms: u64,
    publisher: NodeId,
    seq: u64,
    data: Bytes,
) -> (u32, u32) {
    let last = *ch.last.entry(publisher).or_insert(0);
    if seq <= last {
        ch.stats.duplicates += 1;
        return (0, 0);
    }
    let (msg, skipped) = take_message(ch, last, publisher, seq, now_ms, data);
    ch.last.insert(publisher, seq);
    s.targets.clear();
    s.targets.extend(ch.subs.iter().copied());
    let links = &*s.links;
    s.targets.extend(
        ch.groups
            .values()
            .filter_map(|members| best_member(links, members)),
    );
    let reliable = ch.policy.reliable;
    let mut delivered = 0u32;
    for key in s.targets.iter() {
        let Some(sub) = sub_mut(s.links, key) else {
            continue;
        };
        if let Some((from, to)) = skipped.filter(|_| sub.group.is_none()) {
            sub.queue.push_gap(publisher, from, to);
        }
        if sub.queue.room() == 0 {
            // Full, but the credit may let some out: send those first, so
            // the bound counts only what waits beyond the credit.
            flush_sub(*key, sub, ch, s.out);
        }
        match sub.queue.push(msg.clone()) {
            Push::Queued => delivered += 1,
            Push::DroppedOldest => {
                delivered += 1;
                ch.stats.dropped += 1;
            }
            Push::DroppedNewest | Push::Full => ch.stats.dropped += 1,
        }
        if !reliable {
            // Datagrams go at once, one message each.
            flush_sub(*key, sub, ch, s.out);
        } else if !sub.dirty {
            // Sent when the turn ends, with the turn's other messages.
            sub.dirty = true;
            s.dirty.push(*key);
        }
    }
    let n = u32::try_from(s.targets.len()).unwrap_or(u32::MAX);
    (delivered, n)
}

/// One message of a run being taken by [`take_run`].
#[derive(Debug)]
pub(crate) struct Taking {
    seq: u64,
    /// Seen before: counted, not delivered.
    duplicate: bool,
    /// The message, until the last target takes it.
    msg: Option<Message>,
    /// The publisher's messages skipped just before it.
    gap: Option<(u64, u64)>,
    /// Targets that took it.
    delivered: u32,
}

/// Takes a run of `publisher`'s messages that the channel admitted, in
/// order, exactly as [`take_in`] takes each (the same buffers, gap
/// notices, counters and answers), with one lookup of the publisher's last
/// sequence number and one of each target for the whole run. That holds
/// for a channel without queue groups, whose targets are the same for
/// every message; a group's member is chosen per message, so such a
/// channel takes the run one by one. Each link's frames come in the same
/// order; those of different links may interleave differently (a target's
/// frames for the whole run come before the next target's). `answer` gets
/// (seq, delivered, targets) of each message, in order.
pub(crate) fn take_run(
    ch: &mut Channel,
    s: &mut Sinks<'_>,
    now_ms: u64,
    publisher: NodeId,
    run: impl Iterator<Item = (u64, Bytes)>,
    mut answer: impl FnMut(u64, u32, u32),
) {
    if !ch.groups.is_empty() {
        for (seq, data) in run {
            let (delivered, targets) = take_in(ch, s, now_ms, publisher, seq, data);
            answer(seq, delivered, targets);
        }
        return;
    }
    let mut run = run.peekable();
    if run.peek().is_none() {
        return;
    }
    let mut taking = std::mem::take(s.taking);
    let mut last = *ch.last.entry(publisher).or_insert(0);
    for (seq, data) in run {
        if seq <= last {
            ch.stats.duplicates += 1;
            taking.push(Taking {
                seq,
                duplicate: true,
                msg: None,
                gap: None,
                delivered: 0,
            });
            continue;
        }
        let (msg, gap) = take_message(ch, last, publisher, seq, now_ms, data);
        last = seq;
        taking.push(Taking {
            seq,
            duplicate: false,
            msg: Some(msg),
            gap,
            delivered: 0,
        });
    }
    ch.last.insert(publisher, last);
    s.targets.clear();
    if taking.iter().any(|t| !t.duplicate) {
        s.targets.extend(ch.subs.iter().copied());
    }
    let reliable = ch.policy.reliable;
    let count = s.targets.len();
    for (i, key) in s.targets.iter().enumerate() {
        let Some(sub) = sub_mut(s.links, key) else {
            continue;
        };
        let last_target = i + 1 == count;
        for t in taking.iter_mut() {
            let msg = if last_target {
                t.msg.take()
            } else {
                t.msg.clone()
            };
            let Some(msg) = msg else {
                continue;
            };
            if let Some((from, to)) = t.gap.filter(|_| sub.group.is_none()) {
                sub.queue.push_gap(publisher, from, to);
            }
            if sub.queue.room() == 0 {
                // Full, but the credit may let some out: send those first.
                flush_sub(*key, sub, ch, s.out);
            }
            match sub.queue.push(msg) {
                Push::Queued => t.delivered += 1,
                Push::DroppedOldest => {
                    t.delivered += 1;
                    ch.stats.dropped += 1;
                }
                Push::DroppedNewest | Push::Full => ch.stats.dropped += 1,
            }
            if !reliable {
                flush_sub(*key, sub, ch, s.out);
            }
        }
        if reliable && !sub.dirty {
            sub.dirty = true;
            s.dirty.push(*key);
        }
    }
    let targets = u32::try_from(count).unwrap_or(u32::MAX);
    for t in taking.drain(..) {
        if t.duplicate {
            answer(t.seq, 0, 0);
        } else {
            answer(t.seq, t.delivered, targets);
        }
    }
    *s.taking = taking;
}
