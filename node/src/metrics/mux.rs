//! The protocol mux's series: what each protocol accepted and dropped, and
//! what was refused before a protocol was known
//! ([`relay_transport::mux::MuxStats`]).

use relay_transport::mux::MuxStats;

use super::text::{count, Kind, TextWriter};

/// Writes the `relay_node_mux_*` families.
pub(super) fn render(w: &mut TextWriter, stats: &MuxStats) {
    let accepted = "relay_node_mux_accepted_total";
    w.family(
        accepted,
        Kind::Counter,
        "Streams and datagrams handed to a protocol's queue, by protocol and kind.",
    );
    for p in &stats.protocols {
        w.sample(
            accepted,
            &labels(p.name, "stream"),
            count(p.streams_accepted),
        );
        w.sample(
            accepted,
            &labels(p.name, "datagram"),
            count(p.datagrams_accepted),
        );
    }
    let dropped = "relay_node_mux_dropped_total";
    w.family(
        dropped,
        Kind::Counter,
        "Streams (reset busy) and datagrams dropped because a protocol's queue was full, by protocol and kind.",
    );
    for p in &stats.protocols {
        w.sample(dropped, &labels(p.name, "stream"), count(p.streams_dropped));
        w.sample(
            dropped,
            &labels(p.name, "datagram"),
            count(p.datagrams_dropped),
        );
    }
    let refused = "relay_node_mux_refused_total";
    w.family(
        refused,
        Kind::Counter,
        "Streams and datagrams refused before a protocol took them, by reason.",
    );
    for (reason, value) in [
        ("unknown-protocol", stats.unknown_protocol),
        ("bad-header", stats.bad_header),
        ("id-timeout", stats.id_timeout),
        ("too-many-pending", stats.too_many_pending),
    ] {
        w.sample(refused, &[("reason", reason)], count(value));
    }
    w.single(
        "relay_node_mux_pending_streams",
        Kind::Gauge,
        "Incoming streams awaiting their protocol id.",
        count(u64::try_from(stats.pending).unwrap_or(u64::MAX)),
    );
}

fn labels<'a>(protocol: &'a str, kind: &'a str) -> [(&'a str, &'a str); 2] {
    [("protocol", protocol), ("kind", kind)]
}
