//! Noise-in-QUIC handshakes over plain loopback UDP: success with and
//! without a network key, every failure kind, and the exporter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::Ordering;

use common::*;
use relay_transport::noise::{self, classify_connect_error, QUIC_VERSION};
use relay_transport::{DialErrorKind, NetworkKey, SecretKey};

async fn handshake_ok(network_key: Option<NetworkKey>) {
    let server = node(network_key.clone());
    let client = node(network_key);
    let sep = endpoint(&server.config, true);
    let cep = endpoint(&client.config, false);
    let to = addr(&sep);
    let srv = tokio::spawn(echo_server(sep.clone()));

    let conn = within(dial(&cep, &client.config, &server.id, to))
        .await
        .unwrap();
    assert_eq!(noise::peer_node_id(&conn), Some(server.id));
    let data = pattern(200_000, 1);
    assert_eq!(within(echo(&conn, &data)).await, data);
    let mut ekm = [0u8; 32];
    conn.export_keying_material(&mut ekm, b"test label", b"ctx")
        .unwrap();
    conn.close(0u32.into(), b"done");

    let (seen, server_ekm) = within(srv).await.unwrap();
    assert_eq!(seen, Some(client.id));
    assert_eq!(ekm, server_ekm);
    assert_ne!(ekm, [0u8; 32]);
    assert_eq!(client.config.stats.handshakes.load(Ordering::Relaxed), 1);
    assert_eq!(server.config.stats.handshakes.load(Ordering::Relaxed), 1);

    // A second connection exports different material.
    let srv = tokio::spawn(echo_server(sep.clone()));
    let conn2 = within(dial(&cep, &client.config, &server.id, to))
        .await
        .unwrap();
    let mut ekm2 = [0u8; 32];
    conn2
        .export_keying_material(&mut ekm2, b"test label", b"ctx")
        .unwrap();
    assert_ne!(ekm, ekm2);
    // Label and context separate outputs.
    let mut other = [0u8; 32];
    conn2
        .export_keying_material(&mut other, b"test label", b"ctx2")
        .unwrap();
    assert_ne!(other, ekm2);
    conn2.close(0u32.into(), b"done");
    let (_, server_ekm2) = within(srv).await.unwrap();
    assert_eq!(ekm2, server_ekm2);
}

#[tokio::test]
async fn handshake_without_network_key() {
    handshake_ok(None).await;
}

#[tokio::test]
async fn handshake_with_network_key() {
    handshake_ok(Some(NetworkKey::generate())).await;
}

/// Dials and expects failure; returns the kind and checks the server keeps
/// no connection.
async fn dial_fails(
    server: &Node,
    client: &Node,
    dial_as: &relay_transport::NodeId,
) -> DialErrorKind {
    let sep = endpoint(&server.config, true);
    let cep = endpoint(&client.config, false);
    let to = addr(&sep);
    let accept = {
        let sep = sep.clone();
        tokio::spawn(async move {
            let incoming = sep.accept().await.unwrap();
            incoming.await.map(|_| ())
        })
    };
    let err = within(dial(&cep, &client.config, dial_as, to))
        .await
        .unwrap_err();
    let server_side = within(accept).await.unwrap();
    assert!(server_side.is_err(), "server side must fail too");
    wait_until(|| sep.open_connections() == 0).await;
    wait_until(|| cep.open_connections() == 0).await;
    classify_connect_error(&err)
}

#[tokio::test]
async fn wrong_responder_key_is_peer_key_mismatch() {
    let server = node(None);
    let client = node(None);
    let someone_else = SecretKey::generate().node_id();
    let kind = dial_fails(&server, &client, &someone_else).await;
    assert_eq!(kind, DialErrorKind::PeerKeyMismatch);
    assert_eq!(
        server
            .config
            .stats
            .handshake_failures
            .load(Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn wrong_network_key_is_network_key_mismatch() {
    let server = node(Some(NetworkKey::generate()));
    let client = node(Some(NetworkKey::generate()));
    let kind = dial_fails(&server, &client, &server.id).await;
    assert_eq!(kind, DialErrorKind::NetworkKeyMismatch);
    assert_eq!(
        client
            .config
            .stats
            .handshake_failures
            .load(Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn network_key_on_one_side_only_is_network_key_mismatch() {
    let server = node(None);
    let client = node(Some(NetworkKey::generate()));
    let kind = dial_fails(&server, &client, &server.id).await;
    assert_eq!(kind, DialErrorKind::NetworkKeyMismatch);

    let server = node(Some(NetworkKey::generate()));
    let client = node(None);
    let kind = dial_fails(&server, &client, &server.id).await;
    assert_eq!(kind, DialErrorKind::NetworkKeyMismatch);
}

#[tokio::test]
async fn other_quic_version_is_version_mismatch() {
    const OTHER: u32 = QUIC_VERSION + 1;
    let server = node(None);
    let client = node(None);
    let sep = endpoint(&server.config, true);
    let mut ecfg = noise::endpoint_config();
    ecfg.supported_versions(vec![OTHER]);
    let cep = endpoint_with(ecfg, &client.config, false);
    let mut cfg = noise::client_config(&client.config, transport());
    cfg.version(OTHER);
    let err = within(
        cep.connect_with(cfg, addr(&sep), &server.id.to_string())
            .unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(classify_connect_error(&err), DialErrorKind::VersionMismatch);
    assert_eq!(sep.open_connections(), 0);
}

#[tokio::test]
async fn bad_server_name_is_rejected_locally() {
    let client = node(None);
    let cep = endpoint(&client.config, false);
    let cfg = noise::client_config(&client.config, transport());
    let to = "127.0.0.1:9".parse().unwrap();
    assert!(cep.connect_with(cfg.clone(), to, "localhost").is_err());
    let upper = SecretKey::generate().node_id().to_string().to_uppercase();
    assert!(cep.connect_with(cfg, to, &upper).is_err());
}
