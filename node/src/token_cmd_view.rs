//! How `token inspect` and `token verify` print a chain: text for people,
//! JSON (`--json`) for programs.

use relay_proto::token::{Token, TokenChain, TokenId, Verdict};
use serde_json::{json, Value};

use crate::timefmt::rfc3339;

/// `token inspect --json`: the holder, the root issuer, the chain's expiry
/// and every link, root first.
pub fn inspect_json(chain: &TokenChain) -> Value {
    let leaf = &chain.leaf().claims;
    json!({
        "id": leaf.id.to_string(),
        "holder": leaf.subject.to_string(),
        "root": chain.root().claims.issuer.to_string(),
        "expires_unix_ms": chain.links().iter().map(|l| l.claims.expires).min(),
        "links": chain.links().iter().map(link_json).collect::<Vec<_>>(),
    })
}

fn link_json(link: &Token) -> Value {
    let c = &link.claims;
    json!({
        "id": c.id.to_string(),
        "parent": (c.parent != TokenId::NONE).then(|| c.parent.to_string()),
        "issuer": c.issuer.to_string(),
        "subject": c.subject.to_string(),
        "scopes": c.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "channel": c.channel.as_str(),
        "not_before_unix_ms": c.not_before,
        "expires_unix_ms": c.expires,
        "not_before": rfc3339(c.not_before / 1000),
        "expires": rfc3339(c.expires / 1000),
        "delegation_depth": c.delegation_depth,
    })
}

/// `token inspect`: one block per link.
pub fn inspect_text(chain: &TokenChain) -> String {
    let mut out = format!(
        "token {} ({} link{})\n",
        chain.leaf().claims.id,
        chain.links().len(),
        if chain.links().len() == 1 { "" } else { "s" }
    );
    for (i, link) in chain.links().iter().enumerate() {
        let c = &link.claims;
        out.push_str(&format!(
            "link {}  id {}\n  issuer   {}\n  subject  {}\n  scopes   {}\n  channel  {}\n  valid    {} .. {}\n  depth    {}\n",
            i + 1,
            c.id,
            c.issuer,
            c.subject,
            c.scopes,
            c.channel,
            rfc3339(c.not_before / 1000),
            rfc3339(c.expires / 1000),
            c.delegation_depth
        ));
    }
    out
}

/// `token verify`'s line on success.
pub fn verdict_line(v: &Verdict) -> String {
    format!(
        "ok: {} may {} on {} until {} (issued by {})",
        v.holder,
        v.scopes,
        v.channel,
        rfc3339(v.expires / 1000),
        v.root
    )
}
