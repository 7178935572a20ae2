//! The first frame of the two calling streams, `rpc-call` (one streaming
//! call) and `rpc-calls` (many unary calls of one service): JSON naming the
//! service and the options, checked and built into [`CallOptions`] exactly
//! as `POST /v1/call` checks and builds them (docs/LOCAL_API.md). It knows
//! nothing of the frames that follow.

use std::collections::BTreeMap;

use relay_proto::frame_stream::MAX_FRAME;
use serde::Deserialize;

use super::error::ApiError;
use super::rpc::CallRequest;
use crate::subsystems::rpc_client::CallOptions;

/// Which calling stream a first frame opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calling {
    /// `rpc-call`: one call, whose method the first frame names.
    One,
    /// `rpc-calls`: many calls, each naming its method in its own frame.
    Many,
}

impl Calling {
    /// The `op` the first frame must carry.
    fn op(self) -> &'static str {
        match self {
            Calling::One => "call",
            Calling::Many => "calls",
        }
    }

    /// The bytes before a response body in the stream's frames: the frame
    /// type, and for `rpc-calls` the call id.
    fn response_head(self) -> usize {
        match self {
            Calling::One => 1,
            Calling::Many => 5,
        }
    }
}

/// The first frame of a calling stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallingOpen {
    /// `call` or `calls`, as the stream is.
    pub op: String,
    /// The service.
    pub service: String,
    /// The method: `rpc-call` needs it, `rpc-calls` takes it from each
    /// call frame instead.
    #[serde(default)]
    pub method: Option<String>,
    /// Only this node.
    #[serde(default)]
    pub node_id: Option<String>,
    /// The timeout of the call, or of each call (default 5000, at most
    /// 3 600 000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Whether the calls are idempotent: unary calls may then be retried
    /// after they may have run, and hedged; streaming calls never are, but
    /// the flag reaches the server.
    #[serde(default)]
    pub idempotent: bool,
    /// Metadata pairs every call carries.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// A token (`rnk1...`) for a service that requires one.
    #[serde(default)]
    pub token: Option<String>,
}

impl CallingOpen {
    /// Reads the first frame of a `calling` stream: the opening and the
    /// options its calls get, with responses bounded to fit one frame.
    pub fn parse(first: &[u8], calling: Calling) -> Result<(Self, CallOptions), ApiError> {
        let open = serde_json::from_slice::<CallingOpen>(first)
            .map_err(|e| ApiError::BadRequest(format!("bad first frame: {e}")))?;
        let options = open.options(calling)?;
        Ok((open, options))
    }

    fn options(&self, calling: Calling) -> Result<CallOptions, ApiError> {
        if self.op != calling.op() {
            return Err(ApiError::BadRequest(format!(
                "unknown op {:?} ({})",
                self.op,
                calling.op()
            )));
        }
        let method = match (calling, &self.method) {
            (Calling::One, Some(m)) => m.clone(),
            (Calling::One, None) => {
                return Err(ApiError::BadRequest(
                    "bad first frame: missing field `method`".into(),
                ))
            }
            (Calling::Many, None) => String::new(),
            (Calling::Many, Some(_)) => {
                return Err(ApiError::BadRequest(
                    "bad first frame: rpc-calls takes the method in each call frame".into(),
                ))
            }
        };
        let request = CallRequest {
            service: self.service.clone(),
            method,
            node_id: self.node_id.clone(),
            timeout_ms: self.timeout_ms,
            idempotent: self.idempotent,
            metadata: self.metadata.clone(),
            token: self.token.clone(),
            ..CallRequest::default()
        };
        let (_, mut options) = request.parse()?;
        options.max_response = options
            .max_response
            .min(MAX_FRAME - calling.response_head());
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(json: &str, calling: Calling) -> Result<(CallingOpen, CallOptions), String> {
        CallingOpen::parse(json.as_bytes(), calling).map_err(|e| e.kind().to_string())
    }

    #[test]
    fn a_call_opening_is_checked() {
        let (o, options) = open(
            r#"{"op":"call","service":"inv","method":"up","timeout_ms":50}"#,
            Calling::One,
        )
        .unwrap();
        assert_eq!(
            (o.service.as_str(), o.method.as_deref()),
            ("inv", Some("up"))
        );
        assert_eq!(options.timeout, std::time::Duration::from_millis(50));
        assert!(options.max_response < MAX_FRAME);
        let bad = [
            r#"{"op":"serve","service":"inv","method":"up"}"#,
            r#"{"op":"calls","service":"inv","method":"up"}"#,
            r#"{"op":"call","service":"inv","method":"up","body":"x"}"#,
            r#"{"op":"call","service":"inv"}"#,
            r#"{"op":"call","service":"inv","method":"up","timeout_ms":0}"#,
            r#"not json"#,
        ];
        for json in bad {
            assert_eq!(
                open(json, Calling::One).unwrap_err(),
                "bad-request",
                "{json}"
            );
        }
    }

    #[test]
    fn a_calls_opening_is_checked() {
        let (_, options) = open(
            r#"{"op":"calls","service":"inv","timeout_ms":50,"idempotent":true}"#,
            Calling::Many,
        )
        .unwrap();
        assert_eq!(options.timeout, std::time::Duration::from_millis(50));
        assert!(options.idempotent);
        assert!(options.max_response <= MAX_FRAME - 5);
        let bad = [
            r#"{"op":"call","service":"inv"}"#,
            r#"{"op":"calls","service":"inv","timeout_ms":0}"#,
            r#"{"op":"calls","service":"inv","method":"m"}"#,
            r#"{"op":"calls"}"#,
        ];
        for json in bad {
            assert_eq!(
                open(json, Calling::Many).unwrap_err(),
                "bad-request",
                "{json}"
            );
        }
    }
}
