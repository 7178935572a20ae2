//! The local API's error type: a stable kind, a human detail and the HTTP
//! status that carries it, sent as `{"error":{"kind":"...","detail":"..."}}`.

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A request failed; printed as `kind: detail`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApiError {
    /// The query, body or head is malformed.
    #[error("bad-request: {0}")]
    BadRequest(String),
    /// The connecting process is not the node's uid or root.
    #[error("forbidden: uid {0} may not use this node's local API")]
    Forbidden(u32),
    /// No such route or stream service.
    #[error("not-found: {0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("method-not-allowed: {method} is not allowed on {path} (allowed: {allow})")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path.
        path: String,
        /// The allowed methods, comma-separated (the `Allow` header).
        allow: String,
    },
    /// The head or body did not arrive in time.
    #[error("request-timeout: the request {0} did not arrive within {1} ms")]
    RequestTimeout(&'static str, u128),
    /// The body is over its limit.
    #[error("body-too-large: the request body exceeds {0} bytes")]
    BodyTooLarge(usize),
    /// The head is over its limit.
    #[error("head-too-large: the request head exceeds {0} bytes")]
    HeadTooLarge(usize),
    /// A stream route without the upgrade headers.
    #[error("upgrade-required: send Connection: Upgrade and Upgrade: {0}")]
    UpgradeRequired(&'static str),
    /// Too many streams are open.
    #[error("busy: {0}")]
    Busy(String),
    /// The node is stopping.
    #[error("shutting-down: the node is stopping")]
    ShuttingDown,
    /// A bug or an unexpected failure.
    #[error("internal: {0}")]
    Internal(String),
    /// An error with its own kind from a subsystem (ping's `timeout`,
    /// `not-connected`, ...), carried with a fitting status.
    #[error("{kind}: {detail}")]
    Operation {
        /// Stable kind.
        kind: String,
        /// Human detail.
        detail: String,
        /// The HTTP status.
        status: u16,
    },
}

impl ApiError {
    /// An operation's error: `kind` maps to its status by [`status_for_kind`].
    pub fn operation(kind: impl Into<String>, detail: impl Into<String>) -> Self {
        let kind = kind.into();
        let status = status_for_kind(&kind).as_u16();
        Self::Operation {
            kind,
            detail: detail.into(),
            status,
        }
    }

    /// The stable kind.
    pub fn kind(&self) -> &str {
        match self {
            Self::BadRequest(_) => "bad-request",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::MethodNotAllowed { .. } => "method-not-allowed",
            Self::RequestTimeout(..) => "request-timeout",
            Self::BodyTooLarge(_) => "body-too-large",
            Self::HeadTooLarge(_) => "head-too-large",
            Self::UpgradeRequired(_) => "upgrade-required",
            Self::Busy(_) => "busy",
            Self::ShuttingDown => "shutting-down",
            Self::Internal(_) => "internal",
            Self::Operation { kind, .. } => kind,
        }
    }

    /// The detail, without the kind.
    pub fn detail(&self) -> String {
        let text = self.to_string();
        let prefix = format!("{}: ", self.kind());
        match text.strip_prefix(&prefix) {
            Some(detail) => detail.to_string(),
            None => text,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Operation { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            other => status_for_kind(other.kind()),
        }
    }

    /// Whether the connection should close after this error (its request
    /// may not have been read completely).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Self::Forbidden(_)
                | Self::RequestTimeout(..)
                | Self::BodyTooLarge(_)
                | Self::HeadTooLarge(_)
        )
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                kind: self.kind().to_string(),
                detail: self.detail(),
            },
        }
    }
}

/// The HTTP status for an error kind (docs/LOCAL_API.md "Errors"); unknown
/// kinds from the transport's dial errors are 502.
pub fn status_for_kind(kind: &str) -> StatusCode {
    match kind {
        "bad-request" | "invalid-node-id" | "invalid-peer" => StatusCode::BAD_REQUEST,
        "forbidden" => StatusCode::FORBIDDEN,
        "not-found" => StatusCode::NOT_FOUND,
        "method-not-allowed" => StatusCode::METHOD_NOT_ALLOWED,
        "request-timeout" => StatusCode::REQUEST_TIMEOUT,
        "body-too-large" => StatusCode::PAYLOAD_TOO_LARGE,
        "upgrade-required" => StatusCode::UPGRADE_REQUIRED,
        "head-too-large" => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "internal" => StatusCode::INTERNAL_SERVER_ERROR,
        "not-connected" | "busy" | "shutting-down" => StatusCode::SERVICE_UNAVAILABLE,
        "timeout" => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// The kind for a status whose response carries no JSON error (the HTTP
/// parser's own answers to a head it cannot read).
pub fn kind_for_status(status: u16) -> &'static str {
    match status {
        400 => "bad-request",
        403 => "forbidden",
        404 => "not-found",
        405 => "method-not-allowed",
        408 => "request-timeout",
        413 => "body-too-large",
        426 => "upgrade-required",
        431 => "head-too-large",
        503 => "busy",
        504 => "timeout",
        _ => "protocol",
    }
}

/// `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error's kind and detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable kind.
    pub kind: String,
    /// Human detail.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_statuses_and_bodies() {
        let e = ApiError::BadRequest("nonce is not hex".into());
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            serde_json::to_string(&e.body()).unwrap(),
            r#"{"error":{"kind":"bad-request","detail":"nonce is not hex"}}"#
        );
        let e = ApiError::operation("timeout", "no pong from p within 5 ms");
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(e.to_string(), "timeout: no pong from p within 5 ms");
        assert_eq!(e.detail(), "no pong from p within 5 ms");
        assert_eq!(
            ApiError::operation("not-connected", "x").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::operation("refused", "x").status(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(ApiError::BodyTooLarge(1).status().as_u16(), 413);
        assert_eq!(ApiError::HeadTooLarge(1).status().as_u16(), 431);
        assert_eq!(ApiError::RequestTimeout("body", 5).status().as_u16(), 408);
        assert_eq!(ApiError::UpgradeRequired("p").status().as_u16(), 426);
        assert_eq!(ApiError::Forbidden(7).status().as_u16(), 403);
        let e = ApiError::MethodNotAllowed {
            method: "PUT".into(),
            path: "/v1/status".into(),
            allow: "GET".into(),
        };
        assert_eq!(e.status().as_u16(), 405);
        assert_eq!(e.kind(), "method-not-allowed");
        for status in [400, 403, 404, 405, 408, 413, 426, 431, 503, 504] {
            let kind = kind_for_status(status);
            assert_eq!(status_for_kind(kind).as_u16(), status, "{kind}");
        }
    }
}
