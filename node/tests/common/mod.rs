//! Helpers the node's process tests share.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// A temp directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty directory named after the test binary and `tag`.
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let binary = module_path!().split("::").next().unwrap_or("test");
        let path =
            std::env::temp_dir().join(format!("rn-{binary}-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    /// The data dir inside it.
    #[allow(dead_code)] // not every test binary uses it
    pub fn data(&self) -> PathBuf {
        self.0.join("data")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
