//! The first frame of the two calling streams, `rpc-call` (one streaming
//! call) and `rpc-calls` (many unary calls of one service): JSON naming the
//! service and the options, checked and built into [`CallOptions`] exactly
//! as `POST /v1/call` checks and builds them (docs/LOCAL_API.md). It knows
//! nothing of the frames that follow.

use relay_proto::frame_stream::MAX_FRAME;

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

/// Fields of `POST /v1/call` a calling stream's first frame may not carry:
/// the body goes in the frames that follow.
const NOT_IN_FIRST_FRAME: [&str; 3] = ["body", "body_hex", "stream"];

/// Reads the first frame of a `calling` stream: its `op`, and the fields
/// of a `POST /v1/call` body except the body itself (`body`, `body_hex`)
/// and `stream` (`rpc-calls` names no method: each call frame does).
/// Returns them as that route reads them (the method empty for
/// `rpc-calls`) and the options the stream's calls get, with responses
/// bounded to fit one frame.
pub fn parse_opening(
    first: &[u8],
    calling: Calling,
) -> Result<(CallRequest, CallOptions), ApiError> {
    let bad = |e: String| ApiError::BadRequest(format!("bad first frame: {e}"));
    let mut fields = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(first)
        .map_err(|e| bad(e.to_string()))?;
    let op = match fields.remove("op") {
        Some(serde_json::Value::String(op)) => op,
        Some(_) => return Err(bad("`op` is not a string".into())),
        None => return Err(bad("missing field `op`".into())),
    };
    if op != calling.op() {
        return Err(ApiError::BadRequest(format!(
            "unknown op {op:?} ({})",
            calling.op()
        )));
    }
    if let Some(field) = NOT_IN_FIRST_FRAME.iter().find(|f| fields.contains_key(**f)) {
        return Err(bad(format!("unknown field `{field}`")));
    }
    if calling == Calling::Many {
        if fields.contains_key("method") {
            return Err(bad("rpc-calls takes the method in each call frame".into()));
        }
        fields.insert("method".into(), serde_json::Value::String(String::new()));
    }
    let call = serde_json::from_value::<CallRequest>(serde_json::Value::Object(fields))
        .map_err(|e| bad(e.to_string()))?;
    let (_, mut options) = call.parse()?;
    options.max_response = options
        .max_response
        .min(MAX_FRAME - calling.response_head());
    Ok((call, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(json: &str, calling: Calling) -> Result<(CallRequest, CallOptions), String> {
        parse_opening(json.as_bytes(), calling).map_err(|e| e.kind().to_string())
    }

    #[test]
    fn a_call_opening_is_checked() {
        let (o, options) = open(
            r#"{"op":"call","service":"inv","method":"up","timeout_ms":50}"#,
            Calling::One,
        )
        .unwrap();
        assert_eq!((o.service.as_str(), o.method.as_str()), ("inv", "up"));
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
