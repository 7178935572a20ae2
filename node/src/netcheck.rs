//! `relay-node netcheck`: this node's view of the network: its NAT type,
//! the reflexive address each observing peer reports for it (with the
//! observer's own address), and the round-trip time to each relay that
//! serves it.
//!
//! The report is built from what the running node already knows (no new
//! probes are sent): peers' observed-address reports, peer snapshots (RTT is
//! the connection's smoothed RTT), the relays we are registered with, and a
//! [`TraversalSnapshot`] for the NAT classification.

use std::net::SocketAddr;

use relay_transport::{NodeId, PeerInfo, Transport};
use serde::{Deserialize, Serialize};

use crate::lifetime_view::BindingLifetimeSection;
use crate::port_map_view::PortMapSection;
use crate::traversal_view::{NatSection, TraversalSnapshot};

/// What `netcheck --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetcheckReport {
    /// This node.
    pub node_id: String,
    /// Bound UDP addresses.
    pub listen: Vec<String>,
    /// NAT type and reflexive address (as in `status`).
    pub nat: NatSection,
    /// One entry per peer that reported our address, sorted by observer.
    pub observations: Vec<ObservationReport>,
    /// One entry per relay serving us, sorted by NodeId.
    pub relays: Vec<RelayRtt>,
    /// Port mapping on the gateway (as in `status`): the protocol and
    /// mapped address, or `error: "port-map-unavailable: ..."`.
    #[serde(default)]
    pub port_map: PortMapSection,
    /// How long our NAT keeps an idle binding (measured with a directly
    /// connected peer) and the keepalive interval that follows.
    #[serde(default)]
    pub binding_lifetime: BindingLifetimeSection,
}

/// What one peer sees of us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservationReport {
    /// The observing peer.
    pub observer: String,
    /// The observer's address as we reach it (null when not direct).
    pub observer_addr: Option<String>,
    /// Our address as the observer sees it.
    pub reflex_addr: String,
}

/// One relay and how far away it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayRtt {
    /// The relay.
    pub node_id: String,
    /// "direct" | "relayed" | "none": the path to the relay.
    pub path: String,
    /// The relay's address, when reached directly.
    pub remote_addr: Option<String>,
    /// Smoothed RTT in milliseconds (null when not connected).
    pub rtt_ms: Option<f64>,
}

/// The report for a running transport.
pub fn netcheck_report(transport: &Transport, extra: &TraversalSnapshot) -> NetcheckReport {
    NetcheckReport::build(
        transport.node_id(),
        &transport.local_addrs(),
        &transport.peers(),
        &transport.observed_addrs(),
        &transport.relays(),
        extra,
    )
    .with_port_map(PortMapSection::new(&transport.port_map_status()))
}

impl NetcheckReport {
    /// Builds the report from snapshots.
    pub fn build(
        node_id: NodeId,
        listen: &[SocketAddr],
        peers: &[PeerInfo],
        observed: &[(NodeId, SocketAddr)],
        relays: &[NodeId],
        extra: &TraversalSnapshot,
    ) -> Self {
        let peer = |id: &NodeId| peers.iter().find(|p| p.node_id == *id);
        let mut observed = observed.to_vec();
        observed.sort();
        let observations = observed
            .iter()
            .map(|(observer, reflex)| ObservationReport {
                observer: observer.to_string(),
                observer_addr: peer(observer)
                    .and_then(|p| p.remote_addr)
                    .map(|a| a.to_string()),
                reflex_addr: reflex.to_string(),
            })
            .collect();
        let mut relays = relays.to_vec();
        relays.sort();
        relays.dedup();
        let relays = relays
            .iter()
            .map(|id| {
                let info = peer(id);
                RelayRtt {
                    node_id: id.to_string(),
                    path: info.map_or("none", |p| p.path.as_str()).to_string(),
                    remote_addr: info.and_then(|p| p.remote_addr).map(|a| a.to_string()),
                    rtt_ms: info
                        .and_then(|p| p.rtt)
                        .map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
                }
            })
            .collect();
        Self {
            node_id: node_id.to_string(),
            listen: listen.iter().map(ToString::to_string).collect(),
            nat: NatSection::new(extra, &observed),
            observations,
            relays,
            port_map: PortMapSection::default(),
            binding_lifetime: extra.binding_lifetime.clone(),
        }
    }

    /// Adds the port-mapping state.
    pub fn with_port_map(mut self, port_map: PortMapSection) -> Self {
        self.port_map = port_map;
        self
    }

    /// The human-readable form.
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "node      {}\nlisten    {}\nnat       {}\n",
            self.node_id,
            if self.listen.is_empty() {
                "-".into()
            } else {
                self.listen.join(", ")
            },
            match &self.nat.reflex_addr {
                Some(addr) => format!("{} (reflexive address {addr})", self.nat.nat_type),
                None => self.nat.nat_type.clone(),
            }
        );
        if self.observations.is_empty() {
            out.push_str("observed  none (no connected peer has reported our address yet)\n");
        } else {
            out.push_str("observed\n");
            let mut rows = vec![["OBSERVER", "OBSERVER_ADDR", "SEES_US_AT"].map(String::from)];
            for o in &self.observations {
                rows.push([
                    o.observer.clone(),
                    o.observer_addr.clone().unwrap_or_else(|| "-".into()),
                    o.reflex_addr.clone(),
                ]);
            }
            out.push_str(&table(&rows));
        }
        out.push_str(&format!("port map  {}\n", self.port_map.line()));
        out.push_str(&format!("lifetime  {}\n", self.binding_lifetime.line()));
        if self.relays.is_empty() {
            out.push_str("relays    none\n");
        } else {
            out.push_str("relays\n");
            let mut rows = vec![["RELAY", "PATH", "REMOTE", "RTT"].map(String::from)];
            for r in &self.relays {
                rows.push([
                    r.node_id.clone(),
                    r.path.clone(),
                    r.remote_addr.clone().unwrap_or_else(|| "-".into()),
                    r.rtt_ms
                        .map(|ms| format!("{ms:.2}ms"))
                        .unwrap_or_else(|| "-".into()),
                ]);
            }
            out.push_str(&table(&rows));
        }
        out
    }
}

/// Rows as aligned columns, indented by two spaces.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str("  ");
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_transport::{PathKind, PeerState, SecretKey};
    use std::time::Duration;

    fn id(n: u8) -> NodeId {
        SecretKey::from_bytes(&[n; 32]).node_id()
    }

    fn peer(n: u8, addr: Option<&str>, rtt_ms: u64) -> PeerInfo {
        PeerInfo {
            node_id: id(n),
            state: PeerState::Connected,
            path: if addr.is_some() {
                PathKind::Direct
            } else {
                PathKind::Relayed
            },
            remote_addr: addr.map(|a| a.parse().unwrap()),
            via: None,
            path_changes: 0,
            observed_addr: None,
            rtt: Some(Duration::from_millis(rtt_ms)),
            bytes_sent: 0,
            bytes_received: 0,
            since: None,
            outbound: true,
            why: None,
        }
    }

    fn sample(extra: &TraversalSnapshot) -> NetcheckReport {
        let peers = [
            peer(1, Some("198.51.100.1:7420"), 12),
            peer(2, Some("203.0.113.2:7420"), 30),
            peer(3, None, 50),
        ];
        let observed = [
            (id(2), "198.51.100.77:40002".parse().unwrap()),
            (id(1), "198.51.100.77:40001".parse().unwrap()),
        ];
        NetcheckReport::build(
            id(9),
            &["0.0.0.0:7420".parse().unwrap()],
            &peers,
            &observed,
            &[id(2), id(1), id(7)],
            extra,
        )
    }

    #[test]
    fn json_shape() {
        let report = sample(&TraversalSnapshot::default());
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["node_id"], id(9).to_string());
        assert_eq!(v["listen"][0], "0.0.0.0:7420");
        assert_eq!(v["nat"]["type"], "unknown");
        let mut ids = [id(1), id(2)];
        ids.sort();
        let obs = v["observations"].as_array().unwrap();
        assert_eq!(obs.len(), 2);
        assert_eq!(obs[0]["observer"], ids[0].to_string());
        let first = obs
            .iter()
            .find(|o| o["observer"] == id(1).to_string())
            .unwrap();
        assert_eq!(first["observer_addr"], "198.51.100.1:7420");
        assert_eq!(first["reflex_addr"], "198.51.100.77:40001");
        // Without a classifier the reflexive address is the first observation.
        assert_eq!(
            v["nat"]["reflex_addr"],
            obs[0]["reflex_addr"].as_str().unwrap()
        );
        let relays = v["relays"].as_array().unwrap();
        assert_eq!(relays.len(), 3);
        let r1 = relays
            .iter()
            .find(|r| r["node_id"] == id(1).to_string())
            .unwrap();
        assert_eq!(r1["rtt_ms"], 12.0);
        assert_eq!(r1["path"], "direct");
        assert_eq!(r1["remote_addr"], "198.51.100.1:7420");
        // A relay with no peer entry has no RTT.
        let r7 = relays
            .iter()
            .find(|r| r["node_id"] == id(7).to_string())
            .unwrap();
        assert!(r7["rtt_ms"].is_null());
        assert_eq!(r7["path"], "none");
        let back: NetcheckReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn classifier_wins_and_text_form() {
        let extra = TraversalSnapshot {
            nat_type: "symmetric".into(),
            reflex_addr: Some("198.51.100.77:40002".parse().unwrap()),
            ..TraversalSnapshot::default()
        };
        let report = sample(&extra);
        assert_eq!(report.nat.nat_type, "symmetric");
        let text = report.render_text();
        assert!(text.contains("nat       symmetric (reflexive address 198.51.100.77:40002)"));
        assert!(text.contains("OBSERVER"));
        assert!(text.contains("12.00ms"));
        assert!(text.contains("port map  off"));
        assert!(text.contains("lifetime  off"));
        assert_eq!(
            serde_json::to_value(&report).unwrap()["binding_lifetime"]["state"],
            "off"
        );
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["port_map"]["state"], "off");
        assert!(v["port_map"]["protocol"].is_null());
        let unavailable = report.clone().with_port_map(PortMapSection {
            state: "unavailable".into(),
            error: Some("port-map-unavailable: pcp: no answer".into()),
            ..PortMapSection::default()
        });
        let v = serde_json::to_value(&unavailable).unwrap();
        assert!(v["port_map"]["protocol"].is_null());
        assert_eq!(
            v["port_map"]["error"],
            "port-map-unavailable: pcp: no answer"
        );
        assert!(unavailable
            .render_text()
            .contains("port map  none: port-map-unavailable: pcp: no answer"));
        let empty = NetcheckReport::build(id(9), &[], &[], &[], &[], &extra).render_text();
        assert!(empty.contains("observed  none"));
        assert!(empty.contains("relays    none"));
    }
}
