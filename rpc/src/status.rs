//! [`Status`]: how a call ended, printed `kind: detail`.

use std::time::Duration;

use relay_proto::wire::rpc::{truncate, Code, Trailer, MAX_DETAIL};

/// A call's (or attempt's) outcome when it is not `ok`, or a trailer's
/// content: a code, a kind (the code's unless a handler refined it), a
/// detail and an optional server pushback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The code.
    pub code: Code,
    /// The stable kind printed before the detail.
    pub kind: String,
    /// Human detail.
    pub detail: String,
    /// Server pushback: do not retry before this much time.
    pub retry_after: Option<Duration>,
}

/// The kind of the `unavailable` a node answers for a service it does not
/// serve (a stale directory entry, a wrong `--node`): the node is well, so
/// it does not count toward its breaker.
pub const NOT_SERVED: &str = "not-served";

impl Status {
    /// A status of `code` with the code's kind.
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self {
            code,
            kind: code.kind().to_string(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// `unavailable` from a node that does not serve the service (kind
    /// [`NOT_SERVED`]): retried on another node, but not the node's
    /// failure.
    pub fn not_served(service: &str) -> Self {
        Self {
            kind: NOT_SERVED.to_string(),
            ..Self::new(
                Code::Unavailable,
                format!("this node does not serve {service}"),
            )
        }
    }

    /// With a retry-after pushback.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The status a trailer carries.
    pub fn from_trailer(t: Trailer) -> Self {
        Self {
            code: t.code,
            kind: t.kind,
            detail: t.detail,
            retry_after: t
                .retry_after_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
        }
    }

    /// The trailer carrying this status (detail truncated to the wire's
    /// bound; a kind the wire refuses falls back to the code's).
    pub fn to_trailer(&self) -> Trailer {
        let kind_ok = Trailer {
            code: self.code,
            kind: self.kind.clone(),
            detail: String::new(),
            retry_after_ms: None,
        }
        .encode(&mut Vec::new())
        .is_ok();
        Trailer {
            code: self.code,
            kind: if kind_ok {
                self.kind.clone()
            } else {
                self.code.kind().to_string()
            },
            detail: truncate(&self.detail, MAX_DETAIL).to_string(),
            retry_after_ms: self
                .retry_after
                .map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
        }
    }

    /// Whether the code is `ok`.
    pub fn is_ok(&self) -> bool {
        self.code == Code::Ok
    }

    /// Whether this failure says something about the node that answered
    /// (it counts against the node's circuit breaker): the path or
    /// connection failed, the node was unavailable, overloaded past its
    /// deadline, or its handler failed. Answers about the request
    /// (`invalid-argument`, `not-found`, ...) do not count.
    pub fn is_node_failure(&self) -> bool {
        self.kind != NOT_SERVED
            && matches!(
                self.code,
                Code::Transport
                    | Code::NoRoute
                    | Code::Unavailable
                    | Code::Timeout
                    | Code::ServerError
                    | Code::Internal
            )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_served_is_unavailable_but_not_the_nodes_failure() {
        let s = Status::not_served("inventory");
        assert_eq!(
            s.to_string(),
            "not-served: this node does not serve inventory"
        );
        assert_eq!(s.code, Code::Unavailable);
        assert!(!s.is_node_failure());
        assert!(Status::new(Code::Unavailable, "busy").is_node_failure());
        // The kind crosses the wire.
        let back = Status::from_trailer(s.to_trailer());
        assert_eq!(back.kind, NOT_SERVED);
        assert!(!back.is_node_failure());
    }

    #[test]
    fn prints_kind_colon_detail_and_round_trips_a_trailer() {
        let s = Status::new(Code::NoResponders, "nobody serves inventory")
            .with_retry_after(Duration::from_millis(250));
        assert_eq!(s.to_string(), "no-responders: nobody serves inventory");
        let t = s.to_trailer();
        assert_eq!(t.retry_after_ms, Some(250));
        assert_eq!(Status::from_trailer(t), s);
        let mut odd = Status::new(Code::NotFound, "x");
        odd.kind = "Not Found".into();
        assert_eq!(odd.to_trailer().kind, "not-found");
        assert!(Status::new(Code::Transport, "").is_node_failure());
        assert!(!Status::new(Code::InvalidArgument, "").is_node_failure());
    }
}
