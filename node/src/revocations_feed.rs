//! The node's one [`RevocationSet`], as a subsystem: started before the
//! subsystems that check tokens, it feeds the set from the ledger (every
//! stored `token-revocation` entry, then each new one, local as from
//! `POST /v1/tokens/revoke` or replicated) and reports its size. Channels
//! (and any other token check) hold clones of the same set.

use serde_json::{json, Value};

use crate::ledger::Ledger;
use crate::metrics::text::{count, Kind, TextWriter};
use crate::revocations_set::RevocationSet;
use crate::subsystem::{Subsystem, Tasks};

/// Feeds a shared [`RevocationSet`] from the ledger.
#[derive(Debug, Clone)]
pub struct RevocationsFeed {
    ledger: Ledger,
    set: RevocationSet,
}

impl RevocationsFeed {
    /// A feed of a new, empty set from `ledger` (it fills once started).
    pub fn new(ledger: Ledger) -> Self {
        Self {
            ledger,
            set: RevocationSet::new(),
        }
    }

    /// The set; clones share it.
    pub fn set(&self) -> RevocationSet {
        self.set.clone()
    }
}

impl Subsystem for RevocationsFeed {
    fn name(&self) -> &'static str {
        "revocations"
    }

    fn status(&self) -> Option<Value> {
        Some(json!({ "live": self.set.len() }))
    }

    fn metrics(&self, out: &mut TextWriter) {
        out.single(
            "relay_node_revocations",
            Kind::Gauge,
            "Live token revocations the node knows from the ledger.",
            count(self.set.len() as u64),
        );
    }

    fn start(&self, tasks: &Tasks) {
        tasks.spawn("revocations", self.set.clone().run(self.ledger.clone()));
    }
}
