//! Bootstrap peers: the peers a node dials at start, learned from the join
//! ticket (`relay-node init --join`). Stored as `bootstrap.json` (mode 0600):
//!
//! ```json
//! {"peers":[{"node_id":"<52 chars>","addrs":["192.0.2.1:7420"]}]}
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use relay_proto::NodeId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::atomic::{write_private, Overwrite};
use crate::datadir::DataDir;

/// Largest bootstrap file we will read.
const MAX_FILE_LEN: u64 = 1024 * 1024;

/// One peer to dial at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapPeer {
    /// The peer's identity (canonical text in JSON).
    #[serde(with = "node_id_text")]
    pub node_id: NodeId,
    /// Where to reach it.
    pub addrs: Vec<SocketAddr>,
}

/// The contents of `bootstrap.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bootstrap {
    /// Peers to dial.
    pub peers: Vec<BootstrapPeer>,
}

/// Reading or writing `bootstrap.json` failed.
#[derive(Debug, Error)]
pub enum BootstrapError {
    /// The file is not valid bootstrap JSON.
    #[error("corrupt-config: {path}: {reason}")]
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

impl BootstrapError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Corrupt { .. } => "corrupt-config",
            Self::Io { .. } => "io",
        }
    }
}

impl Bootstrap {
    /// Loads the file; a missing file is an empty list.
    pub fn load(dir: &DataDir) -> Result<Self, BootstrapError> {
        let path = dir.bootstrap_path();
        let io = |source| BootstrapError::Io {
            path: path.clone(),
            source,
        };
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(io(e)),
        };
        if meta.len() > MAX_FILE_LEN {
            return Err(BootstrapError::Corrupt {
                path,
                reason: format!("{} bytes is too large", meta.len()),
            });
        }
        let text = std::fs::read(&path).map_err(io)?;
        serde_json::from_slice(&text).map_err(|e| BootstrapError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })
    }

    /// Writes the file atomically.
    pub fn save(&self, dir: &DataDir) -> Result<(), BootstrapError> {
        let path = dir.bootstrap_path();
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| BootstrapError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        text.push(b'\n');
        write_private(&path, &text, Overwrite::Replace)
            .map_err(|source| BootstrapError::Io { path, source })
    }
}

/// Serializes a NodeId as its canonical text, parsing strictly.
pub(crate) mod node_id_text {
    use relay_proto::NodeId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    #[test]
    fn roundtrip_and_missing() {
        let root = crate::testutil::temp_dir("bootstrap");
        let dir = DataDir::new(&root);
        assert_eq!(Bootstrap::load(&dir).unwrap(), Bootstrap::default());
        let b = Bootstrap {
            peers: vec![BootstrapPeer {
                node_id: SecretKey::generate().node_id(),
                addrs: vec!["192.0.2.1:7420".parse().unwrap()],
            }],
        };
        b.save(&dir).unwrap();
        assert_eq!(Bootstrap::load(&dir).unwrap(), b);
        std::fs::write(
            dir.bootstrap_path(),
            b"{\"peers\":[{\"node_id\":\"xyz\",\"addrs\":[]}]}",
        )
        .unwrap();
        assert_eq!(Bootstrap::load(&dir).unwrap_err().kind(), "corrupt-config");
        std::fs::remove_dir_all(root).unwrap();
    }
}
