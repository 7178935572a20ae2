//! What the endpoint answers: a pure function from a request's head to a
//! response. `GET` (and `HEAD`) of `/metrics`, `/status` and `/healthz`;
//! 401 without the bearer token when one is configured (checked first, as
//! soon as the head is in), 405 for any other method, 404 for any other
//! path. Nothing here changes node state, and no request body is ever read.

use bytes::Bytes;
use hyper::header::{
    HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};

use super::auth::TokenDigest;
use crate::api::body::with_type;
use crate::metrics::text::CONTENT_TYPE as METRICS_CONTENT_TYPE;

/// What the endpoint serves; implemented by the running node.
pub trait HttpSource: Send + Sync + 'static {
    /// The status report as JSON (the same as `status --json`).
    fn status_json(&self) -> String;
    /// The Prometheus exposition.
    fn metrics_text(&self) -> String;
}

/// A response body: a whole text, or a stream (server-sent events); the
/// local API's body type.
pub use crate::api::body::{full, ApiBody as Body};

/// A response with the headers every answer of this endpoint carries.
pub fn response(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut r = with_type(status, content_type, body);
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
pub fn route<B>(
    request: &Request<B>,
    token: Option<&TokenDigest>,
    source: &dyn HttpSource,
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
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /status or /healthz\n",
        ),
    }
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

    fn body_of(r: Response<Body>) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt.block_on(r.into_body().collect()).unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn content_type(r: &Response<Body>) -> &str {
        r.headers()[CONTENT_TYPE].to_str().unwrap()
    }

    #[test]
    fn routes() {
        let r = route(&req("GET", "/metrics", None), None, &Fake);
        assert_eq!(
            (r.status(), content_type(&r)),
            (StatusCode::OK, METRICS_CONTENT_TYPE)
        );
        assert_eq!(body_of(r), "relay_node_up 1\n");
        let r = route(&req("GET", "/status?pretty", None), None, &Fake);
        assert_eq!(
            (r.status(), content_type(&r)),
            (StatusCode::OK, "application/json")
        );
        assert_eq!(body_of(r), "{\"node_id\":\"x\"}\n");
        let r = route(&req("GET", "/healthz", None), None, &Fake);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        assert_eq!(r.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(body_of(r), "ok\n");
        let r = route(&req("HEAD", "/healthz", None), None, &Fake);
        assert_eq!(r.status(), StatusCode::OK);
        for path in ["/", "/metrics/", "/status.json"] {
            let r = route(&req("GET", path, None), None, &Fake);
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[test]
    fn non_get_is_405() {
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get"] {
            let r = route(&req(method, "/metrics", None), None, &Fake);
            assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
            assert_eq!(r.headers()[ALLOW], "GET, HEAD");
        }
    }

    #[test]
    fn token_is_required_when_configured() {
        let token = TokenDigest::of(b"0123456789abcdef");
        let r = route(&req("GET", "/metrics", None), Some(&token), &Fake);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer");
        // Checked before the method: a wrong method without a token is 401.
        let r = route(&req("POST", "/metrics", None), Some(&token), &Fake);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = route(
            &req("GET", "/metrics", Some("Bearer wrong-token-000000")),
            Some(&token),
            &Fake,
        );
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = route(
            &req("GET", "/metrics", Some("Bearer 0123456789abcdef")),
            Some(&token),
            &Fake,
        );
        assert_eq!(r.status(), StatusCode::OK);
    }
}
