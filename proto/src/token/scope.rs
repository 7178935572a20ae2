//! Scopes: what a token allows, as a set of four flags.

use super::TokenError;

/// One permission a token can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Publish to the channel.
    Publish,
    /// Subscribe to the channel.
    Subscribe,
    /// Issue narrower tokens to others (with a delegation depth above 0).
    Delegate,
    /// Administer the channel (reserved for the channel's owner tools).
    Admin,
}

impl Scope {
    /// Every scope, in bit order.
    pub const ALL: [Scope; 4] = [Self::Publish, Self::Subscribe, Self::Delegate, Self::Admin];

    fn bit(self) -> u8 {
        match self {
            Self::Publish => 1,
            Self::Subscribe => 2,
            Self::Delegate => 4,
            Self::Admin => 8,
        }
    }

    /// The stable text name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
            Self::Delegate => "delegate",
            Self::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                TokenError::Malformed(format!(
                    "unknown scope {s:?} (publish, subscribe, delegate, admin)"
                ))
            })
    }
}

/// A set of scopes. On the wire: one byte, bit 0 publish, 1 subscribe,
/// 2 delegate, 3 admin; other bits must be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    const MASK: u8 = 0x0f;

    /// No scope.
    pub const EMPTY: Scopes = Scopes(0);

    /// The set holding `scopes`.
    pub fn of(scopes: &[Scope]) -> Self {
        Self(scopes.iter().fold(0, |acc, s| acc | s.bit()))
    }

    /// The set from its wire byte; unknown bits are refused.
    pub fn from_bits(bits: u8) -> Option<Self> {
        (bits & !Self::MASK == 0).then_some(Self(bits))
    }

    /// The wire byte.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether `scope` is in the set.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether every scope of `other` is in this set.
    pub fn covers(self, other: Scopes) -> bool {
        other.0 & !self.0 == 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in the set, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl std::fmt::Display for Scopes {
    /// Comma-separated names, e.g. `publish,subscribe`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl std::str::FromStr for Scopes {
    type Err = TokenError;

    /// Parses `publish,subscribe[,delegate][,admin]` (at least one, no repeats).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = Scopes::EMPTY;
        for part in s.split(',') {
            let scope: Scope = part.parse()?;
            if set.contains(scope) {
                return Err(TokenError::Malformed(format!("scope {part} given twice")));
            }
            set.0 |= scope.bit();
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_bits() {
        let s: Scopes = "publish,delegate".parse().unwrap();
        assert_eq!(s.bits(), 0b0101);
        assert_eq!(s.to_string(), "publish,delegate");
        assert!(s.contains(Scope::Publish) && !s.contains(Scope::Subscribe));
        assert!("publish,publish".parse::<Scopes>().is_err());
        assert!("".parse::<Scopes>().is_err());
        assert!("read".parse::<Scopes>().is_err());
        assert_eq!(Scopes::from_bits(0x10), None);
        assert_eq!(Scopes::from_bits(0x0f).map(|s| s.iter().count()), Some(4));
    }

    #[test]
    fn covers_is_subset() {
        let all = Scopes::of(&Scope::ALL);
        let pubsub = Scopes::of(&[Scope::Publish, Scope::Subscribe]);
        assert!(all.covers(pubsub));
        assert!(!pubsub.covers(all));
        assert!(pubsub.covers(Scopes::EMPTY));
    }
}
