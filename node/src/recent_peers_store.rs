//! `DIR/recent_peers.json`: the peers this node was connected to, and
//! where, kept across restarts for [`crate::recent_peers`].
//!
//! A JSON object `{"peers": [{"node_id", "addr", "last_seen"}, ...]}`,
//! written atomically with mode 0600 (addresses of peers are not secret,
//! but they are nobody else's business). The file is bounded by the core
//! (64 peers); a file larger than [`MAX_FILE_LEN`] or not valid is
//! reported and treated as empty by the driver, never fatal: the node
//! only loses its head start after a crash.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::atomic::{write_private, Overwrite};
use crate::datadir::DataDir;
use crate::recent_peers::RecentPeer;

/// The file's name in the data dir.
pub const RECENT_PEERS_FILE: &str = "recent_peers.json";
/// Largest file read.
pub const MAX_FILE_LEN: u64 = 256 * 1024;

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    peers: Vec<RecentPeer>,
}

/// Reading or writing the recent peers failed.
#[derive(Debug, Error)]
pub enum RecentPeersError {
    /// The file is not what this node writes.
    #[error("corrupt-recent-peers: {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("io: {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The store of one data dir.
#[derive(Debug, Clone)]
pub struct RecentPeersStore {
    path: PathBuf,
}

impl RecentPeersStore {
    /// The store in `dir`.
    pub fn new(dir: &DataDir) -> Self {
        Self {
            path: dir.root().join(RECENT_PEERS_FILE),
        }
    }

    /// What was saved; nothing when there is no file.
    pub fn load(&self) -> Result<Vec<RecentPeer>, RecentPeersError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(RecentPeersError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let corrupt = |reason: String| RecentPeersError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        if text.len() as u64 > MAX_FILE_LEN {
            return Err(corrupt(format!("{} bytes is too large", text.len())));
        }
        let file: File = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        Ok(file.peers)
    }

    /// Replaces what is saved with `peers`.
    pub fn save(&self, peers: Vec<RecentPeer>) -> Result<(), RecentPeersError> {
        let text = serde_json::to_vec(&File { peers }).map_err(|e| RecentPeersError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        write_private(&self.path, &text, Overwrite::Replace).map_err(|source| {
            RecentPeersError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    #[test]
    fn roundtrip_missing_and_corrupt() {
        let root = crate::testutil::temp_dir("recent-peers");
        let dir = DataDir::new(root.clone());
        let store = RecentPeersStore::new(&dir);
        assert!(store.load().unwrap().is_empty());
        let peers = vec![RecentPeer {
            node_id: SecretKey::from_bytes(&[1; 32]).node_id(),
            addr: "198.51.100.10:7000".parse().unwrap(),
            last_seen: 1234,
        }];
        store.save(peers.clone()).unwrap();
        assert_eq!(store.load().unwrap(), peers);
        std::fs::write(root.join(RECENT_PEERS_FILE), b"{\"peers\": 7}").unwrap();
        let err = store.load().unwrap_err();
        assert!(
            err.to_string().starts_with("corrupt-recent-peers: "),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
