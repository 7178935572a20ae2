//! The owner's per-link state: a subscription (buffer, credit, group) or a
//! publishing session (messages waiting to be taken), each with the auth
//! verdict cached when it opened.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use relay_proto::wire::channel::Backpressure;
use relay_proto::NodeId;

use crate::auth::Grant;
use crate::queue::SubQueue;

/// A link is named by its peer and the number the peer chose.
pub(crate) type LinkKey = (NodeId, u64);

/// A subscription at the owner.
#[derive(Debug)]
pub(crate) struct SubLink {
    /// Shared with the channel's other links: cloned per message taken.
    pub(crate) channel: Arc<str>,
    pub(crate) group: Option<String>,
    pub(crate) credit: u32,
    pub(crate) queue: SubQueue,
    pub(crate) delivered: u64,
    /// Messages were queued since the owner last sent what the credit
    /// allows (the owner sends once per turn, to batch them).
    pub(crate) dirty: bool,
}

impl SubLink {
    /// Messages that stay buffered once the credit is used (what the
    /// buffer bound counts: the queue may also hold messages the credit
    /// lets out at the end of the owner's turn).
    pub(crate) fn backlog(&self) -> usize {
        self.queue.len().saturating_sub(self.credit as usize)
    }

    /// How much this member could take now: credit, then buffer room
    /// (as it will be once what the credit allows is sent).
    pub(crate) fn free(&self) -> u64 {
        u64::from(self.credit).saturating_sub(self.queue.len() as u64)
            + self.queue.limit().saturating_sub(self.backlog()) as u64
    }

    /// For a `block` subscription, how many more messages it takes before
    /// it is full beyond its credit (each push adds one to the buffer, and
    /// sending what the credit allows changes nothing here); `None` for the
    /// other modes, which never refuse.
    pub(crate) fn block_room(&self) -> Option<usize> {
        (self.queue.mode() == Backpressure::Block)
            .then(|| (self.queue.limit() + self.credit as usize).saturating_sub(self.queue.len()))
    }

    /// Whether a `block` subscription is full beyond its credit.
    pub(crate) fn would_block(&self) -> bool {
        self.queue.mode() == Backpressure::Block && self.backlog() >= self.queue.limit()
    }
}

/// A publishing session at the owner.
#[derive(Debug)]
pub(crate) struct PubLink {
    /// Shared with the channel's other links: cloned per message taken.
    pub(crate) channel: Arc<str>,
    /// Publishes received but not taken yet (taken at the end of the
    /// owner's turn, or later when blocked or rate-limited), at most the
    /// window granted.
    pub(crate) pending: VecDeque<(u64, Bytes)>,
    /// On the owner's list of sessions to take from at the end of the turn.
    pub(crate) queued: bool,
}

/// What a link is.
#[derive(Debug)]
pub(crate) enum Role {
    Sub(SubLink),
    Pub(PubLink),
}

/// One link at the owner.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) grant: Grant,
    pub(crate) role: Role,
}

impl Link {
    pub(crate) fn channel(&self) -> &str {
        match &self.role {
            Role::Sub(s) => &s.channel,
            Role::Pub(p) => &p.channel,
        }
    }
}
