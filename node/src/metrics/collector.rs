//! Counters the node keeps itself, because no single snapshot holds them:
//! path changes, connections and disconnections (counted from peer events),
//! and bytes per path type (accumulated from per-connection byte counts).
//!
//! The transport counts bytes per connection, not per path, so bytes are
//! credited to the path a peer is on when it is sampled: the collector
//! samples every [`SAMPLE_INTERVAL`] and on every peer event, and each
//! scrape samples once more. Bytes a connection moved after its last sample
//! and before it closed are not counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use relay_transport::{NodeId, PathKind, PeerEvent, PeerInfo, PeerState, Transport};
use tokio::sync::broadcast::error::RecvError;

/// How often the collector samples byte counts.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes per path type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathBytes {
    /// On direct paths.
    pub direct: u64,
    /// On relayed paths.
    pub relayed: u64,
}

impl PathBytes {
    fn add(&mut self, path: PathKind, n: u64) {
        match path {
            PathKind::Direct => self.direct = self.direct.saturating_add(n),
            PathKind::Relayed => self.relayed = self.relayed.saturating_add(n),
            PathKind::None => {}
        }
    }
}

/// The node's own counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCounters {
    /// Path changes under live connections.
    pub path_changes: u64,
    /// Connections established.
    pub connections: u64,
    /// Connections lost or closed.
    pub disconnections: u64,
    /// Peer events missed because the collector fell behind.
    pub events_lagged: u64,
    /// UDP payload bytes sent to peers, by path type.
    pub bytes_sent: PathBytes,
    /// UDP payload bytes received from peers, by path type.
    pub bytes_received: PathBytes,
}

/// The last byte counts seen for one connection.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    since: Option<SystemTime>,
    sent: u64,
    received: u64,
}

#[derive(Debug, Default)]
struct Inner {
    counters: NodeCounters,
    baselines: HashMap<NodeId, Baseline>,
}

/// The node's own counters; shared by the collector task and readers.
#[derive(Debug, Default)]
pub struct NodeStats {
    inner: Mutex<Inner>,
}

impl NodeStats {
    /// Zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one peer event.
    pub fn on_event(&self, event: &PeerEvent) {
        let mut inner = self.lock();
        let c = &mut inner.counters;
        match event {
            PeerEvent::Connected { .. } => c.connections += 1,
            PeerEvent::PathChanged { .. } => c.path_changes += 1,
            PeerEvent::Disconnected { .. } => c.disconnections += 1,
            _ => {}
        }
    }

    /// Counts events a lagging subscriber missed.
    pub fn on_lag(&self, missed: u64) {
        let mut inner = self.lock();
        inner.counters.events_lagged = inner.counters.events_lagged.saturating_add(missed);
    }

    /// Credits each connected peer's new bytes to its current path type.
    /// A connection seen for the first time (new `since`, or counts that
    /// went down) is credited with everything it has counted so far.
    pub fn sample(&self, peers: &[PeerInfo]) {
        let mut inner = self.lock();
        let mut next = HashMap::with_capacity(peers.len());
        for p in peers.iter().filter(|p| p.state == PeerState::Connected) {
            let (sent, received) = match inner.baselines.get(&p.node_id) {
                Some(b)
                    if b.since == p.since
                        && b.sent <= p.bytes_sent
                        && b.received <= p.bytes_received =>
                {
                    (p.bytes_sent - b.sent, p.bytes_received - b.received)
                }
                _ => (p.bytes_sent, p.bytes_received),
            };
            inner.counters.bytes_sent.add(p.path, sent);
            inner.counters.bytes_received.add(p.path, received);
            next.insert(
                p.node_id,
                Baseline {
                    since: p.since,
                    sent: p.bytes_sent,
                    received: p.bytes_received,
                },
            );
        }
        inner.baselines = next;
    }

    /// The counters now.
    pub fn counters(&self) -> NodeCounters {
        self.lock().counters
    }
}

/// Feeds `stats` from `transport` until the transport closes: every peer
/// event is counted and triggers a byte sample, and bytes are sampled every
/// [`SAMPLE_INTERVAL`] besides.
pub async fn collect(transport: Transport, stats: Arc<NodeStats>) {
    let mut events = transport.subscribe();
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => stats.on_event(&event),
                Err(RecvError::Lagged(n)) => stats.on_lag(n),
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {}
        }
        stats.sample(&transport.peers());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_transport::SecretKey;

    fn peer(n: u8, path: PathKind, since: u64, sent: u64, received: u64) -> PeerInfo {
        PeerInfo {
            node_id: SecretKey::from_bytes(&[n; 32]).node_id(),
            state: PeerState::Connected,
            path,
            remote_addr: None,
            via: None,
            path_changes: 0,
            observed_addr: None,
            rtt: None,
            bytes_sent: sent,
            bytes_received: received,
            since: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(since)),
            outbound: true,
            why: None,
        }
    }

    #[test]
    fn bytes_are_credited_to_the_current_path_and_never_go_down() {
        let stats = NodeStats::new();
        stats.sample(&[peer(1, PathKind::Relayed, 10, 100, 50)]);
        stats.sample(&[peer(1, PathKind::Direct, 10, 150, 80)]);
        let c = stats.counters();
        assert_eq!(
            c.bytes_sent,
            PathBytes {
                direct: 50,
                relayed: 100
            }
        );
        assert_eq!(
            c.bytes_received,
            PathBytes {
                direct: 30,
                relayed: 50
            }
        );
        // A new connection (new `since`) starts from its own zero.
        stats.sample(&[peer(1, PathKind::Direct, 20, 7, 3)]);
        let c = stats.counters();
        assert_eq!(c.bytes_sent.direct, 57);
        assert_eq!(c.bytes_received.direct, 33);
        // A peer that disappears and comes back is new too; no-path bytes
        // are not credited.
        stats.sample(&[]);
        stats.sample(&[peer(1, PathKind::None, 20, 9, 3)]);
        stats.sample(&[peer(1, PathKind::Relayed, 20, 10, 4)]);
        let c = stats.counters();
        assert_eq!(
            c.bytes_sent,
            PathBytes {
                direct: 57,
                relayed: 101
            }
        );
        assert_eq!(c.bytes_received.relayed, 51);
    }

    #[test]
    fn events_are_counted() {
        let stats = NodeStats::new();
        let node_id = SecretKey::from_bytes(&[2; 32]).node_id();
        stats.on_event(&PeerEvent::Connected {
            node_id,
            path: PathKind::Relayed,
            remote_addr: None,
            generation: 1,
        });
        for _ in 0..2 {
            stats.on_event(&PeerEvent::PathChanged {
                node_id,
                path: PathKind::Direct,
                remote_addr: None,
            });
        }
        stats.on_event(&PeerEvent::Disconnected {
            node_id,
            reason: "timeout: idle".into(),
        });
        stats.on_lag(4);
        let c = stats.counters();
        assert_eq!(
            (
                c.connections,
                c.path_changes,
                c.disconnections,
                c.events_lagged
            ),
            (1, 2, 1, 4)
        );
    }
}
