//! The routing table: which handler takes which protocol id, and the
//! routing decision for one incoming stream or datagram. It never waits:
//! an item is queued, or handed back with the reason it was refused.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::config::QueueConfig;
use super::error::RegisterError;
use super::id::ProtocolId;
use super::protocol::ProtocolRx;
use super::queue::{queue, PushError, QueueTx};
use super::refuse::Refusal;
use super::stats::{ProtocolCounters, ProtocolStats, RefusalCounters};
use crate::Incoming;

/// Takes a protocol's incoming streams as they are routed, instead of
/// queueing them for its [`ProtocolRx`]. It is called where the stream is
/// routed (a connection's forwarding task, or the mux's own tasks), so it
/// must not wait: it starts the stream's work (spawns a task) or hands the
/// stream back, to be refused as `busy` and counted.
pub type StreamHandler = Arc<dyn Fn(Incoming) -> Result<(), Incoming> + Send + Sync>;

/// A registration's [`StreamHandler`].
#[derive(Clone)]
struct Direct(StreamHandler);

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamHandler")
    }
}

/// One registered protocol.
#[derive(Debug)]
struct Entry {
    name: &'static str,
    /// Tells this registration from a later one under the same id.
    token: u64,
    /// Takes the streams at once, when set (they skip the queue).
    direct: Option<Direct>,
    streams: QueueTx,
    datagrams: QueueTx,
    counters: ProtocolCounters,
}

#[derive(Debug, Default)]
struct Table {
    closed: bool,
    next_token: u64,
    entries: HashMap<ProtocolId, Arc<Entry>>,
}

/// What became of a routed stream or datagram.
#[derive(Debug)]
pub(crate) enum Routed {
    /// In the protocol's queue.
    Queued,
    /// Handed back, to be refused.
    Refused(Refusal, Incoming),
}

/// The routing table and the counters of what it refused.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    table: RwLock<Table>,
    pub(crate) refusals: RefusalCounters,
}

impl Registry {
    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a handler for `id`.
    pub(crate) fn register(
        self: &Arc<Self>,
        id: ProtocolId,
        name: &'static str,
        config: QueueConfig,
    ) -> Result<ProtocolRx, RegisterError> {
        self.register_with(id, name, config, None)
    }

    /// Registers a handler for `id`, whose streams go to `direct` when
    /// given (datagrams are queued either way).
    pub(crate) fn register_with(
        self: &Arc<Self>,
        id: ProtocolId,
        name: &'static str,
        config: QueueConfig,
        direct: Option<StreamHandler>,
    ) -> Result<ProtocolRx, RegisterError> {
        if id == ProtocolId::RESERVED {
            return Err(RegisterError::Reserved(id));
        }
        let config = config.normalized();
        let mut table = self.write();
        if table.closed {
            return Err(RegisterError::Closed);
        }
        if let Some(entry) = table.entries.get(&id) {
            return Err(RegisterError::AlreadyRegistered {
                id,
                name: entry.name,
            });
        }
        table.next_token += 1;
        let token = table.next_token;
        let (streams, streams_rx) = queue(config.streams, config.streams_per_peer);
        let (datagrams, datagrams_rx) = queue(config.datagrams, config.datagrams_per_peer);
        table.entries.insert(
            id,
            Arc::new(Entry {
                name,
                token,
                direct: direct.map(Direct),
                streams,
                datagrams,
                counters: ProtocolCounters::default(),
            }),
        );
        Ok(ProtocolRx::new(
            id,
            Arc::downgrade(self),
            token,
            streams_rx,
            datagrams_rx,
        ))
    }

    /// Removes the registration `token` of `id` (a later one stays).
    pub(crate) fn unregister(&self, id: ProtocolId, token: u64) {
        let mut table = self.write();
        if table.entries.get(&id).is_some_and(|e| e.token == token) {
            table.entries.remove(&id);
        }
    }

    /// Whether a handler is registered for `id`.
    pub(crate) fn is_registered(&self, id: ProtocolId) -> bool {
        self.read().entries.contains_key(&id)
    }

    /// Queues `item` for the handler of `id`, or hands it back refused.
    /// A full queue is counted against the protocol.
    pub(crate) fn route(&self, id: ProtocolId, item: Incoming) -> Routed {
        let entry = {
            let table = self.read();
            if table.closed {
                return Routed::Refused(Refusal::Shutdown, item);
            }
            match table.entries.get(&id) {
                Some(entry) => entry.clone(),
                None => return Routed::Refused(Refusal::UnknownProtocol(id), item),
            }
        };
        let stream = !matches!(item, Incoming::Datagram { .. });
        if let (true, Some(direct)) = (stream, &entry.direct) {
            let counters = &entry.counters;
            return match (direct.0)(item) {
                Ok(()) => {
                    counters.streams_accepted.fetch_add(1, Ordering::Relaxed);
                    Routed::Queued
                }
                Err(item) => {
                    counters.streams_dropped.fetch_add(1, Ordering::Relaxed);
                    Routed::Refused(Refusal::Busy(id), item)
                }
            };
        }
        let (lane, accepted, dropped) = if stream {
            (
                &entry.streams,
                &entry.counters.streams_accepted,
                &entry.counters.streams_dropped,
            )
        } else {
            (
                &entry.datagrams,
                &entry.counters.datagrams_accepted,
                &entry.counters.datagrams_dropped,
            )
        };
        match lane.push(item) {
            Ok(()) => {
                accepted.fetch_add(1, Ordering::Relaxed);
                Routed::Queued
            }
            Err(PushError::Full(item)) => {
                dropped.fetch_add(1, Ordering::Relaxed);
                Routed::Refused(Refusal::Busy(id), item)
            }
            // The handler went away and is about to unregister.
            Err(PushError::Closed(item)) => Routed::Refused(Refusal::UnknownProtocol(id), item),
        }
    }

    /// Refuses everything from now on; handlers see the end of their
    /// queues once they have drained them.
    pub(crate) fn close(&self) {
        let mut table = self.write();
        table.closed = true;
        table.entries.clear();
    }

    /// The counters of every registered protocol, sorted by id.
    pub(crate) fn protocol_stats(&self) -> Vec<ProtocolStats> {
        let mut out: Vec<ProtocolStats> = self
            .read()
            .entries
            .iter()
            .map(|(id, e)| e.counters.snapshot(*id, e.name))
            .collect();
        out.sort_by_key(|s| s.id);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use bytes::Bytes;
    use relay_proto::{NodeId, SecretKey};

    fn datagram(from: NodeId) -> Incoming {
        Incoming::Datagram {
            from,
            data: Bytes::from_static(b"x"),
        }
    }

    fn queued(routed: Routed) {
        assert!(matches!(routed, Routed::Queued), "{routed:?}");
    }

    fn refused(routed: Routed) -> Refusal {
        match routed {
            Routed::Refused(refusal, _) => refusal,
            Routed::Queued => panic!("queued"),
        }
    }

    fn small() -> QueueConfig {
        QueueConfig {
            streams: 1,
            streams_per_peer: 1,
            datagrams: 2,
            datagrams_per_peer: 2,
        }
    }

    #[tokio::test]
    async fn routes_by_id_and_counts_what_it_drops() {
        let registry = Arc::new(Registry::default());
        let a = ProtocolId::new(1);
        let b = ProtocolId::new(2);
        let mut rx_a = registry.register(a, "a", small()).unwrap();
        let _rx_b = registry.register(b, "b", small()).unwrap();
        let peer = SecretKey::generate().node_id();
        queued(registry.route(a, datagram(peer)));
        queued(registry.route(a, datagram(peer)));
        let refusal = refused(registry.route(a, datagram(peer)));
        assert_eq!(refusal, Refusal::Busy(a));
        // b's queue is its own.
        queued(registry.route(b, datagram(peer)));
        let refusal = refused(registry.route(ProtocolId::new(3), datagram(peer)));
        assert_eq!(refusal, Refusal::UnknownProtocol(ProtocolId::new(3)));
        assert_eq!(rx_a.next_datagram().await.unwrap().0, peer);
        let stats = registry.protocol_stats();
        assert_eq!(stats.len(), 2);
        assert_eq!((stats[0].id, stats[0].name), (a, "a"));
        assert_eq!(stats[0].datagrams_accepted, 2);
        assert_eq!(stats[0].datagrams_dropped, 1);
        assert_eq!(stats[1].datagrams_accepted, 1);
        assert_eq!(stats[1].datagrams_dropped, 0);
    }

    #[test]
    fn registration_rules() {
        let registry = Arc::new(Registry::default());
        let id = ProtocolId::new(5);
        assert_eq!(
            registry
                .register(ProtocolId::RESERVED, "zero", small())
                .unwrap_err(),
            RegisterError::Reserved(ProtocolId::RESERVED)
        );
        let rx = registry.register(id, "five", small()).unwrap();
        assert_eq!(
            registry.register(id, "again", small()).unwrap_err(),
            RegisterError::AlreadyRegistered { id, name: "five" }
        );
        assert!(registry.is_registered(id));
        drop(rx);
        assert!(
            !registry.is_registered(id),
            "dropping the handler unregisters"
        );
        let rx = registry.register(id, "again", small()).unwrap();
        registry.close();
        assert!(!registry.is_registered(id));
        assert_eq!(
            registry
                .register(ProtocolId::new(6), "late", small())
                .unwrap_err(),
            RegisterError::Closed
        );
        drop(rx);
    }

    #[tokio::test]
    async fn handlers_see_the_end_after_close() {
        let registry = Arc::new(Registry::default());
        let mut rx = registry
            .register(ProtocolId::new(1), "one", small())
            .unwrap();
        let peer = SecretKey::generate().node_id();
        queued(registry.route(ProtocolId::new(1), datagram(peer)));
        registry.close();
        assert!(
            rx.next().await.is_some(),
            "queued items are still delivered"
        );
        assert!(rx.next().await.is_none());
        let refusal = refused(registry.route(ProtocolId::new(1), datagram(peer)));
        assert_eq!(refusal, Refusal::Shutdown);
    }
}
