//! The token matrix: every refusal with its kind, issuance refusals, and
//! round trips of the binary and text forms.

use proptest::prelude::*;

use super::*;
use crate::{NodeId, SecretKey};

const NOW: u64 = 1_000_000;
const HOUR: i64 = 3_600_000;

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

fn id(n: u8) -> NodeId {
    key(n).node_id()
}

fn pat(s: &str) -> ChannelPattern {
    ChannelPattern::parse(s).unwrap()
}

fn scopes(s: &str) -> Scopes {
    s.parse().unwrap()
}

/// Owner 1 grants node 2 `scopes` on `channel` for an hour, depth `depth`.
fn root(scope: &str, channel: &str, depth: u8) -> TokenChain {
    let grant = Grant {
        subject: id(2),
        scopes: scopes(scope),
        channel: pat(channel),
        ttl_ms: HOUR,
        depth: Some(depth),
    };
    issue(&key(1), &grant, NOW).unwrap()
}

fn delegation(to: u8, scope: &str) -> Delegation {
    Delegation {
        subject: id(to),
        scopes: scopes(scope),
        channel: None,
        ttl_ms: None,
        depth: None,
    }
}

fn request(holder: u8, channel: &str, scope: Scope) -> Request<'_> {
    Request {
        holder: id(holder),
        channel,
        scope,
        trusted_root: id(1),
    }
}

fn kind(r: Result<impl std::fmt::Debug, TokenError>) -> &'static str {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.kind(),
    }
}

fn never(_: &TokenId) -> bool {
    false
}

/// Re-signs the leaf of `chain` after `edit` (for building chains that the
/// issuing functions refuse to build).
fn resign(chain: &TokenChain, signer: u8, edit: impl FnOnce(&mut TokenClaims)) -> TokenChain {
    let mut links = chain.links().to_vec();
    let mut claims = links.pop().unwrap().claims;
    edit(&mut claims);
    links.push(claims.sign(&key(signer)).unwrap());
    TokenChain::new(links).unwrap()
}

#[test]
fn a_valid_root_and_delegation_verify() {
    let chain = root("publish,subscribe", "a/>", 0);
    let v = verify(&chain, NOW, &request(2, "a/b", Scope::Subscribe), &never).unwrap();
    assert_eq!(v.root, id(1));
    assert_eq!(v.holder, id(2));
    assert_eq!(v.expires, NOW + HOUR as u64);
    assert_eq!(v.ids, vec![chain.root().claims.id]);

    let chain = root("publish,subscribe,delegate", "a/>", 2);
    let mut d = delegation(3, "subscribe");
    d.channel = Some(pat("a/b"));
    let child = delegate(&chain, &key(2), &d, NOW + 10).unwrap();
    assert_eq!(child.links().len(), 2);
    assert_eq!(child.leaf().claims.delegation_depth, 1);
    let v = verify(
        &child,
        NOW + 20,
        &request(3, "a/b", Scope::Subscribe),
        &never,
    )
    .unwrap();
    assert_eq!(v.scopes, scopes("subscribe"));
    assert_eq!(v.ids.len(), 2);
}

#[test]
fn expired() {
    let chain = root("publish", "a", 0);
    let end = NOW + HOUR as u64;
    assert!(verify(&chain, end - 1, &request(2, "a", Scope::Publish), &never).is_ok());
    assert_eq!(
        kind(verify(
            &chain,
            end,
            &request(2, "a", Scope::Publish),
            &never
        )),
        "expired"
    );
}

#[test]
fn not_yet_valid() {
    let chain = root("publish", "a", 0);
    // Valid from a clock-skew allowance before issue, not earlier.
    let from = NOW - CLOCK_SKEW_MS;
    assert_eq!(chain.root().claims.not_before, from);
    assert!(verify(&chain, from, &request(2, "a", Scope::Publish), &never).is_ok());
    assert_eq!(
        kind(verify(
            &chain,
            from - 1,
            &request(2, "a", Scope::Publish),
            &never
        )),
        "not-yet-valid"
    );
    // A delegation is never valid before its parent.
    let chain = root("publish,delegate", "a", 1);
    let later = NOW + 10 * CLOCK_SKEW_MS;
    let child = delegate(&chain, &key(2), &delegation(3, "publish"), later).unwrap();
    assert_eq!(child.leaf().claims.not_before, later - CLOCK_SKEW_MS);
    let early = delegate(&chain, &key(2), &delegation(3, "publish"), NOW).unwrap();
    assert_eq!(early.leaf().claims.not_before, from);
}

#[test]
fn wrong_channel() {
    let chain = root("publish", "a/*", 0);
    for name in ["b/x", "a", "a/x/y", "a/*"] {
        assert_eq!(
            kind(verify(
                &chain,
                NOW,
                &request(2, name, Scope::Publish),
                &never
            )),
            "channel-mismatch",
            "{name}"
        );
    }
}

#[test]
fn scope_not_granted() {
    let chain = root("subscribe", "a", 0);
    assert_eq!(
        kind(verify(
            &chain,
            NOW,
            &request(2, "a", Scope::Publish),
            &never
        )),
        "scope"
    );
}

#[test]
fn over_delegated() {
    // Depth 0: no delegation at all.
    let chain = root("subscribe,delegate", "a", 0);
    assert_eq!(
        kind(delegate(&chain, &key(2), &delegation(3, "subscribe"), NOW)),
        "delegation-exhausted"
    );
    // Depth 1: one level, and the child may not claim depth 1 again.
    let chain = root("subscribe,delegate", "a", 1);
    let mut d = delegation(3, "subscribe,delegate");
    d.depth = Some(1);
    assert_eq!(
        kind(delegate(&chain, &key(2), &d, NOW)),
        "delegation-exhausted"
    );
    let child = delegate(&chain, &key(2), &delegation(3, "subscribe,delegate"), NOW).unwrap();
    assert_eq!(
        kind(delegate(&child, &key(3), &delegation(4, "subscribe"), NOW)),
        "delegation-exhausted"
    );
    // The same chains, forged past the issuing checks, fail verification.
    let forged = resign(&child, 2, |c| c.delegation_depth = 1);
    assert_eq!(
        kind(verify(
            &forged,
            NOW,
            &request(3, "a", Scope::Subscribe),
            &never
        )),
        "delegation-exhausted"
    );
    // A parent without the delegate scope cannot delegate.
    let chain = root("subscribe", "a", 1);
    assert_eq!(
        kind(delegate(&chain, &key(2), &delegation(3, "subscribe"), NOW)),
        "scope"
    );
}

#[test]
fn widened_delegation() {
    let chain = root("subscribe,delegate", "a/*", 3);
    // Scopes.
    assert_eq!(
        kind(delegate(&chain, &key(2), &delegation(3, "publish"), NOW)),
        "scope"
    );
    // Channel.
    let mut d = delegation(3, "subscribe");
    d.channel = Some(pat("a/>"));
    assert_eq!(kind(delegate(&chain, &key(2), &d, NOW)), "channel-mismatch");
    // Expiry.
    let mut d = delegation(3, "subscribe");
    d.ttl_ms = Some(2 * HOUR);
    assert_eq!(kind(delegate(&chain, &key(2), &d, NOW)), "expired");
    // Forged widenings fail verification too.
    let child = delegate(&chain, &key(2), &delegation(3, "subscribe"), NOW).unwrap();
    let req = request(3, "a/x", Scope::Subscribe);
    let wide = resign(&child, 2, |c| c.scopes = scopes("publish,subscribe"));
    assert_eq!(kind(verify(&wide, NOW, &req, &never)), "scope");
    let wide = resign(&child, 2, |c| c.channel = pat(">"));
    assert_eq!(kind(verify(&wide, NOW, &req, &never)), "channel-mismatch");
    let wide = resign(&child, 2, |c| c.expires += 1);
    assert_eq!(kind(verify(&wide, NOW, &req, &never)), "expired");
}

#[test]
fn revoked_parent() {
    let chain = root("subscribe,delegate", "a", 1);
    let child = delegate(&chain, &key(2), &delegation(3, "subscribe"), NOW).unwrap();
    let parent_id = chain.root().claims.id;
    let revoked = |id: &TokenId| *id == parent_id;
    let req = request(3, "a", Scope::Subscribe);
    assert_eq!(kind(verify(&child, NOW, &req, &revoked)), "revoked");
    assert_eq!(
        kind(verify(
            &chain,
            NOW,
            &request(2, "a", Scope::Subscribe),
            &revoked
        )),
        "revoked"
    );
    // A revocation of the leaf alone leaves the parent valid.
    let leaf_id = child.leaf().claims.id;
    let leaf_only = |id: &TokenId| *id == leaf_id;
    assert_eq!(kind(verify(&child, NOW, &req, &leaf_only)), "revoked");
    assert!(verify(&chain, NOW, &request(2, "a", Scope::Subscribe), &leaf_only).is_ok());
}

/// Revocations that only count from given revokers.
struct By(TokenId, NodeId);

impl Revocations for By {
    fn is_revoked(&self, id: &TokenId, authorities: &[NodeId]) -> bool {
        *id == self.0 && authorities.contains(&self.1)
    }
}

#[test]
fn revocation_authorities_are_the_issuers_above() {
    let chain = root("subscribe,delegate", "a", 1);
    let child = delegate(&chain, &key(2), &delegation(3, "subscribe"), NOW).unwrap();
    let req = request(3, "a", Scope::Subscribe);
    let leaf = child.leaf().claims.id;
    let root_id = chain.root().claims.id;
    // The owner (1) and the delegator (2) may revoke the leaf.
    assert_eq!(kind(verify(&child, NOW, &req, &By(leaf, id(1)))), "revoked");
    assert_eq!(kind(verify(&child, NOW, &req, &By(leaf, id(2)))), "revoked");
    // The holder (3) or a stranger (9) may not; nor may 2 revoke its own grant.
    assert!(verify(&child, NOW, &req, &By(leaf, id(3))).is_ok());
    assert!(verify(&child, NOW, &req, &By(leaf, id(9))).is_ok());
    assert!(verify(&child, NOW, &req, &By(root_id, id(2))).is_ok());
    // A cached verdict applies the same rule to a revocation that arrives later.
    let v = verify(&child, NOW, &req, &never).unwrap();
    assert_eq!(v.issuers, vec![id(1), id(2)]);
    assert!(v.is_revoked_by(&leaf, &id(1)) && v.is_revoked_by(&leaf, &id(2)));
    assert!(v.is_revoked_by(&root_id, &id(1)));
    assert!(!v.is_revoked_by(&root_id, &id(2)));
    assert!(!v.is_revoked_by(&leaf, &id(3)));
    assert!(!v.is_revoked_by(&TokenId::from_bytes([9; 16]), &id(1)));
}

#[test]
fn forged_signature() {
    let chain = root("publish", "a", 0);
    let req = request(2, "a", Scope::Publish);
    // A flipped signature bit.
    let mut links = chain.links().to_vec();
    links[0].signature[5] ^= 1;
    let bad = TokenChain::new(links).unwrap();
    assert_eq!(kind(verify(&bad, NOW, &req, &never)), "invalid-signature");
    // Changed claims under the old signature.
    let mut links = chain.links().to_vec();
    links[0].claims.channel = pat(">");
    let bad = TokenChain::new(links).unwrap();
    assert_eq!(kind(verify(&bad, NOW, &req, &never)), "invalid-signature");
    // Signed by someone else who claims to be the owner.
    let mut links = chain.links().to_vec();
    links[0].signature = links[0].claims.canonical().unwrap().sign(&key(9));
    let bad = TokenChain::new(links).unwrap();
    assert_eq!(kind(verify(&bad, NOW, &req, &never)), "invalid-signature");
    // Validly signed by a node that does not own the channel.
    let grant = Grant {
        subject: id(2),
        scopes: scopes("publish"),
        channel: pat("a"),
        ttl_ms: HOUR,
        depth: None,
    };
    let other = issue(&key(9), &grant, NOW).unwrap();
    assert_eq!(kind(verify(&other, NOW, &req, &never)), "invalid-signature");
}

#[test]
fn wrong_subject() {
    let chain = root("publish,delegate", "a", 1);
    assert_eq!(
        kind(verify(
            &chain,
            NOW,
            &request(3, "a", Scope::Publish),
            &never
        )),
        "wrong-subject"
    );
    // Only the subject can delegate.
    assert_eq!(
        kind(delegate(&chain, &key(3), &delegation(4, "publish"), NOW)),
        "wrong-subject"
    );
    // A link issued by someone other than its parent's subject.
    let child = delegate(&chain, &key(2), &delegation(3, "publish"), NOW).unwrap();
    let bad = resign(&child, 5, |c| c.issuer = id(5));
    assert_eq!(
        kind(verify(&bad, NOW, &request(3, "a", Scope::Publish), &never)),
        "wrong-subject"
    );
}

/// A chain 1 -> 2 -> 3 -> ... of `links` links, each with the delegate scope.
fn long_chain(links: usize) -> TokenChain {
    let mut chain = root("subscribe,delegate", ">", 7);
    for n in 2..=links {
        let mut d = delegation(n as u8 + 1, "subscribe,delegate");
        d.depth = Some(8 - n as u8);
        chain = delegate(&chain, &key(n as u8), &d, NOW).unwrap();
    }
    chain
}

#[test]
fn chain_too_long() {
    let chain = long_chain(MAX_CHAIN);
    assert_eq!(chain.links().len(), 8);
    assert!(verify(&chain, NOW, &request(9, "x", Scope::Subscribe), &never).is_ok());
    // Depth runs out exactly at 8 links.
    assert_eq!(
        kind(delegate(&chain, &key(9), &delegation(10, "subscribe"), NOW)),
        "chain-too-long"
    );
    // A ninth link built by hand is refused on construction and decoding.
    let mut links = chain.links().to_vec();
    links.push(links[7].clone());
    assert_eq!(kind(TokenChain::new(links.clone())), "chain-too-long");
    let mut bytes = chain.encode();
    bytes[1] = 9;
    let mut w = crate::ledger::codec::Writer::new();
    links[8].write(&mut w);
    bytes.extend_from_slice(&w.into_bytes());
    assert_eq!(kind(TokenChain::decode(&bytes)), "chain-too-long");
    let text = format!("{TEXT_PREFIX}{}", crate::base32_encode(&bytes));
    assert!(text.len() <= MAX_TEXT);
    assert_eq!(kind(TokenChain::from_text(&text)), "chain-too-long");
}

#[test]
fn issuance_refusals() {
    let mut grant = Grant {
        subject: id(2),
        scopes: scopes("publish"),
        channel: pat("a"),
        ttl_ms: 0,
        depth: None,
    };
    assert_eq!(kind(issue(&key(1), &grant, NOW)), "expired");
    grant.ttl_ms = -5;
    assert_eq!(kind(issue(&key(1), &grant, NOW)), "expired");
    grant.ttl_ms = i64::MAX;
    assert_eq!(kind(issue(&key(1), &grant, u64::MAX - 1)), "malformed");
    grant.ttl_ms = 1;
    grant.depth = Some(8);
    assert_eq!(kind(issue(&key(1), &grant, NOW)), "malformed");
    grant.depth = None;
    grant.scopes = Scopes::EMPTY;
    assert_eq!(kind(issue(&key(1), &grant, NOW)), "scope");
    // Delegation TTL <= 0.
    let chain = root("publish,delegate", "a", 1);
    let mut d = delegation(3, "publish");
    d.ttl_ms = Some(0);
    assert_eq!(kind(delegate(&chain, &key(2), &d, NOW)), "expired");
    // Delegating from an expired token.
    assert_eq!(
        kind(delegate(
            &chain,
            &key(2),
            &delegation(3, "publish"),
            NOW + HOUR as u64
        )),
        "expired"
    );
}

#[test]
fn binary_and_text_round_trip() {
    let chain = long_chain(3);
    assert_eq!(TokenChain::decode(&chain.encode()), Ok(chain.clone()));
    let text = chain.to_text();
    assert!(text.starts_with("rnk1"));
    assert_eq!(text.parse::<TokenChain>(), Ok(chain.clone()));
}

#[test]
fn text_is_parsed_strictly() {
    let text = root("publish", "a", 0).to_text();
    for bad in [
        String::new(),
        "rnk1".to_string(),
        text[4..].to_string(),
        format!("rnk2{}", &text[4..]),
        format!(" {text}"),
        format!("{text} "),
        format!("{text}a"),
        format!("{text}aaaaaaaa"),
        text[..text.len() - 8].to_string(),
        text.to_uppercase(),
        format!("rnk1{}", "a".repeat(MAX_TEXT)),
    ] {
        assert_eq!(kind(TokenChain::from_text(&bad)), "malformed", "{bad:?}");
    }
}

#[test]
fn binary_is_decoded_strictly() {
    let chain = root("publish", "a", 0);
    let good = chain.encode();
    let mut trailing = good.clone();
    trailing.push(0);
    let mut version = good.clone();
    version[0] = 2;
    let mut empty = good[..2].to_vec();
    empty[1] = 0;
    let mut scope_bits = good.clone();
    scope_bits[2 + 64] = 0x10;
    let mut depth = good.clone();
    let depth_at = 2 + 64 + 1 + 2 + 1 + 16;
    depth[depth_at] = 8;
    let mut channel = good.clone();
    channel[2 + 64 + 1 + 2] = b' ';
    for (name, bytes) in [
        ("trailing", trailing),
        ("version", version),
        ("empty", empty),
        ("scope bits", scope_bits),
        ("depth", depth),
        ("channel", channel),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("bad key", {
            // y = 2 is not on the curve.
            let mut b = good.clone();
            b[2..34].fill(0);
            b[2] = 2;
            b
        }),
    ] {
        assert_eq!(kind(TokenChain::decode(&bytes)), "malformed", "{name}");
    }
}

#[test]
fn revocation_survives_a_round_trip_of_its_key() {
    let chain = root("publish", "a", 0);
    let id = chain.root().claims.id;
    assert_eq!(TokenId::from_revocation_key(&id.revocation_key()), Some(id));
}

fn claims_strategy() -> impl Strategy<Value = (u8, u8, String, u64, u64, u8)> {
    (
        1u8..=15,
        1u8..=200,
        "[a-c]{1,3}(/[a-c*]{1,2}){0,3}",
        any::<u64>(),
        any::<u64>(),
        0u8..=7,
    )
}

proptest! {
    #[test]
    fn text_round_trip(
        (bits, subject, channel, nb, exp, depth) in claims_strategy(),
        extra in 0usize..3,
    ) {
        let Ok(channel) = ChannelPattern::parse(&channel) else { return Ok(()); };
        let claims = TokenClaims {
            issuer: id(1),
            subject: id(subject),
            scopes: Scopes::from_bits(bits).unwrap(),
            channel,
            not_before: nb,
            expires: exp,
            delegation_depth: depth,
            id: TokenId::random(),
            parent: TokenId::NONE,
        };
        let link = claims.sign(&key(1)).unwrap();
        let chain = TokenChain::new(vec![link; extra + 1]).unwrap();
        let text = chain.to_text();
        prop_assert!(text.len() <= MAX_TEXT);
        prop_assert_eq!(TokenChain::from_text(&text), Ok(chain));
    }

    #[test]
    fn text_decoder_never_panics(s in "rnk1[a-z2-7]{0,300}") {
        let _ = TokenChain::from_text(&s);
    }
}
