//! The owner's state machine: the channels this node registered, every
//! link to them, and what flows through them. Sans-IO: it takes the time
//! (unix ms), frames from peers and local calls, and yields
//! [`Transmit`]s and timeouts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use foldhash::{HashMap, HashMapExt};
use relay_proto::wire::channel::{
    valid_name, Backpressure, ChannelFrame, Reason, Start, TokenKind, MAX_DATA,
};
use relay_proto::NodeId;
use thiserror::Error;

use crate::auth::{Action, Authorizer, Grant};
use crate::history::History;
use crate::owner_link::{Link, LinkKey, PubLink, Role, SubLink};
use crate::policy::Policy;
use crate::queue::{Item, Message, Push, SubQueue};
use crate::rate::Bucket;
use crate::throttle::Throttle;

/// The owner's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerConfig {
    /// Messages buffered per subscription beyond its credit.
    pub sub_buffer: usize,
    /// Unacknowledged publishes a publishing session may have.
    pub pub_window: u32,
    /// Most credit a subscription may hold.
    pub max_credit: u32,
    /// Most links (subscriptions and sessions) one peer may have open.
    pub max_links_per_peer: usize,
    /// Most subscriptions per channel.
    pub max_subs_per_channel: usize,
    /// Most channels owned.
    pub max_channels: usize,
}

impl Default for OwnerConfig {
    fn default() -> Self {
        Self {
            sub_buffer: 1024,
            pub_window: 256,
            max_credit: 1 << 16,
            max_links_per_peer: 1024,
            max_subs_per_channel: 10_000,
            max_channels: 1024,
        }
    }
}

/// A frame for a peer (possibly this node itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// To whom.
    pub peer: NodeId,
    /// What.
    pub frame: ChannelFrame,
    /// On the reliable path (stream) or not (datagram).
    pub reliable: bool,
}

/// A channel's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Messages taken from publishers.
    pub published: u64,
    /// Deliveries sent to subscriptions.
    pub delivered: u64,
    /// Deliveries dropped by backpressure (each reported as a gap).
    pub dropped: u64,
    /// Publishes seen twice (resent after a reconnect) and ignored.
    pub duplicates: u64,
    /// Subscriptions now.
    pub subscribers: usize,
    /// Publishing sessions now.
    pub publishers: usize,
    /// Messages retained for replay.
    pub retained: usize,
}

/// One owned channel, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The name.
    pub name: String,
    /// The policy.
    pub policy: Policy,
    /// The counters.
    pub stats: ChannelStats,
}

/// A local channel operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OwnerError {
    /// The name is taken.
    #[error("channel-exists: {0:?} is already owned by this node")]
    Exists(String),
    /// No such owned channel.
    #[error("no-such-channel: {0:?} is not owned by this node")]
    NoSuchChannel(String),
    /// The name is empty, too long or has control characters.
    #[error("invalid-name: a channel name is 1 to 255 bytes without control characters")]
    InvalidName,
    /// The owner's bound on channels is reached.
    #[error("too-many: this node owns as many channels as it allows ({0})")]
    TooMany(usize),
}

impl OwnerError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exists(_) => "channel-exists",
            Self::NoSuchChannel(_) => "no-such-channel",
            Self::InvalidName => "invalid-name",
            Self::TooMany(_) => "too-many",
        }
    }
}

/// A publish was not taken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PublishError {
    /// No such owned channel.
    #[error("no-such-channel: the channel is not owned by this node")]
    NoSuchChannel,
    /// A `block` subscription's buffer is full: try again after it gives
    /// credit.
    #[error("would-block: a subscriber with block backpressure is full")]
    WouldBlock,
    /// The channel's publish rate is used up until `retry_at_ms`.
    #[error("rate-limited: the channel's maximum rate is reached")]
    RateLimited {
        /// When a publish can be taken again (unix ms).
        retry_at_ms: u64,
    },
    /// Larger than [`MAX_DATA`].
    #[error("too-large: a message is at most {MAX_DATA} bytes")]
    TooLarge,
}

impl PublishError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoSuchChannel => "no-such-channel",
            Self::WouldBlock => "would-block",
            Self::RateLimited { .. } => "rate-limited",
            Self::TooLarge => "too-large",
        }
    }
}

#[derive(Debug)]
struct Channel {
    policy: Policy,
    /// Subscriptions outside queue groups.
    subs: BTreeSet<LinkKey>,
    /// Queue groups and their members.
    groups: BTreeMap<String, BTreeSet<LinkKey>>,
    pubs: BTreeSet<LinkKey>,
    /// Each publisher's last sequence number taken.
    last: HashMap<NodeId, u64>,
    history: History,
    rate: Option<Bucket>,
    stats: ChannelStats,
}

impl Channel {
    fn subscriptions(&self) -> usize {
        self.subs.len() + self.groups.values().map(BTreeSet::len).sum::<usize>()
    }
}

/// The owner of this node's channels. See the module docs.
#[derive(Debug)]
pub struct Owner<A> {
    me: NodeId,
    auth: A,
    config: OwnerConfig,
    /// By name (hashed: every message looks its channel up a few times;
    /// listings sort).
    channels: HashMap<String, Channel>,
    links: HashMap<LinkKey, Link>,
    per_peer: HashMap<NodeId, usize>,
    expiries: BTreeSet<(u64, LinkKey)>,
    throttle: Throttle,
    out: VecDeque<Transmit>,
    denied: u64,
    /// The latest time seen (for work an event triggers without one).
    now_ms: u64,
    /// The targets of the message being taken (kept to reuse its
    /// allocation).
    targets: Vec<LinkKey>,
    /// Acknowledgements not sent yet, in order: (session, last seq taken,
    /// delivered, targets). Consecutive messages of one session with the
    /// same counts share one entry; they go out when [`Self::poll_transmit`]
    /// runs out of other frames (or before the session's `End`), so a
    /// session whose publishes are taken together gets one `PublishAck`.
    acks: Vec<(LinkKey, u64, u32, u32)>,
}

/// The queue-group member that gets the next message: the one with the
/// most free credit (then buffer room); ties go to the lowest key.
fn best_member(links: &HashMap<LinkKey, Link>, members: &BTreeSet<LinkKey>) -> Option<LinkKey> {
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

fn sub_mut<'a>(links: &'a mut HashMap<LinkKey, Link>, key: &LinkKey) -> Option<&'a mut SubLink> {
    match links.get_mut(key) {
        Some(Link {
            role: Role::Sub(s), ..
        }) => Some(s),
        _ => None,
    }
}

/// Queues what subscription `key`'s credit allows of its buffer (`ch` is
/// its channel).
fn flush_sub(key: LinkKey, sub: &mut SubLink, ch: &mut Channel, out: &mut VecDeque<Transmit>) {
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
                ChannelFrame::Deliver {
                    link: key.1,
                    publisher: m.publisher,
                    seq: m.seq,
                    ts: m.ts,
                    data: m.data.clone(),
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

impl<A: Authorizer> Owner<A> {
    /// The owner of no channel yet, on node `me`.
    pub fn new(me: NodeId, auth: A, config: OwnerConfig) -> Self {
        Self {
            me,
            auth,
            config,
            channels: HashMap::new(),
            links: HashMap::new(),
            per_peer: HashMap::new(),
            expiries: BTreeSet::new(),
            throttle: Throttle::default(),
            out: VecDeque::new(),
            denied: 0,
            now_ms: 0,
            targets: Vec::new(),
            acks: Vec::new(),
        }
    }

    /// The authorizer (to update what it knows, e.g. revocations).
    pub fn authorizer_mut(&mut self) -> &mut A {
        &mut self.auth
    }

    /// Starts owning `name` with `policy`.
    pub fn create(&mut self, name: &str, policy: Policy, now_ms: u64) -> Result<(), OwnerError> {
        if !valid_name(name) {
            return Err(OwnerError::InvalidName);
        }
        if self.channels.contains_key(name) {
            return Err(OwnerError::Exists(name.into()));
        }
        if self.channels.len() >= self.config.max_channels {
            return Err(OwnerError::TooMany(self.config.max_channels));
        }
        let rate = policy
            .max_rate
            .map(|r| Bucket::new(u64::from(r), u64::from(r), now_ms));
        self.channels.insert(
            name.into(),
            Channel {
                policy,
                subs: BTreeSet::new(),
                groups: BTreeMap::new(),
                pubs: BTreeSet::new(),
                last: HashMap::new(),
                history: History::new(policy.history),
                rate,
                stats: ChannelStats::default(),
            },
        );
        Ok(())
    }

    /// Stops owning `name`: every link to it ends with `removed`.
    pub fn remove(&mut self, name: &str) -> Result<(), OwnerError> {
        let ch = self
            .channels
            .get(name)
            .ok_or_else(|| OwnerError::NoSuchChannel(name.into()))?;
        let keys: Vec<LinkKey> = ch
            .subs
            .iter()
            .chain(ch.groups.values().flatten())
            .chain(ch.pubs.iter())
            .copied()
            .collect();
        for key in keys {
            self.close(key, Some(Reason::Removed));
        }
        self.channels.remove(name);
        Ok(())
    }

    /// Every owned channel with its policy and counters, by name.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        let mut all: Vec<ChannelInfo> = self
            .channels
            .iter()
            .map(|(name, ch)| ChannelInfo {
                name: name.clone(),
                policy: ch.policy,
                stats: ChannelStats {
                    subscribers: ch.subscriptions(),
                    publishers: ch.pubs.len(),
                    retained: ch.history.len(),
                    ..ch.stats
                },
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Whether this node owns `name`.
    pub fn owns(&self, name: &str) -> bool {
        self.channels.contains_key(name)
    }

    /// Links denied so far (any reason), and of them those throttled.
    pub fn denials(&self) -> (u64, u64) {
        (self.denied, self.throttle.throttled())
    }

    /// Links open now.
    pub fn links(&self) -> usize {
        self.links.len()
    }

    /// The next frame to send. Acknowledgements of publishes come after
    /// every other queued frame, one per run of messages (see
    /// [`ChannelFrame::PublishAck`]).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.out.is_empty() {
            self.flush_acks(None);
        }
        self.out.pop_front()
    }

    /// Queues the acknowledgements not sent yet (those of session `only`,
    /// or all), in order.
    fn flush_acks(&mut self, only: Option<LinkKey>) {
        if self.acks.is_empty() {
            return;
        }
        let mut acks = std::mem::take(&mut self.acks);
        acks.retain(|&(key, seq, delivered, targets)| {
            if only.is_some_and(|k| k != key) {
                return true;
            }
            self.out.push_back(Transmit {
                peer: key.0,
                frame: ChannelFrame::PublishAck {
                    link: key.1,
                    seq,
                    delivered,
                    targets,
                },
                reliable: true,
            });
            false
        });
        self.acks = acks;
    }

    /// Records that message `seq` of session `key` was taken: it joins
    /// the session's last pending acknowledgement when the counts match.
    fn ack(&mut self, key: LinkKey, seq: u64, delivered: u32, targets: u32) {
        if let Some(last) = self.acks.iter_mut().rev().find(|a| a.0 == key) {
            if (last.2, last.3) == (delivered, targets) {
                last.1 = seq;
                return;
            }
        }
        self.acks.push((key, seq, delivered, targets));
    }

    /// When [`Self::handle_timeout`] must run next (unix ms).
    pub fn poll_timeout(&self) -> Option<u64> {
        let expiry = self.expiries.first().map(|(t, _)| *t);
        let history = self
            .channels
            .values()
            .filter_map(|c| c.history.next_expiry())
            .min();
        let retry = self
            .links
            .values()
            .filter_map(|l| match &l.role {
                Role::Pub(p) if !p.pending.is_empty() => self
                    .channels
                    .get(&*p.channel)
                    .and_then(|c| c.rate.as_ref())
                    .map(Bucket::next_at),
                _ => None,
            })
            .min();
        [expiry, history, retry].into_iter().flatten().min()
    }

    /// Runs the expiry sweep, ages out history and retries rate-limited
    /// publishes.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        while let Some(&(t, key)) = self.expiries.first() {
            if t > now_ms {
                break;
            }
            self.close(key, Some(Reason::Token(TokenKind::Expired)));
        }
        for ch in self.channels.values_mut() {
            ch.history.prune(now_ms);
        }
        let waiting: Vec<LinkKey> = self
            .links
            .iter()
            .filter(|(_, l)| matches!(&l.role, Role::Pub(p) if !p.pending.is_empty()))
            .map(|(k, _)| *k)
            .collect();
        for key in waiting {
            self.drain_pub(now_ms, key);
        }
    }

    /// A token was revoked by node `by`: every link whose chain holds it,
    /// with `by` among the issuers at or above it, ends with
    /// `token: revoked`.
    pub fn handle_revocation(&mut self, token_id: &[u8; 32], by: &NodeId) -> usize {
        let hit: Vec<LinkKey> = self
            .links
            .iter()
            .filter(|(_, l)| l.grant.revoked_by(token_id, by))
            .map(|(k, _)| *k)
            .collect();
        for key in &hit {
            self.close(*key, Some(Reason::Token(TokenKind::Revoked)));
        }
        hit.len()
    }

    /// The connection to `peer` is gone: its links end without a frame
    /// (subscribers resume by sequence, publishers resend).
    pub fn handle_peer_gone(&mut self, peer: &NodeId) {
        let keys: Vec<LinkKey> = self
            .links
            .keys()
            .filter(|k| k.0 == *peer)
            .copied()
            .collect();
        for key in keys {
            self.close(key, None);
        }
    }

    /// A frame from `peer`. Frames meant for subscribers or publishers are
    /// ignored.
    pub fn handle_frame(&mut self, now_ms: u64, peer: NodeId, frame: ChannelFrame) {
        self.now_ms = self.now_ms.max(now_ms);
        match frame {
            ChannelFrame::Subscribe {
                link,
                name,
                token,
                queue,
                start,
                credit,
                backpressure,
            } => {
                let key = (peer, link);
                let opened = self
                    .open_check(now_ms, key, &name, Action::Subscribe, &token)
                    .map(|grant| {
                        self.open_sub(key, name, queue, start, credit, backpressure, grant);
                    });
                if let Err(reason) = opened {
                    self.deny(key, reason);
                }
            }
            ChannelFrame::Advertise {
                link, name, token, ..
            } => {
                let key = (peer, link);
                match self.open_check(now_ms, key, &name, Action::Publish, &token) {
                    Ok(grant) => self.open_pub(key, name, grant),
                    Err(reason) => self.deny(key, reason),
                }
            }
            ChannelFrame::Publish { link, seq, data } => {
                self.on_publish(now_ms, (peer, link), seq, data);
            }
            ChannelFrame::Credit { link, n } => self.on_credit(now_ms, (peer, link), n),
            ChannelFrame::TokenRefresh { link, token } => {
                self.on_refresh(now_ms, (peer, link), &token);
            }
            ChannelFrame::Unsubscribe { link } => self.close((peer, link), Some(Reason::Closed)),
            ChannelFrame::Accepted { .. }
            | ChannelFrame::Denied { .. }
            | ChannelFrame::PublishAck { .. }
            | ChannelFrame::Deliver { .. }
            | ChannelFrame::Gap { .. }
            | ChannelFrame::End { .. }
            | ChannelFrame::DeliverBatch { .. } => {}
        }
    }

    /// Publishes `data` on an owned channel as this node, at once or not
    /// at all: `would-block` when a `block` subscriber is full,
    /// `rate-limited` past the channel's rate. Returns (delivered, targets).
    pub fn try_publish(
        &mut self,
        now_ms: u64,
        name: &str,
        data: impl Into<Bytes>,
    ) -> Result<(u32, u32), PublishError> {
        let data = data.into();
        if data.len() > MAX_DATA {
            return Err(PublishError::TooLarge);
        }
        self.admit(now_ms, name)?;
        let seq = self
            .channels
            .get(name)
            .and_then(|c| c.last.get(&self.me))
            .copied()
            .unwrap_or(0)
            + 1;
        Ok(self.take(now_ms, name, self.me, seq, data))
    }

    fn send(&mut self, peer: NodeId, frame: ChannelFrame, reliable: bool) {
        self.out.push_back(Transmit {
            peer,
            frame,
            reliable,
        });
    }

    fn deny(&mut self, key: LinkKey, reason: Reason) {
        self.denied += 1;
        self.send(
            key.0,
            ChannelFrame::Denied {
                link: key.1,
                reason,
            },
            true,
        );
    }

    /// The checks before a link opens; the verdict to cache.
    fn open_check(
        &mut self,
        now_ms: u64,
        key: LinkKey,
        name: &str,
        action: Action,
        token: &[u8],
    ) -> Result<Grant, Reason> {
        if self.links.contains_key(&key) {
            return Err(Reason::Duplicate);
        }
        let ch = self.channels.get(name).ok_or(Reason::NoSuchChannel)?;
        if self.per_peer.get(&key.0).copied().unwrap_or(0) >= self.config.max_links_per_peer
            || (action == Action::Subscribe
                && ch.subscriptions() >= self.config.max_subs_per_channel)
        {
            return Err(Reason::TooMany);
        }
        self.authorize(now_ms, key.0, name, action, token)
    }

    fn authorize(
        &mut self,
        now_ms: u64,
        peer: NodeId,
        name: &str,
        action: Action,
        token: &[u8],
    ) -> Result<Grant, Reason> {
        let ch = self.channels.get(name).ok_or(Reason::NoSuchChannel)?;
        if peer == self.me || !ch.policy.require_token {
            return Ok(Grant::open());
        }
        if !self.throttle.allows(&peer, now_ms) {
            return Err(Reason::Throttled);
        }
        let verdict = if token.is_empty() {
            Err(TokenKind::Required)
        } else {
            self.auth.check(&peer, name, action, token, now_ms)
        };
        verdict.map_err(|kind| {
            self.throttle.failed(&peer, now_ms);
            Reason::Token(kind)
        })
    }

    fn insert(&mut self, key: LinkKey, grant: Grant, role: Role) {
        if let Some(t) = grant.expires_ms {
            self.expiries.insert((t, key));
        }
        *self.per_peer.entry(key.0).or_default() += 1;
        self.links.insert(key, Link { grant, role });
    }

    #[allow(clippy::too_many_arguments)]
    fn open_sub(
        &mut self,
        key: LinkKey,
        name: String,
        group: Option<String>,
        start: Start,
        credit: u32,
        backpressure: Backpressure,
        grant: Grant,
    ) {
        let Some(ch) = self.channels.get_mut(&name) else {
            return;
        };
        let mut queue = SubQueue::new(self.config.sub_buffer, backpressure);
        let replay = ch.history.replay(&start, &ch.last);
        for (publisher, from, to) in replay.gaps {
            queue.push_gap(publisher, from, to);
        }
        for msg in replay.msgs {
            queue.push_unbounded(msg);
        }
        match &group {
            Some(g) => {
                ch.groups.entry(g.clone()).or_default().insert(key);
            }
            None => {
                ch.subs.insert(key);
            }
        }
        let reliable = ch.policy.reliable;
        self.insert(
            key,
            grant,
            Role::Sub(SubLink {
                channel: name.into(),
                group,
                credit: credit.min(self.config.max_credit),
                queue,
                delivered: 0,
            }),
        );
        self.send(
            key.0,
            ChannelFrame::Accepted {
                link: key.1,
                reliable,
                credit: 0,
                last_seq: 0,
            },
            true,
        );
        self.flush(key);
    }

    fn open_pub(&mut self, key: LinkKey, name: String, grant: Grant) {
        let Some(ch) = self.channels.get_mut(&name) else {
            return;
        };
        ch.pubs.insert(key);
        let last_seq = ch.last.get(&key.0).copied().unwrap_or(0);
        let reliable = ch.policy.reliable;
        self.insert(
            key,
            grant,
            Role::Pub(PubLink {
                channel: name.into(),
                pending: VecDeque::new(),
            }),
        );
        self.send(
            key.0,
            ChannelFrame::Accepted {
                link: key.1,
                reliable,
                credit: self.config.pub_window,
                last_seq,
            },
            true,
        );
    }

    /// Ends a link; tells its peer why when `reason` is given.
    fn close(&mut self, key: LinkKey, reason: Option<Reason>) {
        let Some(link) = self.links.remove(&key) else {
            return;
        };
        if let Some(t) = link.grant.expires_ms {
            self.expiries.remove(&(t, key));
        }
        if let Some(n) = self.per_peer.get_mut(&key.0) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&key.0);
            }
        }
        let name = link.channel().to_string();
        if let Some(ch) = self.channels.get_mut(&name) {
            match &link.role {
                Role::Sub(s) => match &s.group {
                    Some(g) => {
                        if let Some(members) = ch.groups.get_mut(g) {
                            members.remove(&key);
                            if members.is_empty() {
                                ch.groups.remove(g);
                            }
                        }
                    }
                    None => {
                        ch.subs.remove(&key);
                    }
                },
                Role::Pub(_) => {
                    ch.pubs.remove(&key);
                }
            }
        }
        // What the session had taken is acknowledged before its end.
        self.flush_acks(Some(key));
        if let Some(reason) = reason {
            self.send(
                key.0,
                ChannelFrame::End {
                    link: key.1,
                    reason,
                },
                true,
            );
        }
        // A closed block-mode subscription may have been holding
        // publishers back.
        if matches!(link.role, Role::Sub(_)) {
            self.drain_channel(&name);
        }
    }

    /// Retries every waiting publish of a channel.
    fn drain_channel(&mut self, name: &str) {
        let waiting: Vec<LinkKey> = self
            .channels
            .get(name)
            .map(|c| c.pubs.iter().copied().collect())
            .unwrap_or_default();
        for key in waiting {
            self.drain_pub(self.now_ms, key);
        }
    }

    /// Whether a message can be taken now on `name`.
    fn admit(&mut self, now_ms: u64, name: &str) -> Result<(), PublishError> {
        let ch = self
            .channels
            .get_mut(name)
            .ok_or(PublishError::NoSuchChannel)?;
        if let Some(rate) = &mut ch.rate {
            if !rate.has(now_ms) {
                return Err(PublishError::RateLimited {
                    retry_at_ms: rate.next_at(),
                });
            }
        }
        if !ch.policy.reliable {
            return Ok(());
        }
        let blocked = |key: &LinkKey| match self.links.get(key) {
            Some(Link {
                role: Role::Sub(s), ..
            }) => s.queue.would_block(),
            _ => false,
        };
        let group_blocked = ch
            .groups
            .values()
            .any(|members| best_member(&self.links, members).is_some_and(|k| blocked(&k)));
        if group_blocked || ch.subs.iter().any(blocked) {
            return Err(PublishError::WouldBlock);
        }
        Ok(())
    }

    /// Takes a message that [`Self::admit`] allowed; returns (delivered,
    /// targets). A sequence number already taken is a duplicate: counted,
    /// not delivered.
    fn take(
        &mut self,
        now_ms: u64,
        name: &str,
        publisher: NodeId,
        seq: u64,
        data: Bytes,
    ) -> (u32, u32) {
        let Some(ch) = self.channels.get_mut(name) else {
            return (0, 0);
        };
        let last = ch.last.entry(publisher).or_insert(0);
        if seq <= *last {
            ch.stats.duplicates += 1;
            return (0, 0);
        }
        if let Some(rate) = &mut ch.rate {
            rate.take(now_ms);
        }
        // A publisher first seen mid-sequence (it resumed after this owner
        // restarted) skipped nothing anyone here could have had.
        let skipped = if *last == 0 {
            (1, 0)
        } else {
            (*last + 1, seq - 1)
        };
        *last = seq;
        let msg = Arc::new(Message {
            publisher,
            seq,
            ts: now_ms,
            data,
        });
        ch.history.push(&msg, now_ms);
        ch.stats.published += 1;
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        targets.extend(ch.subs.iter().copied());
        targets.extend(
            ch.groups
                .values()
                .filter_map(|members| best_member(&self.links, members)),
        );
        let mut delivered = 0u32;
        for key in &targets {
            let Some(sub) = sub_mut(&mut self.links, key) else {
                continue;
            };
            if skipped.0 <= skipped.1 && sub.group.is_none() {
                sub.queue.push_gap(publisher, skipped.0, skipped.1);
            }
            match sub.queue.push(msg.clone()) {
                Push::Queued => delivered += 1,
                Push::DroppedOldest => {
                    delivered += 1;
                    ch.stats.dropped += 1;
                }
                Push::DroppedNewest | Push::Full => ch.stats.dropped += 1,
            }
            // Each target's frames stay in order; targets are separate links.
            flush_sub(*key, sub, ch, &mut self.out);
        }
        let n = u32::try_from(targets.len()).unwrap_or(u32::MAX);
        self.targets = targets;
        (delivered, n)
    }

    /// Sends what a subscription's credit allows.
    fn flush(&mut self, key: LinkKey) {
        let Some(Link {
            role: Role::Sub(sub),
            ..
        }) = self.links.get_mut(&key)
        else {
            return;
        };
        let Some(ch) = self.channels.get_mut(&*sub.channel) else {
            return;
        };
        flush_sub(key, sub, ch, &mut self.out);
    }

    fn on_publish(&mut self, now_ms: u64, key: LinkKey, seq: u64, data: Bytes) {
        let window = self.config.pub_window as usize;
        let over = match self.links.get_mut(&key) {
            Some(Link {
                role: Role::Pub(p), ..
            }) => {
                if p.pending.len() >= window {
                    true
                } else {
                    p.pending.push_back((seq, data));
                    false
                }
            }
            _ => true,
        };
        if over {
            // Unknown link, or more than the window: the peer must reopen.
            self.close(key, None);
            self.send(
                key.0,
                ChannelFrame::End {
                    link: key.1,
                    reason: Reason::Protocol,
                },
                true,
            );
            return;
        }
        self.drain_pub(now_ms, key);
    }

    /// Takes a session's waiting publishes until one cannot be taken.
    fn drain_pub(&mut self, now_ms: u64, key: LinkKey) {
        let name = match self.links.get(&key) {
            Some(Link {
                role: Role::Pub(p), ..
            }) if !p.pending.is_empty() => p.channel.clone(),
            _ => return,
        };
        loop {
            let Some(Link {
                role: Role::Pub(p), ..
            }) = self.links.get_mut(&key)
            else {
                return;
            };
            let Some((seq, data)) = p.pending.pop_front() else {
                return;
            };
            let duplicate = self
                .channels
                .get(&*name)
                .and_then(|c| c.last.get(&key.0))
                .is_some_and(|last| seq <= *last);
            if !duplicate && self.admit(now_ms, &name).is_err() {
                // Not now: it stays first (admitting changes no link).
                if let Some(Link {
                    role: Role::Pub(p), ..
                }) = self.links.get_mut(&key)
                {
                    p.pending.push_front((seq, data));
                }
                return;
            }
            let (delivered, targets) = self.take(now_ms, &name, key.0, seq, data);
            self.ack(key, seq, delivered, targets);
        }
    }

    fn on_credit(&mut self, now_ms: u64, key: LinkKey, n: u32) {
        let max = self.config.max_credit;
        let Some(sub) = sub_mut(&mut self.links, &key) else {
            return;
        };
        sub.credit = sub.credit.saturating_add(n).min(max);
        let name = sub.channel.clone();
        self.flush(key);
        self.now_ms = self.now_ms.max(now_ms);
        self.drain_channel(&name);
    }

    fn on_refresh(&mut self, now_ms: u64, key: LinkKey, token: &[u8]) {
        let Some(link) = self.links.get(&key) else {
            return;
        };
        let action = match link.role {
            Role::Sub(_) => Action::Subscribe,
            Role::Pub(_) => Action::Publish,
        };
        let name = link.channel().to_string();
        let old_expiry = link.grant.expires_ms;
        match self.authorize(now_ms, key.0, &name, action, token) {
            Ok(grant) => {
                if let Some(t) = old_expiry {
                    self.expiries.remove(&(t, key));
                }
                if let Some(t) = grant.expires_ms {
                    self.expiries.insert((t, key));
                }
                if let Some(link) = self.links.get_mut(&key) {
                    link.grant = grant;
                }
            }
            Err(reason) => self.close(key, Some(reason)),
        }
    }
}
