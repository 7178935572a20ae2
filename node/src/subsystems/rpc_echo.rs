//! The built-in `echo` service (`relay-node run --serve-echo`), for tests
//! and benchmarks:
//!
//! - `echo`: answers the request message unchanged (unary);
//! - `stream`: answers the request message `count` times (metadata
//!   `count`, default 10, at most 100 000; server streaming);
//! - `wait`: waits until the call is cancelled (its deadline passes or its
//!   caller gives up), then answers `cancelled` (for deadline and
//!   cancellation tests).

use bytes::Bytes;
use relay_rpc::{Code, Status};

use super::rpc_server::ServerCall;
use super::rpc_service::{handler, Handler, ServeOptions};

/// The service's name.
pub const ECHO: &str = "echo";
/// Most items `stream` sends.
pub const MAX_STREAM_COUNT: u64 = 100_000;

/// How `echo` is served.
pub fn options() -> ServeOptions {
    ServeOptions {
        methods: vec!["echo".into(), "stream".into(), "wait".into()],
        version: env!("CARGO_PKG_VERSION").into(),
        ..ServeOptions::default()
    }
}

/// The `echo` handler.
pub fn echo() -> Handler {
    handler(|mut call: ServerCall| async move {
        let body = call.recv().await?.unwrap_or_default();
        match call.method() {
            "stream" => {
                let count = call
                    .metadata()
                    .iter()
                    .find(|(k, _)| k == "count")
                    .map_or(Ok(10), |(_, v)| v.parse::<u64>())
                    .map_err(|e| Status::new(Code::InvalidArgument, format!("count: {e}")))?;
                for _ in 0..count.min(MAX_STREAM_COUNT) {
                    call.send(&body).await?;
                }
                Ok(None)
            }
            "wait" => {
                call.cancelled().await;
                Ok(Some(Bytes::from_static(b"cancelled")))
            }
            _ => Ok(Some(body)),
        }
    })
}
