//! Lab teardown and serialization.
//!
//! A [`LabGuard`] holds an exclusive lock on a lock file for as long as a lab
//! exists (lab tests, across threads and test binaries, run one at a time so
//! two cores are not oversubscribed) and remembers every namespace the lab
//! created. Dropping it — also while unwinding from a failed assertion —
//! kills every process still inside those namespaces (only the lab starts
//! processes there), deletes the namespaces (their veth ends go with them)
//! and releases the lock. Namespaces left behind by a lab whose process died
//! without unwinding are removed by the next lab ([`remove_stale`]).

use std::fs::File;
use std::sync::atomic::{AtomicU32, Ordering};

use super::cmd::{run, LabResult};
use super::netns::{list_all, Netns};

/// Every lab namespace name starts with this, then `<pid>x<n>-`.
pub const NAME_PREFIX: &str = "rnl";

/// Owns a lab's namespaces and the lab lock; tears everything down on drop.
#[derive(Debug)]
pub struct LabGuard {
    prefix: String,
    namespaces: Vec<Netns>,
    _lock: File,
}

impl LabGuard {
    /// Waits for the lab lock, removes stale namespaces of dead labs and
    /// returns a guard with a fresh name prefix (`rnl<pid>x<n>`).
    pub fn acquire() -> LabResult<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join("relay-node-lab.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        lock.lock()?;
        remove_stale()?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            prefix: format!("{NAME_PREFIX}{}x{n}", std::process::id()),
            namespaces: Vec::new(),
            _lock: lock,
        })
    }

    /// The prefix of this lab's namespace names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates namespace `<prefix>-<suffix>` and registers it for teardown.
    pub fn create_netns(&mut self, suffix: &str) -> LabResult<Netns> {
        let ns = Netns::create(&format!("{}-{suffix}", self.prefix))?;
        self.namespaces.push(ns.clone());
        Ok(ns)
    }

    /// The namespaces created so far, oldest first.
    pub fn namespaces(&self) -> &[Netns] {
        &self.namespaces
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            teardown(ns);
        }
    }
}

/// Kills every process inside `ns` and deletes it; best effort, errors go
/// to stderr (a teardown must not panic inside a drop).
fn teardown(ns: &Netns) {
    if let Ok(pids) = ns.pids() {
        for pid in pids {
            let _ = run("kill", &["-KILL", &pid.to_string()]);
        }
    }
    if let Err(e) = run("ip", &["netns", "del", ns.name()]) {
        eprintln!("lab teardown: {e}");
    }
}

/// Deletes lab namespaces whose creating process no longer exists.
pub fn remove_stale() -> LabResult<()> {
    for name in list_all()? {
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            teardown(&Netns::existing(&name));
        }
    }
    Ok(())
}

/// The pid in a lab namespace name `rnl<pid>x<n>-...`.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (pid, _) = rest.split_once('x')?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_lab_names_only() {
        assert_eq!(owner_pid("rnl123x4-inet"), Some(123));
        assert_eq!(owner_pid("rnlprobe"), None);
        assert_eq!(owner_pid("other"), None);
    }
}
