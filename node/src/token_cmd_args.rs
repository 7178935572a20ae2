//! `relay-node token ...`: the sub-commands' arguments, and the duration
//! syntax of `--ttl` and `--keep` (`500ms`, `90s`, `15m`, `2h`, `30d`; a
//! leading `-` is accepted so that issuing refuses a negative TTL with
//! `token: expired` rather than a usage error).

use clap::Subcommand;

/// The token verbs. TOKEN is the `rnk1...` text, or `@FILE` holding it.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum TokenAction {
    /// Print a token signed by this node (the channel owner) for SUBJECT.
    Issue {
        /// The node the token is for.
        #[arg(long, value_name = "NODEID")]
        subject: String,
        /// Comma-separated scopes: publish, subscribe, delegate, admin.
        #[arg(long, value_name = "SCOPES")]
        scope: String,
        /// The channel name, or a pattern (`*` one segment, `>` the rest).
        #[arg(long, value_name = "NAME|PATTERN")]
        channel: String,
        /// Lifetime: e.g. 90s, 15m, 2h, 30d.
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
        ttl: String,
        /// Delegation levels allowed below it (0-7; default 1 with
        /// `delegate`, else 0).
        #[arg(long, value_name = "N")]
        depth: Option<u8>,
    },
    /// Delegate TOKEN (this node must be its subject) to SUBJECT, narrowed.
    Delegate {
        /// The token to delegate.
        #[arg(value_name = "TOKEN")]
        token: String,
        /// The node the new link is for.
        #[arg(long, value_name = "NODEID")]
        subject: String,
        /// Scopes, within the token's.
        #[arg(long, value_name = "SCOPES")]
        scope: String,
        /// Channel or pattern, within the token's [default: the token's].
        #[arg(long, value_name = "NAME|PATTERN")]
        channel: Option<String>,
        /// Lifetime, not past the token's [default: the token's expiry].
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
        ttl: Option<String>,
        /// Delegation depth, below the token's [default: one less].
        #[arg(long, value_name = "N")]
        depth: Option<u8>,
    },
    /// Print what TOKEN grants, link by link.
    Inspect {
        /// The token.
        #[arg(value_name = "TOKEN")]
        token: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check TOKEN's signatures, chain rules and validity now; with
    /// --channel and --scope, also that it grants them. Revocations are
    /// checked when a node is running for the data dir. Exits nonzero with
    /// `token: KIND` on failure.
    Verify {
        /// The token.
        #[arg(value_name = "TOKEN")]
        token: String,
        /// A concrete channel the token must cover.
        #[arg(long, value_name = "NAME", requires = "scope")]
        channel: Option<String>,
        /// The scope it must grant on --channel.
        #[arg(long, value_name = "SCOPE", requires = "channel")]
        scope: Option<String>,
        /// The node that will present it [default: the token's subject].
        #[arg(long, value_name = "NODEID")]
        holder: Option<String>,
        /// The channel owner the chain must start at [default: its root issuer].
        #[arg(long, value_name = "NODEID")]
        owner: Option<String>,
        /// Check at this time (unix ms) instead of now.
        #[arg(long, value_name = "UNIX_MS")]
        at: Option<u64>,
    },
    /// Revoke TOKEN (and every token delegated from it) mesh-wide through
    /// the running node's ledger. This node must have issued a link of it.
    Revoke {
        /// The token.
        #[arg(
            value_name = "TOKEN",
            required_unless_present = "id",
            conflicts_with = "id"
        )]
        token: Option<String>,
        /// Or a token id (32 hex digits, from `token inspect`).
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        /// With --id: how long to keep the revocation (at least the
        /// token's remaining lifetime).
        #[arg(long, value_name = "DURATION", requires = "id", default_value = "366d")]
        keep: String,
        /// Why (recorded in the ledger, at most 256 bytes).
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
    },
}

/// A duration was not `[-]N(ms|s|m|h|d)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid-duration: {0:?} is not a duration like 500ms, 90s, 15m, 2h or 30d")]
pub struct DurationError(pub String);

/// Parses `[-]N(ms|s|m|h|d)` to milliseconds.
pub fn duration_ms(text: &str) -> Result<i64, DurationError> {
    let bad = || DurationError(text.to_owned());
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let split = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = rest.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    let ms = n.checked_mul(scale).ok_or_else(bad)?;
    Ok(if negative { -ms } else { ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_ms("500ms"), Ok(500));
        assert_eq!(duration_ms("90s"), Ok(90_000));
        assert_eq!(duration_ms("15m"), Ok(900_000));
        assert_eq!(duration_ms("2h"), Ok(7_200_000));
        assert_eq!(duration_ms("30d"), Ok(2_592_000_000));
        assert_eq!(duration_ms("0s"), Ok(0));
        assert_eq!(duration_ms("-5m"), Ok(-300_000));
        for bad in [
            "",
            "5",
            "m",
            "-",
            "5 m",
            "5M",
            "1.5h",
            "99999999999999999d",
            "+5s",
        ] {
            assert!(duration_ms(bad).is_err(), "{bad:?}");
        }
    }
}
