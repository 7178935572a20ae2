//! Gateway restart detection from the epoch a NAT-PMP or PCP gateway puts
//! in every answer (seconds since its mapping table was last initialized;
//! RFC 6886 §3.6, RFC 6887 §8.5). If the epoch goes back, or runs much
//! slower or faster than our own clock, the gateway lost its state and our
//! mapping must be requested again.

use std::time::Instant;

/// The last epoch seen and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochTrack {
    server: u32,
    client: Instant,
}

impl EpochTrack {
    /// The first epoch seen.
    pub fn new(now: Instant, server: u32) -> Self {
        Self {
            server,
            client: now,
        }
    }

    /// Takes the epoch of a new answer; returns `false` when it shows the
    /// gateway lost its mappings since the previous one.
    pub fn update(&mut self, now: Instant, server: u32) -> bool {
        let ok = self.consistent(now, server);
        *self = Self::new(now, server);
        ok
    }

    fn consistent(&self, now: Instant, server: u32) -> bool {
        if u64::from(server) + 1 < u64::from(self.server) {
            return false;
        }
        let client_delta = now.saturating_duration_since(self.client).as_secs();
        let server_delta = u64::from(server.saturating_sub(self.server));
        // Both clocks may drift by 1/16 and answers take up to 2 s.
        client_delta + 2 >= server_delta - server_delta / 16
            && server_delta + 2 >= client_delta - client_delta / 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn steady_epochs_pass_and_resets_are_caught() {
        let t0 = Instant::now();
        let mut e = EpochTrack::new(t0, 1000);
        assert!(e.update(t0 + Duration::from_secs(60), 1060));
        assert!(e.update(t0 + Duration::from_secs(120), 1119));
        // The gateway rebooted: its epoch starts again near zero.
        assert!(!e.update(t0 + Duration::from_secs(180), 5));
        // Afterwards it is steady again.
        assert!(e.update(t0 + Duration::from_secs(240), 65));
        // An epoch running far ahead of our clock is a reset too (a
        // restart we slept through that happens to show a larger value).
        assert!(!e.update(t0 + Duration::from_secs(250), 5000));
        // One second back is tolerated.
        let mut e = EpochTrack::new(t0, 100);
        assert!(e.update(t0, 99));
    }
}
