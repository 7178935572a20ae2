//! Test helpers: fixed NodeIds and a scripted authorizer.

use std::cell::RefCell;
use std::collections::HashMap;

use relay_proto::wire::channel::TokenKind;
use relay_proto::{NodeId, SecretKey};

use crate::auth::{Action, Authorizer, Grant};

/// The NodeId of secret key `[n; 32]`.
pub(crate) fn node(n: u8) -> NodeId {
    SecretKey::from_bytes(&[n; 32]).node_id()
}

/// Tokens are their own names: `b"ok:<id>:<expiry>"` grants (token id
/// `[id; 32]`, expiry unix ms, 0 for none); `b"bad:<kind>"` fails with that
/// kind. Counts the checks it made.
#[derive(Debug, Default)]
pub(crate) struct Script {
    pub(crate) checks: RefCell<u32>,
    pub(crate) seen: RefCell<HashMap<NodeId, Action>>,
}

impl Authorizer for Script {
    fn check(
        &self,
        peer: &NodeId,
        _channel: &str,
        action: Action,
        token: &[u8],
        _now_ms: u64,
    ) -> Result<Grant, TokenKind> {
        *self.checks.borrow_mut() += 1;
        self.seen.borrow_mut().insert(*peer, action);
        let text = std::str::from_utf8(token).map_err(|_| TokenKind::Malformed)?;
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            ["ok", id, exp] => {
                let id: u8 = id.parse().map_err(|_| TokenKind::Malformed)?;
                let exp: u64 = exp.parse().map_err(|_| TokenKind::Malformed)?;
                Ok(Grant {
                    expires_ms: (exp > 0).then_some(exp),
                    token_ids: vec![[id; 32]],
                    issuers: vec![node(1)],
                })
            }
            ["bad", kind] => Err(TokenKind::from_text(kind).unwrap_or(TokenKind::Malformed)),
            _ => Err(TokenKind::Malformed),
        }
    }
}

/// An owner (node 1) and in-memory subscribers and publishers on other
/// nodes, wired frame by frame on simulated time.
#[derive(Debug)]
pub(crate) struct Net {
    pub(crate) now: u64,
    pub(crate) owner: crate::Owner<Script>,
    pub(crate) subs: std::collections::BTreeMap<(NodeId, u64), crate::Subscription>,
    pub(crate) pubs: std::collections::BTreeMap<(NodeId, u64), crate::Publication>,
    /// Every frame the owner sent, with whether it was reliable.
    pub(crate) sent: Vec<crate::Transmit>,
    /// Peers whose connection is down: frames to and from them are lost.
    pub(crate) down: std::collections::BTreeSet<NodeId>,
}

impl Net {
    pub(crate) fn new(config: crate::OwnerConfig) -> Self {
        Self {
            now: 0,
            owner: crate::Owner::new(node(1), Script::default(), config),
            subs: Default::default(),
            pubs: Default::default(),
            sent: Vec::new(),
            down: Default::default(),
        }
    }

    pub(crate) fn sub(
        &mut self,
        peer: u8,
        link: u64,
        name: &str,
        token: &str,
        config: crate::SubscriptionConfig,
    ) {
        let s = crate::Subscription::new(link, name, token.as_bytes().to_vec(), config);
        self.subs.insert((node(peer), link), s);
        self.pump();
    }

    pub(crate) fn publisher(&mut self, peer: u8, link: u64, name: &str, token: &str) {
        let p = crate::Publication::new(link, name, token.as_bytes().to_vec());
        self.pubs.insert((node(peer), link), p);
        self.pump();
    }

    /// Queues `data` on the publication (peer, link), which must exist and
    /// have room; nothing moves until [`Net::pump`].
    pub(crate) fn queue_publish(&mut self, peer: u8, link: u64, data: Vec<u8>) -> u64 {
        self.pubs
            .get_mut(&(node(peer), link))
            .unwrap()
            .try_publish(data)
            .unwrap()
    }

    /// Moves frames until nothing moves.
    pub(crate) fn pump(&mut self) {
        loop {
            let mut moved = false;
            let mut inbound = Vec::new();
            for ((peer, _), s) in &mut self.subs {
                while let Some(f) = s.poll_transmit() {
                    inbound.push((*peer, f));
                }
            }
            for ((peer, _), p) in &mut self.pubs {
                while let Some(f) = p.poll_transmit() {
                    inbound.push((*peer, f));
                }
            }
            for (peer, f) in inbound {
                moved = true;
                if !self.down.contains(&peer) {
                    self.owner.handle_frame(self.now, peer, f);
                }
            }
            while let Some(t) = self.owner.poll_transmit() {
                moved = true;
                self.sent.push(t.clone());
                if self.down.contains(&t.peer) {
                    continue;
                }
                let key = (t.peer, t.frame.link());
                if let Some(s) = self.subs.get_mut(&key) {
                    s.handle_frame(t.frame);
                } else if let Some(p) = self.pubs.get_mut(&key) {
                    p.handle_frame(t.frame);
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Takes every event of a subscription (returning its credit).
    pub(crate) fn events(&mut self, peer: u8, link: u64) -> Vec<crate::SubEvent> {
        let mut out = Vec::new();
        loop {
            let Some(s) = self.subs.get_mut(&(node(peer), link)) else {
                return out;
            };
            match s.poll_event() {
                Some(e) => out.push(e),
                None => {
                    self.pump();
                    let more = self
                        .subs
                        .get(&(node(peer), link))
                        .is_some_and(|s| !s.events.is_empty());
                    if !more {
                        return out;
                    }
                }
            }
        }
    }

    /// Takes every event of a publication.
    pub(crate) fn pub_events(&mut self, peer: u8, link: u64) -> Vec<crate::PubEvent> {
        let p = self.pubs.get_mut(&(node(peer), link));
        p.map(|p| std::iter::from_fn(|| p.poll_event()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn advance(&mut self, to: u64) {
        self.now = to;
        self.owner.handle_timeout(to);
        self.pump();
    }
}

/// The sequence numbers of the messages among `events`.
pub(crate) fn seqs(events: &[crate::SubEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            crate::SubEvent::Message { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

/// The gaps among `events`, as (publisher byte check skipped) ranges.
pub(crate) fn gaps(events: &[crate::SubEvent]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            crate::SubEvent::Gap { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

impl Net {
    /// Token checks the owner's authorizer made.
    pub(crate) fn owner_auth_checks(&mut self) -> std::cell::RefMut<'_, u32> {
        self.owner.authorizer_mut().checks.borrow_mut()
    }
}
