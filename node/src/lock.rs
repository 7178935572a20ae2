//! The single-instance lock: one `relay-node run` per data dir.
//!
//! Three checks, in this order, all before the node touches anything else:
//!
//! 1. An exclusive advisory lock on the **data directory itself** (`flock`
//!    on an fd of the directory, `File::try_lock`). Removing files inside
//!    the directory cannot release it; only the holder's exit can.
//! 2. The same lock on `DIR/run.lock`, which also holds the holder's pid for
//!    the error message (and keeps out an older binary that locks only that
//!    file).
//! 3. No live node answers on `DIR/api.sock` (or `DIR/control.sock`, where
//!    binaries before the local API served their CLI): a
//!    successful `connect()` means a node serves this directory even though
//!    no lock says so (for example an older binary whose lock file was
//!    removed).
//!
//! The OS releases both locks when the process exits for any reason, so a
//! lock left by a killed process is simply taken over by the next `run`.
//! A clean exit also removes `run.lock`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::datadir::DataDir;

/// The control socket of binaries before the local API; a live one there
/// is a running node too.
const LEGACY_CONTROL_SOCKET: &str = "control.sock";

/// How long a probe `connect()` to a node's socket may take; a listener
/// that takes longer is alive (its backlog is full).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Taking the lock failed.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another live process holds the lock.
    #[error("lock: another relay-node is running with data dir {dir} (pid {pid})")]
    Held {
        /// The data directory.
        dir: String,
        /// The holder's pid as it wrote it, or "unknown".
        pid: String,
    },
    /// No lock is held, but a node answers on one of the data dir's sockets.
    #[error(
        "lock: another relay-node is running with data dir {dir}: it answers on {socket} \
         (its lock file is gone); stop it first"
    )]
    Answering {
        /// The data directory.
        dir: String,
        /// The socket that answered.
        socket: String,
    },
    /// The directory or lock file could not be opened or locked.
    #[error("io: cannot lock {path}: {source}")]
    Io {
        /// The directory or lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl LockError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Held { .. } | Self::Answering { .. } => "lock",
            Self::Io { .. } => "io",
        }
    }
}

/// A held run lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
    // Declared last: released after the lock file is removed.
    _dir: File,
}

impl RunLock {
    /// Takes the lock for `dir` (which must exist), or reports who holds
    /// it.
    pub async fn acquire(dir: &DataDir) -> Result<Self, LockError> {
        let dir_lock = lock_dir(dir)?;
        let path = dir.lock_path();
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // No truncate: the holder's pid must survive our failed attempt.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    dir: dir.to_string(),
                    pid: read_pid(&mut file),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // From here on a failure drops `lock`, which removes the file.
        let mut lock = Self {
            file,
            path: path.clone(),
            _dir: dir_lock,
        };
        for socket in [
            dir.api_socket_path(),
            dir.root().join(LEGACY_CONTROL_SOCKET),
        ] {
            if answers(&socket).await {
                return Err(LockError::Answering {
                    dir: dir.to_string(),
                    socket: socket.display().to_string(),
                });
            }
        }
        lock.file.set_len(0).map_err(io)?;
        lock.file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(lock.file, "{}", std::process::id()).map_err(io)?;
        lock.file.sync_all().map_err(io)?;
        Ok(lock)
    }
}

impl Drop for RunLock {
    /// Removes `run.lock` if it is still our file, while both locks are
    /// still held (so no other node can have taken it meanwhile).
    fn drop(&mut self) {
        let ours = match (self.file.metadata(), std::fs::symlink_metadata(&self.path)) {
            (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
            _ => false,
        };
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Locks the data directory itself.
fn lock_dir(dir: &DataDir) -> Result<File, LockError> {
    let io = |source| LockError::Io {
        path: dir.root().to_path_buf(),
        source,
    };
    let file = File::open(dir.root()).map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = match File::open(dir.lock_path()) {
                Ok(mut f) => read_pid(&mut f),
                Err(_) => "unknown".to_string(),
            };
            Err(LockError::Held {
                dir: dir.to_string(),
                pid,
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// The pid a holder wrote into its lock file, or "unknown".
fn read_pid(file: &mut File) -> String {
    let mut text = String::new();
    // A pid is a few digits; never read more than a little.
    let _ = file.take(64).read_to_string(&mut text);
    match text.trim() {
        "" => "unknown".to_string(),
        pid => pid.chars().take(20).collect(),
    }
}

/// Whether something accepts connections on the Unix socket at `path`. A
/// missing path or a refused connect (a stale socket file) is not alive; a
/// full backlog or a connect that does not finish within
/// [`PROBE_TIMEOUT`] is.
async fn answers(path: &Path) -> bool {
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::UnixStream::connect(path)).await {
        Ok(Ok(_stream)) => true,
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::WouldBlock,
        Err(_elapsed) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> (PathBuf, DataDir) {
        let root = crate::testutil::temp_dir("lock");
        let dir = DataDir::new(&root);
        dir.create().unwrap();
        (root, dir)
    }

    #[tokio::test]
    async fn second_lock_fails_with_pid_then_recovers() {
        let (root, dir) = temp();
        let held = RunLock::acquire(&dir).await.unwrap();
        let err = RunLock::acquire(&dir).await.unwrap_err();
        assert_eq!(err.kind(), "lock");
        let text = err.to_string();
        assert!(
            text.contains(&format!("(pid {})", std::process::id())),
            "{text}"
        );
        assert!(text.starts_with("lock: another relay-node is running with data dir "));
        drop(held);
        assert!(
            !dir.lock_path().exists(),
            "a clean release removes run.lock"
        );
        let _again = RunLock::acquire(&dir).await.unwrap();
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn removing_the_lock_file_does_not_release_the_lock() {
        let (root, dir) = temp();
        let held = RunLock::acquire(&dir).await.unwrap();
        std::fs::remove_file(dir.lock_path()).unwrap();
        let err = RunLock::acquire(&dir).await.unwrap_err();
        assert_eq!(err.kind(), "lock");
        assert!(err.to_string().contains("(pid unknown)"), "{err}");
        // The failed attempt leaves no lock file behind...
        assert!(!dir.lock_path().exists());
        drop(held);
        // ...and once released, the lock is free again.
        let _again = RunLock::acquire(&dir).await.unwrap();
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn a_node_answering_on_a_socket_holds_the_dir() {
        let (root, dir) = temp();
        for socket in [
            dir.api_socket_path(),
            dir.root().join(LEGACY_CONTROL_SOCKET),
        ] {
            let listener = tokio::net::UnixListener::bind(&socket).unwrap();
            let err = RunLock::acquire(&dir).await.unwrap_err();
            assert_eq!(err.kind(), "lock");
            assert!(
                err.to_string().contains(&socket.display().to_string()),
                "{err}"
            );
            assert!(!dir.lock_path().exists(), "nothing left behind");
            // A stale socket file (nobody listening) does not block.
            drop(listener);
            let lock = RunLock::acquire(&dir).await.unwrap();
            drop(lock);
            std::fs::remove_file(&socket).unwrap();
        }
        std::fs::remove_dir_all(root).unwrap();
    }
}
