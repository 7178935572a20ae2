//! The JSON form of ledger entries and members, as the local API and the
//! CLI's `--json` print them (docs/LOCAL_API.md).

use relay_proto::ledger::body::{PathOutcome, SessionPhase};
use relay_proto::ledger::Body;
use serde_json::{json, Value};

use super::request::hex_encode;
use crate::ledger::{Member, StoredEntry};
use crate::timefmt::rfc3339;

/// A body's fields.
pub fn body_json(body: &Body) -> Value {
    match body {
        Body::NodeAnnouncement(a) => json!({
            "addrs": a.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "nat": a.nat.as_str(),
            "relay": a.relay,
            "version": a.version,
        }),
        Body::RelaySession(s) => json!({
            "phase": match s.phase {
                SessionPhase::Opened => "opened",
                SessionPhase::Closed => "closed",
            },
            "a": s.a.to_string(),
            "b": s.b.to_string(),
            "bytes": s.bytes,
            "packets": s.packets,
            "duration_ms": s.duration_ms,
        }),
        Body::TraversalOutcome(t) => json!({
            "peer": t.peer.to_string(),
            "outcome": match t.outcome {
                PathOutcome::Direct => "direct",
                PathOutcome::Relayed => "relayed",
            },
            "time_to_direct_ms": t.time_to_direct_ms,
            "why": t.why,
            "birthday_packets": t.birthday_packets,
        }),
        Body::ChannelRegistration(r) => json!({
            "name": r.name,
            "withdrawn": r.withdrawn,
            "spec": hex_encode(&r.spec),
        }),
        Body::ServiceRegistration(r) => json!({
            "name": r.name,
            "withdrawn": r.withdrawn,
            "spec": hex_encode(&r.spec),
        }),
        Body::TokenRevocation(r) => json!({
            "token_id": hex_encode(&r.token_id),
            "expires_unix_ms": r.expires_unix_ms,
            "reason": r.reason,
        }),
    }
}

/// One entry: `cursor`, `origin`, `seq`, `kind`, `ts` (RFC 3339, UTC),
/// `ts_unix_ms`, `body` (its fields; `null` if it does not decode) and
/// `hash` (hex).
pub fn entry_json(s: &StoredEntry) -> Value {
    let e = &s.entry;
    json!({
        "cursor": s.cursor.to_string(),
        "origin": e.origin.to_string(),
        "seq": e.seq,
        "kind": e.kind.as_str(),
        "ts": rfc3339(e.ts_unix_ms / 1000),
        "ts_unix_ms": e.ts_unix_ms,
        "body": e.body().ok().map(|b| body_json(&b)),
        "hash": e.hash().to_hex(),
    })
}

/// One member: `node_id`, `addrs`, `nat`, `relay`, `version`, `last_seen`
/// (RFC 3339, its announcement's time), `last_seen_unix_ms`, `connected`.
pub fn member_json(m: &Member, connected: bool) -> Value {
    json!({
        "node_id": m.node_id.to_string(),
        "addrs": m.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "nat": m.nat.as_str(),
        "relay": m.relay,
        "version": m.version,
        "last_seen": rfc3339(m.last_seen_unix_ms / 1000),
        "last_seen_unix_ms": m.last_seen_unix_ms,
        "connected": connected,
    })
}
