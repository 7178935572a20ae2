//! The control socket: how CLI verbs talk to a running node.
//!
//! `DIR/control.sock` is a Unix socket (mode 0600, inside the 0700 data dir).
//! Each request and each response is one line of JSON. A request names its
//! operation in `op`:
//!
//! ```json
//! {"op":"status"}
//! {"op":"ping","node_id":"<52 chars>","timeout_ms":5000}
//! {"op":"netcheck"}
//! ```
//!
//! and every response is either `{"ok":true,"result":...}` or
//! `{"ok":false,"error":{"kind":"...","detail":"..."}}`. Lines longer than
//! [`MAX_LINE`] are refused and the connection closed; malformed JSON gets an
//! error response (`bad-request`) and the connection stays usable.

pub mod client;
pub mod codec;
pub mod server;

use relay_proto::NodeId;
use serde::{Deserialize, Serialize};

/// Longest request or response line, without the newline.
pub const MAX_LINE: usize = 64 * 1024;

/// A request to the running node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The node's status ([`crate::status::StatusReport`]).
    Status,
    /// One ping round trip to a peer ([`crate::protocols::ping::PongReport`]).
    Ping {
        /// The peer.
        #[serde(with = "crate::bootstrap::node_id_text")]
        node_id: NodeId,
        /// How long to wait for the pong (default 5 s, capped at 60 s).
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// The node's view of the network ([`crate::netcheck::NetcheckReport`]).
    Netcheck,
}

/// An error carried in a response: a stable kind and a human detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable kind.
    pub kind: String,
    /// Human detail.
    pub detail: String,
}

/// A response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// The result on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The error on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    /// A success carrying `result`.
    pub fn ok(result: &impl Serialize) -> Self {
        match serde_json::to_value(result) {
            Ok(value) => Self {
                ok: true,
                result: Some(value),
                error: None,
            },
            Err(e) => Self::error("internal", e.to_string()),
        }
    }

    /// A failure.
    pub fn error(kind: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            ok: false,
            result: None,
            error: Some(ErrorBody {
                kind: kind.into(),
                detail: detail.into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    #[test]
    fn request_wire_form() {
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"op":"status"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"netcheck"}"#).unwrap(),
            Request::Netcheck
        );
        let id = SecretKey::generate().node_id();
        let text = format!(r#"{{"op":"ping","node_id":"{id}"}}"#);
        assert_eq!(
            serde_json::from_str::<Request>(&text).unwrap(),
            Request::Ping {
                node_id: id,
                timeout_ms: None
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"ping","node_id":"bad"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"nope"}"#).is_err());
    }

    #[test]
    fn response_wire_form() {
        let text = serde_json::to_string(&Response::error("timeout", "slow")).unwrap();
        assert_eq!(
            text,
            r#"{"ok":false,"error":{"kind":"timeout","detail":"slow"}}"#
        );
        let ok = Response::ok(&serde_json::json!({"a":1}));
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"ok":true,"result":{"a":1}}"#
        );
    }
}
