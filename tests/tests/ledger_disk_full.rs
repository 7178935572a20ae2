//! A full disk, for real: the ledger on a 2 MiB tmpfs fills up. The append
//! that does not fit fails with `ledger-disk-full`, and after reopening
//! every acknowledged entry is there and every chain verifies. Needs root
//! (to mount the tmpfs); otherwise it prints `SKIPPED: reason`. The node's
//! unit tests cover the same on a simulated disk everywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use relay_node::ledger::Store;
use relay_proto::ledger::body::ServiceRegistration;
use relay_proto::ledger::Body;
use relay_proto::SecretKey;
use relay_tests::TempDir;

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Result<Mount, String> {
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        Ok(Mount(dir.to_owned()))
    } else {
        Err(format!(
            "cannot mount a tmpfs (root needed): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[test]
fn a_full_tmpfs_gives_a_typed_error_and_keeps_every_acknowledged_entry() {
    let tmp = TempDir::new("ledger-tmpfs").unwrap();
    let mount = match mount_tmpfs(tmp.path(), "2m") {
        Ok(m) => m,
        Err(reason) => {
            println!("SKIPPED: {reason}");
            return;
        }
    };
    let key = SecretKey::from_bytes(&[4; 32]);
    let origin = key.node_id();
    let mut acked = Vec::new();
    {
        let store = Store::open(&mount.0).unwrap();
        let mut err = None;
        for i in 0..10_000u64 {
            // Distinct names: registrations of one name would replace
            // each other and free their space.
            let body = Body::ServiceRegistration(ServiceRegistration {
                name: format!("svc-{i}"),
                withdrawn: false,
                spec: vec![i as u8; 8000],
            });
            match store.append_local(&key, &[(i, body)]) {
                Ok(s) => acked.push(s[0].entry.seq),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let err = err.expect("2 MiB filled up");
        assert_eq!(err.kind(), "ledger-disk-full", "{err}");
        assert!(err.to_string().starts_with("ledger-disk-full: "), "{err}");
        assert!(acked.len() > 10, "only {} appends fitted", acked.len());
    }
    let store = Store::open(&mount.0).unwrap();
    for seq in &acked {
        assert!(
            store.entry(&origin, *seq).unwrap().is_some(),
            "seq {seq} lost"
        );
    }
    assert_eq!(
        store.origin(&origin).unwrap().unwrap().frontier,
        *acked.last().unwrap()
    );
    assert!(store.verify().unwrap().is_ok());
    println!("{} appends fitted before the disk was full", acked.len());
}
