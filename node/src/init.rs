//! `relay-node init`: create a data dir with a new identity, and either a
//! new mesh network key or the one from a join ticket (plus its bootstrap
//! peer).

use relay_proto::{NetworkKey, NodeId, SecretKey, Ticket};
use thiserror::Error;

use crate::bootstrap::{Bootstrap, BootstrapError, BootstrapPeer};
use crate::datadir::{DataDir, DataDirError};
use crate::keystore::{self, SaveKeyError};

/// Initializing a data dir failed.
#[derive(Debug, Error)]
pub enum InitError {
    /// The directory could not be created.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// A key could not be written (or an identity exists).
    #[error(transparent)]
    Key(#[from] SaveKeyError),
    /// The bootstrap file could not be written.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
}

impl InitError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DataDir(e) => e.kind(),
            Self::Key(e) => e.kind(),
            Self::Bootstrap(e) => e.kind(),
        }
    }
}

/// Creates the data dir and its keys; returns the new NodeId. Never
/// overwrites an existing identity: the identity is written first, with a
/// no-overwrite link, so a refused init changes nothing.
pub fn init(dir: &DataDir, join: Option<&Ticket>) -> Result<NodeId, InitError> {
    dir.create()?;
    let secret_key = SecretKey::generate();
    keystore::save_identity(dir, &secret_key)?;
    match join {
        Some(ticket) => {
            keystore::save_network_key(dir, &ticket.network_key)?;
            Bootstrap {
                peers: vec![BootstrapPeer {
                    node_id: ticket.node_id,
                    addrs: ticket.addrs.clone(),
                }],
            }
            .save(dir)?;
        }
        None => keystore::save_network_key(dir, &NetworkKey::generate())?,
    }
    Ok(secret_key.node_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_and_joined() {
        let root = crate::testutil::temp_dir("init");
        let a = DataDir::new(root.join("a"));
        let id_a = init(&a, None).unwrap();
        let keys_a = keystore::load_keys(&a).unwrap();
        assert_eq!(keys_a.node_id(), id_a);
        assert_eq!(init(&a, None).unwrap_err().kind(), "exists");
        assert_eq!(
            keystore::load_keys(&a).unwrap().network_key,
            keys_a.network_key
        );

        let ticket = Ticket {
            node_id: id_a,
            addrs: vec!["127.0.0.1:7420".parse().unwrap()],
            network_key: keys_a.network_key.clone(),
        };
        let b = DataDir::new(root.join("b"));
        let id_b = init(&b, Some(&ticket)).unwrap();
        assert_ne!(id_a, id_b);
        assert_eq!(
            keystore::load_keys(&b).unwrap().network_key,
            keys_a.network_key
        );
        let boot = Bootstrap::load(&b).unwrap();
        assert_eq!(boot.peers[0].node_id, id_a);
        assert_eq!(boot.peers[0].addrs, ticket.addrs);
        std::fs::remove_dir_all(root).unwrap();
    }
}
