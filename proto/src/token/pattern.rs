//! Channel patterns: an exact channel name or a NATS-style wildcard pattern.
//!
//! A name is segments separated by `/`. Each segment is non-empty printable
//! ASCII (0x21..=0x7e) without `/`, `*` or `>`. A pattern is a name in which
//! a whole segment may be a wildcard:
//!
//! - `*` matches exactly one segment: `sensors/*/temp` matches
//!   `sensors/kitchen/temp` but not `sensors/temp` or `sensors/a/b/temp`;
//! - `>` matches one or more trailing segments and may only be the last:
//!   `sensors/>` matches `sensors/a` and `sensors/a/b`, not `sensors`.
//!
//! Wildcards inside a segment (`a*`) are refused. The whole text is at most
//! [`MAX_PATTERN`] bytes. Containment ([`ChannelPattern::contains`]) says
//! whether every name one pattern matches is matched by another: a delegated
//! token's pattern must be contained in its parent's.

use super::TokenError;

/// Longest pattern or channel name, in bytes (the ledger's name bound).
pub const MAX_PATTERN: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment<'a> {
    Literal(&'a str),
    One,
    Rest,
}

/// A validated channel pattern (an exact name is a pattern without wildcards).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelPattern(String);

impl ChannelPattern {
    /// Validates `text` as a pattern.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        check(text, true)?;
        Ok(Self(text.to_owned()))
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern has no wildcard (it names exactly one channel).
    pub fn is_exact(&self) -> bool {
        segments(&self.0).all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether the concrete channel `name` matches. A `name` that is not a
    /// valid channel name (empty segments, wildcards) matches nothing.
    pub fn matches(&self, name: &str) -> bool {
        if check(name, false).is_err() {
            return false;
        }
        let mut pat = segments(&self.0);
        let mut parts = name.split('/');
        loop {
            match (pat.next(), parts.next()) {
                (None, None) => return true,
                (Some(Segment::Rest), Some(_)) => return true,
                (Some(Segment::One), Some(_)) => {}
                (Some(Segment::Literal(a)), Some(b)) if a == b => {}
                _ => return false,
            }
        }
    }

    /// Whether every channel `inner` matches is matched by `self`.
    pub fn contains(&self, inner: &ChannelPattern) -> bool {
        let mut outer = segments(&self.0);
        let mut inner = segments(&inner.0);
        loop {
            match (outer.next(), inner.next()) {
                (None, None) => return true,
                // `>` covers one or more segments, whatever `inner` has there.
                (Some(Segment::Rest), Some(_)) => return true,
                // `inner` may go on for any length; nothing else follows it.
                (_, Some(Segment::Rest)) => return false,
                (Some(Segment::One), Some(_)) => {}
                (Some(Segment::Literal(a)), Some(Segment::Literal(b))) if a == b => {}
                _ => return false,
            }
        }
    }
}

impl std::fmt::Display for ChannelPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ChannelPattern {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn segments(text: &str) -> impl Iterator<Item = Segment<'_>> {
    text.split('/').map(|s| match s {
        "*" => Segment::One,
        ">" => Segment::Rest,
        other => Segment::Literal(other),
    })
}

/// Checks `text` as a pattern (`wildcards`) or as a concrete name.
fn check(text: &str, wildcards: bool) -> Result<(), TokenError> {
    let bad = |why: &str| Err(TokenError::Malformed(format!("channel {text:?}: {why}")));
    if text.is_empty() || text.len() > MAX_PATTERN {
        return bad(&format!("length must be 1 to {MAX_PATTERN} bytes"));
    }
    let count = text.split('/').count();
    for (i, seg) in text.split('/').enumerate() {
        match seg {
            "" => return bad("empty segment"),
            "*" | ">" if !wildcards => return bad("a channel name has no wildcards"),
            ">" if i + 1 != count => return bad("`>` must be the last segment"),
            "*" | ">" => {}
            lit if lit
                .bytes()
                .all(|b| (0x21..0x7f).contains(&b) && b != b'*' && b != b'>') => {}
            _ => return bad("segments are printable ASCII without `*`, `>` or spaces"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> ChannelPattern {
        ChannelPattern::parse(s).unwrap()
    }

    #[test]
    fn matching() {
        assert!(p("a/b").matches("a/b"));
        assert!(!p("a/b").matches("a/b/c"));
        assert!(!p("a/b").matches("a"));
        assert!(p("a/*/c").matches("a/x/c"));
        assert!(!p("a/*/c").matches("a/c"));
        assert!(!p("a/*/c").matches("a/x/y/c"));
        assert!(p("a/>").matches("a/b"));
        assert!(p("a/>").matches("a/b/c/d"));
        assert!(!p("a/>").matches("a"));
        assert!(p(">").matches("anything/at/all"));
        assert!(p("*").matches("one"));
        assert!(!p("*").matches("one/two"));
        // Wildcards in a requested name never match.
        assert!(!p("a/>").matches("a/*"));
        assert!(!p("a/*").matches("a/>"));
        assert!(!p("a/b").matches("a//b"));
    }

    #[test]
    fn validation() {
        for bad in [
            "",
            "/",
            "a/",
            "/a",
            "a//b",
            "a/>/b",
            "a*",
            "a/b>",
            "sp ace",
            "caf\u{e9}",
        ] {
            assert_eq!(
                ChannelPattern::parse(bad).map_err(|e| e.kind()),
                Err("malformed"),
                "{bad:?}"
            );
        }
        assert!(ChannelPattern::parse(&"a".repeat(255)).is_ok());
        assert!(ChannelPattern::parse(&"a".repeat(256)).is_err());
        assert!(p("a/b").is_exact());
        assert!(!p("a/*").is_exact());
    }

    #[test]
    fn containment() {
        assert!(p("a/>").contains(&p("a/b")));
        assert!(p("a/>").contains(&p("a/*")));
        assert!(p("a/>").contains(&p("a/b/>")));
        assert!(p("a/>").contains(&p("a/>")));
        assert!(!p("a/*").contains(&p("a/>")));
        assert!(p("a/*").contains(&p("a/b")));
        assert!(!p("a/b").contains(&p("a/*")));
        assert!(!p("a/>").contains(&p("a")));
        assert!(!p("a/>").contains(&p(">")));
        assert!(p(">").contains(&p("x/*/y")));
        assert!(!p("a/b").contains(&p("a/b/c")));
    }

    fn pattern_strategy() -> impl Strategy<Value = String> {
        let seg = prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("*".to_string())
        ];
        (proptest::collection::vec(seg, 1..5), any::<bool>()).prop_map(|(mut segs, rest)| {
            if rest {
                segs.push(">".into());
            }
            segs.join("/")
        })
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        let seg = prop_oneof![Just("a"), Just("b"), Just("c")];
        proptest::collection::vec(seg, 1..7).prop_map(|s| s.join("/"))
    }

    /// Names matched by `q` that stand for each of its wildcards: a fresh
    /// literal for `*`, and 1 or many fresh segments for `>`.
    fn witnesses(q: &str) -> Vec<String> {
        [1usize, 7]
            .iter()
            .map(|n| {
                q.split('/')
                    .map(|s| match s {
                        "*" => "z".to_string(),
                        ">" => vec!["z"; *n].join("/"),
                        lit => lit.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect()
    }

    proptest! {
        #[test]
        fn containment_is_sound(outer in pattern_strategy(), inner in pattern_strategy(), name in name_strategy()) {
            let (o, i) = (p(&outer), p(&inner));
            if o.contains(&i) && i.matches(&name) {
                prop_assert!(o.matches(&name));
            }
        }

        #[test]
        fn containment_is_exact(outer in pattern_strategy(), inner in pattern_strategy()) {
            let (o, i) = (p(&outer), p(&inner));
            let all = witnesses(&inner).iter().all(|w| o.matches(w));
            prop_assert_eq!(o.contains(&i), all, "{} contains {}", outer, inner);
        }

        #[test]
        fn a_pattern_contains_itself(pat in pattern_strategy()) {
            prop_assert!(p(&pat).contains(&p(&pat)));
        }

        #[test]
        fn exact_names_match_themselves_only(a in name_strategy(), b in name_strategy()) {
            prop_assert_eq!(p(&a).matches(&b), a == b);
        }
    }
}
