//! The running node as the HTTP endpoint's [`HttpSource`]: `/status` is the
//! JSON `status --json` prints, and `/metrics` is rendered from that same
//! report plus the transport's and the node's counters.

use super::HttpSource;
use crate::metrics::{render, MetricsInput, TransportCounters};
use crate::service::NodeService;

impl HttpSource for NodeService {
    fn status_json(&self) -> String {
        serde_json::to_string_pretty(&self.status()).unwrap_or_default()
    }

    fn metrics_text(&self) -> String {
        let transport = self.transport();
        self.stats().sample(&transport.peers());
        let status = self.status();
        let mut text = render(&MetricsInput {
            status: &status,
            transport: TransportCounters::read(transport),
            node: self.stats().counters(),
        });
        text.push_str(&self.extra_metrics());
        text
    }
}
