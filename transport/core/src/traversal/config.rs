//! Tunables of the traversal core, with documented defaults.

use std::net::SocketAddr;
use std::time::Duration;

use super::birthday::BirthdayConfig;
use super::lifetime::LifetimeConfig;
use super::mapcheck::MappingCheckConfig;
use super::roam::RoamConfig;

/// Everything the traversal core can be tuned with.
#[derive(Debug, Clone)]
pub struct TraversalConfig {
    /// A known public address: pins `nat` to open with this reflexive
    /// address and skips classification. Default: none.
    pub public_addr: Option<SocketAddr>,
    /// How often the NAT is re-classified (stale observations expire).
    /// Default 60 s.
    pub reclassify_interval: Duration,
    /// How long an observation counts. Default 10 min.
    pub observation_ttl: Duration,
    /// How long after start the first observation may take before a
    /// `reflex-timeout` is reported. Default 10 s.
    pub reflex_timeout: Duration,
    /// When each probe to a candidate goes out, relative to the fire time
    /// (or to when a peer-reflexive candidate was learned). Default: 9
    /// probes over 3.9 s.
    pub probe_schedule: Vec<Duration>,
    /// How long after the last scheduled probe a punch may still succeed.
    /// Default 1 s.
    pub punch_grace: Duration,
    /// Nominations the controlling side sends before giving up. Default 6.
    pub nominate_attempts: u32,
    /// Spacing of nominations. Default 250 ms.
    pub nominate_interval: Duration,
    /// Keepalive period on an idle direct path until the binding lifetime
    /// is measured (`lifetime`). Default 20 s.
    pub keepalive_interval: Duration,
    /// Wait for a keepalive's reply before it counts as missed and the
    /// next one goes out. Default 1 s.
    pub keepalive_retry: Duration,
    /// Unanswered keepalives before a direct path is declared lost.
    /// Default 3.
    pub keepalive_misses: u32,
    /// Whether this node introduces its peers to each other. Default true.
    pub introducer: bool,
    /// Introductions a requester may burst. Default 8.
    pub intro_burst: u32,
    /// One introduction credit comes back per this period. Default 2 s.
    pub intro_refill: Duration,
    /// Slack added to half the larger RTT for the fire time. Default 20 ms.
    pub fire_margin: Duration,
    /// Spacing of reach-request retries. Default 1 s.
    pub request_retry: Duration,
    /// Reach-request attempts before `peer-not-reachable`. Default 3.
    pub request_attempts: u32,
    /// Learn candidates from inbound probes and answer them at the source
    /// they came from. Default true; turning it off exists for tests.
    pub peer_reflexive: bool,
    /// Concurrent punch sessions. Default 64.
    pub max_sessions: usize,
    /// Birthday-paradox probing for cone x symmetric pairs (on by
    /// default; see `birthday` for the limits).
    pub birthday: BirthdayConfig,
    /// Binding-lifetime measurement and the keepalive interval derived
    /// from it (see `lifetime`).
    pub lifetime: LifetimeConfig,
    /// Address-change detection and the re-punch after it (see `roam`).
    pub roam: RoamConfig,
    /// The alternate-port mapping check, both sides (see `mapcheck`).
    pub mapping: MappingCheckConfig,
}

impl Default for TraversalConfig {
    fn default() -> Self {
        Self {
            public_addr: None,
            reclassify_interval: Duration::from_secs(60),
            observation_ttl: Duration::from_secs(600),
            reflex_timeout: Duration::from_secs(10),
            probe_schedule: [0u64, 100, 300, 600, 1000, 1500, 2100, 2900, 3900]
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            punch_grace: Duration::from_secs(1),
            nominate_attempts: 6,
            nominate_interval: Duration::from_millis(250),
            keepalive_interval: Duration::from_secs(20),
            keepalive_retry: Duration::from_secs(1),
            keepalive_misses: 3,
            introducer: true,
            intro_burst: 8,
            intro_refill: Duration::from_secs(2),
            fire_margin: Duration::from_millis(20),
            request_retry: Duration::from_secs(1),
            request_attempts: 3,
            peer_reflexive: true,
            max_sessions: 64,
            birthday: BirthdayConfig::default(),
            lifetime: LifetimeConfig::default(),
            roam: RoamConfig::default(),
            mapping: MappingCheckConfig::default(),
        }
    }
}
