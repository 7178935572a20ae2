//! Atomic, private file writes.
//!
//! A file is written to a temporary name in the same directory, created with
//! mode 0600 (so its contents are never readable by others, not even for an
//! instant), synced, then moved into place and the directory synced. A reader
//! sees either the old file or the complete new one.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// How to treat an existing file at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Fail with `AlreadyExists` if the destination exists.
    Refuse,
    /// Replace the destination.
    Replace,
}

/// Writes `contents` to `path` atomically with mode 0600.
pub fn write_private(path: &Path, contents: &[u8], overwrite: Overwrite) -> std::io::Result<()> {
    let tmp = temp_path(path);
    // A temp file left by a crashed writer is ours to replace.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let result = write_temp(&tmp, contents).and_then(|()| match overwrite {
        // hard_link fails if the destination exists: no check-then-write race.
        Overwrite::Refuse => std::fs::hard_link(&tmp, path),
        Overwrite::Replace => std::fs::rename(&tmp, path),
    });
    // After a rename this is a no-op NotFound; after a link or a failure it
    // cleans up.
    let _ = std::fs::remove_file(&tmp);
    result?;
    sync_parent(path)
}

fn write_temp(tmp: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_0600_and_refuses_overwrite() {
        let dir = crate::testutil::temp_dir("atomic");
        let path = dir.join("secret");
        write_private(&path, b"one", Overwrite::Refuse).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = write_private(&path, b"two", Overwrite::Refuse).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        write_private(&path, b"three", Overwrite::Replace).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"three");
        // No temp files left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
