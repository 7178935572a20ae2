//! Channels as the ledger records them: every member's
//! `channel-registration` entries (latest per (origin, name) wins; a
//! withdrawn one removes the channel), and the owner of a name. When two
//! nodes register the same name, the most recent registration owns it.

use std::collections::BTreeMap;

use relay_channels::Policy;
use relay_proto::ledger::body::ChannelRegistration;
use relay_proto::ledger::{Body, EntryKind};
use relay_proto::NodeId;

use crate::ledger::{Filter, Ledger, LedgerError};

/// One registered channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The name.
    pub name: String,
    /// Its owner.
    pub owner: NodeId,
    /// Its policy (`None` when the spec does not decode: a newer format).
    pub policy: Option<Policy>,
    /// When it was registered (unix ms, the owner's clock).
    pub ts_unix_ms: u64,
}

/// Every live registration, by name (the most recent per name).
pub fn registered(ledger: &Ledger) -> Result<BTreeMap<String, Registered>, LedgerError> {
    let filter = Filter {
        origin: None,
        kind: Some(EntryKind::ChannelRegistration),
    };
    // Latest per (origin, name), in cursor order.
    let mut latest: BTreeMap<(NodeId, String), (u64, ChannelRegistration)> = BTreeMap::new();
    for stored in ledger.read(None, usize::MAX, &filter)? {
        let e = &stored.entry;
        if let Ok(Body::ChannelRegistration(r)) = e.body() {
            let key = (e.origin, r.name.clone());
            if latest.get(&key).is_none_or(|(ts, _)| *ts <= e.ts_unix_ms) {
                latest.insert(key, (e.ts_unix_ms, r));
            }
        }
    }
    let mut out: BTreeMap<String, Registered> = BTreeMap::new();
    for ((owner, name), (ts, r)) in latest {
        if r.withdrawn || out.get(&name).is_some_and(|x| x.ts_unix_ms > ts) {
            continue;
        }
        let policy = Policy::decode_spec(&r.spec).ok();
        out.insert(
            name.clone(),
            Registered {
                name,
                owner,
                policy,
                ts_unix_ms: ts,
            },
        );
    }
    Ok(out)
}

/// The owner of `name`, if registered.
pub fn owner_of(ledger: &Ledger, name: &str) -> Result<Option<NodeId>, LedgerError> {
    Ok(registered(ledger)?.remove(name).map(|r| r.owner))
}

/// The registration body for `name` with `policy` (or withdrawing it).
pub fn registration(name: &str, policy: &Policy, withdrawn: bool) -> Body {
    Body::ChannelRegistration(ChannelRegistration {
        name: name.to_string(),
        withdrawn,
        spec: policy.encode_spec(),
    })
}
