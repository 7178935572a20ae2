//! [`PortMapper`]: the port-mapping state machine. Sans-IO.
//!
//! ## Discovery
//!
//! [`PortMapper::start`] tries each configured protocol in turn until one
//! maps our port:
//!
//! - **PCP**: a MAP request to the gateway's port 5351, sent 3 times (0,
//!   250, 750 ms); no answer 1.75 s after the first is a failure. A
//!   NAT-PMP answer ("I only speak version 0") fails PCP at once;
//! - **NAT-PMP**: the external address request, then the UDP mapping
//!   request, each on the same schedule;
//! - **UPnP-IGD**: an SSDP M-SEARCH (twice, 500 ms apart; 2 s for an
//!   answer), then HTTP: the device description, `GetExternalIPAddress`,
//!   `AddPortMapping` (external port = our port; on a conflict, up to 3
//!   random others; a gateway that only does permanent mappings gets lease
//!   0). Each HTTP step has 3 s.
//!
//! When every protocol failed, [`PortMapEvent::Unavailable`] carries
//! `port-map-unavailable: <each protocol's reason>` and discovery starts
//! again after `retry_unavailable`.
//!
//! ## Keeping it
//!
//! A mapping is renewed at half the lifetime the gateway granted (the same
//! request again; PCP reuses its nonce). An unanswered renewal is resent
//! with backoff (1 s doubling to 60 s) until the mapping expires, which
//! raises [`PortMapEvent::Lost`] and starts discovery over. NAT-PMP and PCP
//! gateways also get an epoch check every `epoch_check` (the external
//! address request, or PCP ANNOUNCE): when the epoch shows the gateway
//! restarted, the mapping is requested again at once.
//!
//! [`PortMapper::release`] deletes the mapping (lifetime 0, or
//! `DeletePortMapping`); the machine is done when the gateway answers or
//! after 1 s.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use relay_proto::wire::natpmp::{self, NatPmpResponse};
use relay_proto::wire::pcp::{self, PcpResponse};

use super::config::{PortMapConfig, Protocol};
use super::epoch::EpochTrack;
use super::http::{self, HttpResponse, HttpUrl};
use super::igd::{self, IgdError, IgdService};
use super::ssdp;
use super::PortMapStatus;
use crate::traversal::{TraversalError, TraversalErrorKind};

/// Send offsets of a discovery request (PCP, NAT-PMP).
const UDP_TRIES: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(250),
    Duration::from_millis(750),
];
/// A discovery request fails this long after its first send.
const UDP_GIVE_UP: Duration = Duration::from_millis(1750);
/// First resend delay of a renewal; doubles up to [`RENEW_BACKOFF_MAX`].
const RENEW_BACKOFF: Duration = Duration::from_secs(1);
/// Longest delay between renewal resends.
const RENEW_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// SSDP searches sent, and their spacing.
const SSDP_TRIES: u32 = 2;
const SSDP_SPACING: Duration = Duration::from_millis(500);
/// How long SSDP answers are waited for.
const SSDP_WAIT: Duration = Duration::from_secs(2);
/// How long one HTTP exchange may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(3);
/// Random external ports tried after a UPnP conflict.
const UPNP_CONFLICT_TRIES: u32 = 3;
/// A permanent UPnP mapping is re-added this often (to notice a gateway
/// that forgot it).
const PERMANENT_REFRESH: Duration = Duration::from_secs(1800);
/// How long a release waits for the gateway.
const RELEASE_WAIT: Duration = Duration::from_secs(1);
/// Renew no sooner than this after a mapping was granted.
const MIN_RENEW: Duration = Duration::from_secs(1);

/// What the machine knows about where it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// Our IPv4 address towards the gateway (PCP's client address, UPnP's
    /// internal client).
    pub client_ip: Ipv4Addr,
    /// The UDP port to map (our transport's port).
    pub internal_port: u16,
    /// The PCP / NAT-PMP server, if a gateway is known.
    pub gateway: Option<SocketAddr>,
}

/// Something to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMapTransmit {
    /// A datagram to the PCP / NAT-PMP server ([`Local::gateway`]).
    Gateway(Vec<u8>),
    /// An SSDP search.
    Ssdp {
        /// Multicast group or the gateway.
        dst: SocketAddr,
        /// The request.
        data: Vec<u8>,
    },
    /// One HTTP exchange: connect to `dst`, send `request`, read the
    /// response until the connection closes (bounded), and hand it to
    /// [`PortMapper::handle_http`] with `id`.
    Http {
        /// Matches the answer to the request.
        id: u64,
        /// The gateway's HTTP address.
        dst: SocketAddr,
        /// The whole request.
        request: Vec<u8>,
    },
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMapEvent {
    /// We hold a mapping at this external address (new, or changed).
    Mapped {
        /// The protocol that got it.
        protocol: Protocol,
        /// The external address.
        external: SocketAddr,
    },
    /// The mapping is gone (expired, refused on renewal, or released).
    Lost,
    /// No protocol could map our port.
    Unavailable(TraversalError),
}

#[derive(Debug, Clone)]
struct Mapping {
    protocol: Protocol,
    external: SocketAddr,
    /// `None`: permanent (UPnP lease 0).
    lifetime: Option<Duration>,
    granted: Instant,
    upnp: Option<IgdService>,
}

impl Mapping {
    fn expires(&self) -> Option<Instant> {
        self.lifetime.map(|l| self.granted + l)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UdpStep {
    /// PCP MAP (also renewals).
    PcpMap,
    /// PCP ANNOUNCE (epoch check).
    PcpAnnounce,
    /// NAT-PMP external address request (discovery, or epoch check).
    PmpExternal { check: bool },
    /// NAT-PMP mapping request (also renewals).
    PmpMap { ip: Ipv4Addr },
}

#[derive(Debug, Clone)]
enum HttpStep {
    Describe {
        location: HttpUrl,
    },
    ExternalIp {
        service: IgdService,
    },
    Add {
        service: IgdService,
        ip: Ipv4Addr,
        port: u16,
        lease: u32,
        conflicts: u32,
    },
    Delete,
}

#[derive(Debug, Clone)]
enum Phase {
    /// Not started.
    Idle,
    /// A PCP or NAT-PMP request is out.
    Udp {
        step: UdpStep,
        /// Renewal (or epoch check) of a mapping we hold.
        renew: bool,
        sent: u32,
        first: Instant,
        next: Instant,
    },
    /// Waiting for SSDP answers.
    Ssdp {
        sent: u32,
        next: Instant,
        deadline: Instant,
    },
    /// An HTTP exchange is out.
    Http {
        id: u64,
        step: HttpStep,
        renew: bool,
        deadline: Instant,
    },
    /// Holding a mapping.
    Mapped {
        renew_at: Instant,
        check_at: Option<Instant>,
    },
    /// Nothing mapped; discovery again at `retry_at`.
    Waiting { retry_at: Instant },
    /// Deleting the mapping.
    Releasing { deadline: Instant },
    /// Done for good.
    Stopped,
}

/// The port-mapping state machine. See the module docs.
#[derive(Debug)]
pub struct PortMapper {
    config: PortMapConfig,
    local: Local,
    rng: StdRng,
    nonce: [u8; pcp::NONCE_LEN],
    phase: Phase,
    queue: VecDeque<Protocol>,
    failures: Vec<String>,
    mapping: Option<Mapping>,
    epoch: Option<EpochTrack>,
    next_http: u64,
    last_error: Option<TraversalError>,
    transmits: VecDeque<PortMapTransmit>,
    events: VecDeque<PortMapEvent>,
    /// Answers from the gateway or SSDP that did not parse or match.
    pub invalid_answers: u64,
}

impl PortMapper {
    /// A machine for `local`; `seed` drives PCP nonces and random ports.
    pub fn new(config: PortMapConfig, local: Local, seed: [u8; 32]) -> Self {
        let mut rng = StdRng::from_seed(seed);
        let mut nonce = [0u8; pcp::NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        Self {
            config,
            local,
            rng,
            nonce,
            phase: Phase::Idle,
            queue: VecDeque::new(),
            failures: Vec::new(),
            mapping: None,
            epoch: None,
            next_http: 1,
            last_error: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            invalid_answers: 0,
        }
    }

    // ---- queries -------------------------------------------------------

    /// The mapped external address and its protocol.
    pub fn mapping(&self) -> Option<(Protocol, SocketAddr)> {
        self.mapping.as_ref().map(|m| (m.protocol, m.external))
    }

    /// Whether the machine has finished (released, or stopped).
    pub fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped)
    }

    /// What status shows.
    pub fn status(&self, now: Instant) -> PortMapStatus {
        let state = match (&self.phase, &self.mapping) {
            (
                Phase::Stopped
                | Phase::Releasing { .. }
                | Phase::Http {
                    step: HttpStep::Delete,
                    ..
                },
                _,
            ) => "stopped",
            (_, Some(_)) => "mapped",
            (Phase::Waiting { .. }, None) => "unavailable",
            _ => "discovering",
        };
        PortMapStatus {
            enabled: true,
            state,
            protocol: self.mapping.as_ref().map(|m| m.protocol),
            external_addr: self.mapping.as_ref().map(|m| m.external),
            expires_in: self
                .mapping
                .as_ref()
                .and_then(Mapping::expires)
                .map(|e| e.saturating_duration_since(now)),
            error: if self.mapping.is_some() {
                None
            } else {
                self.last_error.as_ref().map(ToString::to_string)
            },
        }
    }

    // ---- outputs -------------------------------------------------------

    /// The next thing to send.
    pub fn poll_transmit(&mut self) -> Option<PortMapTransmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<PortMapEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Idle | Phase::Stopped => None,
            Phase::Udp { next, .. } => Some(*next),
            Phase::Ssdp { next, deadline, .. } => Some((*next).min(*deadline)),
            Phase::Http { deadline, .. } | Phase::Releasing { deadline } => Some(*deadline),
            Phase::Mapped { renew_at, check_at } => {
                Some(check_at.map_or(*renew_at, |c| c.min(*renew_at)))
            }
            Phase::Waiting { retry_at } => Some(*retry_at),
        }
    }

    // ---- inputs --------------------------------------------------------

    /// Starts discovery (once; later calls do nothing).
    pub fn start(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Idle) {
            self.discover(now);
        }
    }

    /// Deletes the mapping we hold, if any, and stops.
    pub fn release(&mut self, now: Instant) {
        let Some(mapping) = self.mapping.take() else {
            self.phase = Phase::Stopped;
            return;
        };
        self.events.push_back(PortMapEvent::Lost);
        self.phase = Phase::Releasing {
            deadline: now + RELEASE_WAIT,
        };
        match mapping.protocol {
            Protocol::Pcp => self.send_pcp_map_for(0, Some(mapping.external)),
            Protocol::NatPmp => {
                self.send_gateway(natpmp::map_udp_request(self.local.internal_port, 0, 0).to_vec())
            }
            Protocol::UpnpIgd => {
                let Some(service) = &mapping.upnp else {
                    self.phase = Phase::Stopped;
                    return;
                };
                let body = igd::delete_port_mapping(&service.service_type, mapping.external.port());
                let request = http::soap_request(
                    &service.control,
                    &service.service_type,
                    "DeletePortMapping",
                    &body,
                );
                let dst = service.control.addr;
                // The answer (or its timeout) ends the release.
                self.http(now, dst, request, HttpStep::Delete, false);
            }
        }
    }

    /// A datagram from the PCP / NAT-PMP server.
    pub fn handle_gateway(&mut self, now: Instant, data: &[u8]) {
        match self.phase.clone() {
            Phase::Udp { step, renew, .. } => match step {
                UdpStep::PcpMap | UdpStep::PcpAnnounce => self.on_pcp(now, step, renew, data),
                UdpStep::PmpExternal { check } => self.on_pmp_external(now, check, data),
                UdpStep::PmpMap { ip } => self.on_pmp_map(now, ip, renew, data),
            },
            Phase::Releasing { .. } => {
                let valid = PcpResponse::parse(data).is_ok() || NatPmpResponse::parse(data).is_ok();
                if valid {
                    self.phase = Phase::Stopped;
                }
            }
            _ => self.invalid_answers += 1,
        }
    }

    /// The gateway's port 5351 is closed (ICMP port unreachable).
    pub fn handle_gateway_unreachable(&mut self, now: Instant) {
        if let Phase::Udp {
            step, renew: false, ..
        } = self.phase
        {
            let protocol = match step {
                UdpStep::PcpMap | UdpStep::PcpAnnounce => Protocol::Pcp,
                _ => Protocol::NatPmp,
            };
            self.fail(now, protocol, "gateway port 5351 unreachable".to_owned());
        }
    }

    /// An SSDP answer from `src`.
    pub fn handle_ssdp(&mut self, now: Instant, src: SocketAddr, data: &[u8]) {
        if !matches!(self.phase, Phase::Ssdp { .. }) {
            return;
        }
        match ssdp::parse_answer(src, data) {
            Ok(location) => {
                let request = http::get_request(&location);
                let dst = location.addr;
                self.http(now, dst, request, HttpStep::Describe { location }, false);
            }
            Err(_) => self.invalid_answers += 1,
        }
    }

    /// The outcome of HTTP exchange `id`: the raw response, or why there
    /// is none.
    pub fn handle_http(&mut self, now: Instant, id: u64, result: Result<&[u8], String>) {
        let Phase::Http {
            id: expected,
            step,
            renew,
            ..
        } = self.phase.clone()
        else {
            return;
        };
        if id != expected {
            return;
        }
        let response = result.and_then(|raw| HttpResponse::parse(raw).map_err(|e| e.to_string()));
        self.on_http(now, step, renew, response);
    }

    /// Timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase.clone() {
            Phase::Idle | Phase::Stopped => {}
            Phase::Udp {
                step,
                renew,
                sent,
                first,
                next,
            } => {
                if now < next {
                    return;
                }
                self.udp_timeout(now, step, renew, sent, first);
            }
            Phase::Ssdp {
                sent,
                next,
                deadline,
            } => {
                if now >= deadline {
                    self.fail(
                        now,
                        Protocol::UpnpIgd,
                        "no gateway answered SSDP".to_owned(),
                    );
                } else if now >= next && sent < SSDP_TRIES {
                    self.send_ssdp();
                    self.phase = Phase::Ssdp {
                        sent: sent + 1,
                        next: now + SSDP_SPACING,
                        deadline,
                    };
                } else if now >= next {
                    self.phase = Phase::Ssdp {
                        sent,
                        next: deadline,
                        deadline,
                    };
                }
            }
            Phase::Http {
                step,
                renew,
                deadline,
                ..
            } => {
                if now >= deadline {
                    self.on_http(now, step, renew, Err("timeout".to_owned()));
                }
            }
            Phase::Mapped { renew_at, check_at } => {
                if now >= renew_at {
                    self.renew(now);
                } else if check_at.is_some_and(|c| now >= c) {
                    self.epoch_check(now);
                }
            }
            Phase::Waiting { retry_at } => {
                if now >= retry_at {
                    self.discover(now);
                }
            }
            Phase::Releasing { deadline } => {
                if now >= deadline {
                    self.phase = Phase::Stopped;
                }
            }
        }
    }

    // ---- discovery -----------------------------------------------------

    fn discover(&mut self, now: Instant) {
        self.failures.clear();
        self.queue = self.config.protocols.iter().copied().collect();
        self.next_protocol(now);
    }

    fn next_protocol(&mut self, now: Instant) {
        let Some(protocol) = self.queue.pop_front() else {
            self.unavailable(now);
            return;
        };
        match protocol {
            Protocol::Pcp | Protocol::NatPmp if self.local.gateway.is_none() => {
                self.failures
                    .push(format!("{protocol}: no default gateway"));
                self.next_protocol(now);
            }
            Protocol::Pcp => {
                self.send_pcp_map(self.lifetime_secs());
                self.udp_phase(now, UdpStep::PcpMap, false);
            }
            Protocol::NatPmp => {
                self.send_gateway(natpmp::external_address_request().to_vec());
                self.udp_phase(now, UdpStep::PmpExternal { check: false }, false);
            }
            Protocol::UpnpIgd => {
                if self.ssdp_targets().is_empty() {
                    self.failures
                        .push(format!("{protocol}: nowhere to send SSDP searches"));
                    self.next_protocol(now);
                    return;
                }
                self.send_ssdp();
                self.phase = Phase::Ssdp {
                    sent: 1,
                    next: now + SSDP_SPACING,
                    deadline: now + SSDP_WAIT,
                };
            }
        }
    }

    fn fail(&mut self, now: Instant, protocol: Protocol, reason: String) {
        self.failures.push(format!("{protocol}: {reason}"));
        self.next_protocol(now);
    }

    fn unavailable(&mut self, now: Instant) {
        let detail = if self.failures.is_empty() {
            "no protocol configured".to_owned()
        } else {
            self.failures.join("; ")
        };
        let error = TraversalError::new(TraversalErrorKind::PortMapUnavailable, detail);
        self.last_error = Some(error.clone());
        self.events.push_back(PortMapEvent::Unavailable(error));
        self.phase = Phase::Waiting {
            retry_at: now + self.config.retry_unavailable,
        };
    }

    fn mapped(
        &mut self,
        now: Instant,
        protocol: Protocol,
        external: SocketAddr,
        lifetime: Option<Duration>,
        upnp: Option<IgdService>,
    ) {
        let changed = self
            .mapping
            .as_ref()
            .is_none_or(|m| m.external != external || m.protocol != protocol);
        let renew_at = now
            + lifetime
                .map(|l| l / 2)
                .unwrap_or(PERMANENT_REFRESH)
                .max(MIN_RENEW);
        let check_at = match protocol {
            Protocol::Pcp | Protocol::NatPmp => Some(now + self.config.epoch_check),
            Protocol::UpnpIgd => None,
        };
        self.mapping = Some(Mapping {
            protocol,
            external,
            lifetime,
            granted: now,
            upnp,
        });
        self.last_error = None;
        self.failures.clear();
        self.phase = Phase::Mapped { renew_at, check_at };
        if changed {
            self.events
                .push_back(PortMapEvent::Mapped { protocol, external });
        }
    }

    /// Our mapping is gone: say so and discover again.
    fn lose(&mut self, now: Instant, why: String) {
        if self.mapping.take().is_some() {
            self.events.push_back(PortMapEvent::Lost);
        }
        self.last_error = Some(TraversalError::new(
            TraversalErrorKind::PortMapUnavailable,
            why,
        ));
        self.discover(now);
    }

    fn renew(&mut self, now: Instant) {
        let Some(mapping) = self.mapping.clone() else {
            self.discover(now);
            return;
        };
        match mapping.protocol {
            Protocol::Pcp => {
                self.send_pcp_map(self.lifetime_secs());
                self.udp_phase(now, UdpStep::PcpMap, true);
            }
            Protocol::NatPmp => {
                let ip = match mapping.external.ip() {
                    IpAddr::V4(ip) => ip,
                    IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
                };
                self.send_gateway(
                    natpmp::map_udp_request(
                        self.local.internal_port,
                        mapping.external.port(),
                        self.lifetime_secs(),
                    )
                    .to_vec(),
                );
                self.udp_phase(now, UdpStep::PmpMap { ip }, true);
            }
            Protocol::UpnpIgd => {
                let (Some(service), IpAddr::V4(ip)) = (mapping.upnp, mapping.external.ip()) else {
                    self.lose(now, "upnp-igd: mapping without a service".to_owned());
                    return;
                };
                let lease = if mapping.lifetime.is_none() {
                    0
                } else {
                    self.lifetime_secs()
                };
                self.send_add(now, service, ip, mapping.external.port(), lease, 0, true);
            }
        }
    }

    fn epoch_check(&mut self, now: Instant) {
        match self.mapping.as_ref().map(|m| m.protocol) {
            Some(Protocol::Pcp) => {
                self.send_gateway(pcp::announce_request(IpAddr::V4(self.local.client_ip)).to_vec());
                self.udp_phase(now, UdpStep::PcpAnnounce, true);
            }
            Some(Protocol::NatPmp) => {
                self.send_gateway(natpmp::external_address_request().to_vec());
                self.udp_phase(now, UdpStep::PmpExternal { check: true }, true);
            }
            _ => {}
        }
    }

    /// Back to holding the mapping after an epoch check, keeping the
    /// renewal time.
    fn back_to_mapped(&mut self, now: Instant) {
        let Some(mapping) = &self.mapping else {
            self.discover(now);
            return;
        };
        let renew_at = mapping.granted
            + mapping
                .lifetime
                .map(|l| l / 2)
                .unwrap_or(PERMANENT_REFRESH)
                .max(MIN_RENEW);
        self.phase = Phase::Mapped {
            renew_at: renew_at.max(now),
            check_at: Some(now + self.config.epoch_check),
        };
    }

    /// Records a gateway epoch; `false` when the gateway restarted.
    fn epoch_ok(&mut self, now: Instant, epoch: u32) -> bool {
        match &mut self.epoch {
            Some(track) => track.update(now, epoch),
            None => {
                self.epoch = Some(EpochTrack::new(now, epoch));
                true
            }
        }
    }
}

mod udp;
mod upnp;

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
