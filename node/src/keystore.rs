//! The node's secret files: `identity.key` and `network.key`.
//!
//! Both hold 32 bytes as one line of lowercase base32 (52 characters). They
//! are written atomically with mode 0600 ([`crate::atomic`]).
//!
//! Loading *refuses* a key file that group or others can access (any of
//! mode bits 0o077 set): a secret that may have leaked should not silently
//! keep working. The error says how to fix it (`chmod 600 FILE`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use relay_proto::{NetworkKey, NodeId, SecretKey};
use thiserror::Error;

use crate::atomic::{write_private, Overwrite};
use crate::datadir::DataDir;

/// Reading a key file failed.
#[derive(Debug, Error)]
pub enum LoadKeyError {
    /// The data dir has no identity yet.
    #[error(
        "no-identity: no identity in {dir} (create one with `relay-node init` or `relay-node run`)"
    )]
    NoIdentity {
        /// The data directory.
        dir: String,
    },
    /// The data dir has an identity but no network key.
    #[error("no-network-key: {path} is missing (re-create the data dir with `relay-node init`)")]
    NoNetworkKey {
        /// The missing file.
        path: PathBuf,
    },
    /// Group or others can access the file.
    #[error("insecure-permissions: {path} has mode {mode:o}; run `chmod 600 {path}`")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a 32-byte base32 key.
    #[error("corrupt-key: {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading failed.
    #[error("io: cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl LoadKeyError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoIdentity { .. } => "no-identity",
            Self::NoNetworkKey { .. } => "no-network-key",
            Self::Permissions { .. } => "insecure-permissions",
            Self::Corrupt { .. } => "corrupt-key",
            Self::Io { .. } => "io",
        }
    }
}

/// Writing a key file failed.
#[derive(Debug, Error)]
pub enum SaveKeyError {
    /// An identity already exists; it is never overwritten.
    #[error(
        "exists: {path} already exists; refusing to overwrite an identity (use another --data-dir)"
    )]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Writing failed.
    #[error("io: cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl SaveKeyError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exists { .. } => "exists",
            Self::Io { .. } => "io",
        }
    }
}

/// The node's keys as loaded from its data dir.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The identity.
    pub secret_key: SecretKey,
    /// The mesh network key.
    pub network_key: NetworkKey,
}

impl Keys {
    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.secret_key.node_id()
    }
}

/// Whether the data dir holds an identity file (valid or not).
pub fn identity_exists(dir: &DataDir) -> bool {
    dir.identity_path().symlink_metadata().is_ok()
}

/// Loads the identity alone.
pub fn load_identity(dir: &DataDir) -> Result<SecretKey, LoadKeyError> {
    let path = dir.identity_path();
    match read_key_file(&path)? {
        Some(bytes) => Ok(SecretKey::from_bytes(&bytes)),
        None => Err(LoadKeyError::NoIdentity {
            dir: dir.to_string(),
        }),
    }
}

/// Loads the identity and the network key.
pub fn load_keys(dir: &DataDir) -> Result<Keys, LoadKeyError> {
    let secret_key = load_identity(dir)?;
    let path = dir.network_key_path();
    let network_key = match read_key_file(&path)? {
        Some(bytes) => NetworkKey::from_bytes(bytes),
        None => return Err(LoadKeyError::NoNetworkKey { path }),
    };
    Ok(Keys {
        secret_key,
        network_key,
    })
}

/// Writes a new identity; refuses if one exists.
pub fn save_identity(dir: &DataDir, key: &SecretKey) -> Result<(), SaveKeyError> {
    write_key_file(&dir.identity_path(), &key.to_bytes(), Overwrite::Refuse)
}

/// Writes the network key, replacing any previous one.
pub fn save_network_key(dir: &DataDir, key: &NetworkKey) -> Result<(), SaveKeyError> {
    write_key_file(&dir.network_key_path(), key.as_bytes(), Overwrite::Replace)
}

fn write_key_file(path: &Path, bytes: &[u8; 32], overwrite: Overwrite) -> Result<(), SaveKeyError> {
    let mut text = relay_proto::base32_encode(bytes);
    text.push('\n');
    write_private(path, text.as_bytes(), overwrite).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            SaveKeyError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            SaveKeyError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Reads a key file: `Ok(None)` if it does not exist.
fn read_key_file(path: &Path) -> Result<Option<[u8; 32]>, LoadKeyError> {
    let io = |source| LoadKeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let corrupt = |reason: String| LoadKeyError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if !meta.is_file() {
        return Err(corrupt("not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(LoadKeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    // A key file is 53 bytes; anything much larger is not one of ours.
    if meta.len() > 1024 {
        return Err(corrupt(format!(
            "{} bytes is too large for a key file",
            meta.len()
        )));
    }
    let raw = std::fs::read(path).map_err(io)?;
    let text = std::str::from_utf8(&raw)
        .map_err(|_| corrupt("not text (expected 52 base32 characters)".into()))?
        .trim();
    let bytes =
        relay_proto::base32_decode(text).map_err(|e| corrupt(format!("bad encoding: {e}")))?;
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| corrupt(format!("expected 32 bytes, found {}", bytes.len())))?;
    Ok(Some(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (DataDir, PathBuf) {
        let root = crate::testutil::temp_dir("keystore");
        (DataDir::new(&root), root)
    }

    #[test]
    fn roundtrip() {
        let (dir, root) = fresh();
        let sk = SecretKey::generate();
        let nk = NetworkKey::generate();
        save_identity(&dir, &sk).unwrap();
        save_network_key(&dir, &nk).unwrap();
        let keys = load_keys(&dir).unwrap();
        assert_eq!(keys.node_id(), sk.node_id());
        assert_eq!(keys.network_key, nk);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn refuses_to_overwrite_identity() {
        let (dir, root) = fresh();
        let first = SecretKey::generate();
        save_identity(&dir, &first).unwrap();
        let err = save_identity(&dir, &SecretKey::generate()).unwrap_err();
        assert_eq!(err.kind(), "exists");
        assert_eq!(load_identity(&dir).unwrap().node_id(), first.node_id());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn missing_files_are_typed() {
        let (dir, root) = fresh();
        assert_eq!(load_keys(&dir).unwrap_err().kind(), "no-identity");
        save_identity(&dir, &SecretKey::generate()).unwrap();
        assert_eq!(load_keys(&dir).unwrap_err().kind(), "no-network-key");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn corrupt_files_are_typed() {
        let (dir, root) = fresh();
        for body in [&b"short\n"[..], b"!!!!", &[0xff, 0xfe][..], b"", b"aaaa"] {
            write_private(&dir.identity_path(), body, Overwrite::Replace).unwrap();
            let err = load_identity(&dir).unwrap_err();
            assert_eq!(err.kind(), "corrupt-key", "{body:?}: {err}");
            assert!(err.to_string().starts_with("corrupt-key: "));
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn readable_by_others_is_refused() {
        let (dir, root) = fresh();
        save_identity(&dir, &SecretKey::generate()).unwrap();
        let path = dir.identity_path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_identity(&dir).unwrap_err();
        assert_eq!(err.kind(), "insecure-permissions");
        assert!(err.to_string().contains("chmod 600"));
        std::fs::remove_dir_all(root).unwrap();
    }
}
