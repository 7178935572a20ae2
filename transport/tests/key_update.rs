//! 1-RTT key updates: with a small confidentiality limit a bulk transfer
//! crosses many key phases and arrives intact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::Ordering;

use common::*;

/// quinn starts a key update `KEY_UPDATE_MARGIN` (10 000) packets before
/// the limit, so this gives a key phase of about 300 packets.
const SMALL_LIMIT: u64 = 10_300;

#[tokio::test]
async fn bulk_transfer_survives_key_updates() {
    let mut server = node(None);
    let mut client = node(None);
    server.config.confidentiality_limit = Some(SMALL_LIMIT);
    client.config.confidentiality_limit = Some(SMALL_LIMIT);
    let sep = endpoint(&server.config, true);
    let cep = endpoint(&client.config, false);
    let srv = tokio::spawn(echo_server(sep.clone()));

    let conn = within(dial(&cep, &client.config, &server.id, addr(&sep)))
        .await
        .unwrap();
    let data = pattern(4 * 1024 * 1024, 7);
    let back = within(echo(&conn, &data)).await;
    assert!(back == data, "echoed data differs");
    conn.close(0u32.into(), b"done");
    within(srv).await.unwrap();

    let client_updates = client.config.stats.key_updates.load(Ordering::Relaxed);
    let server_updates = server.config.stats.key_updates.load(Ordering::Relaxed);
    // quinn allows one update per three PTOs, so how many fit in the
    // transfer depends on its speed; at least one must have happened.
    assert!(client_updates > 0, "client key updates: {client_updates}");
    assert!(server_updates > 0, "server key updates: {server_updates}");
}
