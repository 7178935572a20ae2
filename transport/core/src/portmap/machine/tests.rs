//! The port-mapping machine on simulated time: fallback order, renewal
//! timing, epoch resets, expiry, release, UPnP, and garbage.

use super::*;
use relay_proto::wire::natpmp::{NatPmpBody, NatPmpRequest, NatPmpResponse, NatPmpResult};
use relay_proto::wire::pcp::{MapRequest, MapResponse, PcpResponse, PcpResult};

const PORT: u16 = 40000;
const EXT_IP: [u8; 4] = [198, 51, 101, 10];

fn local() -> Local {
    Local {
        client_ip: Ipv4Addr::new(10, 1, 0, 2),
        internal_port: PORT,
        gateway: Some("10.1.0.1:5351".parse().unwrap()),
    }
}

fn machine(protocols: &[Protocol]) -> PortMapper {
    let config = PortMapConfig {
        protocols: protocols.to_vec(),
        ssdp_multicast: false,
        ..PortMapConfig::default()
    };
    PortMapper::new(config, local(), [9; 32])
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn transmits(m: &mut PortMapper) -> Vec<PortMapTransmit> {
    std::iter::from_fn(|| m.poll_transmit()).collect()
}

fn events(m: &mut PortMapper) -> Vec<PortMapEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn gateway_sends(t: &[PortMapTransmit]) -> Vec<Vec<u8>> {
    t.iter()
        .filter_map(|t| match t {
            PortMapTransmit::Gateway(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

/// Runs timers up to `until` in 50 ms steps, collecting transmits.
fn run_until(m: &mut PortMapper, now: &mut Instant, until: Instant) -> Vec<PortMapTransmit> {
    let mut out = Vec::new();
    while *now < until {
        *now = (*now + ms(50)).min(until);
        if m.poll_timeout().is_some_and(|t| t <= *now) {
            m.handle_timeout(*now);
        }
        out.extend(transmits(m));
    }
    out
}

fn pcp_answer(req: &MapRequest, lifetime: u32, epoch: u32, ext_port: u16) -> Vec<u8> {
    PcpResponse {
        opcode: pcp::OP_MAP,
        result: PcpResult::Success,
        lifetime,
        epoch,
        map: Some(MapResponse {
            nonce: req.nonce,
            protocol: pcp::PROTO_UDP,
            internal_port: req.internal_port,
            external_port: ext_port,
            external_ip: IpAddr::from(EXT_IP),
        }),
    }
    .emit()
}

fn pmp(result: NatPmpResult, epoch: u32, body: NatPmpBody) -> Vec<u8> {
    NatPmpResponse {
        result,
        epoch,
        body,
    }
    .emit()
}

fn ext(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::from(EXT_IP), port)
}

#[test]
fn pcp_maps_then_renews_at_half_the_granted_lifetime() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut m = machine(&[Protocol::Pcp]);
    m.start(now);
    let sent = gateway_sends(&transmits(&mut m));
    assert_eq!(sent.len(), 1);
    let req = MapRequest::parse(&sent[0]).unwrap();
    assert_eq!(req.lifetime, 7200);
    assert_eq!(req.client, IpAddr::V4(local().client_ip));
    assert_eq!((req.internal_port, req.external_port), (PORT, PORT));
    assert_eq!(m.status(now).state, "discovering");

    // The gateway grants less than asked.
    m.handle_gateway(now, &pcp_answer(&req, 600, 50, PORT));
    assert_eq!(
        events(&mut m),
        vec![PortMapEvent::Mapped {
            protocol: Protocol::Pcp,
            external: ext(PORT)
        }]
    );
    let status = m.status(now);
    assert_eq!(
        (status.state, status.protocol, status.external_addr),
        ("mapped", Some(Protocol::Pcp), Some(ext(PORT)))
    );
    assert_eq!(status.expires_in, Some(secs(600)));
    assert_eq!(status.error, None);

    // Epoch checks (every 120 s) answered steadily; no MAP before 300 s.
    let mut epoch = 50;
    let mut maps = Vec::new();
    while now < t0 + secs(300) - ms(50) {
        let step = now + ms(50);
        for d in gateway_sends(&run_until(&mut m, &mut now, step)) {
            if let Some(r) = MapRequest::parse(&d) {
                maps.push((now - t0, r));
            } else {
                // ANNOUNCE: answer with a steady epoch.
                epoch = 50 + (now - t0).as_secs() as u32;
                let a = PcpResponse {
                    opcode: pcp::OP_ANNOUNCE,
                    result: PcpResult::Success,
                    lifetime: 0,
                    epoch,
                    map: None,
                };
                m.handle_gateway(now, &a.emit());
            }
        }
    }
    assert!(maps.is_empty(), "renewed early: {maps:?}");
    let sent = gateway_sends(&run_until(&mut m, &mut now, t0 + secs(300)));
    assert_eq!(sent.len(), 1);
    let renewal = MapRequest::parse(&sent[0]).unwrap();
    // Same nonce, asking for the address it holds.
    assert_eq!(renewal.nonce, req.nonce);
    assert_eq!(renewal.external_port, PORT);
    assert_eq!(renewal.external_ip, IpAddr::from(EXT_IP));
    m.handle_gateway(now, &pcp_answer(&renewal, 600, epoch + 60, PORT));
    // Unchanged: no new event, and a fresh lifetime.
    assert!(events(&mut m).is_empty());
    assert_eq!(m.status(now).expires_in, Some(secs(600)));
}

#[test]
fn falls_back_pcp_then_nat_pmp_with_bounded_resends() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut m = machine(&[Protocol::Pcp, Protocol::NatPmp, Protocol::UpnpIgd]);
    m.start(now);
    let mut sent = gateway_sends(&transmits(&mut m));
    sent.extend(gateway_sends(&run_until(&mut m, &mut now, t0 + ms(1700))));
    // Three PCP tries (0, 250, 750 ms), nothing else yet.
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|d| MapRequest::parse(d).is_some()));
    let sent = gateway_sends(&run_until(&mut m, &mut now, t0 + ms(1750)));
    assert_eq!(sent, vec![natpmp::external_address_request().to_vec()]);

    m.handle_gateway(
        now,
        &pmp(
            NatPmpResult::Success,
            7,
            NatPmpBody::ExternalAddress { ip: EXT_IP.into() },
        ),
    );
    let sent = gateway_sends(&transmits(&mut m));
    assert_eq!(
        NatPmpRequest::parse(&sent[0]),
        Some(NatPmpRequest::MapUdp {
            internal: PORT,
            external: PORT,
            lifetime: 7200
        })
    );
    m.handle_gateway(
        now,
        &pmp(
            NatPmpResult::Success,
            7,
            NatPmpBody::MapUdp {
                internal: PORT,
                external: 41000,
                lifetime: 7200,
            },
        ),
    );
    assert_eq!(
        events(&mut m),
        vec![PortMapEvent::Mapped {
            protocol: Protocol::NatPmp,
            external: ext(41000)
        }]
    );
}

#[test]
fn a_nat_pmp_only_gateway_skips_pcp_at_once() {
    let now = Instant::now();
    let mut m = machine(&[Protocol::Pcp, Protocol::NatPmp]);
    m.start(now);
    transmits(&mut m);
    // NAT-PMP "unsupported version" to our PCP request.
    m.handle_gateway(
        now,
        &pmp(
            NatPmpResult::UnsupportedVersion,
            0,
            NatPmpBody::Failed { opcode: 1 },
        ),
    );
    assert_eq!(
        gateway_sends(&transmits(&mut m)),
        vec![natpmp::external_address_request().to_vec()]
    );
    // A closed port fails NAT-PMP at once too.
    m.handle_gateway_unreachable(now);
    let ev = events(&mut m);
    let [PortMapEvent::Unavailable(e)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(e.kind, TraversalErrorKind::PortMapUnavailable);
    assert_eq!(
        e.to_string(),
        "port-map-unavailable: pcp: the gateway speaks NAT-PMP only; nat-pmp: gateway port 5351 unreachable"
    );
}

#[test]
fn no_gateway_is_unavailable_and_retried_later() {
    let t0 = Instant::now();
    let mut now = t0;
    let config = PortMapConfig {
        ssdp_multicast: false,
        ..PortMapConfig::default()
    };
    let mut m = PortMapper::new(
        config,
        Local {
            gateway: None,
            ..local()
        },
        [1; 32],
    );
    m.start(now);
    assert!(transmits(&mut m).is_empty());
    let ev = events(&mut m);
    assert!(matches!(ev.as_slice(), [PortMapEvent::Unavailable(_)]));
    let status = m.status(now);
    assert_eq!(status.state, "unavailable");
    assert_eq!(status.protocol, None);
    assert_eq!(
        status.error.as_deref(),
        Some("port-map-unavailable: pcp: no default gateway; nat-pmp: no default gateway; upnp-igd: nowhere to send SSDP searches")
    );

    // A gateway that never answers: PCP, NAT-PMP, then SSDP time out.
    let mut m = machine(&[Protocol::Pcp, Protocol::NatPmp, Protocol::UpnpIgd]);
    m.start(now);
    let mut all = transmits(&mut m);
    all.extend(run_until(&mut m, &mut now, t0 + secs(10)));
    let ev = events(&mut m);
    let [PortMapEvent::Unavailable(e)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(
        e.detail,
        "pcp: no answer from 10.1.0.1:5351; nat-pmp: no answer from 10.1.0.1:5351; upnp-igd: no gateway answered SSDP"
    );
    // 3 PCP + 3 NAT-PMP + 2 SSDP searches to the gateway's port 1900.
    assert_eq!(gateway_sends(&all).len(), 6);
    let ssdp: Vec<_> = all
        .iter()
        .filter_map(|t| match t {
            PortMapTransmit::Ssdp { dst, .. } => Some(*dst),
            _ => None,
        })
        .collect();
    assert_eq!(ssdp, vec!["10.1.0.1:1900".parse().unwrap(); 2]);
    // Quiet until the retry, then discovery again.
    assert!(run_until(&mut m, &mut now, t0 + secs(300)).is_empty());
    let again = run_until(&mut m, &mut now, t0 + secs(306));
    assert!(MapRequest::parse(&gateway_sends(&again)[0]).is_some());
}

#[test]
fn nat_pmp_epoch_reset_maps_again() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut m = machine(&[Protocol::NatPmp]);
    m.start(now);
    transmits(&mut m);
    let ext_answer = |epoch| {
        pmp(
            NatPmpResult::Success,
            epoch,
            NatPmpBody::ExternalAddress { ip: EXT_IP.into() },
        )
    };
    let map_answer = |epoch| {
        pmp(
            NatPmpResult::Success,
            epoch,
            NatPmpBody::MapUdp {
                internal: PORT,
                external: PORT,
                lifetime: 7200,
            },
        )
    };
    m.handle_gateway(now, &ext_answer(1000));
    transmits(&mut m);
    m.handle_gateway(now, &map_answer(1000));
    assert_eq!(events(&mut m).len(), 1);

    // The first epoch check comes after 120 s: a steady epoch changes
    // nothing.
    let sent = gateway_sends(&run_until(&mut m, &mut now, t0 + secs(120)));
    assert_eq!(sent, vec![natpmp::external_address_request().to_vec()]);
    m.handle_gateway(now, &ext_answer(1120));
    assert!(transmits(&mut m).is_empty());

    // The gateway reboots: the next check sees epoch 4 and maps again.
    let sent = gateway_sends(&run_until(&mut m, &mut now, t0 + secs(240)));
    assert_eq!(sent.len(), 1);
    m.handle_gateway(now, &ext_answer(4));
    let sent = gateway_sends(&transmits(&mut m));
    assert_eq!(
        NatPmpRequest::parse(&sent[0]),
        Some(NatPmpRequest::MapUdp {
            internal: PORT,
            external: PORT,
            lifetime: 7200
        })
    );
    m.handle_gateway(now, &map_answer(4));
    assert_eq!(m.status(now).state, "mapped");
    assert_eq!(m.status(now).expires_in, Some(secs(7200)));
    assert!(
        events(&mut m).is_empty(),
        "same address: nothing to publish"
    );

    // The gateway's external address changes: mapped again, published.
    let sent = gateway_sends(&run_until(&mut m, &mut now, t0 + secs(360)));
    assert_eq!(sent, vec![natpmp::external_address_request().to_vec()]);
    let new_ip = Ipv4Addr::new(198, 51, 101, 99);
    m.handle_gateway(
        now,
        &pmp(
            NatPmpResult::Success,
            124,
            NatPmpBody::ExternalAddress { ip: new_ip },
        ),
    );
    assert_eq!(gateway_sends(&transmits(&mut m)).len(), 1);
    m.handle_gateway(now, &map_answer(124));
    assert_eq!(
        events(&mut m),
        vec![PortMapEvent::Mapped {
            protocol: Protocol::NatPmp,
            external: SocketAddr::new(IpAddr::V4(new_ip), PORT)
        }]
    );
}

#[test]
fn unanswered_renewals_lose_the_mapping_at_expiry() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut m = PortMapper::new(
        PortMapConfig {
            protocols: vec![Protocol::Pcp],
            epoch_check: secs(10_000),
            ..PortMapConfig::default()
        },
        local(),
        [3; 32],
    );
    m.start(now);
    let req = MapRequest::parse(&gateway_sends(&transmits(&mut m))[0]).unwrap();
    m.handle_gateway(now, &pcp_answer(&req, 120, 1, PORT));
    events(&mut m);
    let renewals = gateway_sends(&run_until(&mut m, &mut now, t0 + secs(119)));
    // Renewal from 60 s, resent with backoff (60, 61, 63, 67, 75, 91 s).
    assert_eq!(renewals.len(), 6);
    assert_eq!(m.status(now).state, "mapped");
    let status = m.status(now);
    assert_eq!(status.external_addr, Some(ext(PORT)));
    // At expiry (120 s) the mapping is lost and discovery starts over.
    let rediscovery = gateway_sends(&run_until(&mut m, &mut now, t0 + secs(120)));
    assert_eq!(events(&mut m), vec![PortMapEvent::Lost]);
    let status = m.status(now);
    assert_eq!((status.state, status.external_addr), ("discovering", None));
    assert_eq!(
        status.error.as_deref(),
        Some("port-map-unavailable: the gateway stopped answering renewals")
    );
    let fresh = MapRequest::parse(rediscovery.last().unwrap()).unwrap();
    assert_eq!(fresh.lifetime, 7200);
}

#[test]
fn release_deletes_the_mapping() {
    let now = Instant::now();
    // PCP: the same nonce with lifetime 0.
    let mut m = machine(&[Protocol::Pcp]);
    m.start(now);
    let req = MapRequest::parse(&gateway_sends(&transmits(&mut m))[0]).unwrap();
    m.handle_gateway(now, &pcp_answer(&req, 7200, 1, PORT));
    events(&mut m);
    m.release(now);
    assert_eq!(events(&mut m), vec![PortMapEvent::Lost]);
    let del = MapRequest::parse(&gateway_sends(&transmits(&mut m))[0]).unwrap();
    assert_eq!((del.lifetime, del.nonce), (0, req.nonce));
    assert_eq!(m.status(now).state, "stopped");
    assert!(!m.is_stopped());
    m.handle_gateway(now, &pcp_answer(&del, 0, 2, PORT));
    assert!(m.is_stopped());

    // NAT-PMP: lifetime 0; unanswered, it stops after 1 s anyway.
    let mut m = machine(&[Protocol::NatPmp]);
    m.start(now);
    transmits(&mut m);
    m.handle_gateway(
        now,
        &pmp(
            NatPmpResult::Success,
            1,
            NatPmpBody::ExternalAddress { ip: EXT_IP.into() },
        ),
    );
    transmits(&mut m);
    m.handle_gateway(
        now,
        &pmp(
            NatPmpResult::Success,
            1,
            NatPmpBody::MapUdp {
                internal: PORT,
                external: PORT,
                lifetime: 7200,
            },
        ),
    );
    m.release(now);
    assert_eq!(
        NatPmpRequest::parse(&gateway_sends(&transmits(&mut m))[0]),
        Some(NatPmpRequest::MapUdp {
            internal: PORT,
            external: 0,
            lifetime: 0
        })
    );
    m.handle_timeout(now + secs(1));
    assert!(m.is_stopped());

    // Nothing mapped: stopped at once, nothing sent.
    let mut m = machine(&[Protocol::Pcp]);
    m.release(now);
    assert!(m.is_stopped() && transmits(&mut m).is_empty());
}

const DESC: &str = "<root><device><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/ctl/IPConn</controlURL></service></serviceList></device></root>";

fn http_ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn http_fault(code: u16) -> Vec<u8> {
    let body = format!("<s:Envelope><s:Body><s:Fault><detail><UPnPError><errorCode>{code}</errorCode><errorDescription>x</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>");
    format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn only_http(t: Vec<PortMapTransmit>) -> (u64, SocketAddr, String) {
    let [PortMapTransmit::Http { id, dst, request }] = t.as_slice() else {
        panic!("{t:?}")
    };
    (*id, *dst, String::from_utf8(request.clone()).unwrap())
}

#[test]
fn upnp_discovers_maps_renews_and_releases() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut m = machine(&[Protocol::UpnpIgd]);
    m.start(now);
    let t = transmits(&mut m);
    assert!(matches!(t.as_slice(), [PortMapTransmit::Ssdp { .. }]));
    let gw: SocketAddr = "10.1.0.1:1900".parse().unwrap();
    // A foreign LOCATION is ignored; the good answer is taken.
    let answer = |loc: &str| {
        format!("HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: {loc}\r\n\r\n")
    };
    m.handle_ssdp(now, gw, answer("http://10.66.0.1:80/x.xml").as_bytes());
    assert!(transmits(&mut m).is_empty());
    m.handle_ssdp(
        now,
        gw,
        answer("http://10.1.0.1:5000/rootDesc.xml").as_bytes(),
    );
    let (id, dst, req) = only_http(transmits(&mut m));
    assert_eq!(dst, "10.1.0.1:5000".parse().unwrap());
    assert!(req.starts_with("GET /rootDesc.xml HTTP/1.1\r\n"));

    // A stale id is ignored.
    m.handle_http(now, id + 100, Ok(&http_ok(DESC)));
    assert!(transmits(&mut m).is_empty());
    m.handle_http(now, id, Ok(&http_ok(DESC)));
    let (id, _, req) = only_http(transmits(&mut m));
    assert!(req.starts_with("POST /ctl/IPConn HTTP/1.1\r\n"));
    assert!(req.contains("#GetExternalIPAddress\""));
    m.handle_http(
        now,
        id,
        Ok(&http_ok(
            "<u:R><NewExternalIPAddress>198.51.101.10</NewExternalIPAddress></u:R>",
        )),
    );
    let (id, _, req) = only_http(transmits(&mut m));
    assert!(req.contains("<NewExternalPort>40000</NewExternalPort>"));
    assert!(req.contains("<NewInternalClient>10.1.0.2</NewInternalClient>"));
    // Port taken: a random one is tried next.
    m.handle_http(now, id, Ok(&http_fault(igd::ERR_CONFLICT)));
    let (id, _, req) = only_http(transmits(&mut m));
    let port: u16 = crate::portmap::xml::text(&req, "NewExternalPort")
        .unwrap()
        .parse()
        .unwrap();
    assert!(port >= 1024);
    m.handle_http(now, id, Ok(&http_ok("<ok/>")));
    assert_eq!(
        events(&mut m),
        vec![PortMapEvent::Mapped {
            protocol: Protocol::UpnpIgd,
            external: ext(port)
        }]
    );
    assert_eq!(m.status(now).expires_in, Some(secs(7200)));

    // Renewal at half the lease: AddPortMapping for the same port.
    let t = run_until(&mut m, &mut now, t0 + secs(3600));
    let (id, _, req) = only_http(t);
    assert!(req.contains("#AddPortMapping\""));
    assert!(req.contains(&format!("<NewExternalPort>{port}</NewExternalPort>")));
    m.handle_http(now, id, Ok(&http_ok("<ok/>")));
    assert!(events(&mut m).is_empty());

    m.release(now);
    let (id, _, req) = only_http(transmits(&mut m));
    assert!(req.contains("#DeletePortMapping\""));
    assert_eq!(m.status(now).state, "stopped");
    m.handle_http(now, id, Ok(&http_ok("<ok/>")));
    assert!(m.is_stopped());
}

#[test]
fn upnp_permanent_only_gateway_and_http_failures() {
    let now = Instant::now();
    let mut m = machine(&[Protocol::UpnpIgd]);
    m.start(now);
    transmits(&mut m);
    let gw: SocketAddr = "10.1.0.1:1900".parse().unwrap();
    m.handle_ssdp(now, gw, b"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:service:WANIPConnection:1\r\nLocation: http://10.1.0.1:5000/d.xml\r\n\r\n");
    let (id, _, _) = only_http(transmits(&mut m));
    m.handle_http(now, id, Ok(&http_ok(DESC)));
    let (id, _, _) = only_http(transmits(&mut m));
    m.handle_http(
        now,
        id,
        Ok(&http_ok(
            "<NewExternalIPAddress>198.51.101.10</NewExternalIPAddress>",
        )),
    );
    let (id, _, _) = only_http(transmits(&mut m));
    m.handle_http(now, id, Ok(&http_fault(igd::ERR_ONLY_PERMANENT)));
    let (id, _, req) = only_http(transmits(&mut m));
    assert!(req.contains("<NewLeaseDuration>0</NewLeaseDuration>"));
    m.handle_http(now, id, Ok(&http_ok("")));
    let status = m.status(now);
    assert_eq!((status.state, status.expires_in), ("mapped", None));

    // A description fetch that fails ends UPnP with a reason.
    let mut m = machine(&[Protocol::UpnpIgd]);
    m.start(now);
    transmits(&mut m);
    m.handle_ssdp(now, gw, b"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: http://10.1.0.1:5000/d.xml\r\n\r\n");
    let (id, _, _) = only_http(transmits(&mut m));
    m.handle_http(now, id, Err("connection refused".into()));
    assert_eq!(
        m.status(now).error.as_deref(),
        Some("port-map-unavailable: upnp-igd: connection refused")
    );
}

#[test]
fn garbage_is_counted_and_ignored() {
    let now = Instant::now();
    let mut m = machine(&[Protocol::Pcp, Protocol::NatPmp]);
    m.start(now);
    let req = MapRequest::parse(&gateway_sends(&transmits(&mut m))[0]).unwrap();
    for junk in [&[][..], &[2, 0x81], &[7; 60], &[2; 61], &[0xff; 3]] {
        m.handle_gateway(now, junk);
    }
    // A MAP answer with another nonce is not ours.
    let mut other = req;
    other.nonce = [0; 12];
    m.handle_gateway(now, &pcp_answer(&other, 7200, 1, PORT));
    m.handle_ssdp(
        now,
        "10.1.0.1:1900".parse().unwrap(),
        b"HTTP/1.1 200 OK\r\n\r\n",
    );
    m.handle_http(now, 1, Ok(b"HTTP/1.1 200 OK\r\n\r\n"));
    assert_eq!(m.status(now).state, "discovering");
    assert!(events(&mut m).is_empty());
    assert_eq!(m.invalid_answers, 6);
}
