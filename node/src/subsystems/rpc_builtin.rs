//! The built-in verbs every service answers, like NATS micro's `$SRV`
//! verbs: `ping` (an empty JSON object: the service is alive here),
//! `info` (name, node, version, methods) and `stats` (calls, errors,
//! in flight, rejected, latency p50/p99 in µs). They bypass the service's
//! concurrency limit and queue.

use relay_proto::NodeId;
use serde_json::json;

use super::rpc_service::ServiceEntry;

/// The answer to built-in `method` of `entry` on `node`, if it is one.
pub fn builtin(node: NodeId, entry: &ServiceEntry, method: &str) -> Option<Vec<u8>> {
    let value = match method {
        "ping" => json!({ "service": entry.name, "node": node.to_string() }),
        "info" => json!({
            "service": entry.name,
            "node": node.to_string(),
            "version": entry.options.version,
            "methods": entry.options.methods,
            "token_required": entry.options.token_required,
            "concurrency": entry.options.concurrency,
            "queue": entry.options.queue,
        }),
        "stats" => {
            let mut v = entry.stats_json();
            v["service"] = json!(entry.name);
            v["node"] = json!(node.to_string());
            v
        }
        _ => return None,
    };
    serde_json::to_vec(&value).ok()
}
