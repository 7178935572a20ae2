//! What the node knows about NAT traversal, as one plain snapshot.
//!
//! `status`, `netcheck` and the metrics all read NAT type, reflexive
//! address, punch counters and per-peer "why not direct" reasons from a
//! [`TraversalSnapshot`]. Whatever runs traversal implements
//! [`TraversalSource`]: a running node uses [`TransportTraversal`] (the
//! transport's own traversal, `Transport::traversal_snapshot`); a node
//! without one uses [`NoTraversal`], which answers with honest defaults:
//! NAT type `unknown`, zero counters, no last error and no reasons. The status and JSON types built from the snapshot live here too
//! ([`NatSection`], [`TraversalSection`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use relay_transport::{NodeId, Transport};
use serde::{Deserialize, Serialize};

use crate::lifetime_view::BindingLifetimeSection;

/// NAT type text when nothing has classified the NAT.
pub const NAT_UNKNOWN: &str = "unknown";
/// Every NAT type text, in a fixed order (metrics one-hot encode these).
pub const NAT_TYPES: [&str; 4] = ["unknown", "open", "cone", "symmetric"];

/// Traversal state at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct TraversalSnapshot {
    /// "unknown" | "open" | "cone" | "symmetric".
    pub nat_type: String,
    /// Our reflexive address as the classifier sees it, if it has one.
    pub reflex_addr: Option<SocketAddr>,
    /// Punch sessions started.
    pub punches_attempted: u64,
    /// Punch sessions that found a direct path.
    pub punches_succeeded: u64,
    /// Times a peer stayed on (or went back to) a relayed path.
    pub relay_fallbacks: u64,
    /// Times a peer got a new direct path.
    pub direct_upgrades: u64,
    /// The last traversal failure, as `kind: detail`.
    pub last_error: Option<String>,
    /// Why a peer is not direct, for peers that have a reason.
    pub why: BTreeMap<NodeId, String>,
    /// Birthday-probing runs started (cone x symmetric pairs).
    pub birthday_runs: u64,
    /// Birthday packets sent, all runs.
    pub birthday_packets: u64,
    /// Birthday runs that ended on a direct path.
    pub birthday_successes: u64,
    /// Birthday packets sent by the runs that succeeded.
    pub birthday_packets_won: u64,
    /// Our NAT's binding lifetime and the keepalive interval in use.
    pub binding_lifetime: BindingLifetimeSection,
    /// Times our own address changed.
    pub address_changes: u64,
    /// Birthday runs started because a plain punch failed.
    pub birthday_escalations: u64,
    /// Mapping checks finished as the asking side.
    pub mapping_checks: u64,
    /// Mapping checks we offered our alternate port for, as an observer.
    pub mapping_offers: u64,
    /// Mapping checks we refused as an observer.
    pub mapping_refused: u64,
}

impl Default for TraversalSnapshot {
    fn default() -> Self {
        Self {
            nat_type: NAT_UNKNOWN.to_string(),
            reflex_addr: None,
            punches_attempted: 0,
            punches_succeeded: 0,
            relay_fallbacks: 0,
            direct_upgrades: 0,
            last_error: None,
            why: BTreeMap::new(),
            birthday_runs: 0,
            birthday_packets: 0,
            birthday_successes: 0,
            birthday_packets_won: 0,
            binding_lifetime: BindingLifetimeSection::default(),
            address_changes: 0,
            birthday_escalations: 0,
            mapping_checks: 0,
            mapping_offers: 0,
            mapping_refused: 0,
        }
    }
}

/// Something that can report traversal state.
pub trait TraversalSource: Send + Sync + fmt::Debug {
    /// The current state.
    fn snapshot(&self) -> TraversalSnapshot;
}

/// The source of a node that runs no traversal: defaults only.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTraversal;

impl TraversalSource for NoTraversal {
    fn snapshot(&self) -> TraversalSnapshot {
        TraversalSnapshot::default()
    }
}

/// The traversal state of a running transport.
#[derive(Debug, Clone)]
pub struct TransportTraversal {
    transport: Transport,
}

impl TransportTraversal {
    /// Reads `transport`'s traversal.
    pub fn new(transport: Transport) -> Self {
        Self { transport }
    }
}

impl TraversalSource for TransportTraversal {
    fn snapshot(&self) -> TraversalSnapshot {
        let t = self.transport.traversal_snapshot();
        if !t.enabled {
            return TraversalSnapshot::default();
        }
        TraversalSnapshot {
            nat_type: t.nat.nat.as_str().to_string(),
            reflex_addr: t.nat.reflex_addr,
            punches_attempted: t.stats.punches_attempted,
            punches_succeeded: t.stats.punches_succeeded,
            relay_fallbacks: t.stats.relay_fallbacks,
            direct_upgrades: t.stats.direct_upgrades,
            why: t.why,
            birthday_runs: t.stats.birthday_runs,
            birthday_packets: t.stats.birthday_packets,
            birthday_successes: t.stats.birthday_successes,
            birthday_packets_won: t.stats.birthday_packets_won,
            binding_lifetime: BindingLifetimeSection::new(&t.lifetime, t.quic_keep_alive),
            address_changes: t.stats.address_changes,
            birthday_escalations: t.stats.birthday_escalations,
            mapping_checks: t.stats.mapping_checks,
            mapping_offers: t.stats.mapping_offers,
            mapping_refused: t.stats.mapping_refused,
            last_error: t.stats.last_error,
        }
    }
}

/// `status --json` `nat`: the NAT type and our reflexive address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatSection {
    /// "unknown" | "open" | "cone" | "symmetric".
    #[serde(rename = "type")]
    pub nat_type: String,
    /// Our reflexive address: the classifier's, else the address the
    /// first observing peer reported (`ip:port`).
    pub reflex_addr: Option<String>,
}

impl Default for NatSection {
    fn default() -> Self {
        Self {
            nat_type: NAT_UNKNOWN.to_string(),
            reflex_addr: None,
        }
    }
}

impl NatSection {
    /// From a snapshot, falling back to the first observed address (sorted
    /// by observer) for the reflexive address.
    pub fn new(snapshot: &TraversalSnapshot, observed: &[(NodeId, SocketAddr)]) -> Self {
        let reflex = snapshot
            .reflex_addr
            .or_else(|| observed.first().map(|(_, addr)| *addr));
        Self {
            nat_type: snapshot.nat_type.clone(),
            reflex_addr: reflex.map(|a| a.to_string()),
        }
    }
}

/// `status --json` `traversal`: punch counters and the last failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraversalSection {
    /// Punch sessions started.
    pub punches_attempted: u64,
    /// Punch sessions that found a direct path.
    pub punches_succeeded: u64,
    /// Times a peer stayed on (or went back to) a relayed path.
    pub relay_fallbacks: u64,
    /// Times a peer got a new direct path.
    pub direct_upgrades: u64,
    /// The last traversal failure, as `kind: detail`.
    pub last_error: Option<String>,
    /// Birthday-paradox probing (cone x symmetric pairs).
    #[serde(default)]
    pub birthday: BirthdaySection,
    /// Times our own address changed (a move to another network; see
    /// TRAVERSAL.md, "Address changes").
    #[serde(default)]
    pub address_changes: u64,
    /// The mapping check (one public observer; see TRAVERSAL.md, "One
    /// public peer: the mapping check").
    #[serde(default)]
    pub mapping: MappingSection,
}

/// `status --json` `traversal.mapping`: mapping checks made and served.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingSection {
    /// Checks this node finished as the asking side.
    pub checks: u64,
    /// Checks this node served its alternate port for, as an observer.
    pub offers: u64,
    /// Checks this node refused as an observer (and alternate-port probes
    /// left unanswered).
    pub refused: u64,
}

/// `status --json` `traversal.birthday`: what birthday probing spent and
/// won.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BirthdaySection {
    /// Runs started.
    pub runs: u64,
    /// Runs that ended on a direct path.
    pub successes: u64,
    /// Packets sent (ports opened plus random probes), all runs.
    pub packets: u64,
    /// Packets this node spent per successful run (`null` before the
    /// first success).
    pub packets_per_success: Option<u64>,
    /// Runs started because a plain punch failed while the NAT types left
    /// a direct path possible (escalation).
    #[serde(default)]
    pub escalations: u64,
}

impl TraversalSection {
    /// From a snapshot.
    pub fn new(s: &TraversalSnapshot) -> Self {
        Self {
            punches_attempted: s.punches_attempted,
            punches_succeeded: s.punches_succeeded,
            relay_fallbacks: s.relay_fallbacks,
            direct_upgrades: s.direct_upgrades,
            last_error: s.last_error.clone(),
            address_changes: s.address_changes,
            birthday: BirthdaySection {
                runs: s.birthday_runs,
                successes: s.birthday_successes,
                packets: s.birthday_packets,
                packets_per_success: s.birthday_packets_won.checked_div(s.birthday_successes),
                escalations: s.birthday_escalations,
            },
            mapping: MappingSection {
                checks: s.mapping_checks,
                offers: s.mapping_offers,
                refused: s.mapping_refused,
            },
        }
    }

    /// One line for the status table.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} attempted, {} succeeded, {} relay fallbacks, {} upgrades",
            self.punches_attempted,
            self.punches_succeeded,
            self.relay_fallbacks,
            self.direct_upgrades
        );
        if self.address_changes > 0 {
            line.push_str(&format!("; {} address changes", self.address_changes));
        }
        let b = &self.birthday;
        if b.runs > 0 {
            line.push_str(&format!(
                "; birthday {} runs, {} direct, {} packets",
                b.runs, b.successes, b.packets
            ));
            if let Some(per) = b.packets_per_success {
                line.push_str(&format!(" ({per} per success)"));
            }
        }
        if let Some(e) = &self.last_error {
            line.push_str("; last error ");
            line.push_str(e);
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_transport::SecretKey;

    #[test]
    fn defaults_are_honest() {
        let s = NoTraversal.snapshot();
        assert_eq!(s.nat_type, "unknown");
        assert_eq!(s.punches_attempted, 0);
        assert!(s.last_error.is_none() && s.why.is_empty());
        let nat = NatSection::new(&s, &[]);
        assert_eq!(nat, NatSection::default());
        let v = serde_json::to_value(&nat).unwrap();
        assert_eq!(v["type"], "unknown");
        assert!(v["reflex_addr"].is_null());
    }

    #[test]
    fn reflex_addr_prefers_the_classifier() {
        let observer = SecretKey::from_bytes(&[1; 32]).node_id();
        let seen: SocketAddr = "203.0.113.7:4000".parse().unwrap();
        let mut s = TraversalSnapshot::default();
        assert_eq!(
            NatSection::new(&s, &[(observer, seen)])
                .reflex_addr
                .as_deref(),
            Some("203.0.113.7:4000")
        );
        s.nat_type = "cone".into();
        s.reflex_addr = Some("203.0.113.9:1".parse().unwrap());
        let nat = NatSection::new(&s, &[(observer, seen)]);
        assert_eq!(nat.nat_type, "cone");
        assert_eq!(nat.reflex_addr.as_deref(), Some("203.0.113.9:1"));
    }

    #[test]
    fn traversal_line() {
        let mut t = TraversalSection::new(&TraversalSnapshot::default());
        assert_eq!(
            t.line(),
            "0 attempted, 0 succeeded, 0 relay fallbacks, 0 upgrades"
        );
        t.last_error = Some("punch-failed: timeout".into());
        assert!(t.line().ends_with("; last error punch-failed: timeout"));
        let snap = TraversalSnapshot {
            birthday_runs: 3,
            birthday_packets: 1500,
            birthday_successes: 2,
            birthday_packets_won: 900,
            ..TraversalSnapshot::default()
        };
        let t = TraversalSection::new(&snap);
        assert_eq!(t.birthday.packets_per_success, Some(450));
        assert_eq!(
            t.line(),
            "0 attempted, 0 succeeded, 0 relay fallbacks, 0 upgrades; \
             birthday 3 runs, 2 direct, 1500 packets (450 per success)"
        );
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["birthday"]["packets_per_success"], 450);
        // Before any success: no per-success figure.
        let t = TraversalSection::new(&TraversalSnapshot::default());
        assert!(serde_json::to_value(&t).unwrap()["birthday"]["packets_per_success"].is_null());
    }

    #[test]
    fn mapping_and_escalation_counters_in_json() {
        let snap = TraversalSnapshot {
            birthday_escalations: 2,
            mapping_checks: 3,
            mapping_offers: 5,
            mapping_refused: 7,
            ..TraversalSnapshot::default()
        };
        let v = serde_json::to_value(TraversalSection::new(&snap)).unwrap();
        assert_eq!(v["birthday"]["escalations"], 2);
        assert_eq!(v["mapping"]["checks"], 3);
        assert_eq!(v["mapping"]["offers"], 5);
        assert_eq!(v["mapping"]["refused"], 7);
        // An older report without them still reads.
        let mut old = v.clone();
        old.as_object_mut().unwrap().remove("mapping");
        old["birthday"]
            .as_object_mut()
            .unwrap()
            .remove("escalations");
        let back: TraversalSection = serde_json::from_value(old).unwrap();
        assert_eq!(back.mapping, MappingSection::default());
        assert_eq!(back.birthday.escalations, 0);
    }
}
