//! Path changes under live connections: the one place that moves a peer
//! to another path, counts the change and reports it.

use relay_proto::NodeId;

use super::Shared;
use crate::socket::Path;
use crate::{PeerEvent, StreamError};

/// Moves connected `node` onto `path` (no new handshake; quinn does not
/// notice). Emits [`PeerEvent::PathChanged`]; counts the change when the
/// path differs.
pub(crate) fn change(shared: &Shared, node: NodeId, path: Path) -> Result<(), StreamError> {
    let live = shared
        .live(&node)
        .ok_or_else(|| StreamError::NotConnected(node.to_string()))?;
    let old = shared
        .socket
        .set_path(&live.mapped(), path)
        .ok_or_else(|| StreamError::NotConnected(node.to_string()))?;
    if old != path {
        live.count_path_change();
    }
    if let Some(relay) = &shared.relay_server {
        relay.update_path(&node, path);
    }
    tracing::info!(
        peer = %node.fmt_short(),
        path = path.kind().as_str(),
        remote = ?path.direct_addr(),
        via = ?relay_of(&path).map(|r| r.fmt_short()),
        "path changed"
    );
    shared.emit(PeerEvent::PathChanged {
        node_id: node,
        path: path.kind(),
        remote_addr: path.direct_addr(),
    });
    Ok(())
}

/// The relay of a relayed path.
pub(crate) fn relay_of(path: &Path) -> Option<NodeId> {
    path.relay()
}

/// Every connected peer on a relayed path, with that path.
pub(crate) fn relayed_peers(shared: &Shared) -> Vec<(NodeId, Path)> {
    let live: Vec<(NodeId, std::net::SocketAddr)> = shared
        .table()
        .peers
        .iter()
        .filter_map(|(id, e)| e.live().map(|c| (*id, c.mapped())))
        .collect();
    live.into_iter()
        .filter_map(|(id, mapped)| {
            let path = shared.socket.path(&mapped)?;
            relay_of(&path).map(|_| (id, path))
        })
        .collect()
}
