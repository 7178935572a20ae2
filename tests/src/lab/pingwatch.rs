//! Runs `relay-node ping NODEID --until-direct` and stamps each pong line
//! with the bench's clock the moment it arrives on the pipe.
//!
//! The CLI prints a pong as soon as the node's local API returns it
//! (stdout is line-buffered), so a line's arrival time is the pong's time at
//! the node plus a local pipe hop, well under a millisecond. With `-i MS`
//! the pings go out every `MS` ms plus one round trip, which bounds how late
//! the first pong over a new path can be seen.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// One pong line, as it arrived.
#[derive(Debug, Clone)]
pub struct Pong {
    /// When the line arrived (monotonic).
    pub at: Instant,
    /// When the line arrived (wall clock, to compare with node logs).
    pub wall: SystemTime,
    /// "direct" or "relayed".
    pub path: String,
}

/// What one `ping --until-direct` did.
#[derive(Debug)]
pub struct PingRun {
    /// Just before the CLI was spawned.
    pub started: Instant,
    /// Every pong, in order.
    pub pongs: Vec<Pong>,
    /// Whether the CLI exited 0 (a direct pong came in time).
    pub success: bool,
    /// The CLI's stderr (its `kind: detail` on failure).
    pub stderr: String,
}

impl PingRun {
    /// The first pong over `path`.
    pub fn first(&self, path: &str) -> Option<&Pong> {
        self.pongs.iter().find(|p| p.path == path)
    }
}

/// `relay-node --data-dir DIR ping PEER --until-direct -i INTERVAL
/// --timeout SECS`, with each pong line timestamped on arrival.
pub fn until_direct(
    bin: &Path,
    dir: &Path,
    peer: &str,
    interval: Duration,
    timeout: Duration,
) -> Result<PingRun, String> {
    let interval_ms = interval.as_millis().to_string();
    let timeout_s = timeout.as_secs().max(1).to_string();
    let started = Instant::now();
    let mut child = Command::new(bin)
        .arg("--data-dir")
        .arg(dir)
        .args(["ping", peer, "--until-direct", "-i", &interval_ms])
        .args(["-W", "2000", "--timeout", &timeout_s])
        .env_remove("RELAY_NODE_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn ping: {e}"))?;
    let stderr = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        })
    });
    let mut pongs = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let (at, wall) = (Instant::now(), SystemTime::now());
            let Ok(line) = line else { break };
            if let Some(path) = pong_path(&line) {
                pongs.push(Pong {
                    at,
                    wall,
                    path: path.to_string(),
                });
            }
        }
    }
    let status = child.wait().map_err(|e| format!("wait for ping: {e}"))?;
    let stderr = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(PingRun {
        started,
        pongs,
        success: status.success(),
        stderr,
    })
}

/// The path of a `pong from <id> via <path> <addr> in <ms> ms` line.
fn pong_path(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("pong from ")?;
    let (_, rest) = rest.split_once(" via ")?;
    rest.split_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pong_lines() {
        assert_eq!(
            pong_path("pong from abc via relayed xyz in 1.234 ms"),
            Some("relayed")
        );
        assert_eq!(
            pong_path("pong from abc via direct 1.2.3.4:5 in 0.5 ms"),
            Some("direct")
        );
        assert_eq!(pong_path("ping: timeout: no pong"), None);
    }
}
