//! Who serves what, mesh-wide: the latest `service-registration` of every
//! (origin, service) in the ledger, kept in memory. [`follow`] reads the
//! ledger once and then applies every new entry, so a call never scans
//! the ledger. Withdrawn registrations stay as tombstones (listed
//! nowhere), so an older entry replayed later cannot revive them;
//! registrations whose spec does not decode are ignored (counted).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use relay_proto::ledger::{Body, Entry, EntryKind};
use relay_proto::wire::rpc::ServiceSpec;
use relay_proto::NodeId;

use crate::ledger::{Filter, Ledger};

/// Most (service, node) registrations kept; past it new ones are ignored.
pub const MAX_REGISTRATIONS: usize = 65_536;

/// One node's registration of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The entry's seq in its origin's feed (a later one replaces it).
    pub seq: u64,
    /// What it says; `None`: withdrawn (kept so that an older entry
    /// replayed later cannot bring it back).
    pub spec: Option<ServiceSpec>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Directory {
    by_service: RwLock<HashMap<String, BTreeMap<NodeId, Registration>>>,
    malformed: AtomicU64,
}

impl Directory {
    /// Applies one ledger entry (other kinds are ignored).
    pub fn apply(&self, entry: &Entry) {
        if entry.kind != EntryKind::ServiceRegistration {
            return;
        }
        let Ok(Body::ServiceRegistration(reg)) = entry.body() else {
            self.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut map = self.by_service.write().unwrap_or_else(|e| e.into_inner());
        let total: usize = map.values().map(BTreeMap::len).sum();
        let nodes = map.entry(reg.name.clone()).or_default();
        if nodes.get(&entry.origin).is_some_and(|r| r.seq >= entry.seq) {
            return;
        }
        let spec = if reg.withdrawn {
            None
        } else {
            match ServiceSpec::decode(&reg.spec) {
                Ok(spec) => Some(spec),
                Err(_) => {
                    self.malformed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        };
        if nodes.contains_key(&entry.origin) || total < MAX_REGISTRATIONS {
            nodes.insert(
                entry.origin,
                Registration {
                    seq: entry.seq,
                    spec,
                },
            );
        }
    }

    /// Calls `f` with each node serving `service` (nothing cloned).
    pub fn each_server(&self, service: &str, mut f: impl FnMut(NodeId)) {
        let map = self.by_service.read().unwrap_or_else(|e| e.into_inner());
        if let Some(nodes) = map.get(service) {
            for (id, r) in nodes.iter() {
                if r.spec.is_some() {
                    f(*id);
                }
            }
        }
    }

    /// Every service and its nodes, by name.
    pub fn all(&self) -> Vec<(String, Vec<(NodeId, ServiceSpec)>)> {
        let map = self.by_service.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = map
            .iter()
            .map(|(name, nodes)| {
                let nodes: Vec<_> = nodes
                    .iter()
                    .filter_map(|(id, r)| Some((*id, r.spec.clone()?)))
                    .collect();
                (name.clone(), nodes)
            })
            .filter(|(_, nodes)| !nodes.is_empty())
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Registrations ignored because their body or spec did not decode.
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }
}

/// Keeps `directory` in step with `ledger` until the ledger closes.
pub async fn follow(ledger: Ledger, directory: std::sync::Arc<Directory>) {
    let filter = Filter {
        origin: None,
        kind: Some(EntryKind::ServiceRegistration),
    };
    let mut follower = ledger.follow(None, filter);
    loop {
        match follower.next().await {
            Ok(stored) => directory.apply(&stored.entry),
            Err(e) => {
                tracing::warn!(error = %e, "rpc: cannot follow the ledger; discovery stops");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::ledger::body::ServiceRegistration;
    use relay_proto::SecretKey;

    fn entry(key: u8, seq: u64, name: &str, withdrawn: bool) -> Entry {
        let secret = SecretKey::from_bytes(&[key; 32]);
        let spec = ServiceSpec {
            version: "1".into(),
            methods: vec!["echo".into()],
            token_required: false,
        };
        let body = Body::ServiceRegistration(ServiceRegistration {
            name: name.into(),
            withdrawn,
            spec: spec.encode().unwrap(),
        });
        Entry::sign(
            &secret,
            seq,
            relay_proto::ledger::EntryHash([0; 32]),
            0,
            &body,
        )
        .unwrap()
    }

    fn servers(d: &Directory, service: &str) -> Vec<NodeId> {
        let mut out = Vec::new();
        d.each_server(service, |n| out.push(n));
        out
    }

    #[test]
    fn latest_registration_wins_and_withdrawal_removes() {
        let d = Directory::default();
        d.apply(&entry(1, 1, "echo", false));
        d.apply(&entry(2, 4, "echo", false));
        assert_eq!(servers(&d, "echo").len(), 2);
        d.apply(&entry(1, 2, "echo", true));
        assert_eq!(servers(&d, "echo").len(), 1);
        // An older entry replayed changes nothing.
        d.apply(&entry(1, 1, "echo", false));
        assert_eq!(servers(&d, "echo").len(), 1);
        d.apply(&entry(2, 5, "echo", true));
        assert!(servers(&d, "echo").is_empty());
        assert!(d.all().is_empty());
    }
}
