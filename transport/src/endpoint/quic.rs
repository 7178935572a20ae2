//! quinn's transport configuration, and the keepalive interval in it.
//!
//! quinn fixes a connection's transport config when the connection is
//! made; nothing changes it afterwards. So the keepalive interval learned
//! from the NAT binding lifetime (`traversal::lifetime`) reaches quinn for
//! connections made after it was learned: dials take [`QuicConfigs::client`]
//! each time, and accepted connections the server config that
//! [`QuicConfigs::set_keep_alive`] installs on the endpoint. Connections
//! already up keep their interval; on their direct paths traversal's own
//! keepalives, which do follow the learned interval, keep the NAT binding
//! open.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::QuicTuning;

/// quinn's transport config for an idle timeout, a keepalive interval and
/// the tuning from [`crate::TransportConfig::quic`].
pub(crate) fn transport_config(
    idle: Duration,
    keep_alive: Duration,
    tuning: &QuicTuning,
) -> Result<quinn::TransportConfig, String> {
    let mut transport = quinn::TransportConfig::default();
    tuning.apply(&mut transport)?;
    let idle = quinn::IdleTimeout::try_from(idle).map_err(|e| format!("idle timeout: {e}"))?;
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(tuning.max_udp_payload);
    transport
        .keep_alive_interval(Some(keep_alive))
        .max_idle_timeout(Some(idle))
        .initial_mtu(1200)
        .min_mtu(1200)
        .mtu_discovery_config(Some(mtu))
        .datagram_receive_buffer_size(Some(1 << 20))
        .datagram_send_buffer_size(1 << 20);
    Ok(transport)
}

#[derive(Debug)]
struct Current {
    keep_alive: Duration,
    client: quinn::ClientConfig,
    server: quinn::ServerConfig,
}

/// The client and server configs in use, rebuilt when the keepalive
/// interval changes.
#[derive(Debug)]
pub(crate) struct QuicConfigs {
    idle: Duration,
    tuning: QuicTuning,
    current: Mutex<Current>,
}

impl QuicConfigs {
    /// Wraps the configs the endpoint was built with.
    pub(crate) fn new(
        idle: Duration,
        tuning: QuicTuning,
        keep_alive: Duration,
        client: quinn::ClientConfig,
        server: quinn::ServerConfig,
    ) -> Self {
        Self {
            idle,
            tuning,
            current: Mutex::new(Current {
                keep_alive,
                client,
                server,
            }),
        }
    }

    fn current(&self) -> MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client config for the next dial.
    pub(crate) fn client(&self) -> quinn::ClientConfig {
        self.current().client.clone()
    }

    /// The keepalive interval new connections get.
    pub(crate) fn keep_alive(&self) -> Duration {
        self.current().keep_alive
    }

    /// New connections (dialed and accepted) keep alive every
    /// `keep_alive` from now on. Returns whether anything changed.
    pub(crate) fn set_keep_alive(&self, endpoint: &quinn::Endpoint, keep_alive: Duration) -> bool {
        let mut current = self.current();
        if current.keep_alive == keep_alive {
            return false;
        }
        let transport = match transport_config(self.idle, keep_alive, &self.tuning) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                tracing::debug!(error = %e, "keepalive interval not applied");
                return false;
            }
        };
        current.client.transport_config(transport.clone());
        current.server.transport_config(transport);
        endpoint.set_server_config(Some(current.server.clone()));
        current.keep_alive = keep_alive;
        true
    }
}
