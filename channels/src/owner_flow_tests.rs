//! [`take_run`] against [`take_in`]: a run taken at once leaves every
//! buffer, counter, frame and answer as taking its messages one by one
//! does (per link: how frames of different links interleave may differ),
//! over many seeded cases (duplicates, gaps, full buffers in each
//! backpressure mode, little or no credit, best-effort channels).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use foldhash::{HashMap, HashMapExt};
use relay_proto::wire::channel::Backpressure;

use crate::auth::Grant;
use crate::owner::Transmit;
use crate::owner_flow::{take_in, take_run, Channel, Sinks, Taking};
use crate::owner_link::{Link, LinkKey, Role, SubLink};
use crate::policy::{History as Retention, Policy};
use crate::queue::SubQueue;
use crate::testutil::node;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Everything taking touches.
struct State {
    ch: Channel,
    links: HashMap<LinkKey, Link>,
    targets: Vec<LinkKey>,
    out: VecDeque<Transmit>,
    dirty: Vec<LinkKey>,
    taking: Vec<Taking>,
}

impl State {
    fn sinks(&mut self) -> (&mut Channel, Sinks<'_>) {
        (
            &mut self.ch,
            Sinks {
                links: &mut self.links,
                targets: &mut self.targets,
                out: &mut self.out,
                dirty: &mut self.dirty,
                taking: &mut self.taking,
            },
        )
    }

    /// The state as text, links in key order, and the frames to send per
    /// link, in order (how the frames of different links interleave is
    /// free).
    fn describe(&self) -> String {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in &self.out {
            out.entry(format!("{:?} {}", t.peer, t.frame.link()))
                .or_default()
                .push(format!("{t:?}"));
        }
        let links: BTreeMap<String, String> = self
            .links
            .iter()
            .map(|(k, l)| (format!("{k:?}"), format!("{:?}", l.role)))
            .collect();
        format!(
            "{:?} {:?} {:?} {:?} {:?} {links:?} {:?} {:?}",
            self.ch.stats,
            self.ch.last.iter().collect::<BTreeMap<_, _>>(),
            self.ch.history.len(),
            self.ch.subs,
            self.ch.policy,
            out,
            self.dirty
        )
    }
}

/// A channel with a few subscriptions of random modes, limits, credit and
/// backlog, and a publisher whose last taken sequence number is `last`.
fn state(rng: &mut Rng, last: u64) -> State {
    let publisher = node(1);
    let policy = Policy {
        reliable: rng.below(4) != 0,
        history: if rng.below(2) == 0 {
            Retention::None
        } else {
            Retention::Last(3)
        },
        ..Policy::default()
    };
    let mut ch = Channel::new(policy, None);
    if last > 0 {
        ch.last.insert(publisher, last);
    }
    let mut links = HashMap::new();
    for i in 0..rng.below(4) {
        let key = (node(2 + (i % 2) as u8), 10 + i);
        let mode = match rng.below(3) {
            0 => Backpressure::Block,
            1 => Backpressure::DropOldest,
            _ => Backpressure::DropNewest,
        };
        let mut queue = SubQueue::new(1 + rng.below(6) as usize, mode);
        for n in 0..rng.below(3) {
            queue.push(crate::queue::Message {
                publisher: node(9),
                seq: n + 1,
                ts: 1,
                data: Bytes::from_static(b"old"),
            });
        }
        ch.subs.insert(key);
        links.insert(
            key,
            Link {
                grant: Grant {
                    expires_ms: None,
                    token_ids: Vec::new(),
                    issuers: Vec::new(),
                },
                role: Role::Sub(SubLink {
                    channel: Arc::from("c"),
                    group: None,
                    credit: rng.below(5) as u32,
                    queue,
                    delivered: 0,
                    dirty: false,
                }),
            },
        );
    }
    State {
        ch,
        links,
        targets: Vec::new(),
        out: VecDeque::new(),
        dirty: Vec::new(),
        taking: Vec::new(),
    }
}

#[test]
fn a_run_is_taken_as_its_messages_one_by_one() {
    for case in 0..2000u64 {
        let seed = 0x9e37_79b9_7f4a_7c15 ^ case.wrapping_mul(0x1000_0000_01b3);
        let mut rng = Rng(seed | 1);
        let last = rng.below(4);
        let mut run = Vec::new();
        let mut seq = last;
        for _ in 0..rng.below(8) {
            // Mostly the next one; sometimes a repeat, sometimes a jump.
            seq = match rng.below(6) {
                0 => seq.saturating_sub(rng.below(3)),
                1 => seq + 2 + rng.below(3),
                _ => seq + 1,
            };
            run.push((seq, Bytes::from(format!("m{seq}"))));
        }
        let mut one = state(&mut Rng(seed | 1), last);
        let mut all = state(&mut Rng(seed | 1), last);
        // Both generators drew the same numbers for the same states.
        assert_eq!(one.describe(), all.describe(), "case {case}");

        let publisher = node(1);
        let mut one_by_one = Vec::new();
        for (seq, data) in run.clone() {
            let (ch, mut sinks) = one.sinks();
            let (delivered, targets) = take_in(ch, &mut sinks, 7, publisher, seq, data);
            one_by_one.push((seq, delivered, targets));
        }
        let mut at_once = Vec::new();
        let (ch, mut sinks) = all.sinks();
        take_run(ch, &mut sinks, 7, publisher, run.into_iter(), |s, d, t| {
            at_once.push((s, d, t))
        });

        assert_eq!(at_once, one_by_one, "answers, case {case}");
        assert_eq!(all.describe(), one.describe(), "state, case {case}");
    }
}
