//! The accept loop: takes inbound connection attempts from quinn, runs each
//! handshake in its own task (bounded in number and in time), and registers
//! the authenticated connections.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{conn, Shared};

/// Handshakes from unauthenticated peers in progress at once; attempts
/// beyond it are ignored (no reply), so a flood cannot grow our state.
const MAX_PENDING_HANDSHAKES: usize = 256;

/// Accepts until the transport shuts down.
pub(crate) async fn accept_loop(shared: Arc<Shared>) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let incoming = tokio::select! {
            incoming = shared.endpoint.accept() => incoming,
            _ = shutdown.wait_for(|stop| *stop) => None,
        };
        let Some(incoming) = incoming else {
            break;
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            tracing::debug!("too many handshakes in progress; ignoring an attempt");
            incoming.ignore();
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let connecting = match incoming.accept() {
                Ok(connecting) => connecting,
                Err(e) => {
                    tracing::debug!(error = %e, "inbound attempt refused");
                    return;
                }
            };
            match tokio::time::timeout(shared.config.dial_timeout, connecting).await {
                Ok(Ok(connection)) => {
                    if let Err(e) = conn::register(&shared, connection, false) {
                        tracing::debug!(error = %e, "inbound connection not registered");
                    }
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "inbound handshake failed"),
                Err(_) => tracing::debug!("inbound handshake timed out"),
            }
        });
    }
    tracing::debug!("accept loop stopped");
}
