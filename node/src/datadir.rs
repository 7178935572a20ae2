//! The data directory: where it is, and the names of the files inside it.
//!
//! Resolution order: `--data-dir`, then `$RELAY_NODE_DATA_DIR` (both handled
//! by clap), then `$HOME/.local/share/relay-node`. The directory is created
//! with mode 0700 so nothing inside is reachable by other users.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The environment variable naming the data directory.
pub const ENV_DATA_DIR: &str = "RELAY_NODE_DATA_DIR";

/// The node's identity (ed25519 seed, base32 text, mode 0600).
pub const IDENTITY_FILE: &str = "identity.key";
/// The mesh network key (32 bytes, base32 text, mode 0600).
pub const NETWORK_KEY_FILE: &str = "network.key";
/// Bootstrap peers learned from a join ticket (JSON, mode 0600).
pub const BOOTSTRAP_FILE: &str = "bootstrap.json";
/// The single-instance lock held by `relay-node run`.
pub const LOCK_FILE: &str = "run.lock";
/// The local API socket served by `relay-node run` (docs/LOCAL_API.md).
pub const API_SOCKET: &str = "api.sock";

/// Resolving or creating the data directory failed.
#[derive(Debug, Error)]
pub enum DataDirError {
    /// Neither a flag, the environment nor `$HOME` names a directory.
    #[error("data-dir: no data directory: pass --data-dir, set {ENV_DATA_DIR}, or set HOME")]
    NoHome,
    /// The directory could not be created or secured.
    #[error("io: cannot create data directory {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl DataDirError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoHome => "data-dir",
            Self::Create { .. } => "io",
        }
    }
}

/// A node's data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Uses `root` as the data directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The explicit directory if given (flag or environment), else the
    /// default under `$HOME`.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Self, DataDirError> {
        if let Some(root) = explicit {
            return Ok(Self::new(root));
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or(DataDirError::NoHome)?;
        Ok(Self::new(
            PathBuf::from(home).join(".local/share/relay-node"),
        ))
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of [`IDENTITY_FILE`].
    pub fn identity_path(&self) -> PathBuf {
        self.root.join(IDENTITY_FILE)
    }

    /// Path of [`NETWORK_KEY_FILE`].
    pub fn network_key_path(&self) -> PathBuf {
        self.root.join(NETWORK_KEY_FILE)
    }

    /// Path of [`BOOTSTRAP_FILE`].
    pub fn bootstrap_path(&self) -> PathBuf {
        self.root.join(BOOTSTRAP_FILE)
    }

    /// Path of [`LOCK_FILE`].
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    /// Path of [`API_SOCKET`].
    pub fn api_socket_path(&self) -> PathBuf {
        self.root.join(API_SOCKET)
    }

    /// Creates the directory (and parents) if missing and sets it to 0700.
    pub fn create(&self) -> Result<(), DataDirError> {
        let err = |source| DataDirError::Create {
            path: self.root.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(err)?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700)).map_err(err)
    }
}

impl std::fmt::Display for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_dir_wins() {
        let dir = DataDir::resolve(Some("/x/y".into())).unwrap();
        assert_eq!(dir.root(), Path::new("/x/y"));
        assert_eq!(dir.identity_path(), Path::new("/x/y/identity.key"));
        assert_eq!(dir.api_socket_path(), Path::new("/x/y/api.sock"));
    }

    #[test]
    fn create_sets_0700() {
        let root = crate::testutil::temp_dir("datadir");
        let dir = DataDir::new(root.join("nested/dir"));
        dir.create().unwrap();
        let mode = std::fs::metadata(dir.root()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::remove_dir_all(root).unwrap();
    }
}
