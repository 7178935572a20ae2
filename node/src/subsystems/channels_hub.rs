//! The channels subsystem's composition of the cores: this node's
//! [`Owner`] and its local subscriptions and publishing sessions (made
//! through the local API). It routes frames between them, loops frames
//! for this node back without the network, and wakes the local API tasks
//! waiting on a subscription or a publish. It holds no sockets: the driver
//! ([`super::channels_driver`]) moves its [`Transmit`]s.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use foldhash::{HashMap, HashMapExt};

use relay_channels::{
    OwnerConfig, PubEvent, Publication, PublishRefused, SubEvent, Subscription, SubscriptionConfig,
    TokenAuthorizer, Transmit,
};
use relay_proto::wire::channel::{ChannelFrame, Reason};
use relay_proto::NodeId;
use tokio::sync::{watch, Notify};

use super::channels_acks::Acks;
use crate::revocations_set::RevocationSet;

/// Most publishing sessions this node keeps open; past it the least
/// recently used idle one is closed.
pub const MAX_LOCAL_PUBS: usize = 64;

/// The owner core with the token layer plugged in, checking the node's
/// one revocation set.
pub type Owner = relay_channels::Owner<TokenAuthorizer<RevocationSet>>;

/// A publish that was not queued.
#[derive(Debug)]
pub enum PublishWait {
    /// The session's window is full: wait for this to change (or close),
    /// then try again.
    Full(watch::Receiver<u64>),
    /// Refused for good.
    Refused(PublishRefused),
}

/// (owner, channel, token): what a publishing session is shared by.
#[derive(Debug, Clone)]
struct PubKey {
    owner: NodeId,
    name: String,
    token: Vec<u8>,
}

/// A [`PubKey`] or its borrowed parts, so that a publish looks its
/// session up without building a key.
trait PubKeyParts {
    fn parts(&self) -> (&NodeId, &str, &[u8]);
}

impl PubKeyParts for PubKey {
    fn parts(&self) -> (&NodeId, &str, &[u8]) {
        (&self.owner, &self.name, &self.token)
    }
}

impl PubKeyParts for (NodeId, &str, &[u8]) {
    fn parts(&self) -> (&NodeId, &str, &[u8]) {
        (&self.0, self.1, self.2)
    }
}

impl Hash for dyn PubKeyParts + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn PubKeyParts + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn PubKeyParts + '_ {}

impl Hash for PubKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for PubKey {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for PubKey {}

impl<'a> Borrow<dyn PubKeyParts + 'a> for PubKey {
    fn borrow(&self) -> &(dyn PubKeyParts + 'a) {
        self
    }
}

#[derive(Debug)]
struct LocalSub {
    owner: NodeId,
    sub: Subscription,
    notify: Arc<Notify>,
}

/// What the hub has to send, in order.
#[derive(Debug)]
enum Out {
    /// A frame.
    Frame(Transmit),
    /// The messages session `link`'s window lets out when this is reached
    /// (framed for a remote owner, handed to this node's owner as a run).
    Publishes(u64),
}

#[derive(Debug)]
struct LocalPub {
    owner: NodeId,
    key: PubKey,
    publication: Publication,
    /// Bumped on every event of the session.
    progress: watch::Sender<u64>,
    /// When it was last used (a counter).
    used: u64,
    /// An [`Out::Publishes`] for it waits in the hub's queue.
    publishes_queued: bool,
    /// Runs of messages waiting for the owner, in sequence order: (first
    /// seq, last seq, whose acknowledgements they are). A publisher's
    /// consecutive messages share one entry.
    waiting: VecDeque<(u64, u64, Acks)>,
}

impl LocalPub {
    /// Queues one message; its answer goes to `acks`.
    fn publish(&mut self, data: Bytes, acks: Option<&Acks>) -> Result<(), PublishWait> {
        match self.publication.try_publish(data) {
            Ok(seq) => {
                if let Some(acks) = acks {
                    match self.waiting.back_mut() {
                        Some(run) if run.1 + 1 == seq && run.2.same(acks) => run.1 = seq,
                        _ => self.waiting.push_back((seq, seq, acks.clone())),
                    }
                }
                Ok(())
            }
            Err(PublishRefused::WouldBlock) => Err(PublishWait::Full(self.progress.subscribe())),
            Err(e) => Err(PublishWait::Refused(e)),
        }
    }

    /// Hands the owner's answer for messages `from..=seq` to their
    /// publishers.
    fn acked(&mut self, from: u64, seq: u64, result: Result<(u32, u32), Reason>) {
        while let Some(run) = self.waiting.front_mut() {
            if run.0 > seq {
                return;
            }
            // Runs below `from` were answered by an earlier ack (they
            // cannot be: acks come in order and cover every message).
            let first = run.0.max(from);
            let last = run.1.min(seq);
            if last >= first {
                run.2.push(last - first + 1, result);
            }
            if run.1 > seq {
                run.0 = seq + 1;
                return;
            }
            self.waiting.pop_front();
        }
    }

    /// Every waiting message's publisher learns that the session ended.
    fn ended(&mut self, reason: Reason) {
        for (first, last, acks) in self.waiting.drain(..) {
            acks.push(last - first + 1, Err(reason));
        }
    }
}

/// The node's channel state. See the module docs.
#[derive(Debug)]
pub struct Hub {
    me: NodeId,
    owner: Owner,
    subs: HashMap<u64, LocalSub>,
    pubs: HashMap<u64, LocalPub>,
    /// (owner, channel, token) → the session local publishers share.
    pub_index: HashMap<PubKey, u64>,
    next_link: u64,
    out: VecDeque<Out>,
    uses: u64,
}

impl Hub {
    /// The hub of node `me`, checking tokens against `revocations`.
    pub fn new(me: NodeId, revocations: RevocationSet) -> Self {
        Self {
            me,
            owner: relay_channels::Owner::new(
                me,
                TokenAuthorizer::with_revocations(me, revocations),
                OwnerConfig::default(),
            ),
            subs: HashMap::new(),
            pubs: HashMap::new(),
            pub_index: HashMap::new(),
            next_link: 1,
            out: VecDeque::new(),
            uses: 0,
        }
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The owner core.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The owner core, to create and remove channels.
    pub fn owner_mut(&mut self) -> &mut Owner {
        &mut self.owner
    }

    /// Local subscriptions and publishing sessions open now.
    pub fn local_links(&self) -> (usize, usize) {
        (self.subs.len(), self.pubs.len())
    }

    fn link(&mut self) -> u64 {
        let l = self.next_link;
        self.next_link += 1;
        l
    }

    fn collect_sub(&mut self, link: u64) {
        if let Some(s) = self.subs.get_mut(&link) {
            while let Some(frame) = s.sub.poll_transmit() {
                self.out.push_back(Out::Frame(Transmit {
                    peer: s.owner,
                    frame,
                    reliable: true,
                }));
            }
        }
    }

    fn collect_pub(&mut self, link: u64) {
        let Some(p) = self.pubs.get_mut(&link) else {
            return;
        };
        // The messages the window lets out go before the frames queued
        // after them (a close follows what was published before it); they
        // are taken from the session when their turn in the queue comes.
        if !p.publishes_queued && p.publication.has_publish() {
            p.publishes_queued = true;
            self.out.push_back(Out::Publishes(link));
        }
        while let Some(frame) = p.publication.poll_control() {
            self.out.push_back(Out::Frame(Transmit {
                peer: p.owner,
                frame,
                reliable: true,
            }));
        }
        let mut ended = None;
        let mut progressed = false;
        while let Some(event) = p.publication.poll_event() {
            progressed = true;
            match event {
                PubEvent::Ack {
                    from,
                    seq,
                    delivered,
                    targets,
                } => p.acked(from, seq, Ok((delivered, targets))),
                PubEvent::Denied(r) | PubEvent::Ended(r) => ended = Some(r),
                PubEvent::Accepted => {}
            }
        }
        // Only publishers waiting for room hold a receiver (taken under the
        // hub's lock): skip the wake-up when nobody waits.
        if progressed && p.progress.receiver_count() > 0 {
            p.progress.send_modify(|n| *n += 1);
        }
        if let Some(reason) = ended {
            if let Some(mut p) = self.pubs.remove(&link) {
                p.ended(reason);
                self.pub_index.remove(&p.key);
            }
        }
    }

    /// Opens a subscription to `name` at `owner`.
    pub fn subscribe(
        &mut self,
        owner: NodeId,
        name: &str,
        token: Vec<u8>,
        config: SubscriptionConfig,
    ) -> (u64, Arc<Notify>) {
        let link = self.link();
        let notify = Arc::new(Notify::new());
        self.subs.insert(
            link,
            LocalSub {
                owner,
                sub: Subscription::new(link, name, token, config),
                notify: notify.clone(),
            },
        );
        self.collect_sub(link);
        (link, notify)
    }

    /// Up to `max` events of a subscription (returning their credit);
    /// `None` once it is gone.
    pub fn take_events(&mut self, link: u64, max: usize) -> Option<Vec<SubEvent>> {
        let s = self.subs.get_mut(&link)?;
        let mut events = Vec::with_capacity(s.sub.pending_events().min(max));
        events.extend(std::iter::from_fn(|| s.sub.poll_event()).take(max));
        let ended = s.sub.is_ended() && events.is_empty();
        self.collect_sub(link);
        if ended {
            self.subs.remove(&link);
            return None;
        }
        Some(events)
    }

    /// Closes a subscription.
    pub fn unsubscribe(&mut self, link: u64) {
        if let Some(s) = self.subs.get_mut(&link) {
            s.sub.unsubscribe();
        }
        self.collect_sub(link);
        self.subs.remove(&link);
    }

    /// The session for (owner, name, token), opened if needed.
    fn session(&mut self, owner: NodeId, name: &str, token: &[u8]) -> u64 {
        let found = self
            .pub_index
            .get(&(owner, name, token) as &dyn PubKeyParts)
            .copied();
        if let Some(link) = found {
            return link;
        }
        self.evict_idle_pub();
        let link = self.link();
        let key = PubKey {
            owner,
            name: name.to_string(),
            token: token.to_vec(),
        };
        self.pubs.insert(
            link,
            LocalPub {
                owner,
                key: key.clone(),
                publication: Publication::new(link, name, token.to_vec()),
                progress: watch::channel(0).0,
                used: 0,
                publishes_queued: false,
                waiting: VecDeque::new(),
            },
        );
        self.pub_index.insert(key, link);
        link
    }

    /// Queues one message on the session for (owner, name, token),
    /// opening it if needed. The owner's answer goes to `acks` (none:
    /// nobody waits for it).
    pub fn publish(
        &mut self,
        owner: NodeId,
        name: &str,
        token: &[u8],
        data: impl Into<Bytes>,
        acks: Option<&Acks>,
    ) -> Result<(), PublishWait> {
        let link = self.session(owner, name, token);
        self.uses += 1;
        let Some(p) = self.pubs.get_mut(&link) else {
            return Err(PublishWait::Refused(PublishRefused::Ended));
        };
        p.used = self.uses;
        let result = p.publish(data.into(), acks);
        self.collect_pub(link);
        result
    }

    /// Queues messages from the front of `batch`, in order, on the
    /// session for (owner, name, token), under this one lock, until
    /// `batch` is empty (`Ok`) or the next is not taken (it stays in
    /// `batch` when the window is full). The owner's answers go to `acks`.
    pub fn publish_many(
        &mut self,
        owner: NodeId,
        name: &str,
        token: &[u8],
        batch: &mut VecDeque<Bytes>,
        acks: Option<&Acks>,
    ) -> Result<(), PublishWait> {
        let link = self.session(owner, name, token);
        self.uses += 1;
        let Some(p) = self.pubs.get_mut(&link) else {
            return Err(PublishWait::Refused(PublishRefused::Ended));
        };
        p.used = self.uses;
        let mut result = Ok(());
        while !batch.is_empty() {
            if !p.publication.can_publish() && !p.publication.is_ended() {
                result = Err(PublishWait::Full(p.progress.subscribe()));
                break;
            }
            let Some(data) = batch.pop_front() else { break };
            if let Err(e) = p.publish(data, acks) {
                result = Err(e);
                break;
            }
        }
        self.collect_pub(link);
        result
    }

    /// Presents `token` on every live local subscription to `name` (the
    /// owner checks it and keeps each subscription, or ends it with the
    /// token's kind). Returns how many were refreshed.
    pub fn refresh(&mut self, name: &str, token: &[u8]) -> usize {
        let links: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| s.sub.name() == name && !s.sub.is_ended())
            .map(|(l, _)| *l)
            .collect();
        for link in &links {
            if let Some(s) = self.subs.get_mut(link) {
                s.sub.refresh(token.to_vec());
            }
            self.collect_sub(*link);
        }
        links.len()
    }

    /// Closes the least recently used idle session when
    /// [`MAX_LOCAL_PUBS`] are open (a busy one is never closed).
    fn evict_idle_pub(&mut self) {
        if self.pubs.len() < MAX_LOCAL_PUBS {
            return;
        }
        let idle = self
            .pubs
            .iter()
            .filter(|(_, p)| p.publication.unacked() == 0 && p.waiting.is_empty())
            .min_by_key(|(_, p)| p.used)
            .map(|(l, _)| *l);
        let Some(link) = idle else {
            return;
        };
        if let Some(p) = self.pubs.get_mut(&link) {
            p.publication.close();
        }
        self.collect_pub(link);
        if let Some(p) = self.pubs.remove(&link) {
            self.pub_index.remove(&p.key);
        }
    }

    /// A frame from `from` (this node itself for looped-back frames).
    pub fn handle_frame(&mut self, now_ms: u64, from: NodeId, frame: ChannelFrame) {
        match &frame {
            ChannelFrame::Subscribe { .. }
            | ChannelFrame::Advertise { .. }
            | ChannelFrame::Publish { .. }
            | ChannelFrame::Credit { .. }
            | ChannelFrame::TokenRefresh { .. }
            | ChannelFrame::Unsubscribe { .. } => self.owner.handle_frame(now_ms, from, frame),
            ChannelFrame::Accepted { .. }
            | ChannelFrame::Denied { .. }
            | ChannelFrame::End { .. }
            | ChannelFrame::Deliver { .. }
            | ChannelFrame::DeliverBatch { .. }
            | ChannelFrame::Gap { .. }
            | ChannelFrame::PublishAck { .. } => {
                let link = frame.link();
                if let Some(s) = self.subs.get_mut(&link).filter(|s| s.owner == from) {
                    // The reader waits only once it has taken every event:
                    // wake it when the first comes, not for each.
                    let idle = s.sub.pending_events() == 0;
                    s.sub.handle_frame(frame);
                    if idle && s.sub.pending_events() > 0 {
                        s.notify.notify_one();
                    }
                    self.collect_sub(link);
                } else if let Some(p) = self.pubs.get_mut(&link).filter(|p| p.owner == from) {
                    p.publication.handle_frame(frame);
                    self.collect_pub(link);
                }
            }
        }
    }

    /// The connection to `peer` closed: its links to our channels end
    /// quietly; our links to its channels wait for a reconnect.
    pub fn peer_down(&mut self, peer: &NodeId) {
        if *peer == self.me {
            return;
        }
        self.owner.handle_peer_gone(peer);
        for s in self.subs.values_mut().filter(|s| s.owner == *peer) {
            s.sub.handle_disconnect();
        }
        for p in self.pubs.values_mut().filter(|p| p.owner == *peer) {
            p.publication.handle_disconnect();
        }
    }

    /// Whether a local subscription or publishing session waits for
    /// `owner` (so it is worth dialing).
    pub fn waits_for(&self, owner: &NodeId) -> bool {
        *owner != self.me
            && (self
                .subs
                .values()
                .any(|s| s.owner == *owner && !s.sub.is_ended())
                || self.pubs.values().any(|p| p.owner == *owner))
    }

    /// A new connection to `peer` (a reconnect): links over the old one
    /// are gone; ours resume by sequence.
    pub fn peer_reset(&mut self, peer: &NodeId) {
        self.peer_down(peer);
        let subs: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| s.owner == *peer)
            .map(|(l, _)| *l)
            .collect();
        for link in subs {
            if let Some(s) = self.subs.get_mut(&link) {
                s.sub.handle_reconnect();
            }
            self.collect_sub(link);
        }
        let pubs: Vec<u64> = self
            .pubs
            .iter()
            .filter(|(_, p)| p.owner == *peer)
            .map(|(l, _)| *l)
            .collect();
        for link in pubs {
            if let Some(p) = self.pubs.get_mut(&link) {
                p.publication.handle_reconnect();
            }
            self.collect_pub(link);
        }
    }

    /// `by` revoked the token with revocation key `key` (the revocation
    /// set already holds it, so new links are refused): ends the live links
    /// it covers. Returns how many.
    pub fn revoke(&mut self, key: [u8; 32], by: NodeId) -> usize {
        self.owner.handle_revocation(&key, &by)
    }

    /// Runs the owner's timers.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.owner.handle_timeout(now_ms);
    }

    /// When [`Self::handle_timeout`] must run (unix ms).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.owner.poll_timeout()
    }

    /// Every frame to send to other nodes; frames for this node are
    /// handled on the way. The local sessions' frames go to the owner
    /// first, so that the owner acknowledges what it took from them in one
    /// `PublishAck` per session.
    pub fn drain_out(&mut self, now_ms: u64) -> Vec<Transmit> {
        let mut remote = Vec::new();
        self.drain_out_into(now_ms, &mut remote);
        remote
    }

    /// [`Self::drain_out`] into `remote` (appended; the driver reuses its
    /// allocation).
    pub fn drain_out_into(&mut self, now_ms: u64, remote: &mut Vec<Transmit>) {
        loop {
            let next = match self.out.pop_front() {
                Some(next) => next,
                None => match self.owner.poll_transmit() {
                    Some(t) => Out::Frame(t),
                    None => return,
                },
            };
            match next {
                Out::Publishes(link) => self.send_publishes(now_ms, link, remote),
                Out::Frame(t) if t.peer != self.me => remote.push(t),
                Out::Frame(t) => self.handle_frame(now_ms, self.me, t.frame),
            }
        }
    }

    /// Sends what session `link`'s window lets out: to this node's owner
    /// as one run, to another node's as `Publish` frames.
    fn send_publishes(&mut self, now_ms: u64, link: u64, remote: &mut Vec<Transmit>) {
        let Some(p) = self.pubs.get_mut(&link) else {
            return;
        };
        p.publishes_queued = false;
        let owner = p.owner;
        let run = std::iter::from_fn(|| p.publication.poll_publish());
        if owner == self.me {
            self.owner.handle_publish_run(now_ms, owner, link, run);
        } else {
            remote.extend(run.map(|(seq, data)| Transmit {
                peer: owner,
                frame: ChannelFrame::Publish { link, seq, data },
                reliable: true,
            }));
        }
    }
}
