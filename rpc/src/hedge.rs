//! Hedging: an idempotent call that has no answer after
//! [`HedgePolicy::delay`] is also sent to another node; the first
//! conclusive answer wins and the other attempts are cancelled (their
//! streams reset). A call not marked idempotent is never hedged, whatever
//! the policy says (see [`crate::call::CallCore`]).

use std::time::Duration;

use crate::retry::MAX_ATTEMPTS;

/// When and how wide to hedge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HedgePolicy {
    /// How long to wait for an answer before sending the next copy.
    pub delay: Duration,
    /// Copies in all, first included (clamped to 1..=5).
    pub max_attempts: u32,
}

impl Default for HedgePolicy {
    /// A second copy after 20 ms.
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(20),
            max_attempts: 2,
        }
    }
}

impl HedgePolicy {
    /// Copies allowed.
    pub fn attempts(&self) -> u32 {
        self.max_attempts.clamp(1, MAX_ATTEMPTS)
    }
}
