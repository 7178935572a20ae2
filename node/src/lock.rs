//! The single-instance lock: one `relay-node run` per data dir.
//!
//! `run` takes an exclusive advisory lock on `DIR/run.lock`
//! (`File::try_lock`) and writes its pid into the file. The OS releases the
//! lock when the process exits for any reason, so a lock left by a killed
//! process is simply taken over by the next `run`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use thiserror::Error;

use crate::datadir::DataDir;

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
    /// The lock file could not be opened or locked.
    #[error("io: cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl LockError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Held { .. } => "lock",
            Self::Io { .. } => "io",
        }
    }
}

/// A held run lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock for `dir`, or reports who holds it.
    pub fn acquire(dir: &DataDir) -> Result<Self, LockError> {
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
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = match text.trim() {
                    "" => "unknown".to_string(),
                    pid => pid.chars().take(20).collect(),
                };
                return Err(LockError::Held {
                    dir: dir.to_string(),
                    pid,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_with_pid_then_recovers() {
        let root = crate::testutil::temp_dir("lock");
        let dir = DataDir::new(&root);
        let held = RunLock::acquire(&dir).unwrap();
        let err = RunLock::acquire(&dir).unwrap_err();
        assert_eq!(err.kind(), "lock");
        let text = err.to_string();
        assert!(
            text.contains(&format!("(pid {})", std::process::id())),
            "{text}"
        );
        assert!(text.starts_with("lock: another relay-node is running with data dir "));
        drop(held);
        let _again = RunLock::acquire(&dir).unwrap();
        std::fs::remove_dir_all(root).unwrap();
    }
}
