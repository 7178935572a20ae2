//! Response bodies and builders: JSON, errors, and NDJSON streams fed from
//! a channel. Shared by every route (and usable by other hyper servers of
//! the node).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;

use super::error::ApiError;

/// `Content-Type` of JSON bodies.
pub const JSON: &str = "application/json";
/// `Content-Type` of NDJSON streams.
pub const NDJSON: &str = "application/x-ndjson";

/// Any response body.
pub type ApiBody = BoxBody<Bytes, Infallible>;
/// A response.
pub type ApiResponse = Response<ApiBody>;

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> ApiBody {
    Full::new(bytes.into()).boxed()
}

/// An empty body.
pub fn empty() -> ApiBody {
    full(Bytes::new())
}

/// `status` with `value` as JSON (one line, newline-terminated).
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> ApiResponse {
    match serde_json::to_vec(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            with_type(status, JSON, full(bytes))
        }
        Err(e) => error(&ApiError::Internal(format!("cannot encode JSON: {e}"))),
    }
}

/// `200 OK` with `value` as JSON.
pub fn ok<T: Serialize + ?Sized>(value: &T) -> ApiResponse {
    json(StatusCode::OK, value)
}

/// The error's status and JSON body (with `Allow` for 405 and
/// `Connection: close` when the request may not have been read fully).
pub fn error(e: &ApiError) -> ApiResponse {
    let mut bytes = serde_json::to_vec(&e.body()).unwrap_or_default();
    bytes.push(b'\n');
    let mut response = with_type(e.status(), JSON, full(bytes));
    if let ApiError::MethodNotAllowed { allow, .. } = e {
        if let Ok(value) = HeaderValue::from_str(allow) {
            response.headers_mut().insert(ALLOW, value);
        }
    }
    if e.closes_connection() {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A response with a status, a content type and a body.
pub fn with_type(status: StatusCode, content_type: &'static str, body: ApiBody) -> ApiResponse {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A streamed body: each chunk sent on the channel is one body frame; the
/// body ends when every sender is dropped. Whatever `guard` holds (a stream
/// permit, a busy mark) is released when the body is dropped, which is when
/// the client goes away or the stream ends.
#[derive(Debug)]
pub struct ChannelBody<G> {
    rx: mpsc::Receiver<Bytes>,
    _guard: G,
}

impl<G> ChannelBody<G> {
    /// A body fed by `rx`, holding `guard` while alive.
    pub fn new(rx: mpsc::Receiver<Bytes>, guard: G) -> Self {
        Self { rx, _guard: guard }
    }
}

impl<G: Unpin> Body for ChannelBody<G> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// A body that holds `guard` until it is dropped.
#[derive(Debug)]
pub struct Guarded<G> {
    inner: ApiBody,
    _guard: G,
}

impl<G> Guarded<G> {
    /// Wraps `inner`.
    pub fn new(inner: ApiBody, guard: G) -> Self {
        Self {
            inner,
            _guard: guard,
        }
    }
}

impl<G: Unpin> Body for Guarded<G> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn error_responses_carry_kind_allow_and_close() {
        let e = ApiError::MethodNotAllowed {
            method: "POST".into(),
            path: "/v1/status".into(),
            allow: "GET".into(),
        };
        let response = error(&e);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "GET");
        assert_eq!(response.headers()[CONTENT_TYPE], JSON);
        assert!(response.headers().get(CONNECTION).is_none());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["kind"], "method-not-allowed");

        let response = error(&ApiError::BodyTooLarge(10));
        assert_eq!(response.headers()[CONNECTION], "close");
    }

    #[tokio::test]
    async fn channel_body_streams_until_senders_drop() {
        let (tx, rx) = mpsc::channel(4);
        let body = ChannelBody::new(rx, ());
        tx.send(Bytes::from_static(b"a\n")).await.unwrap();
        tx.send(Bytes::from_static(b"b\n")).await.unwrap();
        drop(tx);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"a\nb\n");
    }
}
