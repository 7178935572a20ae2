//! Driving the `lab-udp` helper binary (`tests/src/bin/lab-udp.rs`) inside
//! lab namespaces: an echo server that reports the source address it saw,
//! and an agent that sends on command and reports what it receives.
//! Processes are killed on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::cmd::{LabError, LabResult};
use super::netns::Netns;

/// A running `lab-udp` process and the lines it has printed.
#[derive(Debug)]
pub struct UdpProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// The address the process bound.
    pub local: SocketAddr,
}

/// What an agent received: `recv <from> <payload...>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The datagram's source as the agent saw it.
    pub from: SocketAddr,
    /// The payload text.
    pub payload: String,
}

impl Received {
    fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("recv ")?;
        let (from, payload) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(Self {
            from: from.parse().ok()?,
            payload: payload.to_string(),
        })
    }
}

impl UdpProc {
    /// Starts `lab-udp echo BIND` in `ns`.
    pub fn echo(bin: &Path, ns: &Netns, bind: SocketAddr) -> LabResult<Self> {
        Self::start(bin, ns, "echo", bind)
    }

    /// Starts `lab-udp agent BIND` in `ns`.
    pub fn agent(bin: &Path, ns: &Netns, bind: SocketAddr) -> LabResult<Self> {
        Self::start(bin, ns, "agent", bind)
    }

    fn start(bin: &Path, ns: &Netns, mode: &str, bind: SocketAddr) -> LabResult<Self> {
        let mut child = ns
            .command(bin)
            .args([mode, &bind.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| LabError::Helper(format!("spawn {}: {e}", bin.display())))?;
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut proc = Self {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            local: bind,
        };
        let ready = proc.wait_line(Duration::from_secs(20), |l| l.starts_with("ready "))?;
        proc.local = ready
            .trim_start_matches("ready ")
            .parse()
            .map_err(|e| LabError::Helper(format!("bad ready line {ready:?}: {e}")))?;
        Ok(proc)
    }

    /// Sends `payload` (one word) to `to` from the agent's socket.
    pub fn send(&mut self, to: SocketAddr, payload: &str) -> LabResult<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| LabError::Helper("agent stdin is closed".into()))?;
        writeln!(stdin, "send {to} {payload}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits up to `timeout` for a printed line matching `pred` (earlier
    /// lines count too) and returns it.
    pub fn wait_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> LabResult<String> {
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return Ok(line.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
                Err(_) => {
                    return Err(LabError::Helper(format!(
                        "no matching line from lab-udp within {timeout:?}; lines so far: {:?}",
                        self.seen
                    )))
                }
            }
        }
    }

    /// Takes every line printed so far without waiting.
    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Every datagram the agent has reported receiving so far.
    pub fn received(&mut self) -> Vec<Received> {
        self.drain();
        self.seen
            .iter()
            .filter_map(|l| Received::parse(l))
            .collect()
    }

    /// Waits up to `timeout` for a datagram matching `pred`.
    pub fn wait_received(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Received) -> bool,
    ) -> LabResult<Received> {
        let line = self.wait_line(timeout, |l| Received::parse(l).is_some_and(|r| pred(&r)))?;
        Received::parse(&line).ok_or_else(|| LabError::Helper(format!("unparsable {line:?}")))
    }

    /// Asks the echo server at `server` which source address it sees for
    /// this agent: sends `tag` (resending every `resend` until `timeout`,
    /// as UDP may be lost) and returns the mapped address from the reply.
    pub fn mapped_addr(
        &mut self,
        server: SocketAddr,
        tag: &str,
        resend: Duration,
        timeout: Duration,
    ) -> LabResult<SocketAddr> {
        let deadline = Instant::now() + timeout;
        let is_reply = |r: &Received| {
            r.from == server && r.payload.starts_with("seen ") && r.payload.ends_with(tag)
        };
        loop {
            self.send(server, tag)?;
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wait_received(resend.min(left), is_reply) {
                Ok(reply) => {
                    let mapped = reply.payload.split_whitespace().nth(1).unwrap_or_default();
                    return mapped.parse().map_err(|e| {
                        LabError::Helper(format!("bad echo reply {:?}: {e}", reply.payload))
                    });
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => {}
            }
        }
    }
}

impl Drop for UdpProc {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_lines_parse() {
        let r = Received::parse("recv 198.51.100.10:4000 seen 1.2.3.4:5 tag").unwrap();
        assert_eq!(r.from.port(), 4000);
        assert_eq!(r.payload, "seen 1.2.3.4:5 tag");
        assert!(Received::parse("ready 0.0.0.0:1").is_none());
    }
}
