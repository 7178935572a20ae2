//! The token routes: `POST /v1/tokens/revoke` appends a `token-revocation`
//! entry to this node's ledger feed (docs/LOCAL_API.md, docs/TOKENS.md).
//!
//! The body names the token by its text (`{"token": "rnk1..."}`: the last
//! link is revoked, until its own expiry; this node must have issued a link
//! of it) or by id (`{"id": HEX32, "expires_unix_ms": N}`). An optional
//! `reason` (at most 256 bytes) is recorded. Token problems answer 400 with
//! kind `token` and detail `KIND: ...`, so clients print `token: KIND: ...`.

use std::sync::Arc;

use hyper::StatusCode;
use relay_proto::ledger::body::{TokenRevocation, MAX_REASON};
use relay_proto::ledger::Body;
use relay_proto::token::{TokenChain, TokenError, TokenId};
use serde::{Deserialize, Serialize};

use super::body::ok;
use super::error::ApiError;
use super::request::read_json;
use super::router::{ApiRequest, RouteError, Routes};
use super::{BODY_TIMEOUT, MAX_BODY};
use crate::ledger::Ledger;

/// The revoke route's path.
pub const REVOKE: &str = "/v1/tokens/revoke";

/// `POST /v1/tokens/revoke` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The token's text form (revokes its last link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Or the id of the link to revoke (32 hex digits)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// ...and how long to keep the revocation (the token's expiry, unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_unix_ms: Option<u64>,
    /// Why (recorded in the entry).
    #[serde(default)]
    pub reason: String,
}

/// `POST /v1/tokens/revoke` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeAnswer {
    /// The revoked link's id.
    pub id: String,
    /// Kept until (unix ms).
    pub expires_unix_ms: u64,
    /// The new entry's cursor in this node's ledger.
    pub cursor: String,
}

/// What the request revokes: the link id and the revocation's expiry.
pub fn target(
    req: &RevokeRequest,
    this_node: relay_proto::NodeId,
) -> Result<(TokenId, u64), ApiError> {
    if req.reason.len() > MAX_REASON {
        return Err(ApiError::BadRequest(format!(
            "reason is longer than {MAX_REASON} bytes"
        )));
    }
    match (&req.token, &req.id, req.expires_unix_ms) {
        (Some(text), None, None) => {
            let chain = TokenChain::from_text(text).map_err(token_error)?;
            for link in chain.links() {
                link.verify_signature().map_err(|e| {
                    token_error(TokenError::InvalidSignature(format!(
                        "{}: {e}",
                        link.claims.id
                    )))
                })?;
            }
            if !chain.links().iter().any(|l| l.claims.issuer == this_node) {
                return Err(token_error(TokenError::WrongSubject(format!(
                    "this node ({this_node}) issued no link of the token; only its issuers can revoke it"
                ))));
            }
            let leaf = &chain.leaf().claims;
            Ok((leaf.id, leaf.expires))
        }
        (None, Some(id), Some(expires)) => {
            let id: TokenId = id.parse().map_err(token_error)?;
            Ok((id, expires))
        }
        _ => Err(ApiError::BadRequest(
            "give either \"token\", or \"id\" with \"expires_unix_ms\"".into(),
        )),
    }
}

/// A token error as an API error: kind `token`, detail `KIND: ...`.
pub fn token_error(e: TokenError) -> ApiError {
    let text = e.to_string();
    ApiError::Operation {
        kind: "token".into(),
        detail: text.strip_prefix("token: ").unwrap_or(&text).to_string(),
        status: StatusCode::BAD_REQUEST.as_u16(),
    }
}

/// Appends the revocation `req` asks for to `ledger`.
pub async fn revoke(ledger: &Ledger, req: RevokeRequest) -> Result<RevokeAnswer, ApiError> {
    let (id, expires) = target(&req, ledger.node_id())?;
    let body = Body::TokenRevocation(TokenRevocation {
        token_id: id.revocation_key(),
        expires_unix_ms: expires,
        reason: req.reason,
    });
    let cursor = ledger
        .append(body)
        .await
        .map_err(|e| super::ledger_tail::ledger_error(&e))?;
    Ok(RevokeAnswer {
        id: id.to_string(),
        expires_unix_ms: expires,
        cursor: cursor.to_string(),
    })
}

/// Whether a connected peer holds more of this node's own feed than its
/// ledger does (it is being restored): appending then would fork the feed.
pub type FeedBehind = Arc<dyn Fn() -> bool + Send + Sync>;

/// Registers `POST /v1/tokens/revoke`. While `behind` says the node's own
/// feed is still being restored, the route answers `503 busy`.
pub fn register(routes: &mut Routes, ledger: Ledger, behind: FeedBehind) -> Result<(), RouteError> {
    routes.post(REVOKE, move |req: ApiRequest, _ctx| {
        let ledger = ledger.clone();
        let behind = behind.clone();
        async move {
            let request: RevokeRequest = read_json(req, MAX_BODY, BODY_TIMEOUT).await?;
            if behind() {
                return Err(ApiError::Busy(
                    "this node's own ledger feed is still being restored from peers; retry shortly"
                        .into(),
                ));
            }
            Ok(ok(&revoke(&ledger, request).await?))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_dir;
    use relay_proto::token::{issue, ChannelPattern, Grant};
    use relay_proto::SecretKey;

    fn token(issuer: &SecretKey) -> TokenChain {
        let grant = Grant {
            subject: SecretKey::from_bytes(&[2; 32]).node_id(),
            scopes: "subscribe".parse().unwrap(),
            channel: ChannelPattern::parse("a/>").unwrap(),
            ttl_ms: 60_000,
            depth: None,
        };
        issue(issuer, &grant, 1_000).unwrap()
    }

    #[test]
    fn targets_and_refusals() {
        let me = SecretKey::from_bytes(&[1; 32]);
        let chain = token(&me);
        let req = RevokeRequest {
            token: Some(chain.to_text()),
            ..RevokeRequest::default()
        };
        let (id, expires) = target(&req, me.node_id()).unwrap();
        assert_eq!(id, chain.leaf().claims.id);
        assert_eq!(expires, 61_000);
        // Not an issuer of the token.
        let other = SecretKey::from_bytes(&[3; 32]).node_id();
        let e = target(&req, other).unwrap_err();
        assert_eq!(
            e.to_string().split(':').take(2).collect::<Vec<_>>(),
            ["token", " wrong-subject"]
        );
        // Bad text, bad id, both or neither, a long reason.
        let bad = RevokeRequest {
            token: Some("rnk1x".into()),
            ..RevokeRequest::default()
        };
        assert!(target(&bad, me.node_id())
            .unwrap_err()
            .to_string()
            .starts_with("token: malformed"));
        let by_id = RevokeRequest {
            id: Some("ab".repeat(16)),
            expires_unix_ms: Some(5),
            ..RevokeRequest::default()
        };
        assert_eq!(target(&by_id, other).unwrap().1, 5);
        for bad in [
            RevokeRequest::default(),
            RevokeRequest {
                id: Some("ab".repeat(16)),
                ..RevokeRequest::default()
            },
            RevokeRequest {
                token: req.token.clone(),
                id: by_id.id.clone(),
                ..RevokeRequest::default()
            },
            RevokeRequest {
                reason: "x".repeat(MAX_REASON + 1),
                ..by_id.clone()
            },
        ] {
            assert_eq!(
                target(&bad, me.node_id()).unwrap_err().kind(),
                "bad-request"
            );
        }
    }

    #[tokio::test]
    async fn revoke_appends_an_entry() {
        let me = SecretKey::from_bytes(&[1; 32]);
        let ledger = Ledger::open(&temp_dir("api-tokens"), me.clone()).unwrap();
        let chain = token(&me);
        let req = RevokeRequest {
            token: Some(chain.to_text()),
            reason: "lost laptop".into(),
            ..RevokeRequest::default()
        };
        let answer = revoke(&ledger, req).await.unwrap();
        assert_eq!(answer.id, chain.leaf().claims.id.to_string());
        let entries = ledger
            .read(None, 10, &crate::ledger::Filter::default())
            .unwrap();
        let last = entries.last().unwrap();
        let Ok(Body::TokenRevocation(r)) = last.entry.body() else {
            panic!("not a revocation: {:?}", last.entry.kind);
        };
        assert_eq!(r.token_id, chain.leaf().claims.id.revocation_key());
        assert_eq!(r.reason, "lost laptop");
        ledger.close();
    }
}
