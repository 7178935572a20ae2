//! The owner's state machine: the channels this node registered, every
//! link to them, and what flows through them. Sans-IO: it takes the time
//! (unix ms), frames from peers and local calls, and yields
//! [`Transmit`]s and timeouts.
//!
//! Work is batched per *turn*: what comes in between two calls of
//! [`Owner::poll_transmit`] that find nothing queued. Publishes are taken
//! when the turn ends (or before a frame or call that changes links or
//! channels, so that the order of taking stays the order of arrival), and
//! deliveries go out then, many messages per frame.

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;
use foldhash::{HashMap, HashMapExt};
use relay_proto::wire::channel::{
    valid_name, Backpressure, ChannelFrame, Reason, Start, TokenKind, MAX_DATA,
};
use relay_proto::NodeId;
use thiserror::Error;

use crate::auth::{Action, Authorizer, Grant};
use crate::owner_flow::{
    best_member, flush_sub, push_ack, sub_mut, take_in, take_run, Channel, Sinks, Taking,
};
use crate::owner_link::{Link, LinkKey, PubLink, Role, SubLink};
use crate::policy::Policy;
use crate::queue::SubQueue;
use crate::rate::Bucket;
use crate::throttle::Throttle;

/// The owner's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerConfig {
    /// Messages buffered per subscription beyond its credit.
    pub sub_buffer: usize,
    /// Unacknowledged publishes a publishing session from another node may
    /// have (what the owner buffers for it at most).
    pub pub_window: u32,
    /// The same for this node's own sessions (the local API's). Their
    /// messages are held by the publishing side until acknowledged anyway,
    /// so a wider window costs no memory; it lets a batching publisher
    /// hand over runs larger than one turn's worth.
    pub local_pub_window: u32,
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
            local_pub_window: 1024,
            max_credit: crate::MAX_WINDOW,
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

/// What taking a message touches besides its channel: the owner's
/// fields, borrowed apart from its channels (a macro, so the borrows stay
/// field by field).
macro_rules! sinks {
    ($owner:expr) => {
        Sinks {
            links: &mut $owner.links,
            targets: &mut $owner.targets,
            out: &mut $owner.out,
            dirty: &mut $owner.dirty,
            taking: &mut $owner.taking,
        }
    };
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
    /// Publishing sessions with messages received this turn, taken when
    /// the turn ends ([`Self::poll_transmit`]), many at once.
    draining: Vec<LinkKey>,
    /// Reliable subscriptions that queued messages this turn; what their
    /// credit allows is sent when the turn ends, consecutive messages of
    /// a publisher in one [`ChannelFrame::DeliverBatch`].
    dirty: Vec<LinkKey>,
    /// A run being taken (kept to reuse its allocation).
    taking: Vec<Taking>,
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
            draining: Vec::new(),
            dirty: Vec::new(),
            taking: Vec::new(),
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
        self.channels
            .insert(name.into(), Channel::new(policy, rate));
        Ok(())
    }

    /// Stops owning `name`: every link to it ends with `removed`.
    pub fn remove(&mut self, name: &str) -> Result<(), OwnerError> {
        self.catch_up();
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

    /// The next frame to send. A call that finds nothing queued ends the
    /// turn: the publishes received since the last one are taken (each
    /// session's at once) and each reliable subscription gets what its
    /// credit allows, consecutive messages of a publisher taken at the same
    /// time in one [`ChannelFrame::DeliverBatch`]. Acknowledgements of
    /// publishes come after every other queued frame, one per run of
    /// messages (see [`ChannelFrame::PublishAck`]).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.out.is_empty() {
            self.settle();
            if self.out.is_empty() {
                self.flush_acks(None);
            }
        }
        self.out.pop_front()
    }

    /// Ends the turn: takes what the publishing sessions sent (each
    /// session's messages at once), then sends what each subscription
    /// that queued messages may (consecutive ones in one frame).
    fn settle(&mut self) {
        self.catch_up();
        self.flush_dirty();
    }

    /// Takes what the publishing sessions sent this turn, before anything
    /// that changes the links or the channels, so that messages are taken
    /// in the order their frames came relative to such changes.
    fn catch_up(&mut self) {
        if !self.draining.is_empty() {
            let mut draining = std::mem::take(&mut self.draining);
            for key in &draining {
                if let Some(Link {
                    role: Role::Pub(p), ..
                }) = self.links.get_mut(key)
                {
                    p.queued = false;
                }
                self.drain_pub(self.now_ms, *key);
            }
            draining.clear();
            self.draining = draining;
        }
    }

    /// Sends what each subscription that queued messages this turn may.
    fn flush_dirty(&mut self) {
        if !self.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.dirty);
            for key in &dirty {
                if let Some(sub) = sub_mut(&mut self.links, key) {
                    sub.dirty = false;
                }
                self.flush(*key);
            }
            dirty.clear();
            if self.dirty.is_empty() {
                self.dirty = dirty;
            }
        }
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
        self.catch_up();
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
        self.catch_up();
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
        self.catch_up();
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
        if !matches!(
            frame,
            ChannelFrame::Publish { .. } | ChannelFrame::Credit { .. }
        ) {
            self.catch_up();
        }
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
                self.reopened(key);
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
                self.reopened(key);
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

    /// Messages `(seq, data)` of `peer`'s publishing session `link`, in
    /// order: the same as one `Publish` frame each, with one lookup of the
    /// session. A local publisher's messages reach the owner this way (the
    /// hub gathers consecutive `Publish` frames of one link); a message the
    /// session cannot take (an unknown link, a full window) and those after
    /// it go the single-frame way, with its answers.
    pub fn handle_publish_run(
        &mut self,
        now_ms: u64,
        peer: NodeId,
        link: u64,
        run: impl IntoIterator<Item = (u64, Bytes)>,
    ) {
        self.now_ms = self.now_ms.max(now_ms);
        let key = (peer, link);
        let window = self.pub_window(&peer) as usize;
        let mut run = run.into_iter();
        let mut refused = None;
        let mut took = false;
        if let Some(Link {
            role: Role::Pub(p), ..
        }) = self.links.get_mut(&key)
        {
            for (seq, data) in run.by_ref() {
                if p.pending.len() >= window {
                    refused = Some((seq, data));
                    break;
                }
                p.pending.push_back((seq, data));
                took = true;
            }
            if took && !p.queued {
                p.queued = true;
                self.draining.push(key);
            }
        }
        for (seq, data) in refused.into_iter().chain(run) {
            self.on_publish(now_ms, key, seq, data);
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

    /// A peer opens a link number it already has open here: it resumes
    /// after a reconnect this node has not seen yet (the new connection's
    /// frames can arrive before its event). The old link is closed
    /// quietly and the new one takes its place; refusing it would end the
    /// peer's subscription or session for good.
    fn reopened(&mut self, key: LinkKey) {
        if self.links.contains_key(&key) {
            self.close(key, None);
        }
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
                dirty: false,
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
                queued: false,
            }),
        );
        self.send(
            key.0,
            ChannelFrame::Accepted {
                link: key.1,
                reliable,
                credit: self.pub_window(&key.0),
                last_seq,
            },
            true,
        );
    }

    /// Ends a link; tells its peer why when `reason` is given.
    fn close(&mut self, key: LinkKey, reason: Option<Reason>) {
        // What the link has in hand goes first: a session's publishes
        // received are taken; a subscription told why it ends gets what
        // its credit allows of what was queued this turn.
        match self.links.get(&key).map(|l| &l.role) {
            Some(Role::Pub(_)) => self.drain_pub(self.now_ms, key),
            Some(Role::Sub(_)) if reason.is_some() => self.flush(key),
            Some(Role::Sub(_)) => {}
            None => return,
        }
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

    /// Whether a message can be taken now on `name`: if so, how many can
    /// be taken in a row without asking again (at least one).
    fn admit(&mut self, now_ms: u64, name: &str) -> Result<usize, PublishError> {
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
        // A rate, or queue groups (whose member changes per message):
        // each message is admitted on its own.
        let one_by_one = ch.rate.is_some() || !ch.groups.is_empty();
        if !ch.policy.reliable {
            return Ok(if one_by_one { 1 } else { usize::MAX });
        }
        let blocked = |key: &LinkKey| match self.links.get(key) {
            Some(Link {
                role: Role::Sub(s), ..
            }) => s.would_block(),
            _ => false,
        };
        let group_blocked = ch
            .groups
            .values()
            .any(|members| best_member(&self.links, members).is_some_and(|k| blocked(&k)));
        if group_blocked || ch.subs.iter().any(blocked) {
            return Err(PublishError::WouldBlock);
        }
        if one_by_one {
            return Ok(1);
        }
        let room = ch
            .subs
            .iter()
            .filter_map(|key| match self.links.get(key) {
                Some(Link {
                    role: Role::Sub(s), ..
                }) => s.block_room(),
                _ => None,
            })
            .min();
        Ok(room.unwrap_or(usize::MAX).max(1))
    }

    /// Takes a message that [`Self::admit`] allowed; see [`take_in`].
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
        let mut sinks = sinks!(self);
        take_in(ch, &mut sinks, now_ms, publisher, seq, data)
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

    /// The window a publishing session from `peer` gets.
    fn pub_window(&self, peer: &NodeId) -> u32 {
        if *peer == self.me {
            self.config.local_pub_window
        } else {
            self.config.pub_window
        }
    }

    fn on_publish(&mut self, now_ms: u64, key: LinkKey, seq: u64, data: Bytes) {
        let window = self.pub_window(&key.0) as usize;
        let over = match self.links.get_mut(&key) {
            Some(Link {
                role: Role::Pub(p), ..
            }) => {
                if p.pending.len() >= window {
                    true
                } else {
                    p.pending.push_back((seq, data));
                    if !p.queued {
                        p.queued = true;
                        self.draining.push(key);
                    }
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
        // Taken when the turn ends (`settle`), with the session's other
        // messages of the turn.
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// Takes a session's waiting publishes until one cannot be taken:
    /// admitted once for as many as the channel takes in a row, then
    /// taken with one lookup of the channel.
    fn drain_pub(&mut self, now_ms: u64, key: LinkKey) {
        let (name, mut pending) = match self.links.get_mut(&key) {
            Some(Link {
                role: Role::Pub(p), ..
            }) if !p.pending.is_empty() => (p.channel.clone(), std::mem::take(&mut p.pending)),
            _ => return,
        };
        // Messages admitted and not taken yet.
        let mut room = 0usize;
        while let Some(ch) = self.channels.get_mut(&*name) {
            // What can be taken now from the front: duplicates (they need
            // no admission: they are only counted) and `room` new ones.
            let mut last = ch.last.get(&key.0).copied().unwrap_or(0);
            let mut now = 0;
            for &(seq, _) in &pending {
                if seq > last {
                    if room == 0 {
                        break;
                    }
                    room -= 1;
                    last = seq;
                }
                now += 1;
            }
            let mut sinks = sinks!(self);
            let acks = &mut self.acks;
            take_run(
                ch,
                &mut sinks,
                now_ms,
                key.0,
                pending.drain(..now),
                |seq, delivered, targets| push_ack(acks, key, seq, delivered, targets),
            );
            if pending.is_empty() {
                break;
            }
            // Not now: it stays first (admitting changes no link).
            match self.admit(now_ms, &name) {
                Ok(n) => room = n,
                Err(_) => break,
            }
        }
        // Taking changes no session: the pending queue goes back as it is.
        if let Some(Link {
            role: Role::Pub(p), ..
        }) = self.links.get_mut(&key)
        {
            pending.append(&mut p.pending);
            p.pending = pending;
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
