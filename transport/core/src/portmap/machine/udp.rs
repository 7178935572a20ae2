//! The PCP and NAT-PMP half of [`PortMapper`]: requests to the gateway's
//! port 5351, their resends, and what their answers do.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use relay_proto::wire::natpmp::{self, NatPmpBody, NatPmpError, NatPmpResponse};
use relay_proto::wire::pcp::{self, MapRequest, PcpError, PcpResponse, PcpResult};

use super::*;

impl PortMapper {
    // ---- PCP / NAT-PMP -----------------------------------------------------

    pub(super) fn lifetime_secs(&self) -> u32 {
        u32::try_from(self.config.lifetime.as_secs())
            .unwrap_or(u32::MAX)
            .max(1)
    }

    pub(super) fn send_gateway(&mut self, data: Vec<u8>) {
        self.transmits.push_back(PortMapTransmit::Gateway(data));
    }

    pub(super) fn send_pcp_map(&mut self, lifetime: u32) {
        let suggested = self
            .mapping
            .as_ref()
            .filter(|m| m.protocol == Protocol::Pcp)
            .map(|m| m.external);
        self.send_pcp_map_for(lifetime, suggested);
    }

    /// A MAP request; `suggested` is the external address we hold (or
    /// held), asked for again.
    pub(super) fn send_pcp_map_for(&mut self, lifetime: u32, suggested: Option<SocketAddr>) {
        let request = MapRequest {
            lifetime,
            client: IpAddr::V4(self.local.client_ip),
            nonce: self.nonce,
            internal_port: self.local.internal_port,
            external_port: suggested.map_or(self.local.internal_port, |a| a.port()),
            external_ip: suggested.map_or(pcp::any_v4(), |a| a.ip()),
        };
        self.send_gateway(request.emit().to_vec());
    }

    pub(super) fn udp_phase(&mut self, now: Instant, step: UdpStep, renew: bool) {
        let next = if renew {
            now + RENEW_BACKOFF
        } else {
            now + UDP_TRIES[1]
        };
        self.phase = Phase::Udp {
            step,
            renew,
            sent: 1,
            first: now,
            next,
        };
    }

    pub(super) fn resend(&mut self, step: UdpStep) {
        match step {
            UdpStep::PcpMap => self.send_pcp_map(self.lifetime_secs()),
            UdpStep::PcpAnnounce => {
                self.send_gateway(pcp::announce_request(IpAddr::V4(self.local.client_ip)).to_vec())
            }
            UdpStep::PmpExternal { .. } => {
                self.send_gateway(natpmp::external_address_request().to_vec())
            }
            UdpStep::PmpMap { .. } => {
                let external = self
                    .mapping
                    .as_ref()
                    .map_or(self.local.internal_port, |m| m.external.port());
                self.send_gateway(
                    natpmp::map_udp_request(
                        self.local.internal_port,
                        external,
                        self.lifetime_secs(),
                    )
                    .to_vec(),
                );
            }
        }
    }

    pub(super) fn udp_timeout(
        &mut self,
        now: Instant,
        step: UdpStep,
        renew: bool,
        sent: u32,
        first: Instant,
    ) {
        let is_check = matches!(
            step,
            UdpStep::PcpAnnounce | UdpStep::PmpExternal { check: true }
        );
        if renew {
            if self
                .mapping
                .as_ref()
                .and_then(Mapping::expires)
                .is_some_and(|e| now >= e)
            {
                self.lose(now, "the gateway stopped answering renewals".to_owned());
                return;
            }
            if is_check && sent >= UDP_TRIES.len() as u32 {
                // An unanswered check proves nothing; the renewal will.
                self.back_to_mapped(now);
                return;
            }
            self.resend(step);
            let backoff = RENEW_BACKOFF
                .saturating_mul(1 << sent.min(6))
                .min(RENEW_BACKOFF_MAX);
            // Wake at expiry at the latest, to let the mapping go then.
            let expiry = self.mapping.as_ref().and_then(Mapping::expires);
            let next = expiry.map_or(now + backoff, |e| (now + backoff).min(e));
            self.phase = Phase::Udp {
                step,
                renew,
                sent: sent + 1,
                first,
                next,
            };
            return;
        }
        let protocol = match step {
            UdpStep::PcpMap | UdpStep::PcpAnnounce => Protocol::Pcp,
            _ => Protocol::NatPmp,
        };
        if let Some(offset) = UDP_TRIES.get(sent as usize) {
            if now >= first + *offset {
                self.resend(step);
                let next = UDP_TRIES
                    .get(sent as usize + 1)
                    .map_or(first + UDP_GIVE_UP, |o| first + *o);
                self.phase = Phase::Udp {
                    step,
                    renew,
                    sent: sent + 1,
                    first,
                    next,
                };
                return;
            }
        }
        if now >= first + UDP_GIVE_UP {
            let gateway = self
                .local
                .gateway
                .map_or_else(|| "the gateway".to_owned(), |g| g.to_string());
            self.fail(now, protocol, format!("no answer from {gateway}"));
        }
    }

    pub(super) fn on_pcp(&mut self, now: Instant, step: UdpStep, renew: bool, data: &[u8]) {
        let response = match PcpResponse::parse(data) {
            Ok(r) => r,
            Err(PcpError::NatPmpOnly) if !renew => {
                self.fail(
                    now,
                    Protocol::Pcp,
                    "the gateway speaks NAT-PMP only".to_owned(),
                );
                return;
            }
            Err(_) => {
                self.invalid_answers += 1;
                return;
            }
        };
        let restarted = !self.epoch_ok(now, response.epoch);
        if step == UdpStep::PcpAnnounce {
            if response.opcode != pcp::OP_ANNOUNCE {
                self.invalid_answers += 1;
                return;
            }
            if restarted {
                tracing::info!("port map: the gateway restarted (PCP epoch); mapping again");
                self.renew(now);
            } else {
                self.back_to_mapped(now);
            }
            return;
        }
        let map = match response.map {
            Some(m)
                if response.opcode == pcp::OP_MAP
                    && m.nonce == self.nonce
                    && m.internal_port == self.local.internal_port
                    && m.protocol == pcp::PROTO_UDP =>
            {
                Some(m)
            }
            None if response.opcode == pcp::OP_MAP && response.result != PcpResult::Success => None,
            _ => {
                self.invalid_answers += 1;
                return;
            }
        };
        if response.result != PcpResult::Success {
            let reason = format!("the gateway refused: {}", response.result);
            if renew {
                self.lose(now, format!("pcp: {reason}"));
            } else {
                self.fail(now, Protocol::Pcp, reason);
            }
            return;
        }
        let Some(map) = map else { return };
        if response.lifetime == 0 || map.external_port == 0 || map.external_ip.is_unspecified() {
            self.invalid_answers += 1;
            return;
        }
        let external = SocketAddr::new(map.external_ip, map.external_port);
        let lifetime = Duration::from_secs(u64::from(response.lifetime));
        self.mapped(now, Protocol::Pcp, external, Some(lifetime), None);
    }

    pub(super) fn on_pmp_external(&mut self, now: Instant, check: bool, data: &[u8]) {
        let response = match NatPmpResponse::parse(data) {
            Ok(r) => r,
            Err(NatPmpError::Version(pcp::VERSION)) if !check => {
                self.fail(
                    now,
                    Protocol::NatPmp,
                    "the gateway speaks PCP only".to_owned(),
                );
                return;
            }
            Err(_) => {
                self.invalid_answers += 1;
                return;
            }
        };
        let ip = match response.body {
            NatPmpBody::ExternalAddress { ip } => ip,
            NatPmpBody::Failed {
                opcode: natpmp::OP_EXTERNAL_ADDRESS,
            } if !check => {
                self.fail(
                    now,
                    Protocol::NatPmp,
                    format!("the gateway refused: {}", response.result),
                );
                return;
            }
            _ => {
                self.invalid_answers += 1;
                return;
            }
        };
        let restarted = !self.epoch_ok(now, response.epoch);
        if check {
            let moved = self
                .mapping
                .as_ref()
                .is_some_and(|m| m.external.ip() != IpAddr::V4(ip));
            if restarted || moved {
                tracing::info!(
                    "port map: the gateway restarted or changed address (NAT-PMP); mapping again"
                );
                // Map again; the answer publishes the (new) address.
                self.renew(now);
                if let Phase::Udp {
                    step: UdpStep::PmpMap { ip: step_ip },
                    ..
                } = &mut self.phase
                {
                    *step_ip = ip;
                }
            } else {
                self.back_to_mapped(now);
            }
            return;
        }
        if ip.is_unspecified() {
            self.fail(
                now,
                Protocol::NatPmp,
                "the gateway has no external address".to_owned(),
            );
            return;
        }
        self.send_gateway(
            natpmp::map_udp_request(
                self.local.internal_port,
                self.local.internal_port,
                self.lifetime_secs(),
            )
            .to_vec(),
        );
        self.udp_phase(now, UdpStep::PmpMap { ip }, false);
    }

    pub(super) fn on_pmp_map(&mut self, now: Instant, ip: Ipv4Addr, renew: bool, data: &[u8]) {
        let Ok(response) = NatPmpResponse::parse(data) else {
            self.invalid_answers += 1;
            return;
        };
        let restarted = !self.epoch_ok(now, response.epoch);
        match response.body {
            NatPmpBody::MapUdp {
                internal,
                external,
                lifetime,
            } if internal == self.local.internal_port && external != 0 && lifetime != 0 => {
                if restarted && renew {
                    tracing::debug!("port map: NAT-PMP epoch reset seen on renewal");
                }
                let external = SocketAddr::new(IpAddr::V4(ip), external);
                let lifetime = Duration::from_secs(u64::from(lifetime));
                self.mapped(now, Protocol::NatPmp, external, Some(lifetime), None);
            }
            NatPmpBody::Failed {
                opcode: natpmp::OP_MAP_UDP,
            } => {
                let reason = format!("the gateway refused: {}", response.result);
                if renew {
                    self.lose(now, format!("nat-pmp: {reason}"));
                } else {
                    self.fail(now, Protocol::NatPmp, reason);
                }
            }
            _ => self.invalid_answers += 1,
        }
    }
}
