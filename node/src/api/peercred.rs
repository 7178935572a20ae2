//! Who may use the local API: the node's own uid, or root. The server reads
//! each connecting process's credentials with `SO_PEERCRED` (tokio's
//! `UnixStream::peer_cred`) and checks them here.

/// Whether a process running as `peer_uid` may use the API of a node
/// running as `own_uid`.
pub fn allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == own_uid || peer_uid == 0
}

/// This process's uid: the credentials of one end of a socket pair, read
/// from the other end (no `unsafe`, no libc).
pub fn own_uid() -> std::io::Result<u32> {
    let (a, _b) = tokio::net::UnixStream::pair()?;
    Ok(a.peer_cred()?.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_uid_and_root_only() {
        assert!(allowed(1000, 1000));
        assert!(allowed(0, 1000));
        assert!(allowed(0, 0));
        assert!(!allowed(1001, 1000));
        assert!(!allowed(65534, 0));
    }

    #[tokio::test]
    async fn own_uid_matches_the_data_files() {
        use std::os::unix::fs::MetadataExt;
        let root = crate::testutil::temp_dir("uid");
        let uid = std::fs::metadata(&root).unwrap().uid();
        assert_eq!(own_uid().unwrap(), uid);
        std::fs::remove_dir_all(root).unwrap();
    }
}
