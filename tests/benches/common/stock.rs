//! The stock-quinn baseline: quinn with rustls (ring provider) and a
//! self-signed certificate, restricted to TLS 1.3 with
//! `TLS13_CHACHA20_POLY1305_SHA256` so its 1-RTT packets use the same AEAD as
//! relay-node. (QUIC Initial packets still use AES-128-GCM, as RFC 9001
//! requires; they are a handful of packets per connection.)

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::crypto::ring as ring_provider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The server name the self-signed certificate is issued for.
pub const SERVER_NAME: &str = "localhost";

/// A ring crypto provider offering ChaCha20-Poly1305 only.
fn chacha_only_provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = ring_provider::default_provider();
    provider.cipher_suites = vec![ring_provider::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256];
    Arc::new(provider)
}

/// The suite QUIC Initial packets are protected with.
fn initial_suite() -> rustls::quic::Suite {
    ring_provider::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .and_then(|s| s.quic_suite())
        .unwrap()
}

/// A self-signed certificate and matching server and client configs.
#[derive(Debug, Clone)]
pub struct StockConfigs {
    /// Accepts connections with the self-signed certificate.
    pub server: quinn::ServerConfig,
    /// Trusts exactly that certificate.
    pub client: quinn::ClientConfig,
    /// The certificate (DER).
    pub cert: CertificateDer<'static>,
}

/// Builds the configs with quinn's default transport settings, or `transport`
/// if given.
pub fn configs(transport: Option<Arc<quinn::TransportConfig>>) -> StockConfigs {
    let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));

    let server_tls = rustls::ServerConfig::builder_with_provider(chacha_only_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let server_quic =
        QuicServerConfig::with_initial(Arc::new(server_tls), initial_suite()).unwrap();
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_quic));
    if let Some(transport) = &transport {
        server.transport_config(transport.clone());
    }
    let client = client_config(cert.clone(), transport);
    StockConfigs {
        server,
        client,
        cert,
    }
}

/// A client config trusting exactly `cert`.
pub fn client_config(
    cert: CertificateDer<'static>,
    transport: Option<Arc<quinn::TransportConfig>>,
) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client_tls = rustls::ClientConfig::builder_with_provider(chacha_only_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client_quic =
        QuicClientConfig::with_initial(Arc::new(client_tls), initial_suite()).unwrap();
    let mut client = quinn::ClientConfig::new(Arc::new(client_quic));
    if let Some(transport) = transport {
        client.transport_config(transport);
    }
    client
}

/// A server endpoint and a client endpoint on loopback (call inside a tokio
/// runtime). Returns (server, client, server address).
pub fn endpoints(configs: &StockConfigs) -> (quinn::Endpoint, quinn::Endpoint, SocketAddr) {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let server = quinn::Endpoint::server(configs.server.clone(), loopback).unwrap();
    let server_addr = server.local_addr().unwrap();
    let mut client = quinn::Endpoint::client(loopback).unwrap();
    client.set_default_client_config(configs.client.clone());
    (server, client, server_addr)
}

/// Connects `client` to `server` once; returns (client side, server side).
pub async fn connect(
    server: &quinn::Endpoint,
    client: &quinn::Endpoint,
    server_addr: SocketAddr,
) -> (quinn::Connection, quinn::Connection) {
    let accept = async {
        let incoming = server.accept().await.unwrap();
        incoming.await.unwrap()
    };
    let dial = async {
        client
            .connect(server_addr, SERVER_NAME)
            .unwrap()
            .await
            .unwrap()
    };
    let (server_side, client_side) = tokio::join!(accept, dial);
    (client_side, server_side)
}
