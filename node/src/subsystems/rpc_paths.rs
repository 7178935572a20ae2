//! The path (direct, relayed, not connected) and RTT of each peer, as
//! discovery weighs them, from the transport's peer list, read at most
//! every [`REFRESH`] so a call does not copy the whole list.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use relay_proto::NodeId;
use relay_rpc::Path;
use relay_transport::{PathKind, PeerState, Transport};

/// How old the cached peer list may be.
pub const REFRESH: Duration = Duration::from_millis(100);

type Snapshot = foldhash::HashMap<NodeId, (Path, Option<Duration>)>;

/// See the module docs.
#[derive(Debug, Default)]
pub struct Paths {
    cached: Mutex<Option<(Instant, Snapshot)>>,
}

impl Paths {
    /// The path and RTT to `node` (unknown when not connected).
    pub fn get(&self, transport: &Transport, node: &NodeId) -> (Path, Option<Duration>) {
        let now = Instant::now();
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = cached
            .as_ref()
            .is_some_and(|(at, _)| now.duration_since(*at) < REFRESH);
        if !fresh {
            *cached = Some((now, snapshot(transport)));
        }
        cached
            .as_ref()
            .and_then(|(_, map)| map.get(node).copied())
            .unwrap_or((Path::Unknown, None))
    }
}

fn snapshot(transport: &Transport) -> Snapshot {
    transport
        .peers()
        .into_iter()
        .map(|p| {
            let path = match (p.state, p.path) {
                (PeerState::Connected, PathKind::Direct) => Path::Direct,
                (PeerState::Connected, PathKind::Relayed) => Path::Relayed,
                _ => Path::Unknown,
            };
            (p.node_id, (path, p.rtt))
        })
        .collect()
}
