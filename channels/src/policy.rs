//! A channel's policy, and its encoding as the opaque spec of a
//! `channel-registration` ledger entry.
//!
//! The spec is postcard: `require_token` (bool), `reliable` (bool),
//! `max_rate` (Option<u32>, messages per second), `history` (variant
//! 0 none, 1 last N (u32), 2 duration (u64 ms)); a version byte `1` leads.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest retention by count.
pub const MAX_HISTORY_COUNT: u32 = 100_000;
/// Longest retention by age (7 days).
pub const MAX_HISTORY_MS: u64 = 7 * 24 * 3600 * 1000;
/// Spec version written first.
const SPEC_VERSION: u8 = 1;

/// What a channel retains for new subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum History {
    /// Nothing: subscribers see only what is published after they join.
    #[default]
    None,
    /// The last N messages.
    Last(u32),
    /// Messages younger than this many milliseconds.
    DurationMs(u64),
}

/// How a channel behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Whether subscribing and publishing need a token (the owner itself
    /// never does).
    pub require_token: bool,
    /// Reliable (streams, credit, gap notices) or best-effort (datagrams).
    pub reliable: bool,
    /// Most messages per second the channel takes, from all publishers.
    pub max_rate: Option<u32>,
    /// Retention for replay.
    pub history: History,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            require_token: false,
            reliable: true,
            max_rate: None,
            history: History::None,
        }
    }
}

/// A policy or spec that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// A history bound out of range, or unreadable.
    #[error("invalid-history: {0}")]
    History(String),
    /// A rate of zero.
    #[error("invalid-rate: the maximum rate must be at least 1 message per second")]
    Rate,
    /// A spec that does not decode.
    #[error("invalid-spec: {0}")]
    Spec(String),
}

impl PolicyError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::History(_) => "invalid-history",
            Self::Rate => "invalid-rate",
            Self::Spec(_) => "invalid-spec",
        }
    }
}

impl History {
    /// Parses `N` (a count) or a duration `Ns`, `Nm`, `Nh`, `Nd`.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let bad = || PolicyError::History(format!("{text:?} is not a count or a duration"));
        let text = text.trim();
        if let Ok(n) = text.parse::<u32>() {
            return Self::Last(n).checked();
        }
        // The unit is the last byte; a multi-byte last character is no unit
        // (and no char boundary to split at).
        let split = text.len().checked_sub(1).ok_or_else(bad)?;
        let (num, unit) = text.split_at_checked(split).ok_or_else(bad)?;
        let n: u64 = num.parse().map_err(|_| bad())?;
        let unit_ms = match unit {
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        Self::DurationMs(n.saturating_mul(unit_ms)).checked()
    }

    /// The history if within bounds.
    pub fn checked(self) -> Result<Self, PolicyError> {
        match self {
            Self::Last(n) if n == 0 || n > MAX_HISTORY_COUNT => Err(PolicyError::History(format!(
                "a count must be 1 to {MAX_HISTORY_COUNT}"
            ))),
            Self::DurationMs(ms) if ms == 0 || ms > MAX_HISTORY_MS => {
                Err(PolicyError::History(format!(
                    "a duration must be 1 s to {} days",
                    MAX_HISTORY_MS / 86_400_000
                )))
            }
            ok => Ok(ok),
        }
    }

    /// Human text: `none`, `last N`, `Ns`.
    pub fn text(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::Last(n) => format!("last {n}"),
            Self::DurationMs(ms) => format!("{}s", ms / 1000),
        }
    }
}

impl Policy {
    /// The policy if within bounds.
    pub fn checked(self) -> Result<Self, PolicyError> {
        if self.max_rate == Some(0) {
            return Err(PolicyError::Rate);
        }
        self.history.checked()?;
        Ok(self)
    }

    /// The registration spec.
    pub fn encode_spec(&self) -> Vec<u8> {
        let mut out = vec![SPEC_VERSION];
        // A fixed-shape struct of bools and integers always encodes.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    /// Decodes and checks a registration spec.
    pub fn decode_spec(spec: &[u8]) -> Result<Self, PolicyError> {
        let (version, rest) = spec
            .split_first()
            .ok_or_else(|| PolicyError::Spec("empty".into()))?;
        if *version != SPEC_VERSION {
            return Err(PolicyError::Spec(format!("unknown version {version}")));
        }
        let (policy, trailing) = postcard::take_from_bytes::<Self>(rest)
            .map_err(|e| PolicyError::Spec(e.to_string()))?;
        if !trailing.is_empty() {
            return Err(PolicyError::Spec("trailing bytes".into()));
        }
        policy
            .checked()
            .map_err(|e| PolicyError::Spec(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_parses_counts_and_durations() {
        assert_eq!(History::parse("100").unwrap(), History::Last(100));
        assert_eq!(History::parse("30s").unwrap(), History::DurationMs(30_000));
        assert_eq!(
            History::parse("2h").unwrap(),
            History::DurationMs(7_200_000)
        );
        for bad in ["", "0", "x", "5y", "0s", "8d", "100001"] {
            assert!(History::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn history_with_a_multibyte_last_character_is_an_error() {
        // The unit is split off the last byte; a multi-byte last character
        // must be `invalid-history`, not a panic on a char boundary.
        for bad in ["5é", "1µ", "é", "10秒"] {
            let e = History::parse(bad).unwrap_err();
            assert_eq!(e.kind(), "invalid-history", "{bad}");
        }
    }

    #[test]
    fn spec_roundtrips_and_is_strict() {
        let p = Policy {
            require_token: true,
            reliable: false,
            max_rate: Some(1000),
            history: History::Last(10),
        };
        let spec = p.encode_spec();
        assert_eq!(spec, vec![1, 1, 0, 1, 0xe8, 0x07, 1, 10]);
        assert_eq!(Policy::decode_spec(&spec).unwrap(), p);
        let mut long = spec.clone();
        long.push(0);
        assert!(Policy::decode_spec(&long).is_err());
        assert!(Policy::decode_spec(&[2]).is_err());
        assert!(Policy::decode_spec(&[]).is_err());
        let zero_rate = Policy {
            max_rate: Some(0),
            ..p
        };
        assert_eq!(
            Policy::decode_spec(&zero_rate.encode_spec())
                .unwrap_err()
                .kind(),
            "invalid-spec"
        );
    }
}
