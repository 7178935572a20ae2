//! `relay-node ping NODEID --until-direct`: ping until a pong arrives over a
//! direct path, printing each pong with its path.
//!
//! Succeeds at the first direct pong. When none comes within the timeout it
//! fails with `kind: detail`: the kind of the traversal reason the node
//! reports for the peer (its `why` in `status`) when that reason has one of
//! the traversal error kinds, else `punch-failed`; or, when no pong came at
//! all, the last ping error's kind. Errors that no amount of waiting cures
//! (no node running, a bad NodeId, a broken local API connection) end it
//! at once.
//!
//! The loop runs against a [`PingDriver`] so tests can drive it with a fake
//! clock and scripted pongs.

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::api::client::{ApiClient, ClientError};
use crate::protocols::ping::PongReport;
use relay_transport::traversal::TraversalErrorKind;
use relay_transport::NodeId;

/// Default `--timeout` for `--until-direct`, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 15;

/// What the loop needs from the outside world.
pub trait PingDriver {
    /// One ping, waiting at most `timeout` for the pong.
    fn ping(&mut self, timeout: Duration) -> Result<PongReport, ClientError>;
    /// The node's reason for the peer not being direct, if it has one.
    fn why(&mut self) -> Option<String>;
    /// The current time.
    fn now(&self) -> Instant;
    /// Waits.
    fn sleep(&mut self, duration: Duration);
}

/// Something the loop reports as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A pong arrived.
    Pong(&'a PongReport),
    /// A ping failed; the loop carries on.
    Error(&'a ClientError),
}

/// Timing of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UntilDirectOptions {
    /// Give up after this long.
    pub timeout: Duration,
    /// Pause between pings.
    pub interval: Duration,
    /// Longest wait for one pong.
    pub ping_timeout: Duration,
}

/// No direct path in time (or an error that ended the wait).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind}: {detail}")]
pub struct UntilDirectError {
    /// Stable kind.
    pub kind: String,
    /// Human detail.
    pub detail: String,
}

/// Errors that waiting does not cure.
fn is_fatal(e: &ClientError) -> bool {
    matches!(
        e.kind(),
        "not-running" | "protocol" | "io" | "invalid-peer" | "invalid-node-id" | "bad-request"
    )
}

/// Pings `peer` until a direct pong or the timeout.
pub fn until_direct(
    driver: &mut dyn PingDriver,
    peer: &str,
    options: UntilDirectOptions,
    report: &mut dyn FnMut(Progress<'_>),
) -> Result<PongReport, UntilDirectError> {
    let deadline = driver.now() + options.timeout;
    let mut pongs = 0u32;
    let mut last_error: Option<ClientError> = None;
    loop {
        let remaining = deadline.saturating_duration_since(driver.now());
        if remaining.is_zero() {
            break;
        }
        let wait = options
            .ping_timeout
            .min(remaining)
            .max(Duration::from_millis(1));
        match driver.ping(wait) {
            Ok(pong) => {
                report(Progress::Pong(&pong));
                if pong.path == "direct" {
                    return Ok(pong);
                }
                pongs += 1;
            }
            Err(e) if is_fatal(&e) => {
                return Err(UntilDirectError {
                    kind: e.kind().to_string(),
                    detail: detail_of(&e),
                })
            }
            Err(e) => {
                report(Progress::Error(&e));
                last_error = Some(e);
            }
        }
        let remaining = deadline.saturating_duration_since(driver.now());
        if remaining.is_zero() {
            break;
        }
        driver.sleep(options.interval.min(remaining));
    }
    let within = format!(
        "no direct path to {peer} within {}",
        human_secs(options.timeout)
    );
    if pongs == 0 {
        if let Some(e) = last_error {
            return Err(UntilDirectError {
                kind: e.kind().to_string(),
                detail: format!("{} ({within})", detail_of(&e)),
            });
        }
    }
    Err(match driver.why() {
        Some(why) => match why.split_once(": ") {
            Some((kind, detail)) if TraversalErrorKind::from_str_kind(kind).is_some() => {
                UntilDirectError {
                    kind: kind.to_string(),
                    detail: format!("{detail} ({within})"),
                }
            }
            _ => UntilDirectError {
                kind: "punch-failed".into(),
                detail: format!("{within}: {why}"),
            },
        },
        None => UntilDirectError {
            kind: "punch-failed".into(),
            detail: within,
        },
    })
}

/// The detail of a client error, without its kind.
fn detail_of(e: &ClientError) -> String {
    match e {
        ClientError::Remote { detail, .. } => detail.clone(),
        other => {
            let text = other.to_string();
            match text.split_once(": ") {
                Some((_, detail)) => detail.to_string(),
                None => text,
            }
        }
    }
}

/// `15 s`, `1.5 s`.
fn human_secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The real driver: pings and status through the local API.
#[derive(Debug)]
pub struct ApiDriver {
    client: ApiClient,
    node_id: NodeId,
}

impl ApiDriver {
    /// A driver for `node_id` over a connected client.
    pub fn new(client: ApiClient, node_id: NodeId) -> Self {
        Self { client, node_id }
    }
}

impl PingDriver for ApiDriver {
    fn ping(&mut self, timeout: Duration) -> Result<PongReport, ClientError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.client.ping(&self.node_id, timeout_ms)
    }

    fn why(&mut self) -> Option<String> {
        let status = self.client.status().ok()?;
        let id = self.node_id.to_string();
        status.peers.into_iter().find(|p| p.node_id == id)?.why
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Scripted pongs on a fake clock: each ping takes 100 ms.
    struct Fake {
        start: Instant,
        elapsed: Duration,
        script: VecDeque<Result<&'static str, ClientError>>,
        why: Option<String>,
        waits: Vec<Duration>,
    }

    impl Fake {
        fn new(script: Vec<Result<&'static str, ClientError>>) -> Self {
            Self {
                start: Instant::now(),
                elapsed: Duration::ZERO,
                script: script.into(),
                why: None,
                waits: Vec::new(),
            }
        }
    }

    impl PingDriver for Fake {
        fn ping(&mut self, timeout: Duration) -> Result<PongReport, ClientError> {
            self.waits.push(timeout);
            self.elapsed += Duration::from_millis(100).min(timeout);
            // An exhausted script keeps answering relayed.
            let path = self.script.pop_front().unwrap_or(Ok("relayed"))?;
            Ok(PongReport {
                node_id: "peer".into(),
                path: path.into(),
                remote_addr: None,
                via: None,
                rtt_ms: 1.0,
            })
        }
        fn why(&mut self) -> Option<String> {
            self.why.clone()
        }
        fn now(&self) -> Instant {
            self.start + self.elapsed
        }
        fn sleep(&mut self, duration: Duration) {
            self.elapsed += duration;
        }
    }

    const OPTS: UntilDirectOptions = UntilDirectOptions {
        timeout: Duration::from_secs(3),
        interval: Duration::from_millis(900),
        ping_timeout: Duration::from_secs(5),
    };

    fn remote(kind: &str) -> ClientError {
        ClientError::Remote {
            kind: kind.into(),
            detail: "details".into(),
        }
    }

    fn run(fake: &mut Fake) -> (Result<PongReport, UntilDirectError>, Vec<String>) {
        let mut seen = Vec::new();
        let result = until_direct(fake, "peer", OPTS, &mut |p| {
            seen.push(match p {
                Progress::Pong(p) => p.path.clone(),
                Progress::Error(e) => e.kind().to_string(),
            })
        });
        (result, seen)
    }

    #[test]
    fn first_direct_pong_succeeds() {
        let mut fake = Fake::new(vec![Ok("direct")]);
        let (result, seen) = run(&mut fake);
        assert_eq!(result.unwrap().path, "direct");
        assert_eq!(seen, ["direct"]);
    }

    #[test]
    fn relayed_pongs_until_direct() {
        let mut fake = Fake::new(vec![Ok("relayed"), Err(remote("timeout")), Ok("direct")]);
        let (result, seen) = run(&mut fake);
        assert!(result.is_ok());
        assert_eq!(seen, ["relayed", "timeout", "direct"]);
    }

    #[test]
    fn no_direct_path_is_punch_failed() {
        let mut fake = Fake::new(vec![]);
        let (result, seen) = run(&mut fake);
        let e = result.unwrap_err();
        assert_eq!(e.kind, "punch-failed");
        assert_eq!(
            e.to_string(),
            "punch-failed: no direct path to peer within 3 s"
        );
        // 100 ms per ping + 900 ms pause: pings at 0, 1, 2 s.
        assert_eq!(seen, ["relayed"; 3]);
        // No ping waits past the deadline.
        assert!(fake.waits.iter().all(|w| *w <= OPTS.timeout));
        assert_eq!(fake.now() - fake.start, OPTS.timeout);
    }

    #[test]
    fn the_nodes_why_is_reported() {
        let mut fake = Fake::new(vec![]);
        fake.why = Some("symmetric x symmetric".into());
        let e = run(&mut fake).0.unwrap_err();
        assert_eq!(
            e.to_string(),
            "punch-failed: no direct path to peer within 3 s: symmetric x symmetric"
        );
        let mut fake = Fake::new(vec![]);
        fake.why = Some("rendezvous-no-relay: no introducer".into());
        let e = run(&mut fake).0.unwrap_err();
        assert_eq!(e.kind, "rendezvous-no-relay");
        assert_eq!(
            e.detail,
            "no introducer (no direct path to peer within 3 s)"
        );
    }

    #[test]
    fn without_any_pong_the_last_error_is_reported() {
        let mut fake = Fake::new((0..10).map(|_| Err(remote("not-connected"))).collect());
        let e = run(&mut fake).0.unwrap_err();
        assert_eq!(e.kind, "not-connected");
        assert_eq!(e.detail, "details (no direct path to peer within 3 s)");
    }

    #[test]
    fn fatal_errors_end_at_once() {
        let mut fake = Fake::new(vec![Err(ClientError::NotRunning { dir: "/d".into() })]);
        let (result, seen) = run(&mut fake);
        assert_eq!(result.unwrap_err().kind, "not-running");
        assert!(seen.is_empty());
        assert_eq!(fake.waits.len(), 1);
        let mut fake = Fake::new(vec![Err(remote("invalid-peer"))]);
        assert_eq!(run(&mut fake).0.unwrap_err().kind, "invalid-peer");
    }

    #[test]
    fn secs_are_human() {
        assert_eq!(human_secs(Duration::from_secs(15)), "15 s");
        assert_eq!(human_secs(Duration::from_millis(1500)), "1.5 s");
    }
}
