//! The running node as the HTTP endpoint's [`HttpSource`]: `/status` is the
//! JSON `status --json` prints, `/metrics` is rendered from that same
//! report plus the transport's, the node's and the mux's counters and the
//! endpoint's own, and `/ledger` and `/ledger/events` read the node's
//! ledger ([`HttpLedger`]).

use super::ledger::HttpLedger;
use super::HttpSource;
use crate::ledger::Ledger;
use crate::metrics::text::TextWriter;
use crate::metrics::{render, MetricsInput, TransportCounters};
use crate::service::NodeService;

/// What `run --http` serves.
#[derive(Debug, Clone)]
pub struct NodeHttp {
    service: NodeService,
    ledger: HttpLedger,
}

impl NodeHttp {
    /// The node's service and its ledger.
    pub fn new(service: NodeService, ledger: Ledger) -> Self {
        Self {
            service,
            ledger: HttpLedger::new(ledger),
        }
    }
}

impl HttpSource for NodeHttp {
    fn status_json(&self) -> String {
        serde_json::to_string_pretty(&self.service.status()).unwrap_or_default()
    }

    fn metrics_text(&self) -> String {
        let service = &self.service;
        let transport = service.transport();
        service.stats().sample(&transport.peers());
        let status = service.status();
        let mut text = render(&MetricsInput {
            status: &status,
            transport: TransportCounters::read(transport),
            node: service.stats().counters(),
            mux: &service.mux().stats(),
        });
        text.push_str(&service.extra_metrics());
        let mut own = TextWriter::new();
        self.ledger.metrics(&mut own);
        text.push_str(&own.finish());
        text
    }

    fn ledger(&self) -> Option<&HttpLedger> {
        Some(&self.ledger)
    }
}
