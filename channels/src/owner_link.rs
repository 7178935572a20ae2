//! The owner's per-link state: a subscription (buffer, credit, group) or a
//! publishing session (messages waiting to be taken), each with the auth
//! verdict cached when it opened.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
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
}

impl SubLink {
    /// How much this member could take now: credit, then buffer room.
    pub(crate) fn free(&self) -> u64 {
        u64::from(self.credit).saturating_sub(self.queue.len() as u64) + self.queue.room() as u64
    }
}

/// A publishing session at the owner.
#[derive(Debug)]
pub(crate) struct PubLink {
    /// Shared with the channel's other links: cloned per message taken.
    pub(crate) channel: Arc<str>,
    /// Publishes received but not taken yet (blocked or rate-limited), at
    /// most the window granted.
    pub(crate) pending: VecDeque<(u64, Bytes)>,
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
