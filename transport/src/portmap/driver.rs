//! The port-mapping driver: runs a [`PortMapper`] inside a transport
//! ([`crate::TransportConfig::port_map`], on by default).
//!
//! One task owns the clock and three kinds of I/O:
//!
//! - a UDP socket connected to the PCP / NAT-PMP server (the default
//!   gateway's port 5351). Being connected, it only hears the gateway, and
//!   an ICMP port-unreachable surfaces as a receive error, which fails
//!   the protocol at once instead of after its resends;
//! - a UDP socket for SSDP searches and their unicast answers;
//! - one short-lived TCP connection per UPnP HTTP exchange, in its own
//!   task, bounded in time ([`HTTP_TIMEOUT`]) and size
//!   ([`http::MAX_RESPONSE`]).
//!
//! The machine sits behind a mutex only so that status can read it. Every
//! mapping change goes to the traversal core (so peers learn the mapped
//! address) and is logged at info; failures are logged at debug. On
//! shutdown the driver releases the mapping and waits for the gateway's
//! answer, at most about a second; [`PortMapService::wait_stopped`] lets
//! `Transport::close` wait for that.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::machine::HTTP_TIMEOUT;
use super::{
    gateway, http, ssdp, Local, PortMapConfig, PortMapEvent, PortMapStatus, PortMapTransmit,
    PortMapper,
};
use crate::handles::PortMapHost;
use crate::traversal::{TraversalError, TraversalErrorKind};

/// Longest the driver keeps going after shutdown to release the mapping.
pub(crate) const RELEASE_BUDGET: Duration = Duration::from_millis(1500);
/// HTTP results waiting for the driver, at most.
const HTTP_QUEUE: usize = 4;
/// Largest datagram read from either socket.
const DATAGRAM: usize = 2048;

/// The port mapping of one transport, shared between its driver task and
/// status readers.
#[derive(Debug)]
pub(crate) struct PortMapService {
    config: PortMapConfig,
    machine: Mutex<Option<PortMapper>>,
    /// Why mapping never started (loopback bind, no local address).
    skipped: Mutex<Option<TraversalError>>,
    stopped: watch::Sender<bool>,
}

impl PortMapService {
    pub(crate) fn new(config: PortMapConfig) -> Self {
        Self {
            config,
            machine: Mutex::new(None),
            skipped: Mutex::new(None),
            stopped: watch::Sender::new(false),
        }
    }

    fn machine(&self) -> MutexGuard<'_, Option<PortMapper>> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What status shows.
    pub(crate) fn status(&self) -> PortMapStatus {
        if let Some(m) = self.machine().as_ref() {
            return m.status(Instant::now().into_std());
        }
        let skipped = self
            .skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        PortMapStatus {
            enabled: true,
            state: if skipped.is_some() {
                "unavailable"
            } else {
                "discovering"
            },
            error: skipped.map(|e| e.to_string()),
            ..PortMapStatus::default()
        }
    }

    /// Waits (at most `limit`) until the driver has released the mapping
    /// and stopped.
    pub(crate) async fn wait_stopped(&self, limit: Duration) {
        let mut rx = self.stopped.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|s| *s)).await;
    }

    fn skip(&self, error: TraversalError) {
        tracing::debug!(%error, "port mapping not attempted");
        *self.skipped.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }
}

/// Marks the service stopped when the driver ends, however it ends.
struct StopGuard(Arc<PortMapService>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.stopped.send_replace(true);
    }
}

/// The local facts the machine needs, and the gateway socket.
async fn prepare(
    config: &PortMapConfig,
    bound: SocketAddr,
) -> Result<(Local, Option<UdpSocket>), String> {
    let bound_ip = bound.ip().to_canonical();
    if bound_ip.is_loopback() && config.gateway.is_none() {
        return Err("bound to a loopback address".to_owned());
    }
    let gateway = config.gateway.or_else(|| {
        gateway::default_gateway()
            .map(|g| SocketAddr::new(IpAddr::V4(g), relay_proto::wire::natpmp::SERVER_PORT))
    });
    let source_ip = match bound_ip {
        IpAddr::V4(ip) if !ip.is_unspecified() => ip,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    let mut socket = None;
    let mut client_ip = source_ip;
    if let Some(gw) = gateway {
        let s = UdpSocket::bind(SocketAddr::new(IpAddr::V4(source_ip), 0))
            .await
            .map_err(|e| format!("gateway socket: {e}"))?;
        s.connect(gw)
            .await
            .map_err(|e| format!("no route to the gateway {gw}: {e}"))?;
        if let Ok(SocketAddr::V4(local)) = s.local_addr() {
            client_ip = *local.ip();
        }
        socket = Some(s);
    } else if client_ip.is_unspecified() {
        // No gateway: the address multicast SSDP would leave from (a
        // tokio socket: no blocking call on the driver's task).
        let no_route =
            |e: std::io::Error| format!("no IPv4 default gateway and no multicast route: {e}");
        let s = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
            .await
            .map_err(no_route)?;
        s.connect(ssdp::SSDP_MULTICAST).await.map_err(no_route)?;
        let probe = s.local_addr().map_err(no_route)?;
        if let IpAddr::V4(ip) = probe.ip() {
            client_ip = ip;
        }
    }
    if client_ip.is_unspecified() {
        return Err("no local IPv4 address".to_owned());
    }
    Ok((
        Local {
            client_ip,
            internal_port: bound.port(),
            gateway,
        },
        socket,
    ))
}

/// Runs the driver until the transport closes and the mapping is
/// released.
pub(crate) async fn run(shared: Arc<dyn PortMapHost>, service: Arc<PortMapService>) {
    let _stop = StopGuard(service.clone());
    let mut shutdown = shared.shutdown();
    let bound = shared.socket().real_local_addr();
    let (local, gateway_socket) = match prepare(&service.config, bound).await {
        Ok(v) => v,
        Err(detail) => {
            service.skip(TraversalError::new(
                TraversalErrorKind::PortMapUnavailable,
                detail,
            ));
            return;
        }
    };
    let ssdp_socket = UdpSocket::bind(SocketAddr::new(IpAddr::V4(local.client_ip), 0))
        .await
        .ok();
    let mut seed = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut seed);
    let mut mapper = PortMapper::new(service.config.clone(), local, seed);
    mapper.start(Instant::now().into_std());
    *service.machine() = Some(mapper);
    tracing::debug!(
        gateway = ?local.gateway,
        client = %local.client_ip,
        port = local.internal_port,
        "port mapping started"
    );

    let (http_tx, mut http_rx) = mpsc::channel(HTTP_QUEUE);
    let io = Io {
        gateway: gateway_socket,
        ssdp: ssdp_socket,
        http: http_tx,
    };
    let mut gw_buf = vec![0u8; DATAGRAM];
    let mut ssdp_buf = vec![0u8; DATAGRAM];
    let mut release_by: Option<Instant> = None;
    loop {
        io.flush(&*shared, &service).await;
        if release_by.is_some() && service.machine().as_ref().is_none_or(|m| m.is_stopped()) {
            break;
        }
        let deadline = service
            .machine()
            .as_ref()
            .and_then(|m| m.poll_timeout())
            .map(Instant::from_std);
        let deadline = match (deadline, release_by) {
            (Some(d), Some(r)) => Some(d.min(r)),
            (d, r) => d.or(r),
        };
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop), if release_by.is_none() => {
                let now = Instant::now();
                release_by = Some(now + RELEASE_BUDGET);
                if let Some(m) = service.machine().as_mut() {
                    m.release(now.into_std());
                }
            }
            got = recv(io.gateway.as_ref(), &mut gw_buf) => {
                let now = Instant::now().into_std();
                if let Some(m) = service.machine().as_mut() {
                    match got {
                        Ok((n, _)) => m.handle_gateway(now, &gw_buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                            m.handle_gateway_unreachable(now)
                        }
                        Err(e) => tracing::trace!(error = %e, "port map: gateway socket"),
                    }
                }
            }
            got = recv_from(io.ssdp.as_ref(), &mut ssdp_buf) => {
                if let Ok((n, src)) = got {
                    if let Some(m) = service.machine().as_mut() {
                        m.handle_ssdp(Instant::now().into_std(), src, &ssdp_buf[..n]);
                    }
                }
            }
            result = http_rx.recv() => {
                if let Some((id, result)) = result {
                    let result: Result<Vec<u8>, String> = result;
                    if let Some(m) = service.machine().as_mut() {
                        m.handle_http(Instant::now().into_std(), id, result.as_deref().map_err(Clone::clone));
                    }
                }
            }
            () = timer => {
                let now = Instant::now();
                if release_by.is_some_and(|r| now >= r) {
                    break;
                }
                if let Some(m) = service.machine().as_mut() {
                    m.handle_timeout(now.into_std());
                }
            }
        }
    }
    shared.set_port_mapping(None);
    tracing::debug!("port mapping stopped");
}

async fn recv(socket: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, ())> {
    match socket {
        Some(s) => s.recv(buf).await.map(|n| (n, ())),
        None => std::future::pending().await,
    }
}

async fn recv_from(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

type HttpResult = (u64, Result<Vec<u8>, String>);

struct Io {
    gateway: Option<UdpSocket>,
    ssdp: Option<UdpSocket>,
    http: mpsc::Sender<HttpResult>,
}

impl Io {
    /// Sends what the machine wants sent and acts on what it reports.
    async fn flush(&self, shared: &dyn PortMapHost, service: &PortMapService) {
        let (transmits, events) = {
            let mut guard = service.machine();
            let Some(m) = guard.as_mut() else { return };
            let t: Vec<PortMapTransmit> = std::iter::from_fn(|| m.poll_transmit()).collect();
            let e: Vec<PortMapEvent> = std::iter::from_fn(|| m.poll_event()).collect();
            (t, e)
        };
        for transmit in transmits {
            match transmit {
                PortMapTransmit::Gateway(data) => {
                    if let Some(s) = &self.gateway {
                        if let Err(e) = s.send(&data).await {
                            tracing::debug!(error = %e, "port map: send to the gateway failed");
                        }
                    }
                }
                PortMapTransmit::Ssdp { dst, data } => {
                    if let Some(s) = &self.ssdp {
                        if let Err(e) = s.send_to(&data, dst).await {
                            tracing::debug!(%dst, error = %e, "port map: SSDP search not sent");
                        }
                    }
                }
                PortMapTransmit::Http { id, dst, request } => {
                    let tx = self.http.clone();
                    tokio::spawn(async move {
                        let result = tokio::time::timeout(HTTP_TIMEOUT, exchange(dst, &request))
                            .await
                            .unwrap_or_else(|_| Err("timeout".to_owned()));
                        let _ = tx.send((id, result)).await;
                    });
                }
            }
        }
        for event in events {
            match event {
                PortMapEvent::Mapped { protocol, external } => {
                    tracing::info!(%protocol, %external, "port mapped");
                    shared.set_port_mapping(Some(external));
                }
                PortMapEvent::Lost => {
                    tracing::info!("port mapping gone");
                    shared.set_port_mapping(None);
                }
                PortMapEvent::Unavailable(error) => {
                    tracing::debug!(%error, "no port mapping; carrying on without one");
                }
            }
        }
    }
}

/// One HTTP exchange: connect, send, read until the gateway closes
/// (bounded by [`http::MAX_RESPONSE`]).
async fn exchange(dst: SocketAddr, request: &[u8]) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(dst)
        .await
        .map_err(|e| format!("connect {dst}: {e}"))?;
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    let mut limited = (&mut stream).take(http::MAX_RESPONSE as u64 + 1);
    limited
        .read_to_end(&mut response)
        .await
        .map_err(|e| format!("receive: {e}"))?;
    if response.len() > http::MAX_RESPONSE {
        return Err(format!("response over {} bytes", http::MAX_RESPONSE));
    }
    Ok(response)
}
