//! A subscriber's side of one subscription: it opens the link, returns
//! credit as the application consumes messages, drops duplicates, reports
//! gaps (notices from the owner, and sequence jumps on best-effort
//! channels), and after a reconnect resumes from the last (publisher, seq)
//! it delivered, so nothing is lost or repeated.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use relay_proto::wire::channel::{Backpressure, ChannelFrame, Cursor, Reason, Start, MAX_CURSORS};
use relay_proto::NodeId;

/// Most publishers a subscription remembers a position for (for resume
/// and de-duplication); messages of further publishers are delivered
/// without either.
pub const MAX_TRACKED_PUBLISHERS: usize = 4096;

/// How a subscription behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionConfig {
    /// Messages the owner may send ahead of consumption (the credit; what
    /// the subscriber may have to hold at most, so its memory bound is the
    /// window times the channel's largest message). Returned in batches of
    /// half the window as messages are taken.
    pub window: u32,
    /// What the owner does when this subscriber falls behind.
    pub backpressure: Backpressure,
    /// The queue group, if any.
    pub group: Option<String>,
    /// Where the first subscribe starts (a resume starts after what was
    /// delivered).
    pub start: Start,
}

/// A subscription's default window: 4096 messages (256 KiB of 64 B
/// messages). A window of 1024 returned credit every 512 messages, and the
/// round trip of each return held a 1→1 stream of small messages to two
/// thirds of what 4096 lets through. Subscribers of large messages choose a
/// smaller one.
pub const DEFAULT_WINDOW: u32 = 4096;

/// The largest window an owner grants by default
/// ([`crate::OwnerConfig::max_credit`]).
pub const MAX_WINDOW: u32 = 1 << 16;

impl Default for SubscriptionConfig {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            backpressure: Backpressure::Block,
            group: None,
            start: Start::Live,
        }
    }
}

/// What the application sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubEvent {
    /// The owner accepted the subscription.
    Accepted {
        /// Reliable (else best-effort).
        reliable: bool,
    },
    /// A message.
    Message {
        /// Who published it.
        publisher: NodeId,
        /// Its sequence number.
        seq: u64,
        /// When the owner took it (unix ms).
        ts: u64,
        /// The payload.
        data: Bytes,
    },
    /// Messages `from..=to` of `publisher` were missed.
    Gap {
        /// Whose.
        publisher: NodeId,
        /// First missed.
        from: u64,
        /// Last missed.
        to: u64,
    },
    /// The owner refused the subscription.
    Denied(Reason),
    /// The owner ended it.
    Ended(Reason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Opening,
    Live,
    Disconnected,
    Ended,
}

/// One subscription, subscriber side. See the module docs.
#[derive(Debug)]
pub struct Subscription {
    link: u64,
    name: String,
    token: Vec<u8>,
    config: SubscriptionConfig,
    state: State,
    last: BTreeMap<NodeId, u64>,
    /// Messages consumed (or dropped as duplicates) since credit was last
    /// returned.
    consumed: u32,
    duplicates: u64,
    missed: u64,
    out: VecDeque<ChannelFrame>,
    pub(crate) events: VecDeque<SubEvent>,
}

impl Subscription {
    /// A subscription to `name` on link `link`, presenting `token` (empty:
    /// none). Its subscribe frame is the first to transmit.
    pub fn new(link: u64, name: &str, token: Vec<u8>, config: SubscriptionConfig) -> Self {
        let mut this = Self {
            link,
            name: name.into(),
            token,
            config,
            state: State::Opening,
            last: BTreeMap::new(),
            consumed: 0,
            duplicates: 0,
            missed: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
        };
        this.subscribe();
        this
    }

    fn subscribe(&mut self) {
        let start = if self.last.is_empty() {
            self.config.start.clone()
        } else {
            Start::After(
                self.last
                    .iter()
                    .take(MAX_CURSORS)
                    .map(|(p, s)| Cursor {
                        publisher: *p,
                        seq: *s,
                    })
                    .collect(),
            )
        };
        self.consumed = 0;
        self.out.push_back(ChannelFrame::Subscribe {
            link: self.link,
            name: self.name.clone(),
            token: self.token.clone(),
            queue: self.config.group.clone(),
            start,
            credit: self.config.window,
            backpressure: self.config.backpressure,
        });
    }

    /// The link number.
    pub fn link(&self) -> u64 {
        self.link
    }

    /// The channel name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the subscription is over (denied or ended).
    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// Duplicates dropped so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Messages reported missed so far.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// Events not taken yet.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// The next frame to send to the owner.
    pub fn poll_transmit(&mut self) -> Option<ChannelFrame> {
        self.out.pop_front()
    }

    /// The next event for the application; taking a message returns its
    /// credit (in batches of half the window).
    pub fn poll_event(&mut self) -> Option<SubEvent> {
        let event = self.events.pop_front()?;
        if matches!(event, SubEvent::Message { .. }) {
            self.consumed_one();
        }
        Some(event)
    }

    fn consumed_one(&mut self) {
        self.consumed += 1;
        if self.state == State::Live && self.consumed >= (self.config.window / 2).max(1) {
            self.out.push_back(ChannelFrame::Credit {
                link: self.link,
                n: self.consumed,
            });
            self.consumed = 0;
        }
    }

    /// A frame from the owner for this link.
    pub fn handle_frame(&mut self, frame: ChannelFrame) {
        if self.state == State::Ended {
            return;
        }
        match frame {
            ChannelFrame::Accepted { reliable, .. } => {
                self.state = State::Live;
                self.events.push_back(SubEvent::Accepted { reliable });
            }
            ChannelFrame::Denied { reason, .. } => self.end(SubEvent::Denied(reason)),
            ChannelFrame::End { reason, .. } => self.end(SubEvent::Ended(reason)),
            ChannelFrame::Deliver {
                publisher,
                seq,
                ts,
                data,
                ..
            } => self.on_deliver(publisher, seq, ts, data),
            ChannelFrame::DeliverBatch {
                publisher,
                seq,
                ts,
                data,
                ..
            } => self.on_batch(publisher, seq, ts, data),
            ChannelFrame::Gap {
                publisher,
                from,
                to,
                ..
            } => {
                let last = self.last.get(&publisher).copied();
                if last.is_some_and(|l| l >= to) {
                    return;
                }
                let from = last.map_or(from, |l| from.max(l + 1));
                self.gap(publisher, from, to);
            }
            _ => {}
        }
    }

    fn end(&mut self, event: SubEvent) {
        self.state = State::Ended;
        self.events.push_back(event);
    }

    /// Remembers `seq` as the last position of `publisher`, within
    /// [`MAX_TRACKED_PUBLISHERS`].
    fn track(&mut self, publisher: NodeId, seq: u64) {
        if let Some(last) = self.last.get_mut(&publisher) {
            *last = seq;
        } else if self.last.len() < MAX_TRACKED_PUBLISHERS {
            self.last.insert(publisher, seq);
        }
    }

    fn gap(&mut self, publisher: NodeId, from: u64, to: u64) {
        // `from..=to` is the owner's word (checked only for from <= to):
        // 0..=u64::MAX does not fit a count.
        self.missed = self.missed.saturating_add((to - from).saturating_add(1));
        self.track(publisher, to);
        self.events.push_back(SubEvent::Gap {
            publisher,
            from,
            to,
        });
    }

    fn on_deliver(&mut self, publisher: NodeId, seq: u64, ts: u64, data: Bytes) {
        match self.last.get(&publisher).copied() {
            Some(l) if seq <= l => {
                self.duplicates += 1;
                self.consumed_one();
                return;
            }
            Some(l) if seq > l + 1 => self.gap(publisher, l + 1, seq - 1),
            _ => {}
        }
        self.track(publisher, seq);
        self.events.push_back(SubEvent::Message {
            publisher,
            seq,
            ts,
            data,
        });
    }

    /// Messages `seq..` of `publisher`, one payload each (the frame was
    /// checked: 1 to `MAX_BATCH` of them, the last number fits a u64).
    fn on_batch(&mut self, publisher: NodeId, seq: u64, ts: u64, data: Vec<Bytes>) {
        let last = seq.saturating_add((data.len() as u64).saturating_sub(1));
        let next = self.last.get(&publisher).map(|l| l.checked_add(1));
        if next != Some(Some(seq)) {
            // A first message, a duplicate or a jump: one at a time.
            let mut s = seq;
            for d in data {
                self.on_deliver(publisher, s, ts, d);
                s = s.saturating_add(1);
            }
            return;
        }
        let any = !data.is_empty();
        self.events.reserve(data.len());
        let mut s = seq;
        for d in data {
            self.events.push_back(SubEvent::Message {
                publisher,
                seq: s,
                ts,
                data: d,
            });
            s = s.saturating_add(1);
        }
        if any {
            self.track(publisher, last);
        }
    }

    /// The connection to the owner is gone.
    pub fn handle_disconnect(&mut self) {
        if self.state != State::Ended {
            self.state = State::Disconnected;
        }
    }

    /// Connected again: resubscribe after the last message delivered.
    pub fn handle_reconnect(&mut self) {
        if self.state == State::Disconnected {
            self.state = State::Opening;
            self.subscribe();
        }
    }

    /// Presents a fresh token on the live subscription.
    pub fn refresh(&mut self, token: Vec<u8>) {
        self.token = token.clone();
        self.out.push_back(ChannelFrame::TokenRefresh {
            link: self.link,
            token,
        });
    }

    /// Asks the owner to end the subscription.
    pub fn unsubscribe(&mut self) {
        if self.state != State::Ended {
            self.out
                .push_back(ChannelFrame::Unsubscribe { link: self.link });
        }
    }
}
