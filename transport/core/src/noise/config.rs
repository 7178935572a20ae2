//! quinn's crypto `ClientConfig` / `ServerConfig` for Noise, and the quinn
//! endpoint, client and server configs built on them.

use std::sync::Arc;

use quinn_proto::crypto::{self, Keys, UnsupportedVersion};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::{ConnectError, ConnectionId, Side};
use relay_proto::NodeId;

use super::session::NoiseSession;
use super::stall::StalledSession;
use super::{keys, retry, NoiseConfig, QUIC_VERSION};

/// Dials with a Noise initiator; the server name is the peer's NodeId text.
#[derive(Debug)]
pub(crate) struct NoiseClientConfig {
    config: Arc<NoiseConfig>,
    /// Test hook: send only part of message 1 (see
    /// [`super::stalling_client_config`]).
    stall: bool,
}

impl crypto::ClientConfig for NoiseClientConfig {
    fn start_session(
        self: Arc<Self>,
        version: u32,
        server_name: &str,
        params: &TransportParameters,
    ) -> Result<Box<dyn crypto::Session>, ConnectError> {
        let peer: NodeId = server_name
            .parse()
            .map_err(|_| ConnectError::InvalidServerName(server_name.to_owned()))?;
        // Any version our endpoint config lets through is accepted here; the
        // Initial salt and the Noise prologue both depend on it.
        if self.stall {
            return Ok(Box::new(StalledSession::new(version)));
        }
        match NoiseSession::client(self.config.clone(), version, peer, params) {
            Ok(session) => Ok(Box::new(session)),
            Err(e) => {
                tracing::debug!(error = %e, "noise initiator setup failed");
                Err(ConnectError::InvalidServerName(server_name.to_owned()))
            }
        }
    }
}

/// Accepts with a Noise responder, for [`QUIC_VERSION`] only.
#[derive(Debug)]
pub(crate) struct NoiseServerConfig {
    config: Arc<NoiseConfig>,
}

impl crypto::ServerConfig for NoiseServerConfig {
    fn initial_keys(
        &self,
        version: u32,
        dst_cid: &ConnectionId,
    ) -> Result<Keys, UnsupportedVersion> {
        if version != QUIC_VERSION {
            return Err(UnsupportedVersion);
        }
        Ok(keys::initial_keys(version, dst_cid, Side::Server))
    }

    fn retry_tag(&self, version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> [u8; 16] {
        retry::retry_tag(version, orig_dst_cid, packet)
    }

    fn start_session(
        self: Arc<Self>,
        version: u32,
        params: &TransportParameters,
    ) -> Box<dyn crypto::Session> {
        Box::new(NoiseSession::server(self.config.clone(), version, params))
    }
}

/// See [`super::client_config`].
pub(crate) fn client_config(
    config: &NoiseConfig,
    transport: Arc<quinn_proto::TransportConfig>,
) -> quinn_proto::ClientConfig {
    client_config_with(config, transport, false)
}

/// See [`super::stalling_client_config`].
pub(crate) fn stalling_client_config(
    config: &NoiseConfig,
    transport: Arc<quinn_proto::TransportConfig>,
) -> quinn_proto::ClientConfig {
    client_config_with(config, transport, true)
}

fn client_config_with(
    config: &NoiseConfig,
    transport: Arc<quinn_proto::TransportConfig>,
    stall: bool,
) -> quinn_proto::ClientConfig {
    let crypto = Arc::new(NoiseClientConfig {
        config: Arc::new(config.clone()),
        stall,
    });
    let mut client = quinn_proto::ClientConfig::new(crypto);
    client.version(QUIC_VERSION).transport_config(transport);
    client
}

/// See [`super::server_config`].
pub(crate) fn server_config(
    config: &NoiseConfig,
    transport: Arc<quinn_proto::TransportConfig>,
) -> quinn_proto::ServerConfig {
    let crypto = Arc::new(NoiseServerConfig {
        config: Arc::new(config.clone()),
    });
    let mut server = quinn_proto::ServerConfig::new(crypto, retry::token_key());
    server.transport_config(transport);
    server
}

/// See [`super::endpoint_config`].
pub(crate) fn endpoint_config() -> quinn_proto::EndpointConfig {
    versions(quinn_proto::EndpointConfig::new(retry::reset_key()))
}

/// See [`super::endpoint_config_for`].
pub(crate) fn endpoint_config_for(secret: &relay_proto::SecretKey) -> quinn_proto::EndpointConfig {
    let mut endpoint = quinn_proto::EndpointConfig::new(retry::reset_key_for(secret));
    let cid_key = retry::cid_key_for(secret);
    endpoint.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    versions(endpoint)
}

fn versions(mut endpoint: quinn_proto::EndpointConfig) -> quinn_proto::EndpointConfig {
    endpoint
        .supported_versions(vec![QUIC_VERSION])
        .grease_quic_bit(false);
    endpoint
}
