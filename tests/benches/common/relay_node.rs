//! A relay node for the relay benches, running on its own OS thread with a
//! single-threaded tokio runtime, so the relay uses at most one core and
//! does not share worker threads with the clients it serves. Clients in the
//! main runtime reach it over loopback UDP like any remote relay.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use relay_transport::{NetworkKey, NodeId, RelayLimits, SecretKey, Transport, TransportConfig};
use tokio::sync::oneshot;

/// Limits high enough that no relay limit binds in a benchmark: the
/// forwarding cost is measured, not the rate limiter.
pub fn unlimited() -> RelayLimits {
    RelayLimits {
        rate_bytes_per_sec: 1 << 40,
        burst_bytes: 1 << 40,
        queue_packets: 1 << 16,
        queue_bytes: 1 << 30,
        ..RelayLimits::default()
    }
}

/// A relaying Transport on its own thread.
pub struct RelayThread {
    /// A handle on the relay (its sync methods are safe to call from any
    /// thread; its async ones belong to the relay's runtime).
    pub transport: Transport,
    /// `/proc/<pid>/task/<tid>/schedstat` of the relay's thread.
    schedstat: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RelayThread {
    /// Starts a relay on 127.0.0.1 with `limits` in the mesh `network_key`.
    pub fn start(network_key: &NetworkKey, limits: RelayLimits) -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let network_key = network_key.clone();
        let thread = std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                // "<pid>/task/<tid>" of this thread.
                let schedstat = std::fs::read_link("/proc/thread-self")
                    .ok()
                    .map(|p| PathBuf::from("/proc").join(p).join("schedstat"));
                rt.block_on(async move {
                    let mut config = TransportConfig::new(
                        SecretKey::generate(),
                        Some(network_key),
                        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                    );
                    config.relay = true;
                    config.relay_limits = limits;
                    let transport = Transport::bind(config).await.unwrap();
                    ready_tx.send((transport.clone(), schedstat)).unwrap();
                    let _ = stop_rx.await;
                    transport.close().await;
                });
            })
            .unwrap();
        let (transport, schedstat) = ready_rx.recv().unwrap();
        Self {
            transport,
            schedstat,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The relay's NodeId.
    pub fn node_id(&self) -> NodeId {
        self.transport.node_id()
    }

    /// The relay's loopback address.
    pub fn addr(&self) -> SocketAddr {
        super::relay::transport_addr(&self.transport)
    }

    /// CPU time the relay's thread has used so far (from the kernel's
    /// schedstat), if readable.
    pub fn cpu_time(&self) -> Option<Duration> {
        let text = std::fs::read_to_string(self.schedstat.as_ref()?).ok()?;
        let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
        Some(Duration::from_nanos(ns))
    }

    /// Closes the relay and joins its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RelayThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Connects `client` to the relay and waits until the relay serves it
/// (registration confirmed), polling every millisecond for up to 10 s.
pub async fn join_relay(client: &Transport, relay: &RelayThread) {
    client.connect(relay.node_id(), relay.addr()).await.unwrap();
    let id = relay.node_id();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !client.relays().contains(&id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "relay never confirmed registration"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
