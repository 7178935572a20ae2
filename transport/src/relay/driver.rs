//! The relay server's driver: runs the sans-IO [`RelayServer`] inside a
//! transport that relays (`TransportConfig::relay`).
//!
//! - Relay-send frames come from the path socket's frame channel (the
//!   transport's frame loop hands them here); the core decides, and the
//!   frames it emits go out on the same socket at once, so its per-client
//!   queues only ever hold one batch.
//! - A peer asks to be served with `ControlMsg::RelayRegister` over its
//!   authenticated connection; the driver registers it with the real
//!   address of that connection's (direct) path and the frame keys of
//!   that connection (see [`super::auth`]). A peer reached only
//!   through another relay is refused (no nesting).
//! - When a client's connection closes it is unregistered, and the
//!   `PeerGone` messages the core emits go to the clients concerned.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use relay_proto::wire::control::{ControlMsg, RefuseReason};
use relay_proto::NodeId;

use super::auth::FrameKeys;
use super::server::{RegisterError, RelayLimits, RelayServer, RelayStats, Transmit};
use super::sessions::RelaySessionEvent;
use super::ConnectionKeys;
use crate::handles::RelayServerHost;
use crate::socket::{Frame, Path};

/// Frames handled per lock of the core before sending.
const BATCH: usize = 64;

/// The relay server of one transport.
#[derive(Debug)]
pub(crate) struct RelayService {
    core: Mutex<RelayServer>,
}

impl RelayService {
    pub(crate) fn new(limits: RelayLimits) -> Self {
        Self {
            core: Mutex::new(RelayServer::new(limits)),
        }
    }

    fn core(&self) -> MutexGuard<'_, RelayServer> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn limits(&self) -> RelayLimits {
        *self.core().limits()
    }

    pub(crate) fn stats(&self) -> RelayStats {
        self.core().stats()
    }

    pub(crate) fn is_client(&self, node: &NodeId) -> bool {
        self.core().is_client(node)
    }

    /// Sessions closed since the last call (idle ones are closed now).
    pub(crate) fn closed_sessions(&self) -> Vec<RelaySessionEvent> {
        let mut core = self.core();
        let log = core.session_log();
        log.expire(Instant::now());
        std::iter::from_fn(|| log.poll_closed()).collect()
    }

    /// Handles a batch of relay-send frames and sends what results.
    pub(crate) async fn handle_frames(&self, shared: &dyn RelayServerHost, frames: &[Frame]) {
        let (transmits, controls) = {
            let mut core = self.core();
            let now = Instant::now();
            for frame in frames {
                core.handle_frame(now, frame.src, &frame.data);
            }
            drain(&mut core)
        };
        send(shared, transmits, controls).await;
    }

    /// A peer asked to be served over `conn`: the reply to send it. Its
    /// frames are authenticated with keys from `conn`.
    pub(crate) fn register(
        &self,
        shared: &dyn RelayServerHost,
        peer: NodeId,
        conn: &quinn::Connection,
    ) -> ControlMsg {
        let real = shared
            .socket()
            .mapped_addr(&peer)
            .and_then(|m| shared.socket().path(&m))
            .and_then(|p| match p {
                Path::Direct(real) => Some(real),
                Path::Relayed { .. } => None,
            });
        let Some(real) = real else {
            return ControlMsg::RelayRefused {
                reason: RefuseReason::NoDirectPath,
            };
        };
        let Some(keys) = FrameKeys::from_connection(conn) else {
            return ControlMsg::RelayRefused {
                reason: RefuseReason::Full,
            };
        };
        let mut core = self.core();
        let new = !core.is_client(&peer);
        match core.register(Instant::now(), peer, real, keys) {
            Ok(()) => {
                if new {
                    tracing::info!(client = %peer.fmt_short(), addr = %real, "relay client registered");
                }
                ControlMsg::RelayRegistered {
                    limits: core.limits().to_msg(),
                }
            }
            Err(RegisterError::Full | RegisterError::Keys) => ControlMsg::RelayRefused {
                reason: RefuseReason::Full,
            },
        }
    }

    /// A client's connection moved to a new direct address.
    pub(crate) fn update_path(&self, peer: &NodeId, path: Path) {
        if let Path::Direct(real) = path {
            self.core().update_addr(peer, real);
        }
    }

    /// A peer's connection closed: unregister it and tell its session
    /// peers.
    pub(crate) async fn client_left(&self, shared: &dyn RelayServerHost, peer: NodeId) {
        let (transmits, controls) = {
            let mut core = self.core();
            if !core.unregister(&peer) {
                return;
            }
            tracing::info!(client = %peer.fmt_short(), "relay client left");
            drain(&mut core)
        };
        send(shared, transmits, controls).await;
    }
}

type Drained = (Vec<Transmit>, Vec<(NodeId, ControlMsg)>);

fn drain(core: &mut RelayServer) -> Drained {
    let transmits = std::iter::from_fn(|| core.poll_transmit()).collect();
    let controls = std::iter::from_fn(|| core.poll_control()).collect();
    (transmits, controls)
}

async fn send(
    shared: &dyn RelayServerHost,
    transmits: Vec<Transmit>,
    controls: Vec<(NodeId, ControlMsg)>,
) {
    for t in transmits {
        if let Err(e) = shared.socket().send_frame(t.dest, &t.data).await {
            tracing::trace!(dest = %t.dest, error = %e, "relay send failed");
        }
    }
    for (to, msg) in controls {
        shared.send_control(&to, &msg);
    }
}

/// Receives the path socket's frames until the transport closes: relay-send
/// frames go to the relay server (when relaying), the rest to
/// `other` (for traversal), dropped when nobody takes them.
pub(crate) async fn frame_loop(
    shared: Arc<dyn RelayServerHost>,
    relay_server: Option<Arc<RelayService>>,
    mut frames: tokio::sync::mpsc::Receiver<Frame>,
    other: tokio::sync::mpsc::Sender<Frame>,
) {
    use relay_proto::wire::relay::RELAY_SEND;
    let mut shutdown = shared.shutdown();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            frame = frames.recv() => frame,
            _ = shutdown.wait_for(|stop| *stop) => None,
        };
        let Some(first) = first else {
            break;
        };
        let mut next = Some(first);
        while let Some(frame) = next {
            if frame.data.first() == Some(&RELAY_SEND) {
                batch.push(frame);
            } else {
                let _ = other.try_send(frame);
            }
            next = if batch.len() < BATCH {
                frames.try_recv().ok()
            } else {
                None
            };
        }
        if batch.is_empty() {
            continue;
        }
        match &relay_server {
            Some(relay) => relay.handle_frames(&*shared, &batch).await,
            None => tracing::trace!(frames = batch.len(), "relay-send frames while not relaying"),
        }
        batch.clear();
    }
}
