//! The node's status report (`relay-node status`): its JSON shape and the
//! aligned table printed without `--json`.

use std::net::SocketAddr;

use relay_transport::{PeerInfo, RelayStatus};
use serde::{Deserialize, Serialize};

use crate::lifetime_view::BindingLifetimeSection;
use crate::port_map_view::PortMapSection;
use crate::timefmt;
use crate::traversal_view::{NatSection, TraversalSection, TraversalSnapshot};

/// What `status --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// This node.
    pub node_id: String,
    /// Bound UDP addresses, as `ip:port`.
    pub listen: Vec<String>,
    /// Every known peer.
    pub peers: Vec<PeerReport>,
    /// This node's relay server.
    #[serde(default)]
    pub relay: RelayReport,
    /// This node's NAT type and reflexive address.
    #[serde(default)]
    pub nat: NatSection,
    /// Hole punching counters and the last failure.
    #[serde(default)]
    pub traversal: TraversalSection,
    /// Port mapping on the gateway: protocol, mapped address, time left,
    /// or why there is none.
    #[serde(default)]
    pub port_map: PortMapSection,
    /// How long our NAT keeps an idle binding and the keepalive interval
    /// in use (as in `netcheck`).
    #[serde(default)]
    pub binding_lifetime: BindingLifetimeSection,
    /// Each subsystem's own section, keyed by its name (`ping`, ...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub subsystems: serde_json::Map<String, serde_json::Value>,
    /// Failed handshakes (dialed and inbound) and inbound admission.
    #[serde(default)]
    pub handshake: HandshakeSection,
}

/// The `handshake` section of a [`StatusReport`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HandshakeSection {
    /// Failed handshakes recorded (key mismatches, refusals, timeouts of
    /// dials; both directions).
    pub failures: u64,
    /// The last one as `kind: detail`, or null.
    pub last_error: Option<String>,
    /// The peer of the last failure, when known.
    pub last_peer: Option<String>,
    /// The real address of the last failure, when known.
    pub last_addr: Option<String>,
    /// "out" (we dialed) or "in", with the last failure.
    pub last_direction: Option<String>,
    /// When it happened (RFC 3339, UTC).
    pub last_at: Option<String>,
    /// Inbound attempts answered with a QUIC Retry (address validation
    /// under load or over a source's budget).
    pub retries_sent: u64,
    /// Inbound attempts dropped unanswered (every slot taken, or a source
    /// over its budget).
    pub attempts_dropped: u64,
}

impl HandshakeSection {
    /// Converts the transport's handshake status.
    pub fn new(s: &relay_transport::HandshakeStatus) -> Self {
        let last = s.last.as_ref();
        Self {
            failures: s.failures,
            last_error: last.map(|f| f.why()),
            last_peer: last.and_then(|f| f.peer).map(|p| p.to_string()),
            last_addr: last.and_then(|f| f.addr).map(|a| a.to_string()),
            last_direction: last.map(|f| if f.outbound { "out" } else { "in" }.to_string()),
            last_at: last.map(|f| timefmt::rfc3339(timefmt::unix_secs(f.at))),
            retries_sent: s.retries_sent,
            attempts_dropped: s.attempts_dropped,
        }
    }

    /// One line for the table form.
    pub fn line(&self) -> String {
        let last = match (&self.last_error, &self.last_addr, &self.last_peer) {
            (None, ..) => "none".to_string(),
            (Some(e), Some(addr), _) => format!("{e} ({addr})"),
            (Some(e), None, Some(peer)) => format!("{e} ({})", short(peer)),
            (Some(e), None, None) => e.clone(),
        };
        format!(
            "{} failed, last {last}; {} retries sent, {} attempts dropped",
            self.failures, self.retries_sent, self.attempts_dropped
        )
    }
}

/// The relay section of a [`StatusReport`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelayReport {
    /// Whether this node relays for others (`run --relay`).
    pub enabled: bool,
    /// Registered clients now.
    pub clients: usize,
    /// Live relayed sessions (client pairs) now.
    pub sessions: usize,
    /// Inner packet bytes forwarded.
    pub bytes_forwarded: u64,
    /// Frames forwarded.
    pub packets_forwarded: u64,
    /// Frames dropped (all reasons: rate, queue, unknown source or
    /// destination, malformed, session limit).
    pub packets_dropped: u64,
    /// Of those, frames whose per-client MAC did not verify or whose
    /// sequence number was replayed (spoofed or injected frames).
    #[serde(default)]
    pub packets_dropped_auth: u64,
    /// The per-client limits enforced.
    pub limits: RelayLimitsReport,
}

/// Per-client relay limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelayLimitsReport {
    /// Sustained relayed bytes per second per client.
    pub rate_bytes_per_sec: u64,
    /// Burst above the rate, in bytes.
    pub burst_bytes: u64,
    /// Frames queued per client at most.
    pub queue_packets: usize,
    /// Bytes queued per client at most.
    pub queue_bytes: usize,
    /// Clients served at once at most.
    pub max_clients: usize,
    /// Distinct peers per client at most.
    pub max_sessions_per_client: usize,
}

impl RelayReport {
    /// Converts the transport's relay status.
    pub fn from_status(s: &RelayStatus) -> Self {
        Self {
            enabled: s.enabled,
            clients: s.stats.clients,
            sessions: s.stats.sessions,
            bytes_forwarded: s.stats.bytes_forwarded,
            packets_forwarded: s.stats.packets_forwarded,
            packets_dropped: s.stats.packets_dropped,
            packets_dropped_auth: s.stats.dropped_auth,
            limits: RelayLimitsReport {
                rate_bytes_per_sec: s.limits.rate_bytes_per_sec,
                burst_bytes: s.limits.burst_bytes,
                queue_packets: s.limits.queue_packets,
                queue_bytes: s.limits.queue_bytes,
                max_clients: s.limits.max_clients,
                max_sessions_per_client: s.limits.max_sessions_per_client,
            },
        }
    }

    /// One line for the table form.
    pub fn line(&self) -> String {
        if !self.enabled {
            return "off".into();
        }
        format!(
            "on: {} clients, {} sessions, {} forwarded, {} dropped; per client {}/s (burst {}), queue {} frames / {}",
            self.clients,
            self.sessions,
            human_bytes(self.bytes_forwarded),
            self.packets_dropped,
            human_bytes(self.limits.rate_bytes_per_sec),
            human_bytes(self.limits.burst_bytes),
            self.limits.queue_packets,
            human_bytes(self.limits.queue_bytes as u64),
        )
    }
}

/// One peer in a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    /// The peer.
    pub node_id: String,
    /// "connected" | "connecting" | "disconnected".
    pub state: String,
    /// "direct" | "relayed" | "none".
    pub path: String,
    /// The real remote address, if any (direct paths).
    pub remote_addr: Option<String>,
    /// The relay's NodeId, when the path is relayed.
    #[serde(default)]
    pub via: Option<String>,
    /// How often the current connection changed paths.
    #[serde(default)]
    pub path_changes: u32,
    /// The address this peer observes for us, if it told us.
    #[serde(default)]
    pub observed_addr: Option<String>,
    /// Why the peer is not direct, when known (null when direct).
    #[serde(default)]
    pub why: Option<String>,
    /// Smoothed RTT in milliseconds.
    pub rtt_ms: Option<f64>,
    /// UDP payload bytes sent on the current connection.
    pub bytes_sent: u64,
    /// UDP payload bytes received on the current connection.
    pub bytes_received: u64,
    /// When the current connection was established (RFC 3339, UTC); it
    /// stays the same across path changes.
    pub since: Option<String>,
    /// The same instant in Unix seconds.
    pub since_unix: Option<u64>,
    /// Whether this node initiated the current connection.
    pub outbound: bool,
}

impl StatusReport {
    /// Builds a report from transport snapshots; peers sorted by NodeId.
    pub fn new(
        node_id: String,
        listen: &[SocketAddr],
        mut peers: Vec<PeerInfo>,
        relay: &RelayStatus,
    ) -> Self {
        peers.sort_by_key(|p| p.node_id);
        Self {
            node_id,
            listen: listen.iter().map(ToString::to_string).collect(),
            peers: peers.iter().map(PeerReport::from_info).collect(),
            relay: RelayReport::from_status(relay),
            nat: NatSection::default(),
            traversal: TraversalSection::default(),
            port_map: PortMapSection::default(),
            binding_lifetime: BindingLifetimeSection::default(),
            subsystems: serde_json::Map::new(),
            handshake: HandshakeSection::default(),
        }
    }

    /// Adds the failed-handshake state.
    pub fn with_handshakes(mut self, status: &relay_transport::HandshakeStatus) -> Self {
        self.handshake = HandshakeSection::new(status);
        self
    }

    /// Adds the subsystems' sections.
    pub fn with_subsystems(mut self, sections: serde_json::Map<String, serde_json::Value>) -> Self {
        self.subsystems = sections;
        self
    }

    /// Adds the port-mapping state.
    pub fn with_port_map(mut self, status: &relay_transport::PortMapStatus) -> Self {
        self.port_map = PortMapSection::new(status);
        self
    }

    /// Adds the traversal state: `nat`, `traversal` and each non-direct
    /// peer's `why`. `observed` is what peers report as our address.
    pub fn with_traversal(
        mut self,
        snapshot: &TraversalSnapshot,
        observed: &[(relay_transport::NodeId, SocketAddr)],
    ) -> Self {
        self.nat = NatSection::new(snapshot, observed);
        self.traversal = TraversalSection::new(snapshot);
        self.binding_lifetime = snapshot.binding_lifetime.clone();
        for peer in &mut self.peers {
            if peer.state != "connected" {
                // Why the last dial failed, from the transport.
                continue;
            }
            peer.why = if peer.path == "direct" {
                None
            } else {
                peer.node_id
                    .parse::<relay_transport::NodeId>()
                    .ok()
                    .and_then(|id| snapshot.why.get(&id).cloned())
            };
        }
        self
    }

    /// The human-readable form: a header and an aligned peer table.
    pub fn render_table(&self) -> String {
        let mut out = format!(
            "node    {}\nlisten  {}\nrelay   {}\nnat     {}\npunch   {}\nportmap {}\nbinding {}\nhandshk {}\n",
            self.node_id,
            if self.listen.is_empty() {
                "-".to_string()
            } else {
                self.listen.join(", ")
            },
            self.relay.line(),
            match &self.nat.reflex_addr {
                Some(addr) => format!("{} {addr}", self.nat.nat_type),
                None => self.nat.nat_type.clone(),
            },
            self.traversal.line(),
            self.port_map.line(),
            self.binding_lifetime.line(),
            self.handshake.line(),
        );
        if self.peers.is_empty() {
            out.push_str("peers   none\n");
            return out;
        }
        out.push('\n');
        let header = [
            "NODE_ID", "STATE", "PATH", "REMOTE", "RTT", "SENT", "RECV", "DIR", "SINCE", "WHY",
        ]
        .map(String::from)
        .to_vec();
        let mut rows = vec![header];
        for p in &self.peers {
            rows.push(vec![
                p.node_id.clone(),
                p.state.clone(),
                p.path.clone(),
                match (&p.remote_addr, &p.via) {
                    (Some(addr), _) => addr.clone(),
                    (None, Some(via)) => format!("via {}", short(via)),
                    (None, None) => "-".into(),
                },
                p.rtt_ms
                    .map(|ms| format!("{ms:.2}ms"))
                    .unwrap_or_else(|| "-".into()),
                human_bytes(p.bytes_sent),
                human_bytes(p.bytes_received),
                match (p.since.is_some(), p.outbound) {
                    (false, _) => "-",
                    (true, true) => "out",
                    (true, false) => "in",
                }
                .to_string(),
                p.since.clone().unwrap_or_else(|| "-".into()),
                p.why.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        let cols = rows.first().map_or(0, Vec::len);
        let widths: Vec<usize> = (0..cols)
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        for row in rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

impl PeerReport {
    /// Converts one transport snapshot.
    pub fn from_info(p: &PeerInfo) -> Self {
        let since_unix = p.since.map(timefmt::unix_secs);
        Self {
            node_id: p.node_id.to_string(),
            state: p.state.as_str().to_string(),
            path: p.path.as_str().to_string(),
            remote_addr: p.remote_addr.map(|a| a.to_string()),
            via: p.via.map(|v| v.to_string()),
            path_changes: p.path_changes,
            observed_addr: p.observed_addr.map(|a| a.to_string()),
            why: p.why.clone(),
            rtt_ms: p.rtt.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
            bytes_sent: p.bytes_sent,
            bytes_received: p.bytes_received,
            since: since_unix.map(timefmt::rfc3339),
            since_unix,
            outbound: p.outbound,
        }
    }
}

/// The first 10 characters of a NodeId, for the table.
fn short(id: &str) -> &str {
    id.get(..10).unwrap_or(id)
}

/// `1234` -> `1.2 KiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;
    use relay_transport::{PathKind, PeerState, RelayLimits, RelayStats};
    use std::time::{Duration, UNIX_EPOCH};

    fn sample() -> StatusReport {
        let peer = PeerInfo {
            node_id: SecretKey::from_bytes(&[4; 32]).node_id(),
            state: PeerState::Connected,
            path: PathKind::Direct,
            remote_addr: Some("127.0.0.1:7421".parse().unwrap()),
            via: None,
            path_changes: 0,
            observed_addr: Some("127.0.0.1:7420".parse().unwrap()),
            rtt: Some(Duration::from_micros(1234)),
            bytes_sent: 2048,
            bytes_received: 10,
            since: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            outbound: true,
            why: None,
        };
        let relayed = PeerInfo {
            node_id: SecretKey::from_bytes(&[6; 32]).node_id(),
            path: PathKind::Relayed,
            remote_addr: None,
            via: Some(SecretKey::from_bytes(&[4; 32]).node_id()),
            path_changes: 2,
            observed_addr: None,
            ..peer.clone()
        };
        let relay = RelayStatus {
            enabled: true,
            limits: RelayLimits::default(),
            stats: RelayStats {
                clients: 2,
                sessions: 1,
                bytes_forwarded: 4096,
                packets_dropped: 3,
                dropped_auth: 2,
                ..RelayStats::default()
            },
        };
        StatusReport::new(
            SecretKey::from_bytes(&[5; 32]).node_id().to_string(),
            &["127.0.0.1:7420".parse().unwrap()],
            vec![peer, relayed],
            &relay,
        )
    }

    #[test]
    fn json_shape() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["listen"][0], "127.0.0.1:7420");
        let p = v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["path"] == "direct")
            .unwrap();
        assert_eq!(p["state"], "connected");
        assert_eq!(p["path"], "direct");
        assert_eq!(p["remote_addr"], "127.0.0.1:7421");
        assert_eq!(p["rtt_ms"], 1.234);
        assert_eq!(p["bytes_sent"], 2048);
        assert_eq!(p["since"], "2023-11-14T22:13:20Z");
        assert_eq!(p["since_unix"], 1_700_000_000u64);
        assert_eq!(p["outbound"], true);
        assert_eq!(p["via"], serde_json::Value::Null);
        assert_eq!(p["path_changes"], 0);
        let r = v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["path"] == "relayed")
            .unwrap();
        assert_eq!(
            r["via"],
            SecretKey::from_bytes(&[4; 32])
                .node_id()
                .to_string()
                .as_str()
        );
        assert_eq!(r["path_changes"], 2);
        assert_eq!(r["since"], p["since"]);
        let relay = &v["relay"];
        assert_eq!(relay["enabled"], true);
        assert_eq!(relay["clients"], 2);
        assert_eq!(relay["sessions"], 1);
        assert_eq!(relay["bytes_forwarded"], 4096);
        assert_eq!(relay["packets_dropped"], 3);
        assert_eq!(relay["packets_dropped_auth"], 2);
        assert_eq!(relay["limits"]["rate_bytes_per_sec"], 8 << 20);
        assert!(relay["limits"]["queue_packets"].as_u64().unwrap() > 0);
    }

    #[test]
    fn table_is_aligned() {
        let table = sample().render_table();
        let lines: Vec<&str> = table.lines().collect();
        let header = lines.iter().find(|l| l.starts_with("NODE_ID")).unwrap();
        let row = lines.iter().find(|l| l.contains("direct")).unwrap();
        assert_eq!(header.find("STATE"), row.find("connected"));
        assert_eq!(header.find("RTT"), row.find("1.23ms"));
        assert!(row.contains("2.0 KiB"));
        let relayed = lines.iter().find(|l| l.contains("relayed")).unwrap();
        assert_eq!(header.find("REMOTE"), relayed.find("via "));
        assert!(table.contains("relay   on: 2 clients, 1 sessions"));
    }

    #[test]
    fn handshake_failures_show_in_why_and_their_section() {
        let peer = SecretKey::from_bytes(&[8; 32]).node_id();
        let info = PeerInfo {
            node_id: peer,
            state: PeerState::Connecting,
            path: PathKind::None,
            remote_addr: None,
            via: None,
            path_changes: 0,
            observed_addr: None,
            rtt: None,
            bytes_sent: 0,
            bytes_received: 0,
            since: None,
            outbound: false,
            why: Some("network-key-mismatch: the peer holds another mesh network key".into()),
        };
        let status = relay_transport::HandshakeStatus {
            failures: 3,
            last: Some(relay_transport::HandshakeFailure {
                kind: relay_transport::DialErrorKind::NetworkKeyMismatch,
                detail: "the peer holds another mesh network key".into(),
                peer: Some(peer),
                addr: Some("192.0.2.7:7420".parse().unwrap()),
                outbound: true,
                at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            }),
            retries_sent: 5,
            attempts_dropped: 1,
        };
        let relay = RelayStatus {
            enabled: false,
            limits: RelayLimits::default(),
            stats: RelayStats::default(),
        };
        let report = StatusReport::new("me".into(), &[], vec![info], &relay)
            .with_traversal(&TraversalSnapshot::default(), &[])
            .with_handshakes(&status);
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(
            v["peers"][0]["why"], "network-key-mismatch: the peer holds another mesh network key",
            "traversal does not wipe a connecting peer's why"
        );
        assert_eq!(v["handshake"]["failures"], 3);
        assert_eq!(
            v["handshake"]["last_error"],
            "network-key-mismatch: the peer holds another mesh network key"
        );
        assert_eq!(v["handshake"]["last_addr"], "192.0.2.7:7420");
        assert_eq!(v["handshake"]["last_peer"], peer.to_string());
        assert_eq!(v["handshake"]["last_direction"], "out");
        assert_eq!(v["handshake"]["retries_sent"], 5);
        assert!(report
            .render_table()
            .contains("handshk 3 failed, last network-key-mismatch"));
        let empty = serde_json::to_value(sample()).unwrap();
        assert_eq!(empty["handshake"]["failures"], 0);
        assert!(empty["handshake"]["last_error"].is_null());
    }

    #[test]
    fn traversal_sections_default_and_fill() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["nat"]["type"], "unknown");
        assert!(v["nat"]["reflex_addr"].is_null());
        for key in [
            "punches_attempted",
            "punches_succeeded",
            "relay_fallbacks",
            "direct_upgrades",
        ] {
            assert_eq!(v["traversal"][key], 0, "{key}");
        }
        assert!(v["traversal"]["last_error"].is_null());
        assert!(v["peers"][0]["why"].is_null());

        let direct = SecretKey::from_bytes(&[4; 32]).node_id();
        let relayed = SecretKey::from_bytes(&[6; 32]).node_id();
        let mut snap = TraversalSnapshot {
            nat_type: "symmetric".into(),
            punches_attempted: 3,
            punches_succeeded: 1,
            relay_fallbacks: 2,
            direct_upgrades: 1,
            last_error: Some("punch-failed: timeout".into()),
            ..TraversalSnapshot::default()
        };
        snap.why.insert(relayed, "symmetric x symmetric".into());
        snap.why.insert(direct, "stale".into());
        let observed = [(direct, "203.0.113.5:7420".parse().unwrap())];
        let report = sample().with_traversal(&snap, &observed);
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["nat"]["type"], "symmetric");
        assert_eq!(v["nat"]["reflex_addr"], "203.0.113.5:7420");
        assert_eq!(v["traversal"]["punches_attempted"], 3);
        assert_eq!(v["traversal"]["last_error"], "punch-failed: timeout");
        for p in v["peers"].as_array().unwrap() {
            if p["path"] == "direct" {
                assert!(p["why"].is_null(), "direct peers have no why");
            } else {
                assert_eq!(p["why"], "symmetric x symmetric");
            }
        }
        let table = report.render_table();
        assert!(table.contains("nat     symmetric 203.0.113.5:7420"));
        assert!(table.contains("punch   3 attempted, 1 succeeded, 2 relay fallbacks, 1 upgrades"));
        assert!(table.contains("symmetric x symmetric"));
        // Old JSON without the new sections still parses.
        let mut old = serde_json::to_value(sample()).unwrap();
        old.as_object_mut().unwrap().remove("nat");
        old.as_object_mut().unwrap().remove("traversal");
        let back: StatusReport = serde_json::from_value(old).unwrap();
        assert_eq!(back.nat.nat_type, "unknown");
    }

    #[test]
    fn port_map_section() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["port_map"]["state"], "off");
        assert!(v["port_map"]["protocol"].is_null());
        let status = relay_transport::PortMapStatus {
            enabled: true,
            state: "mapped",
            protocol: Some(relay_transport::portmap::Protocol::Pcp),
            external_addr: Some("198.51.101.10:40000".parse().unwrap()),
            expires_in: Some(Duration::from_secs(3600)),
            error: None,
        };
        let report = sample().with_port_map(&status);
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["port_map"]["protocol"], "pcp");
        assert_eq!(v["port_map"]["external_addr"], "198.51.101.10:40000");
        assert_eq!(v["port_map"]["expires_in_s"], 3600);
        assert!(report
            .render_table()
            .contains("portmap pcp 198.51.101.10:40000 (expires in 3600 s)"));
        let mut old = v;
        old.as_object_mut().unwrap().remove("port_map");
        let back: StatusReport = serde_json::from_value(old).unwrap();
        assert_eq!(back.port_map.state, "off");
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
