//! Members as the ledger knows them: the latest `node-announcement` of
//! every origin (the data behind `relay-node members`; whether a member is
//! connected comes from the transport, not from here).

use std::net::SocketAddr;

use relay_proto::ledger::body::{NatType, NodeAnnouncement};
use relay_proto::ledger::{Body, EntryKind};
use relay_proto::NodeId;

use super::error::LedgerError;
use super::store::{Filter, Store};

/// One member's latest announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member.
    pub node_id: NodeId,
    /// Addresses to dial, best first.
    pub addrs: Vec<SocketAddr>,
    /// Its NAT type.
    pub nat: NatType,
    /// Whether it relays for members.
    pub relay: bool,
    /// Its version.
    pub version: String,
    /// When it announced (unix ms, its clock).
    pub last_seen_unix_ms: u64,
}

/// Every origin's latest announcement, by NodeId.
pub fn members(store: &Store) -> Result<Vec<Member>, LedgerError> {
    let filter = Filter {
        origin: None,
        kind: Some(EntryKind::NodeAnnouncement),
    };
    let mut by_origin: std::collections::BTreeMap<NodeId, (u64, Member)> = Default::default();
    // Retention keeps one announcement per origin, so this reads about one
    // entry per member.
    for stored in store.read(None, usize::MAX, &filter)? {
        let e = stored.entry;
        let Ok(Body::NodeAnnouncement(NodeAnnouncement {
            addrs,
            nat,
            relay,
            version,
            ..
        })) = e.body()
        else {
            continue;
        };
        let newer = by_origin.get(&e.origin).is_none_or(|(seq, _)| e.seq > *seq);
        if newer {
            by_origin.insert(
                e.origin,
                (
                    e.seq,
                    Member {
                        node_id: e.origin,
                        addrs,
                        nat,
                        relay,
                        version,
                        last_seen_unix_ms: e.ts_unix_ms,
                    },
                ),
            );
        }
    }
    Ok(by_origin.into_values().map(|(_, m)| m).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_dir;
    use relay_proto::SecretKey;

    fn announce(port: u16, relay: bool) -> Body {
        Body::NodeAnnouncement(NodeAnnouncement {
            addrs: vec![SocketAddr::from(([198, 51, 100, 7], port))],
            nat: NatType::Cone,
            relay,
            version: "0.1.0".into(),
            member_proof: None,
        })
    }

    #[test]
    fn members_are_the_latest_announcement_per_origin() {
        let store = Store::open(&temp_dir("ledger-members")).unwrap();
        let a = SecretKey::from_bytes(&[1; 32]);
        let b = SecretKey::from_bytes(&[2; 32]);
        store
            .append_local(&a, &[(10, announce(1, false)), (20, announce(2, true))])
            .unwrap();
        store.append_local(&b, &[(15, announce(3, false))]).unwrap();
        let got = members(&store).unwrap();
        assert_eq!(got.len(), 2);
        let ma = got.iter().find(|m| m.node_id == a.node_id()).unwrap();
        assert_eq!(ma.addrs, vec![SocketAddr::from(([198, 51, 100, 7], 2))]);
        assert!(ma.relay);
        assert_eq!(ma.last_seen_unix_ms, 20);
        let mb = got.iter().find(|m| m.node_id == b.node_id()).unwrap();
        assert_eq!(mb.last_seen_unix_ms, 15);
    }
}
