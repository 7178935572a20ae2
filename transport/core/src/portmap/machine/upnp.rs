//! The UPnP-IGD half of [`PortMapper`]: SSDP searches, and the HTTP
//! steps (description, `GetExternalIPAddress`, `AddPortMapping`,
//! `DeletePortMapping`) and what their answers do.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;

use super::*;

impl PortMapper {
    // ---- UPnP-IGD --------------------------------------------------------

    pub(super) fn ssdp_targets(&self) -> Vec<SocketAddr> {
        let mut targets = Vec::new();
        if self.config.ssdp_multicast {
            targets.push(ssdp::SSDP_MULTICAST);
        }
        let unicast = self.config.ssdp.or_else(|| {
            self.local
                .gateway
                .map(|g| SocketAddr::new(g.ip(), ssdp::SSDP_PORT))
        });
        targets.extend(unicast);
        targets
    }

    pub(super) fn send_ssdp(&mut self) {
        for dst in self.ssdp_targets() {
            self.transmits.push_back(PortMapTransmit::Ssdp {
                dst,
                data: ssdp::search_request(),
            });
        }
    }

    pub(super) fn http(
        &mut self,
        now: Instant,
        dst: SocketAddr,
        request: Vec<u8>,
        step: HttpStep,
        renew: bool,
    ) {
        let id = self.next_http;
        self.next_http += 1;
        self.transmits
            .push_back(PortMapTransmit::Http { id, dst, request });
        let wait = match step {
            HttpStep::Delete => RELEASE_WAIT,
            _ => HTTP_TIMEOUT,
        };
        let deadline = now + wait;
        self.phase = Phase::Http {
            id,
            step,
            renew,
            deadline,
        };
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_add(
        &mut self,
        now: Instant,
        service: IgdService,
        ip: Ipv4Addr,
        port: u16,
        lease: u32,
        conflicts: u32,
        renew: bool,
    ) {
        let body = igd::add_port_mapping(
            &service.service_type,
            port,
            self.local.client_ip,
            self.local.internal_port,
            lease,
        );
        let request = http::soap_request(
            &service.control,
            &service.service_type,
            "AddPortMapping",
            &body,
        );
        let dst = service.control.addr;
        self.http(
            now,
            dst,
            request,
            HttpStep::Add {
                service,
                ip,
                port,
                lease,
                conflicts,
            },
            renew,
        );
    }

    pub(super) fn on_http(
        &mut self,
        now: Instant,
        step: HttpStep,
        renew: bool,
        response: Result<HttpResponse, String>,
    ) {
        match step {
            HttpStep::Delete => self.phase = Phase::Stopped,
            HttpStep::Describe { location } => {
                let result = response.and_then(|r| {
                    if r.status != 200 {
                        return Err(format!("description: HTTP status {}", r.status));
                    }
                    let text = String::from_utf8_lossy(&r.body);
                    igd::find_service(&location, &text).map_err(|e| e.to_string())
                });
                match result {
                    Ok(service) => {
                        let body = igd::get_external_ip(&service.service_type);
                        let request = http::soap_request(
                            &service.control,
                            &service.service_type,
                            "GetExternalIPAddress",
                            &body,
                        );
                        let dst = service.control.addr;
                        self.http(now, dst, request, HttpStep::ExternalIp { service }, false);
                    }
                    Err(e) => self.fail(now, Protocol::UpnpIgd, e),
                }
            }
            HttpStep::ExternalIp { service } => {
                let ip = response.and_then(|r| {
                    let body = igd::soap_result(&r).map_err(|e| e.to_string())?;
                    igd::external_ip(&body).map_err(|e| e.to_string())
                });
                match ip {
                    Ok(IpAddr::V4(ip)) if !ip.is_unspecified() => {
                        let port = self.local.internal_port;
                        let lease = self.lifetime_secs();
                        self.send_add(now, service, ip, port, lease, 0, false);
                    }
                    Ok(other) => self.fail(
                        now,
                        Protocol::UpnpIgd,
                        format!("unusable external address {other}"),
                    ),
                    Err(e) => {
                        self.fail(now, Protocol::UpnpIgd, format!("GetExternalIPAddress: {e}"))
                    }
                }
            }
            HttpStep::Add {
                service,
                ip,
                port,
                lease,
                conflicts,
            } => {
                let result = response.and_then(|r| {
                    igd::soap_result(&r).map_err(|e| match e {
                        IgdError::Fault {
                            code: Some(code), ..
                        } => format!("#{code}"),
                        other => other.to_string(),
                    })
                });
                match result {
                    Ok(_) => {
                        let lifetime = (lease != 0).then(|| Duration::from_secs(u64::from(lease)));
                        let external = SocketAddr::new(IpAddr::V4(ip), port);
                        self.mapped(now, Protocol::UpnpIgd, external, lifetime, Some(service));
                    }
                    Err(e) if e == format!("#{}", igd::ERR_ONLY_PERMANENT) && lease != 0 => {
                        self.send_add(now, service, ip, port, 0, conflicts, renew);
                    }
                    Err(e)
                        if e == format!("#{}", igd::ERR_CONFLICT)
                            && !renew
                            && conflicts < UPNP_CONFLICT_TRIES =>
                    {
                        let port = self.rng.gen_range(1024..=65535);
                        self.send_add(now, service, ip, port, lease, conflicts + 1, renew);
                    }
                    Err(e) if renew => {
                        let expired = self
                            .mapping
                            .as_ref()
                            .and_then(Mapping::expires)
                            .is_some_and(|x| now + RENEW_BACKOFF_MAX >= x);
                        if expired {
                            self.lose(now, format!("upnp-igd: renewal failed: {e}"));
                        } else {
                            // Try again later, while the mapping lasts.
                            self.phase = Phase::Mapped {
                                renew_at: now + RENEW_BACKOFF_MAX,
                                check_at: None,
                            };
                        }
                    }
                    Err(e) => self.fail(now, Protocol::UpnpIgd, format!("AddPortMapping: {e}")),
                }
            }
        }
    }
}
