//! Tests of the metrics exposition built from a status snapshot.

use std::collections::HashSet;
use std::time::{Duration, UNIX_EPOCH};

use relay_transport::{PathKind, PeerInfo, PeerState, RelayLimits, RelayStats, RelayStatus};

use super::collector::{NodeCounters, PathBytes};
use super::*;
use crate::traversal_view::TraversalSnapshot;
use relay_transport::mux::ProtocolStats;
use relay_transport::{ProtocolId, SecretKey};

fn status() -> StatusReport {
    let direct = PeerInfo {
        node_id: SecretKey::from_bytes(&[1; 32]).node_id(),
        state: PeerState::Connected,
        path: PathKind::Direct,
        remote_addr: Some("127.0.0.1:7421".parse().unwrap()),
        via: None,
        path_changes: 1,
        observed_addr: None,
        rtt: Some(Duration::from_micros(1500)),
        bytes_sent: 10,
        bytes_received: 20,
        since: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        outbound: true,
        why: None,
    };
    let relayed = PeerInfo {
        node_id: SecretKey::from_bytes(&[2; 32]).node_id(),
        path: PathKind::Relayed,
        remote_addr: None,
        via: Some(SecretKey::from_bytes(&[1; 32]).node_id()),
        rtt: Some(Duration::from_millis(40)),
        ..direct.clone()
    };
    let gone = PeerInfo {
        node_id: SecretKey::from_bytes(&[3; 32]).node_id(),
        state: PeerState::Connecting,
        path: PathKind::None,
        remote_addr: None,
        rtt: None,
        since: None,
        ..direct.clone()
    };
    let relay = RelayStatus {
        enabled: true,
        limits: RelayLimits::default(),
        stats: RelayStats {
            clients: 2,
            sessions: 1,
            bytes_forwarded: 9000,
            packets_forwarded: 10,
            packets_dropped: 3,
            ..RelayStats::default()
        },
    };
    let snapshot = TraversalSnapshot {
        nat_type: "cone".into(),
        punches_attempted: 5,
        punches_succeeded: 4,
        relay_fallbacks: 1,
        direct_upgrades: 4,
        birthday_escalations: 6,
        mapping_checks: 2,
        mapping_offers: 8,
        mapping_refused: 1,
        binding_lifetime: crate::lifetime_view::BindingLifetimeSection {
            state: "measured".into(),
            lower_s: Some(4.0),
            upper_s: Some(8.0),
            keepalive_s: Some(2.0),
            ..Default::default()
        },
        ..TraversalSnapshot::default()
    };
    StatusReport::new(
        SecretKey::from_bytes(&[9; 32]).node_id().to_string(),
        &["127.0.0.1:7420".parse().unwrap()],
        vec![direct, relayed, gone],
        &relay,
    )
    .with_traversal(&snapshot, &[])
}

fn exposition() -> String {
    let status = status();
    render(&MetricsInput {
        status: &status,
        transport: TransportCounters {
            handshakes: 7,
            handshake_failures: 2,
            handshake_retries: 4,
            relayed_sent: 11,
            app_datagrams_dropped: 12,
            control_retransmits: 13,
            ..TransportCounters::default()
        },
        node: NodeCounters {
            path_changes: 6,
            bytes_sent: PathBytes {
                direct: 100,
                relayed: 200,
            },
            bytes_received: PathBytes {
                direct: 300,
                relayed: 400,
            },
            ..NodeCounters::default()
        },
        mux: &MuxStats {
            protocols: vec![ProtocolStats {
                id: ProtocolId::new(1),
                name: "ping",
                streams_accepted: 9,
                streams_dropped: 3,
                datagrams_accepted: 0,
                datagrams_dropped: 0,
            }],
            unknown_protocol: 4,
            pending: 2,
            ..MuxStats::default()
        },
    })
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[test]
fn every_sample_belongs_to_a_declared_family() {
    let text = exposition();
    let mut helped = HashSet::new();
    let mut typed = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name.to_string()), "duplicate HELP {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            assert!(helped.contains(name), "TYPE before HELP for {name}");
            assert!(matches!(parts.next(), Some("counter" | "gauge")));
            assert!(typed.insert(name.to_string()), "duplicate TYPE {name}");
            assert!(
                name.starts_with("relay_node_") && valid_name(name),
                "{name}"
            );
            if name.ends_with("_total") {
                assert!(line.ends_with(" counter"), "{line}");
            }
        } else {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(typed.contains(name), "sample before its TYPE: {line}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        }
    }
    assert!(text.ends_with('\n'));
}

#[test]
fn values_come_from_the_snapshot() {
    let text = exposition();
    let has = |line: &str| {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        )
    };
    has(r#"relay_node_peers{state="connected"} 2"#);
    has(r#"relay_node_peers{state="connecting"} 1"#);
    has(r#"relay_node_peers{state="disconnected"} 0"#);
    has(r#"relay_node_peer_paths{path="direct"} 1"#);
    has(r#"relay_node_peer_paths{path="relayed"} 1"#);
    let direct = SecretKey::from_bytes(&[1; 32]).node_id();
    let relayed = SecretKey::from_bytes(&[2; 32]).node_id();
    has(&format!(
        r#"relay_node_peer_rtt_seconds{{peer="{direct}",path="direct"}} 0.0015"#
    ));
    has(&format!(
        r#"relay_node_peer_rtt_seconds{{peer="{relayed}",path="relayed"}} 0.04"#
    ));
    assert_eq!(text.matches("relay_node_peer_rtt_seconds{").count(), 2);
    has("relay_node_path_changes_total 6");
    has(r#"relay_node_mux_accepted_total{protocol="ping",kind="stream"} 9"#);
    has(r#"relay_node_mux_dropped_total{protocol="ping",kind="stream"} 3"#);
    has(r#"relay_node_mux_dropped_total{protocol="ping",kind="datagram"} 0"#);
    has(r#"relay_node_mux_refused_total{reason="unknown-protocol"} 4"#);
    has(r#"relay_node_mux_refused_total{reason="id-timeout"} 0"#);
    has("relay_node_mux_pending_streams 2");
    has(r#"relay_node_peer_bytes_sent_total{path="direct"} 100"#);
    has(r#"relay_node_peer_bytes_sent_total{path="relayed"} 200"#);
    has(r#"relay_node_peer_bytes_received_total{path="relayed"} 400"#);
    has(r#"relay_node_nat_type{type="cone"} 1"#);
    has(r#"relay_node_nat_type{type="unknown"} 0"#);
    has("relay_node_punches_attempted_total 5");
    has("relay_node_punches_succeeded_total 4");
    has("relay_node_relay_fallbacks_total 1");
    has("relay_node_direct_upgrades_total 4");
    has("relay_node_birthday_packets_total 0");
    has("relay_node_birthday_escalations_total 6");
    has("relay_node_mapping_checks_total 2");
    has("relay_node_mapping_offers_total 8");
    has("relay_node_mapping_refused_total 1");
    has("relay_node_binding_lifetime_seconds 4");
    has("relay_node_keepalive_interval_seconds 2");
    has("relay_node_relay_enabled 1");
    has("relay_node_relay_clients 2");
    has("relay_node_relay_sessions 1");
    has("relay_node_relay_bytes_forwarded_total 9000");
    has("relay_node_relay_packets_dropped_total 3");
    has("relay_node_relay_packets_unauthenticated_total 0");
    has("relay_node_socket_relayed_packets_unauthenticated_total 0");
    has("relay_node_handshakes_total 7");
    has("relay_node_handshake_failures_total 2");
    has("relay_node_handshake_retries_total 4");
    has("relay_node_handshake_attempts_dropped_total 0");
    has("relay_node_socket_relayed_packets_sent_total 11");
    has("relay_node_app_datagrams_dropped_total 12");
    has("relay_node_control_retransmits_total 13");
}
