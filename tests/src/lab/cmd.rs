//! Running the lab's external tools (`ip`, `nft`, `conntrack`, `kill`) and
//! the lab's error type. Every failure carries the command line and what the
//! tool printed, so a broken lab explains itself.

use std::io::Write;
use std::process::{Command, Stdio};

/// What went wrong while building, driving or tearing down a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// An external tool could not be started or exited nonzero.
    #[error("lab-command: `{cmd}`: {detail}")]
    Command {
        /// The command line.
        cmd: String,
        /// Exit status and stderr, or the spawn error.
        detail: String,
    },
    /// A helper process misbehaved or an expected event did not come in time.
    #[error("lab-helper: {0}")]
    Helper(String),
    /// The lab has run out of addresses for another host or site.
    #[error("lab-full: {0}")]
    Full(String),
    /// Local I/O (lock file, pipes).
    #[error("lab-io: {0}")]
    Io(#[from] std::io::Error),
}

/// Shorthand for lab results.
pub type LabResult<T> = Result<T, LabError>;

/// Runs `program args...` to completion; returns its stdout, or an error
/// naming the command with its stderr when it exits nonzero.
pub fn run(program: &str, args: &[&str]) -> LabResult<String> {
    run_with_stdin(program, args, None)
}

/// Like [`run`], feeding `stdin` to the process (e.g. an `nft -f -` script).
pub fn run_with_stdin(program: &str, args: &[&str], stdin: Option<&str>) -> LabResult<String> {
    let cmd = format!("{program} {}", args.join(" "));
    let fail = |detail: String| LabError::Command {
        cmd: cmd.clone(),
        detail,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| fail(format!("writing stdin: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("wait: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(fail(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
