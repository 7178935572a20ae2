//! Port mapping inside a real transport, against a fake gateway on
//! loopback UDP (injected with `TransportConfig::port_map.gateway`): a PCP
//! gateway, a NAT-PMP-only gateway, and no gateway at all. Also: the
//! mapping is released before `close` returns, and nothing is logged at
//! error level when no gateway answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use relay_proto::wire::natpmp::{NatPmpBody, NatPmpRequest, NatPmpResponse, NatPmpResult};
use relay_proto::wire::pcp::{self, MapRequest, MapResponse, PcpResponse, PcpResult};
use relay_transport::portmap::Protocol;
use relay_transport::{PortMapStatus, SecretKey, Transport};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use support::within;

const EXT_IP: [u8; 4] = [198, 51, 101, 10];
const EXT_PORT: u16 = 45000;

/// A request the fake gateway saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Pcp(MapRequest),
    PcpAnnounce,
    Pmp(NatPmpRequest),
}

/// A fake gateway on 127.0.0.1: answers PCP MAP (unless `pcp` is false:
/// then it answers PCP with NAT-PMP "unsupported version", like a
/// NAT-PMP-only gateway) and NAT-PMP, and reports every request.
async fn fake_gateway(pcp: bool) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        let epoch = 1000;
        loop {
            let Ok((n, src)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let data = &buf[..n];
            let reply = if data.first() == Some(&pcp::VERSION) {
                if !pcp {
                    Some(
                        NatPmpResponse {
                            result: NatPmpResult::UnsupportedVersion,
                            epoch,
                            body: NatPmpBody::Failed { opcode: data[1] },
                        }
                        .emit(),
                    )
                } else if let Some(req) = MapRequest::parse(data) {
                    let _ = tx.send(Seen::Pcp(req));
                    Some(
                        PcpResponse {
                            opcode: pcp::OP_MAP,
                            result: PcpResult::Success,
                            lifetime: req.lifetime.min(3600),
                            epoch,
                            map: Some(MapResponse {
                                nonce: req.nonce,
                                protocol: pcp::PROTO_UDP,
                                internal_port: req.internal_port,
                                external_port: EXT_PORT,
                                external_ip: IpAddr::from(EXT_IP),
                            }),
                        }
                        .emit(),
                    )
                } else {
                    let _ = tx.send(Seen::PcpAnnounce);
                    None
                }
            } else {
                match NatPmpRequest::parse(data) {
                    Some(req) => {
                        let _ = tx.send(Seen::Pmp(req));
                        let body = match req {
                            NatPmpRequest::ExternalAddress => {
                                NatPmpBody::ExternalAddress { ip: EXT_IP.into() }
                            }
                            NatPmpRequest::MapUdp {
                                internal, lifetime, ..
                            } => NatPmpBody::MapUdp {
                                internal,
                                external: if lifetime == 0 { 0 } else { EXT_PORT },
                                lifetime: lifetime.min(3600),
                            },
                        };
                        Some(
                            NatPmpResponse {
                                result: NatPmpResult::Success,
                                epoch,
                                body,
                            }
                            .emit(),
                        )
                    }
                    None => None,
                }
            };
            if let Some(reply) = reply {
                let _ = socket.send_to(&reply, src).await;
            }
        }
    });
    (addr, rx)
}

async fn mapped_transport(gateway: SocketAddr, protocols: &[Protocol]) -> Transport {
    let mut config = support::config(SecretKey::generate(), None);
    config.port_map.gateway = Some(gateway);
    config.port_map.ssdp_multicast = false;
    config.port_map.protocols = protocols.to_vec();
    Transport::bind(config).await.unwrap()
}

/// Polls the transport's port-map status until `done` holds.
async fn status_until(t: &Transport, done: impl Fn(&PortMapStatus) -> bool) -> PortMapStatus {
    within(async {
        loop {
            let s = t.port_map_status();
            if done(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn pcp_gateway_maps_and_close_releases() {
    support::init_tracing();
    let (gateway, mut seen) = fake_gateway(true).await;
    let t = mapped_transport(gateway, &[Protocol::Pcp, Protocol::NatPmp]).await;
    let port = support::addr(&t).port();

    let first = within(seen.recv()).await.unwrap();
    let Seen::Pcp(req) = first else {
        panic!("{first:?}")
    };
    assert_eq!(req.internal_port, port);
    assert_eq!(req.client, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(req.lifetime, 7200);

    let s = status_until(&t, |s| s.state == "mapped").await;
    assert_eq!(s.protocol, Some(Protocol::Pcp));
    assert_eq!(
        s.external_addr,
        Some(SocketAddr::new(IpAddr::from(EXT_IP), EXT_PORT))
    );
    assert!(s.expires_in.unwrap() <= Duration::from_secs(3600));
    assert!(s.expires_in.unwrap() > Duration::from_secs(3500));
    assert_eq!(s.error, None);

    // close() returns only after the gateway got the deletion.
    t.close().await;
    let mut delete = None;
    while let Ok(seen) = seen.try_recv() {
        if let Seen::Pcp(r) = seen {
            if r.lifetime == 0 {
                delete = Some(r);
            }
        }
    }
    let delete = delete.expect("no PCP deletion before close returned");
    assert_eq!(delete.nonce, req.nonce);
    assert_eq!(t.port_map_status().state, "stopped");
}

#[tokio::test]
async fn nat_pmp_only_gateway_maps_with_nat_pmp() {
    support::init_tracing();
    let (gateway, mut seen) = fake_gateway(false).await;
    let t = mapped_transport(gateway, &[Protocol::Pcp, Protocol::NatPmp]).await;
    let s = status_until(&t, |s| s.state == "mapped").await;
    assert_eq!(s.protocol, Some(Protocol::NatPmp));
    assert_eq!(
        s.external_addr,
        Some(SocketAddr::new(IpAddr::from(EXT_IP), EXT_PORT))
    );
    t.close().await;
    let mut requests = Vec::new();
    while let Ok(r) = seen.try_recv() {
        requests.push(r);
    }
    let port = support::addr(&t).port();
    assert_eq!(requests[0], Seen::Pmp(NatPmpRequest::ExternalAddress));
    assert!(requests.contains(&Seen::Pmp(NatPmpRequest::MapUdp {
        internal: port,
        external: port,
        lifetime: 7200
    })));
    // Released with lifetime 0.
    assert_eq!(
        requests.last(),
        Some(&Seen::Pmp(NatPmpRequest::MapUdp {
            internal: port,
            external: 0,
            lifetime: 0
        }))
    );
}

/// Counts events at error level.
#[derive(Clone, Default)]
struct ErrorCounter(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorCounter {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if *event.metadata().level() == tracing::Level::ERROR {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn no_gateway_carries_on_unmapped_without_error_logs() {
    use tracing_subscriber::layer::SubscriberExt;
    let errors = ErrorCounter::default();
    let subscriber = tracing_subscriber::registry().with(errors.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    // One thread: every task logs through the subscriber above.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // A closed port: the kernel answers with port unreachable.
        let closed = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let t = mapped_transport(closed, &[Protocol::Pcp, Protocol::NatPmp]).await;
        let s = status_until(&t, |s| s.state == "unavailable").await;
        assert_eq!(s.protocol, None);
        assert_eq!(s.external_addr, None);
        let error = s.error.unwrap();
        assert!(error.starts_with("port-map-unavailable: pcp: "), "{error}");
        assert!(error.contains("; nat-pmp: "), "{error}");

        // The transport works regardless.
        let peer = support::transport(None).await;
        within(t.connect(peer.node_id(), support::addr(&peer)))
            .await
            .unwrap();
        t.close().await;
        peer.close().await;

        // A loopback transport without a configured gateway never tries.
        let plain = Transport::bind(support::config(SecretKey::generate(), None))
            .await
            .unwrap();
        let s = status_until(&plain, |s| s.state != "discovering").await;
        assert_eq!(s.state, "unavailable");
        assert_eq!(
            s.error.as_deref(),
            Some("port-map-unavailable: bound to a loopback address")
        );
        plain.close().await;

        // Turned off: "off".
        let mut config = support::config(SecretKey::generate(), None);
        config.port_map.enabled = false;
        let off = Transport::bind(config).await.unwrap();
        assert_eq!(off.port_map_status(), PortMapStatus::off());
        off.close().await;
    });
    assert_eq!(errors.0.load(Ordering::SeqCst), 0);
}
