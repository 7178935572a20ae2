//! The token requirement of a served service (docs/RPC.md, "Tokens"): a
//! caller presents a permission token (docs/TOKENS.md) in the call
//! header's metadata; the serving node checks it before the handler runs.
//!
//! - The token travels in the reserved metadata keys [`TOKEN_KEY`],
//!   `rpc-token-2`, ... (the text split into values of at most 1024
//!   bytes, so a chain of any allowed length fits). The serving node
//!   removes these keys before a handler sees the metadata.
//! - It is verified with `relay_proto::token::verify`: the root issued by
//!   the serving node, the holder the calling node, the `publish` scope on
//!   the channel `rpc/SERVICE`, and the node's live revocations.
//! - Failures: no token `permission-denied`; a revoked link `revoked`;
//!   any other refusal kind `token` (code `permission-denied`), detail
//!   `KIND: detail` (`token: expired: ...`).
//! - The serving node's own calls and the built-in verbs need no token.

use relay_proto::token::{verify, Request, Revocations, Scope, TokenChain, TokenError};
use relay_proto::wire::rpc::MAX_META_VALUE;
use relay_proto::NodeId;
use relay_rpc::{Code, Status};

/// The first metadata key carrying a token.
pub const TOKEN_KEY: &str = "rpc-token";
/// The scope a call needs.
pub const CALL_SCOPE: Scope = Scope::Publish;
/// The prefix of the channel name a call token covers (`rpc/SERVICE`).
pub const CHANNEL_PREFIX: &str = "rpc/";
/// Most metadata pairs one token takes.
pub const MAX_TOKEN_PAIRS: usize = relay_proto::token::MAX_TEXT.div_ceil(MAX_META_VALUE);

fn key(n: usize) -> String {
    if n == 0 {
        TOKEN_KEY.to_string()
    } else {
        format!("{TOKEN_KEY}-{}", n + 1)
    }
}

/// The metadata pairs presenting `chain`.
pub fn token_metadata(chain: &TokenChain) -> Vec<(String, String)> {
    let text = chain.to_text();
    // The text form is ASCII, so any byte offset is a character boundary.
    text.as_bytes()
        .chunks(MAX_META_VALUE)
        .enumerate()
        .map(|(n, part)| (key(n), String::from_utf8_lossy(part).into_owned()))
        .collect()
}

/// Removes the token pairs from `metadata`; the token text, if any.
pub fn take_token(metadata: &mut Vec<(String, String)>) -> Option<String> {
    if !metadata.iter().any(|(k, _)| k.starts_with(TOKEN_KEY)) {
        return None;
    }
    let mut text = String::new();
    for n in 0..MAX_TOKEN_PAIRS {
        let k = key(n);
        match metadata.iter().find(|(key, _)| *key == k) {
            Some((_, part)) => text.push_str(part),
            None => break,
        }
    }
    metadata.retain(|(k, _)| !k.starts_with(TOKEN_KEY));
    Some(text)
}

/// The channel name a token for `service` must cover.
pub fn channel(service: &str) -> String {
    format!("{CHANNEL_PREFIX}{service}")
}

/// Checks the token `text` presented by `caller` for `service` served by
/// `node` at `now` (unix ms).
pub fn authorize(
    node: NodeId,
    caller: NodeId,
    service: &str,
    text: Option<&str>,
    now: u64,
    revocations: &impl Revocations,
) -> Result<(), Status> {
    if caller == node {
        return Ok(());
    }
    let Some(text) = text else {
        return Err(Status::new(
            Code::PermissionDenied,
            format!(
                "{service} requires a token (publish on {})",
                channel(service)
            ),
        ));
    };
    let name = channel(service);
    let request = Request {
        holder: caller,
        channel: &name,
        scope: CALL_SCOPE,
        trusted_root: node,
    };
    let verified =
        TokenChain::from_text(text).and_then(|chain| verify(&chain, now, &request, revocations));
    verified.map(|_| ()).map_err(|e| refusal(&e))
}

fn refusal(e: &TokenError) -> Status {
    let text = e.to_string();
    let detail = text.strip_prefix("token: ").unwrap_or(&text).to_string();
    match e {
        TokenError::Revoked(_) => Status::new(Code::Revoked, detail),
        _ => Status {
            kind: "token".into(),
            ..Status::new(Code::PermissionDenied, detail)
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::token::{issue, Grant, NoRevocations, Scopes};
    use relay_proto::SecretKey;

    const NOW: u64 = 1_800_000_000_000;

    fn keys() -> (SecretKey, NodeId, NodeId) {
        let server = SecretKey::from_bytes(&[1; 32]);
        let caller = SecretKey::from_bytes(&[2; 32]).node_id();
        let node = server.node_id();
        (server, node, caller)
    }

    fn token(server: &SecretKey, caller: NodeId, channel: &str, scope: Scope) -> TokenChain {
        let grant = Grant {
            subject: caller,
            scopes: Scopes::of(&[scope]),
            channel: relay_proto::token::ChannelPattern::parse(channel).unwrap(),
            ttl_ms: 3_600_000,
            depth: None,
        };
        issue(server, &grant, NOW).unwrap()
    }

    #[test]
    fn token_pairs_round_trip_and_are_removed() {
        let (server, _, caller) = keys();
        let chain = token(&server, caller, "rpc/inv", Scope::Publish);
        let mut meta = vec![("a".to_string(), "b".to_string())];
        meta.extend(token_metadata(&chain));
        // A long text spans several pairs.
        let long = "x".repeat(2500);
        let mut parts: Vec<(String, String)> = long
            .as_bytes()
            .chunks(MAX_META_VALUE)
            .enumerate()
            .map(|(n, p)| (key(n), String::from_utf8_lossy(p).into_owned()))
            .collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(take_token(&mut parts).unwrap(), long);
        assert_eq!(take_token(&mut meta).unwrap(), chain.to_text());
        assert_eq!(meta, [("a".to_string(), "b".to_string())]);
        assert_eq!(take_token(&mut meta), None);
    }

    #[test]
    fn calls_need_a_matching_token() {
        let (server, node, caller) = keys();
        let text = |ch: &str, s| token(&server, caller, ch, s).to_text();
        let check = |t: Option<&str>| authorize(node, caller, "inv", t, NOW, &NoRevocations);
        assert_eq!(check(None).unwrap_err().kind, "permission-denied");
        assert!(check(Some(&text("rpc/inv", Scope::Publish))).is_ok());
        assert!(check(Some(&text("rpc/>", Scope::Publish))).is_ok());
        let wrong_scope = check(Some(&text("rpc/inv", Scope::Subscribe))).unwrap_err();
        assert_eq!(
            (wrong_scope.kind.as_str(), wrong_scope.code),
            ("token", Code::PermissionDenied)
        );
        assert!(wrong_scope.detail.starts_with("scope: "));
        let other = check(Some(&text("rpc/other", Scope::Publish))).unwrap_err();
        assert!(other.detail.starts_with("channel-mismatch: "));
        assert_eq!(check(Some("rnk1zz")).unwrap_err().kind, "token");
        // The serving node itself needs none.
        assert!(authorize(node, node, "inv", None, NOW, &NoRevocations).is_ok());
        // Revoked.
        let revoked = |_: &relay_proto::token::TokenId| true;
        let s = authorize(
            node,
            caller,
            "inv",
            Some(&text("rpc/inv", Scope::Publish)),
            NOW,
            &revoked,
        )
        .unwrap_err();
        assert_eq!((s.kind.as_str(), s.code), ("revoked", Code::Revoked));
    }
}
