//! What the endpoint answers: a function from a request's head to a
//! response. `GET` (and `HEAD`) of `/metrics`, `/status`, `/healthz`, and,
//! when the source serves the ledger, `/ledger` and `/ledger/events`
//! ([`super::ledger`]); 401 without the bearer token when one is configured
//! (checked first, as soon as the head is in), 405 for any other method,
//! 404 for any other path. Nothing here changes node state, and no request
//! body is ever read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{
    HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use super::auth::TokenDigest;
use super::ledger::HttpLedger;
use crate::api::body::with_type;
use crate::metrics::text::CONTENT_TYPE as METRICS_CONTENT_TYPE;

/// What the endpoint serves; implemented by the running node.
pub trait HttpSource: Send + Sync + 'static {
    /// The status report as JSON (the same as `status --json`).
    fn status_json(&self) -> String;
    /// The Prometheus exposition.
    fn metrics_text(&self) -> String;
    /// The ledger's resources, when the node serves them.
    fn ledger(&self) -> Option<&HttpLedger> {
        None
    }
}

/// What a request's handler may ask of its connection.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    streaming: Arc<AtomicBool>,
    close: CancellationToken,
}

impl Exchange {
    /// An exchange that `close` ends (the connection drops when it fires).
    pub fn new(close: CancellationToken) -> Self {
        Self {
            streaming: Arc::default(),
            close,
        }
    }

    /// The answer streams: the connection's time bound no longer applies.
    /// Cancelling the returned token drops the connection; it fires by
    /// itself when the connection ends or the endpoint stops.
    pub fn stream(&self) -> CancellationToken {
        self.streaming.store(true, Ordering::Release);
        self.close.clone()
    }

    /// Whether the answer streams.
    pub fn is_streaming(&self) -> bool {
        self.streaming.load(Ordering::Acquire)
    }

    /// Fires when the connection must be dropped.
    pub fn closing(&self) -> &CancellationToken {
        &self.close
    }
}

/// A response body: a whole text, or a stream (server-sent events); the
/// local API's body type.
pub use crate::api::body::{full, ApiBody as Body};

/// A response with the headers every answer of this endpoint carries.
pub fn response(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    harden(with_type(status, content_type, body))
}

/// Adds the headers every answer of this endpoint carries.
pub fn harden(mut r: Response<Body>) -> Response<Body> {
    let headers = r.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    response(status, "text/plain; charset=utf-8", full(body))
}

/// Answers one request (only its head is looked at).
pub async fn route<B>(
    request: &Request<B>,
    token: Option<&TokenDigest>,
    source: &dyn HttpSource,
    exchange: &Exchange,
) -> Response<Body> {
    if let Some(token) = token {
        let authorization = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !token.admits(authorization) {
            let mut r = text(
                StatusCode::UNAUTHORIZED,
                "unauthorized: a bearer token is required\n",
            );
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: this endpoint is read-only\n",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // A HEAD answer is built like a GET one; hyper sends its head only.
    match request.uri().path() {
        "/metrics" => response(
            StatusCode::OK,
            METRICS_CONTENT_TYPE,
            full(source.metrics_text()),
        ),
        "/status" => {
            let mut json = source.status_json();
            json.push('\n');
            response(StatusCode::OK, "application/json", full(json))
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/ledger" => match source.ledger() {
            Some(ledger) => ledger.page(request).await,
            None => not_found(),
        },
        "/ledger/events" => match source.ledger() {
            Some(ledger) => ledger.events(request, exchange),
            None => not_found(),
        },
        _ => not_found(),
    }
}

fn not_found() -> Response<Body> {
    text(
        StatusCode::NOT_FOUND,
        "not found: try /metrics, /status, /healthz, /ledger or /ledger/events\n",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper::header::CONTENT_TYPE;

    struct Fake;
    impl HttpSource for Fake {
        fn status_json(&self) -> String {
            r#"{"node_id":"x"}"#.into()
        }
        fn metrics_text(&self) -> String {
            "relay_node_up 1\n".into()
        }
    }

    fn req(method: &str, path: &str, auth: Option<&str>) -> Request<()> {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(auth) = auth {
            b = b.header(AUTHORIZATION, auth);
        }
        b.body(()).unwrap()
    }

    async fn body_of(r: Response<Body>) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    async fn answer(
        method: &str,
        path: &str,
        auth: Option<&str>,
        token: Option<&TokenDigest>,
    ) -> Response<Body> {
        route(&req(method, path, auth), token, &Fake, &Exchange::default()).await
    }

    fn content_type(r: &Response<Body>) -> &str {
        r.headers()[CONTENT_TYPE].to_str().unwrap()
    }

    #[tokio::test]
    async fn routes() {
        let r = answer("GET", "/metrics", None, None).await;
        assert_eq!(
            (r.status(), content_type(&r)),
            (StatusCode::OK, METRICS_CONTENT_TYPE)
        );
        assert_eq!(body_of(r).await, "relay_node_up 1\n");
        let r = answer("GET", "/status?pretty", None, None).await;
        assert_eq!(
            (r.status(), content_type(&r)),
            (StatusCode::OK, "application/json")
        );
        assert_eq!(body_of(r).await, "{\"node_id\":\"x\"}\n");
        let r = answer("GET", "/healthz", None, None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        assert_eq!(r.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(body_of(r).await, "ok\n");
        let r = answer("HEAD", "/healthz", None, None).await;
        assert_eq!(r.status(), StatusCode::OK);
        // Without a ledger, its paths are not served either.
        for path in [
            "/",
            "/metrics/",
            "/status.json",
            "/ledger",
            "/ledger/events",
        ] {
            let r = answer("GET", path, None, None).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[tokio::test]
    async fn non_get_is_405() {
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get"] {
            let r = answer(method, "/metrics", None, None).await;
            assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
            assert_eq!(r.headers()[ALLOW], "GET, HEAD");
        }
    }

    #[tokio::test]
    async fn token_is_required_when_configured() {
        let token = TokenDigest::of(b"0123456789abcdef");
        let r = answer("GET", "/metrics", None, Some(&token)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer");
        // Checked before the method: a wrong method without a token is 401.
        let r = answer("POST", "/metrics", None, Some(&token)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = answer(
            "GET",
            "/metrics",
            Some("Bearer wrong-token-000000"),
            Some(&token),
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = answer(
            "GET",
            "/metrics",
            Some("Bearer 0123456789abcdef"),
            Some(&token),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
}
