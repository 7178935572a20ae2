//! Retention bounds per kind: what the store keeps so that a node running
//! for months holds a bounded ledger.
//!
//! | class | kinds | kept |
//! |-------|-------|------|
//! | latest per key | node-announcement (key: origin), channel- and service-registration (key: origin + name) | the highest seq per key; older ones are dropped when a newer one is stored, and an older one arriving late is not stored |
//! | event | relay-session, traversal-outcome | per origin and kind at most [`Retention::max_events`] (oldest dropped first) and none older than [`Retention::max_event_age_ms`] (by the entry's `ts`) |
//! | until expiry | token-revocation | until the revoked token's `expires_unix_ms` has passed |
//!
//! With the defaults, one origin holds at most 2 x 10,000 events of at
//! most 16 KiB, one announcement and one entry per registered name; a mesh
//! of N members holds N times that.

/// Retention bounds (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events kept per origin and event kind.
    pub max_events: u64,
    /// Oldest event kept, in ms before now.
    pub max_event_age_ms: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_events: 10_000,
            max_event_age_ms: 30 * 24 * 3600 * 1000,
        }
    }
}
