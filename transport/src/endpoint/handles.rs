//! The endpoint's side of the driver handles (`crate::handles`): each
//! trait implemented on [`Shared`], so a driver task holds the endpoint
//! only as the narrow trait it needs.

use std::net::SocketAddr;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use relay_proto::wire::control::ControlMsg;
use relay_proto::NodeId;
use tokio::sync::watch;

use super::{conn, control, paths, Shared};
use crate::handles::{
    DriverIo, LivePeer, PeerPaths, PortMapHost, RelayClientHost, RelayServerHost, SendControl,
    TraversalHost,
};
use crate::relay::client::RelayClients;
use crate::socket::{Path, PathSocket};
use crate::{PeerEvent, StreamError};

impl DriverIo for Shared {
    fn socket(&self) -> &Arc<PathSocket> {
        &self.socket
    }

    fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

impl SendControl for Shared {
    fn send_control(&self, to: &NodeId, msg: &ControlMsg) -> bool {
        control::send_to(self, to, msg)
    }
}

impl PeerPaths for Shared {
    fn live(&self, peer: &NodeId) -> Option<LivePeer> {
        Shared::live(self, peer).map(|l| LivePeer {
            conn: l.conn,
            outbound: l.outbound,
        })
    }

    fn change_path(&self, peer: NodeId, path: Path) -> Result<(), StreamError> {
        paths::change(self, peer, path)
    }
}

impl TraversalHost for Shared {
    fn registered_relays(&self) -> Vec<NodeId> {
        self.relays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .registered()
    }

    fn live_peers(&self) -> Vec<NodeId> {
        self.table()
            .peers
            .iter()
            .filter(|(_, e)| e.live().is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn observed(&self) -> Vec<(NodeId, SocketAddr)> {
        self.observed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, a)| (*id, *a))
            .collect()
    }

    fn set_keep_alive(&self, keep_alive: Duration) -> bool {
        self.quic.set_keep_alive(&self.endpoint, keep_alive)
    }
}

impl RelayClientHost for Shared {
    type Clients = RelayClients;

    fn relay_clients(&self) -> MutexGuard<'_, RelayClients> {
        self.relays.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn relays_changed(&self) -> &watch::Sender<u64> {
        &self.relays_changed
    }

    fn dial_timeout(&self) -> Duration {
        self.config.dial_timeout
    }

    fn relayed_peers(&self) -> Vec<(NodeId, Path)> {
        paths::relayed_peers(self)
    }

    fn emit(&self, event: PeerEvent) {
        Shared::emit(self, event);
    }

    fn close_with_note(&self, node: &NodeId, note: String) {
        conn::close_with_note(self, node, note);
    }
}

impl RelayServerHost for Shared {}

impl PortMapHost for Shared {
    fn set_port_mapping(&self, addr: Option<SocketAddr>) {
        if let Some(t) = &self.traversal {
            t.set_port_mapping(addr);
        }
    }
}
