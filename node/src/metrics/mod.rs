//! Prometheus metrics (`GET /metrics` on the HTTP endpoint).
//!
//! Every value comes from one [`MetricsInput`]: the same [`StatusReport`]
//! `status --json` prints (peers, paths, relay server, NAT, punches), the
//! transport's Noise, path-socket and control-channel counters
//! ([`TransportCounters`]) and
//! the node's own counters ([`collector::NodeCounters`]: path changes and
//! bytes per path type) and the protocol mux's counters. [`render`] turns
//! it into the text format.
//!
//! All names start with `relay_node_`; per-path series carry a `path` label
//! (`direct` | `relayed`).

pub mod collector;
mod mux;
pub mod text;

use relay_transport::mux::MuxStats;
use relay_transport::Transport;

use crate::status::StatusReport;
use crate::traversal_view::NAT_TYPES;
use collector::NodeCounters;
use text::{count, Kind, TextWriter};

/// Counters read from the transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportCounters {
    /// Completed Noise handshakes.
    pub handshakes: u64,
    /// Failed Noise handshakes.
    pub handshake_failures: u64,
    /// Inbound attempts answered with a QUIC Retry.
    pub handshake_retries: u64,
    /// Inbound attempts dropped unanswered (over the handshake budget).
    pub handshake_attempts_dropped: u64,
    /// 1-RTT key updates.
    pub key_updates: u64,
    /// Transmits dropped for want of a usable path.
    pub unroutable: u64,
    /// Own frames (relay, traversal) handed up.
    pub frames_delivered: u64,
    /// Own frames dropped (channel full or unclaimed).
    pub frames_dropped: u64,
    /// Mapped peer addresses.
    pub mapped_entries: u64,
    /// QUIC datagrams sent on relayed paths.
    pub relayed_sent: u64,
    /// Relayed QUIC datagrams received.
    pub relayed_received: u64,
    /// Relayed datagrams dropped.
    pub relayed_dropped: u64,
    /// Relay-recv frames that failed authentication.
    pub relayed_auth_failed: u64,
    /// Application datagrams dropped because nobody read them in time.
    pub app_datagrams_dropped: u64,
    /// Control messages sent reliably.
    pub control_sent: u64,
    /// Control messages retransmitted.
    pub control_retransmits: u64,
}

impl TransportCounters {
    /// Reads the transport's counters now.
    pub fn read(transport: &Transport) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let noise = transport.noise_stats();
        let socket = transport.socket_stats();
        let channel = transport.channel_stats();
        Self {
            handshakes: noise.handshakes.load(Relaxed),
            handshake_failures: noise.handshake_failures.load(Relaxed),
            handshake_retries: noise.retries_sent.load(Relaxed),
            handshake_attempts_dropped: noise.attempts_dropped.load(Relaxed),
            key_updates: noise.key_updates.load(Relaxed),
            unroutable: socket.unroutable,
            frames_delivered: socket.frames_delivered,
            frames_dropped: socket.frames_dropped,
            mapped_entries: u64::try_from(socket.mapped_entries).unwrap_or(u64::MAX),
            relayed_sent: socket.relayed_sent,
            relayed_received: socket.relayed_received,
            relayed_dropped: socket.relayed_dropped,
            relayed_auth_failed: socket.relayed_auth_failed,
            app_datagrams_dropped: channel.app_datagrams_dropped,
            control_sent: channel.control_sent,
            control_retransmits: channel.control_retransmits,
        }
    }
}

/// Everything one exposition is built from.
#[derive(Debug, Clone, Copy)]
pub struct MetricsInput<'a> {
    /// The status report (as `status --json`).
    pub status: &'a StatusReport,
    /// Transport counters.
    pub transport: TransportCounters,
    /// The node's own counters.
    pub node: NodeCounters,
    /// The protocol mux's counters.
    pub mux: &'a MuxStats,
}

const PATHS: [&str; 2] = ["direct", "relayed"];
const STATES: [&str; 3] = ["connected", "connecting", "disconnected"];

/// The exposition text.
pub fn render(input: &MetricsInput<'_>) -> String {
    let mut w = TextWriter::new();
    peers(&mut w, input.status);
    paths(&mut w, input);
    traversal(&mut w, input.status);
    relay(&mut w, input.status);
    transport(&mut w, &input.transport);
    w.single(
        "relay_node_log_lines_dropped_total",
        Kind::Counter,
        "Log lines dropped because stderr could not take them (closed, broken pipe).",
        count(crate::logging::dropped_lines()),
    );
    mux::render(&mut w, input.mux);
    w.finish()
}

fn peers(w: &mut TextWriter, status: &StatusReport) {
    w.family(
        "relay_node_info",
        Kind::Gauge,
        "Always 1; labels name this node and its version.",
    );
    w.sample(
        "relay_node_info",
        &[
            ("node_id", &status.node_id),
            ("version", env!("CARGO_PKG_VERSION")),
        ],
        1.0,
    );
    w.family("relay_node_peers", Kind::Gauge, "Known peers by state.");
    for state in STATES {
        let n = status.peers.iter().filter(|p| p.state == state).count();
        w.sample("relay_node_peers", &[("state", state)], n as f64);
    }
    w.family(
        "relay_node_peer_paths",
        Kind::Gauge,
        "Connected peers by the path type they use now.",
    );
    for path in PATHS {
        let n = status
            .peers
            .iter()
            .filter(|p| p.state == "connected" && p.path == path)
            .count();
        w.sample("relay_node_peer_paths", &[("path", path)], n as f64);
    }
    w.family(
        "relay_node_peer_rtt_seconds",
        Kind::Gauge,
        "Smoothed round-trip time of each connected peer, on its current path.",
    );
    for p in &status.peers {
        if let (Some(ms), true) = (p.rtt_ms, PATHS.contains(&p.path.as_str())) {
            w.sample(
                "relay_node_peer_rtt_seconds",
                &[("peer", &p.node_id), ("path", &p.path)],
                ms / 1e3,
            );
        }
    }
}

fn paths(w: &mut TextWriter, input: &MetricsInput<'_>) {
    let node = &input.node;
    w.single(
        "relay_node_path_changes_total",
        Kind::Counter,
        "Path changes under live connections (no new handshake).",
        count(node.path_changes),
    );
    w.single(
        "relay_node_connections_total",
        Kind::Counter,
        "Connections established.",
        count(node.connections),
    );
    w.single(
        "relay_node_disconnections_total",
        Kind::Counter,
        "Connections lost or closed.",
        count(node.disconnections),
    );
    for (name, help, bytes) in [
        (
            "relay_node_peer_bytes_sent_total",
            "UDP payload bytes sent to peers, by path type (credited to the path in use when sampled, every second).",
            node.bytes_sent,
        ),
        (
            "relay_node_peer_bytes_received_total",
            "UDP payload bytes received from peers, by path type (credited to the path in use when sampled, every second).",
            node.bytes_received,
        ),
    ] {
        w.family(name, Kind::Counter, help);
        w.sample(name, &[("path", "direct")], count(bytes.direct));
        w.sample(name, &[("path", "relayed")], count(bytes.relayed));
    }
}

fn traversal(w: &mut TextWriter, status: &StatusReport) {
    w.family(
        "relay_node_nat_type",
        Kind::Gauge,
        "1 for this node's NAT type, 0 for the others.",
    );
    for t in NAT_TYPES {
        let on = status.nat.nat_type == t;
        w.sample(
            "relay_node_nat_type",
            &[("type", t)],
            f64::from(u8::from(on)),
        );
    }
    let t = &status.traversal;
    for (name, help, value) in [
        (
            "relay_node_punches_attempted_total",
            "Hole punch sessions started.",
            t.punches_attempted,
        ),
        (
            "relay_node_punches_succeeded_total",
            "Hole punch sessions that found a direct path.",
            t.punches_succeeded,
        ),
        (
            "relay_node_relay_fallbacks_total",
            "Times a peer stayed on or went back to a relayed path.",
            t.relay_fallbacks,
        ),
        (
            "relay_node_direct_upgrades_total",
            "Times a peer got a new direct path.",
            t.direct_upgrades,
        ),
        (
            "relay_node_address_changes_total",
            "Times this node's own address changed.",
            t.address_changes,
        ),
        (
            "relay_node_birthday_runs_total",
            "Birthday-probing runs started (cone x symmetric pairs).",
            t.birthday.runs,
        ),
        (
            "relay_node_birthday_successes_total",
            "Birthday-probing runs that ended on a direct path.",
            t.birthday.successes,
        ),
        (
            "relay_node_birthday_packets_total",
            "Birthday-probing packets sent (ports opened and random probes).",
            t.birthday.packets,
        ),
        (
            "relay_node_birthday_escalations_total",
            "Birthday-probing runs started because a plain punch failed.",
            t.birthday.escalations,
        ),
        (
            "relay_node_mapping_checks_total",
            "Mapping checks finished as the asking side.",
            t.mapping.checks,
        ),
        (
            "relay_node_mapping_offers_total",
            "Mapping checks served from the alternate port, as an observer.",
            t.mapping.offers,
        ),
        (
            "relay_node_mapping_refused_total",
            "Mapping checks refused as an observer.",
            t.mapping.refused,
        ),
    ] {
        w.single(name, Kind::Counter, help, count(value));
    }
    binding_lifetime(w, status);
}

/// The measured NAT binding lifetime (its lower bound; absent until
/// measured) and the keepalive interval in use.
fn binding_lifetime(w: &mut TextWriter, status: &StatusReport) {
    let b = &status.binding_lifetime;
    if let Some(lower) = b.lower_s {
        w.single(
            "relay_node_binding_lifetime_seconds",
            Kind::Gauge,
            "An idle NAT binding of this node lived at least this long (measured).",
            lower,
        );
    }
    if let Some(k) = b.keepalive_s {
        w.single(
            "relay_node_keepalive_interval_seconds",
            Kind::Gauge,
            "Keepalive interval on direct paths, from the binding lifetime.",
            k,
        );
    }
}

fn relay(w: &mut TextWriter, status: &StatusReport) {
    let r = &status.relay;
    w.single(
        "relay_node_relay_enabled",
        Kind::Gauge,
        "1 when this node relays for mesh members (run --relay).",
        f64::from(u8::from(r.enabled)),
    );
    w.single(
        "relay_node_relay_clients",
        Kind::Gauge,
        "Clients registered with this node's relay.",
        r.clients as f64,
    );
    w.single(
        "relay_node_relay_sessions",
        Kind::Gauge,
        "Live relayed sessions (client pairs).",
        r.sessions as f64,
    );
    w.single(
        "relay_node_relay_bytes_forwarded_total",
        Kind::Counter,
        "Inner packet bytes this relay forwarded.",
        count(r.bytes_forwarded),
    );
    w.single(
        "relay_node_relay_packets_forwarded_total",
        Kind::Counter,
        "Frames this relay forwarded.",
        count(r.packets_forwarded),
    );
    w.single(
        "relay_node_relay_packets_dropped_total",
        Kind::Counter,
        "Frames this relay dropped (limits, unknown source or destination, malformed).",
        count(r.packets_dropped),
    );
    w.single(
        "relay_node_relay_packets_unauthenticated_total",
        Kind::Counter,
        "Frames this relay dropped because their per-client MAC did not verify or was replayed.",
        count(r.packets_dropped_auth),
    );
}

fn transport(w: &mut TextWriter, t: &TransportCounters) {
    for (name, help, value) in [
        (
            "relay_node_handshakes_total",
            "Completed Noise handshakes.",
            t.handshakes,
        ),
        (
            "relay_node_handshake_failures_total",
            "Failed Noise handshakes (key mismatches, either side).",
            t.handshake_failures,
        ),
        (
            "relay_node_handshake_retries_total",
            "Inbound handshake attempts answered with a QUIC Retry (address validation).",
            t.handshake_retries,
        ),
        (
            "relay_node_handshake_attempts_dropped_total",
            "Inbound handshake attempts dropped over the pending-handshake budget.",
            t.handshake_attempts_dropped,
        ),
        (
            "relay_node_key_updates_total",
            "QUIC 1-RTT key updates.",
            t.key_updates,
        ),
        (
            "relay_node_socket_unroutable_total",
            "Packets dropped because no usable path stood behind a peer address.",
            t.unroutable,
        ),
        (
            "relay_node_socket_frames_delivered_total",
            "Relay and traversal frames handed up by the path socket.",
            t.frames_delivered,
        ),
        (
            "relay_node_socket_frames_dropped_total",
            "Relay and traversal frames dropped by the path socket (queue full or unclaimed).",
            t.frames_dropped,
        ),
    ] {
        w.single(name, Kind::Counter, help, count(value));
    }
    w.single(
        "relay_node_socket_mapped_entries",
        Kind::Gauge,
        "Peer addresses mapped by the path socket.",
        count(t.mapped_entries),
    );
    for (name, help, value) in [
        (
            "relay_node_socket_relayed_packets_sent_total",
            "QUIC packets sent on relayed paths.",
            t.relayed_sent,
        ),
        (
            "relay_node_socket_relayed_packets_received_total",
            "QUIC packets received on relayed paths.",
            t.relayed_received,
        ),
        (
            "relay_node_socket_relayed_packets_dropped_total",
            "Relayed packets dropped on receipt or send.",
            t.relayed_dropped,
        ),
        (
            "relay_node_socket_relayed_packets_unauthenticated_total",
            "Relay-recv frames dropped because the relay's MAC did not verify or was replayed.",
            t.relayed_auth_failed,
        ),
        (
            "relay_node_app_datagrams_dropped_total",
            "Application datagrams received and dropped because the accept queue was full.",
            t.app_datagrams_dropped,
        ),
        (
            "relay_node_control_messages_sent_total",
            "Transport control messages sent on the reliable control channel.",
            t.control_sent,
        ),
        (
            "relay_node_control_retransmits_total",
            "Transport control messages sent again after a retransmission timeout.",
            t.control_retransmits,
        ),
    ] {
        w.single(name, Kind::Counter, help, count(value));
    }
}

#[cfg(test)]
mod tests;
