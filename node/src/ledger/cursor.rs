//! Cursors: opaque positions in one node's ledger.

/// A position in this node's ledger: the order in which entries were
/// stored here (local appends and replicated entries alike). Monotonic and
/// stable across restarts (a counter committed with the entries). Opaque to
/// clients: it is only meaningful to the node that issued it and is printed
/// as a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cursor(pub u64);

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A cursor text that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid-cursor: {0:?} is not a ledger cursor")]
pub struct ParseCursorError(pub String);

impl std::str::FromStr for Cursor {
    type Err = ParseCursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let canonical = !s.is_empty() && (s == "0" || !s.starts_with('0'));
        match s.parse::<u64>() {
            Ok(v) if canonical && s.bytes().all(|b| b.is_ascii_digit()) => Ok(Self(v)),
            _ => Err(ParseCursorError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_canonical_decimal() {
        assert_eq!("0".parse::<Cursor>(), Ok(Cursor(0)));
        assert_eq!("42".parse::<Cursor>(), Ok(Cursor(42)));
        for bad in ["", "042", "+1", "-1", "1x", "99999999999999999999"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
        assert_eq!(Cursor(7).to_string(), "7");
    }
}
