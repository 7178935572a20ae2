//! Finds the `relay-node` binary for multi-process tests.
//!
//! Order: `$RELAY_NODE_BIN`; else `relay-node` next to the test binary's
//! directory (`target/<profile>/deps/..`), brought up to date once per
//! process with `cargo build -p relay-node --bin relay-node` (plus
//! `--release` when the test binary itself lives under `target/release`,
//! as benches do). Building every time, not only when the file is missing,
//! matters: `cargo test -p relay-tests` does not rebuild another package's
//! binary, and a stale one would test old code. When it is up to date the
//! build is a no-op of a fraction of a second.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The environment variable that overrides the binary's location.
pub const ENV_BIN: &str = "RELAY_NODE_BIN";

/// The path of the `relay-node` binary, found (or built) once per process.
pub fn relay_node_bin() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(locate).clone()
}

fn locate() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(ENV_BIN) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{ENV_BIN}={} is not a file", path.display()))
        };
    }
    let guess = beside_test_binary()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "relay-node", "--bin", "relay-node"]);
    if is_release_dir(&guess) {
        build.arg("--release");
    }
    let status = build
        .status()
        .map_err(|e| format!("cannot run cargo to build relay-node: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build -p relay-node failed: {status}"));
    }
    if guess.is_file() {
        Ok(guess)
    } else {
        Err(format!(
            "built relay-node but {} does not exist; set {ENV_BIN}",
            guess.display()
        ))
    }
}

/// Whether `bin` sits in a `release` profile directory (where `cargo
/// bench` puts its binaries).
fn is_release_dir(bin: &std::path::Path) -> bool {
    bin.parent()
        .and_then(|d| d.file_name())
        .is_some_and(|n| n == "release")
}

/// `<dir of the running test binary>/../relay-node`.
fn beside_test_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let deps = exe
        .parent()
        .ok_or_else(|| format!("{} has no parent", exe.display()))?;
    let profile = deps.parent().unwrap_or(deps);
    Ok(profile.join("relay-node"))
}
