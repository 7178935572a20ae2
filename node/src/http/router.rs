//! What the endpoint answers: a pure function from a parsed request head to
//! a response. `GET` (and `HEAD`) of `/metrics`, `/status` and `/healthz`;
//! 401 without the bearer token when one is configured, 405 for any other
//! method, 404 for any other path. Nothing here changes node state.

use super::auth::TokenDigest;
use super::head::RequestHead;
use crate::metrics::text::CONTENT_TYPE as METRICS_CONTENT_TYPE;

/// What the endpoint serves; implemented by the running node.
pub trait HttpSource: Send + Sync + 'static {
    /// The status report as JSON (the same as `status --json`).
    fn status_json(&self) -> String;
    /// The Prometheus exposition.
    fn metrics_text(&self) -> String;
}

/// A response, ready to serialize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, &'static str)>,
    /// The body.
    pub body: String,
    /// Whether to send the body (not for `HEAD`).
    pub send_body: bool,
}

impl HttpResponse {
    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.into(),
            send_body: true,
        }
    }

    /// The bytes on the wire. Every response closes the connection.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if self.send_body {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }
}

/// The reason phrase of the codes this endpoint uses.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Answers one request.
pub fn route(
    head: &RequestHead,
    token: Option<&TokenDigest>,
    source: &dyn HttpSource,
) -> HttpResponse {
    if let Some(token) = token {
        if !token.admits(head.authorization.as_deref()) {
            let mut r = HttpResponse::text(401, "unauthorized: a bearer token is required\n");
            r.headers.push(("WWW-Authenticate", "Bearer"));
            r.send_body = head.method != "HEAD";
            return r;
        }
    }
    let is_head = head.method == "HEAD";
    if head.method != "GET" && !is_head {
        let mut r = HttpResponse::text(405, "method not allowed: this endpoint is read-only\n");
        r.headers.push(("Allow", "GET, HEAD"));
        return r;
    }
    let mut response = match head.path.as_str() {
        "/metrics" => HttpResponse {
            content_type: METRICS_CONTENT_TYPE,
            ..HttpResponse::text(200, source.metrics_text())
        },
        "/status" => {
            let mut json = source.status_json();
            json.push('\n');
            HttpResponse {
                content_type: "application/json",
                ..HttpResponse::text(200, json)
            }
        }
        "/healthz" => HttpResponse::text(200, "ok\n"),
        _ => HttpResponse::text(404, "not found: try /metrics, /status or /healthz\n"),
    };
    response.send_body = !is_head;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl HttpSource for Fake {
        fn status_json(&self) -> String {
            r#"{"node_id":"x"}"#.into()
        }
        fn metrics_text(&self) -> String {
            "relay_node_up 1\n".into()
        }
    }

    fn get(method: &str, path: &str, auth: Option<&str>) -> RequestHead {
        RequestHead {
            method: method.into(),
            path: path.into(),
            authorization: auth.map(String::from),
        }
    }

    #[test]
    fn routes() {
        let r = route(&get("GET", "/metrics", None), None, &Fake);
        assert_eq!((r.status, r.content_type), (200, METRICS_CONTENT_TYPE));
        assert_eq!(r.body, "relay_node_up 1\n");
        let r = route(&get("GET", "/status", None), None, &Fake);
        assert_eq!((r.status, r.content_type), (200, "application/json"));
        assert_eq!(r.body, "{\"node_id\":\"x\"}\n");
        let r = route(&get("GET", "/healthz", None), None, &Fake);
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
        assert_eq!(route(&get("GET", "/", None), None, &Fake).status, 404);
        assert_eq!(
            route(&get("GET", "/metrics/", None), None, &Fake).status,
            404
        );
    }

    #[test]
    fn non_get_is_405() {
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get"] {
            let r = route(&get(method, "/metrics", None), None, &Fake);
            assert_eq!(r.status, 405, "{method}");
            assert!(r.headers.contains(&("Allow", "GET, HEAD")));
        }
    }

    #[test]
    fn head_has_no_body_but_its_length() {
        let r = route(&get("HEAD", "/healthz", None), None, &Fake);
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn token_is_required_when_configured() {
        let token = TokenDigest::of(b"0123456789abcdef");
        let r = route(&get("GET", "/metrics", None), Some(&token), &Fake);
        assert_eq!(r.status, 401);
        assert!(r.headers.contains(&("WWW-Authenticate", "Bearer")));
        let r = route(
            &get("GET", "/metrics", Some("Bearer wrong-token-000000")),
            Some(&token),
            &Fake,
        );
        assert_eq!(r.status, 401);
        let r = route(
            &get("GET", "/metrics", Some("Bearer 0123456789abcdef")),
            Some(&token),
            &Fake,
        );
        assert_eq!(r.status, 200);
    }

    #[test]
    fn wire_form() {
        let text = String::from_utf8(HttpResponse::text(404, "nope\n").to_bytes()).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 5\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
             Connection: close\r\n\r\nnope\n"
        );
    }
}
