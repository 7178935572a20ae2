//! The accept loop: takes inbound connection attempts from quinn, lets the
//! admission core ([`super::admission`]) decide between a handshake slot, a
//! QUIC Retry and silence, runs each admitted handshake in its own task
//! (bounded in time), registers the authenticated connections, and reports
//! failed handshakes (counted, one rate-limited warning per address).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use super::admission::{Admission, AdmissionLimits, Decision};
use super::failures::HandshakeFailure;
use super::{conn, Shared};
use crate::noise::{self, NoiseHandshakeData};
use crate::socket::Path;

/// Accepts until the transport shuts down.
pub(crate) async fn accept_loop(shared: Arc<Shared>) {
    let admission = Arc::new(Mutex::new(Admission::new(AdmissionLimits::default())));
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let incoming = tokio::select! {
            incoming = shared.endpoint.accept() => incoming,
            _ = shutdown.wait_for(|stop| *stop) => None,
        };
        let Some(incoming) = incoming else {
            break;
        };
        let source = source_of(&shared, incoming.remote_address());
        let decision = {
            let mut admission = admission.lock().unwrap_or_else(|e| e.into_inner());
            let decision = admission.decide(
                &source,
                incoming.remote_address_validated(),
                incoming.may_retry(),
            );
            if decision == Decision::Accept {
                admission.started(source);
            }
            decision
        };
        let stats = &shared.noise_stats;
        match decision {
            Decision::Accept => {}
            Decision::Retry => {
                match incoming.retry() {
                    Ok(()) => stats.retries_sent.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        e.into_incoming().ignore();
                        stats.attempts_dropped.fetch_add(1, Ordering::Relaxed)
                    }
                };
                continue;
            }
            Decision::Ignore => {
                tracing::debug!(%source, "handshake budget exhausted; ignoring an attempt");
                stats.attempts_dropped.fetch_add(1, Ordering::Relaxed);
                incoming.ignore();
                continue;
            }
        }
        let shared = shared.clone();
        let admission = admission.clone();
        tokio::spawn(async move {
            handshake(&shared, incoming, source).await;
            admission
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .finished(&source);
        });
    }
    tracing::debug!("accept loop stopped");
}

/// The source an attempt is budgeted under: the real address of a direct
/// path, else the mapped address (a relayed source).
fn source_of(shared: &Shared, mapped: SocketAddr) -> SocketAddr {
    match shared.socket.path(&mapped) {
        Some(Path::Direct(real)) => real,
        _ => mapped,
    }
}

/// Runs one admitted inbound handshake to its end.
async fn handshake(shared: &Arc<Shared>, incoming: quinn::Incoming, source: SocketAddr) {
    let mut connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        // quinn reads the first Initial here: a message 1 we cannot read
        // fails at once.
        Err(e) => return failed(shared, source, None, &e),
    };
    let timeout = shared.config.dial_timeout;
    let outcome = tokio::time::timeout(timeout, async {
        // Message 1 read: the initiator's NodeId is known (and proven by
        // its static key) even if the handshake fails afterwards.
        let claimed = connecting
            .handshake_data()
            .await
            .ok()
            .and_then(|d| d.downcast::<NoiseHandshakeData>().ok())
            .map(|d| d.peer);
        (claimed, connecting.await)
    })
    .await;
    match outcome {
        Ok((_, Ok(connection))) => {
            if let Err(e) = conn::register(shared, connection, false) {
                tracing::debug!(error = %e, "inbound connection not registered");
            }
        }
        Ok((claimed, Err(e))) => failed(shared, source, claimed, &e),
        Err(_) => tracing::debug!(%source, "inbound handshake timed out"),
    }
}

/// An inbound handshake failed: count it (unless our Noise session already
/// did) and warn once per address per period.
fn failed(
    shared: &Shared,
    source: SocketAddr,
    claimed: Option<relay_proto::NodeId>,
    e: &quinn::ConnectionError,
) {
    let Some(kind) = noise::classify_inbound_error(e) else {
        tracing::debug!(%source, error = %e, "inbound handshake failed");
        return;
    };
    if noise::failed_remotely(e) {
        // Our session finished when it sent message 2 and counted a
        // completed handshake; the initiator rejected it, so the count
        // moves to the failures.
        let stats = &shared.noise_stats;
        let _ = stats
            .handshakes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }
    let detail = match kind {
        crate::DialErrorKind::PeerKeyMismatch => {
            "the initiator dialed a key this node does not hold".to_owned()
        }
        _ => "the initiator holds another mesh network key".to_owned(),
    };
    let failure = HandshakeFailure {
        kind,
        detail,
        peer: claimed,
        addr: Some(source),
        outbound: false,
        at: SystemTime::now(),
    };
    let warn = shared.failures().record(Instant::now(), failure.clone());
    if warn {
        tracing::warn!(
            from = %source,
            peer = ?claimed.map(|p| p.fmt_short()),
            kind = %kind,
            "inbound handshake failed: {}",
            failure.why()
        );
    }
}
