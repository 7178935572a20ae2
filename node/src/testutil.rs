//! Helpers shared by this crate's unit tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh, empty directory under the system temp dir, unique per call.
pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rn-unit-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A ledger event body whose content varies with `n`.
pub(crate) fn traversal_event(n: u64) -> relay_proto::ledger::Body {
    use relay_proto::ledger::body::{PathOutcome, TraversalOutcome};
    relay_proto::ledger::Body::TraversalOutcome(TraversalOutcome {
        peer: relay_proto::SecretKey::from_bytes(&[9; 32]).node_id(),
        outcome: PathOutcome::Direct,
        time_to_direct_ms: Some(n),
        why: String::new(),
        birthday_packets: 0,
    })
}
