//! Real `relay-node` processes inside lab namespaces, with the CLI verbs the
//! lab tests use (`status --json`, `netcheck --json`, `ping`, `invite`).
//!
//! A node runs in its namespace through `ip netns exec`; its data dir and
//! API socket live on the shared filesystem, so the CLI verbs run from
//! the test's own namespace and still reach it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{poll_until, run_cli, CliOutput, NodeProcess};

use super::netns::Netns;

/// How often status is polled while waiting for a peer state.
const POLL: Duration = Duration::from_millis(100);

/// `relay-node init [--join TICKET]` in `dir`; returns the new NodeId.
pub fn init(bin: &Path, dir: &Path, join: Option<&str>) -> Result<String, String> {
    let mut args = vec!["init"];
    if let Some(ticket) = join {
        args.extend(["--join", ticket]);
    }
    let out = run_cli(bin, dir, &args).map_err(|e| format!("init: {e}"))?;
    if out.success() {
        Ok(out.stdout.trim().to_string())
    } else {
        Err(format!("init failed: {out:?}"))
    }
}

/// A `relay-node run` inside a lab namespace (killed on drop).
#[derive(Debug)]
pub struct LabNode {
    /// The process.
    pub process: NodeProcess,
    /// Its data dir.
    pub dir: PathBuf,
    /// Its NodeId.
    pub id: String,
    bin: PathBuf,
}

impl LabNode {
    /// Starts `relay-node --data-dir DIR run ARGS...` in `ns` and waits up
    /// to `timeout` for its startup line.
    pub fn start(
        bin: &Path,
        ns: &Netns,
        dir: &Path,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Self, String> {
        let process = NodeProcess::start_in_netns(ns.name(), bin, dir, args, timeout)?;
        Ok(Self {
            id: process.node_id.clone(),
            process,
            dir: dir.to_path_buf(),
            bin: bin.to_path_buf(),
        })
    }

    /// `ping PEER --until-direct -i 100 --timeout SECS`: pings every 100 ms
    /// until a pong comes over a direct path (the CLI exits 0) or
    /// `timeout_s` passes.
    pub fn ping_until_direct(&self, peer: &str, timeout_s: u32) -> CliOutput {
        let timeout = timeout_s.to_string();
        self.cli(&[
            "ping",
            peer,
            "--until-direct",
            "-i",
            "100",
            "--timeout",
            &timeout,
        ])
    }

    /// Runs a CLI verb against this node's data dir.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        run_cli(&self.bin, &self.dir, args).unwrap_or_else(|e| CliOutput {
            code: None,
            stdout: String::new(),
            stderr: format!("cannot run relay-node: {e}"),
        })
    }

    /// `invite --addr ADDR`: a join ticket naming this node at `addr`.
    pub fn invite(&self, addr: &str) -> Result<String, String> {
        let out = self.cli(&["invite", "--addr", addr]);
        if out.success() {
            Ok(out.stdout.trim().to_string())
        } else {
            Err(format!("invite failed: {out:?}"))
        }
    }

    /// `status --json`, parsed; `None` if the verb failed.
    pub fn status(&self) -> Option<serde_json::Value> {
        let out = self.cli(&["status", "--json"]);
        out.success()
            .then(|| serde_json::from_str(&out.stdout).ok())
            .flatten()
    }

    /// `netcheck --json`, parsed; `None` if the verb failed.
    pub fn netcheck(&self) -> Option<serde_json::Value> {
        let out = self.cli(&["netcheck", "--json"]);
        out.success()
            .then(|| serde_json::from_str(&out.stdout).ok())
            .flatten()
    }

    /// Polls `status --json` until its `nat.type` is `nat_type` (at most
    /// `timeout`); returns the `nat` section.
    pub fn wait_nat_type(&self, nat_type: &str, timeout: Duration) -> Option<serde_json::Value> {
        poll_until(timeout, POLL, || {
            self.status()
                .map(|s| s["nat"].clone())
                .filter(|nat| nat["type"] == nat_type)
        })
    }

    /// This node's status entry for `peer`, if listed.
    pub fn peer(&self, peer: &str) -> Option<serde_json::Value> {
        let status = self.status()?;
        status["peers"]
            .as_array()?
            .iter()
            .find(|p| p["node_id"] == peer)
            .cloned()
    }

    /// Polls status until the entry for `peer` satisfies `pred` (at most
    /// `timeout`); returns that entry.
    pub fn wait_peer(
        &self,
        peer: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        poll_until(timeout, POLL, || self.peer(peer).filter(|p| pred(p)))
    }

    /// Everything the node has written to stderr (for failure messages).
    pub fn log(&self) -> String {
        self.process.stderr_log()
    }
}

/// Whether a status peer entry is connected over `path` ("direct" or
/// "relayed").
pub fn is_connected_via(peer: &serde_json::Value, path: &str) -> bool {
    peer["state"] == "connected" && peer["path"] == path
}
