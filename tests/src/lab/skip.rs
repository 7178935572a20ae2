//! Whether this machine can run the lab, and the `SKIPPED` report when not.
//!
//! The lab needs Linux, root, `ip` and `nft`, and the right to create a
//! network namespace and an nftables table inside it (a container may be
//! root without that). The check runs once per process. Setting
//! `RELAY_NODE_LAB=skip` skips the lab on purpose.
//!
//! A skipped lab test must never look like a pass: [`report_skip`] writes
//! `SKIPPED: <reason>` straight to the process's stdout and stderr, past
//! the test harness's output capture, so it shows even for a passing test.

use std::io::Write;
use std::sync::OnceLock;

use super::cmd::run;

/// The variable that skips the lab on purpose when set to `skip`.
pub const ENV_LAB: &str = "RELAY_NODE_LAB";

/// `Ok` when the lab can run here, else the reason it cannot.
pub fn lab_available() -> Result<(), String> {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    CHECK.get_or_init(check).clone()
}

fn check() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("the NAT lab needs Linux network namespaces".into());
    }
    if std::env::var(ENV_LAB).is_ok_and(|v| v == "skip") {
        return Err(format!("{ENV_LAB}=skip"));
    }
    match effective_uid() {
        Some(0) => {}
        Some(uid) => return Err(format!("the NAT lab needs root (running as uid {uid})")),
        None => return Err("cannot read the effective uid from /proc/self/status".into()),
    }
    run("ip", &["-V"]).map_err(|e| format!("iproute2 `ip` is not usable: {e}"))?;
    run("nft", &["--version"]).map_err(|e| format!("nftables `nft` is not usable: {e}"))?;
    probe_namespace()
}

/// Creates a throwaway namespace with an nftables table, then deletes it.
fn probe_namespace() -> Result<(), String> {
    let name = format!("rnlprobe{}", std::process::id());
    run("ip", &["netns", "add", &name])
        .map_err(|e| format!("cannot create a network namespace: {e}"))?;
    let nft = run(
        "ip",
        &["netns", "exec", &name, "nft", "add", "table", "ip", "probe"],
    );
    let _ = run("ip", &["netns", "del", &name]);
    nft.map(drop)
        .map_err(|e| format!("cannot use nftables in a namespace: {e}"))
}

/// The effective uid, from `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// `Err(reason)` when `tool` (e.g. `conntrack`, needed only for rebinding)
/// cannot be run with `--version`.
pub fn tool_available(tool: &str) -> Result<(), String> {
    run(tool, &["--version"])
        .map(drop)
        .map_err(|e| format!("`{tool}` is not usable: {e}"))
}

/// Prints `SKIPPED: <reason> (<test>)` on stdout and stderr, uncaptured.
pub fn report_skip(test: &str, reason: &str) {
    let line = format!("SKIPPED: {reason} ({test})\n");
    let _ = std::io::stdout().write_all(line.as_bytes());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// At the top of a lab test: returns from the test after printing
/// `SKIPPED: <reason>` when the lab cannot run on this machine (or, with
/// `needs: "tool", ...`, when an extra tool is missing).
#[macro_export]
macro_rules! lab_or_skip {
    ($test:expr) => {
        if let Err(reason) = $crate::lab::skip::lab_available() {
            $crate::lab::skip::report_skip($test, &reason);
            return;
        }
    };
    ($test:expr, needs: $($tool:expr),+) => {
        $crate::lab_or_skip!($test);
        $(
            if let Err(reason) = $crate::lab::skip::tool_available($tool) {
                $crate::lab::skip::report_skip($test, &reason);
                return;
            }
        )+
    };
}
