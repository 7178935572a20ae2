//! One NAT pair's lab and its trials.
//!
//! A [`PairLab`] is one lab (site 0 with preset A, site 1 with preset B)
//! in one topology (`public::Topology`), with its public nodes living for
//! all of the pair's trials:
//!
//! - **ticket-only**: a relay node on the one public host, and nothing
//!   else; the site nodes join with its ticket alone and classify their
//!   NATs through its alternate port (the mapping check);
//! - **two observers**: the relay and a plain observer node on a second
//!   public IP, handed to the site nodes with `--peer`, so that each hears
//!   its reflexive address from two IPs.
//!
//! An introduction carries NAT types, and birthday probing starts at once
//! only for a known cone x symmetric pair. Each trial is independent of
//! the ones before it:
//!
//! - both NAT routers forget every mapping first (`Site::rebind`: conntrack
//!   flushed, cone maps emptied), when `conntrack` is installed;
//! - both site nodes are new: fresh data dirs, so fresh identities, and a
//!   listen port no earlier trial used, so even without a rebind no NAT
//!   mapping or conntrack entry can carry over;
//! - they join through the relay's ticket, dial the relay (and the
//!   observer; never each other), and the trial starts once both are
//!   connected to the public nodes and have classified their NATs as
//!   their presets predict.
//!
//! Then A runs `ping B --until-direct -i INTERVAL` (by NodeId alone) and the
//! trial reads the pong times (see `relay_tests::lab::pingwatch`) and A's
//! log time of its switch to direct. Afterwards it reads both nodes'
//! birthday-probing counters from `status --json`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use relay_tests::lab::node::{init, is_connected_via};
use relay_tests::lab::public::{PublicSide, Topology};
use relay_tests::lab::{logtime, pingwatch, Lab, LabNode, NatPreset};
use relay_tests::TempDir;

/// Bound for setup steps (node start, joining the relay); not a measurement.
const SETUP: Duration = Duration::from_secs(30);
/// The relay's port.
const RELAY_PORT: u16 = 7420;
/// Site nodes listen on `BASE_PORT + trial` (mod 1000).
const BASE_PORT: u16 = 7500;

/// How a trial pings.
#[derive(Debug, Clone, Copy)]
pub struct PingPlan {
    /// Pause between pings.
    pub interval: Duration,
    /// How long `--until-direct` waits for a direct path.
    pub timeout: Duration,
}

/// What one trial measured.
#[derive(Debug, Clone)]
pub struct Trial {
    /// From spawning `ping` to the first pong (over the relay).
    pub first_relayed: Option<Duration>,
    /// From the first relayed pong to the first direct pong.
    pub to_direct: Option<Duration>,
    /// From the first relayed pong to A's own log line of the switch
    /// (negative if the switch was logged before that pong arrived).
    pub switch_logged_ms: Option<f64>,
    /// The first pong was already direct (no relayed phase seen).
    pub direct_first: bool,
    /// The CLI's error when no direct path came.
    pub error: Option<String>,
    /// Birthday packets both sides sent (ports opened plus probes).
    pub birthday_packets: u64,
    /// Birthday runs both sides started.
    pub birthday_runs: u64,
}

impl Trial {
    /// Whether the trial reached a direct path.
    pub fn direct(&self) -> bool {
        self.error.is_none()
    }
}

/// A lab for one pair, with its relay running.
#[derive(Debug)]
pub struct PairLab {
    a: NatPreset,
    b: NatPreset,
    bin: PathBuf,
    topology: Topology,
    // Field order is drop order: nodes and files before the lab's teardown.
    public: PublicSide,
    tmp: TempDir,
    lab: Lab,
}

impl PairLab {
    /// Builds the lab for presets `a` (site 0) and `b` (site 1) and starts
    /// the relay on the public host.
    pub fn build(
        bin: PathBuf,
        a: NatPreset,
        b: NatPreset,
        topology: Topology,
    ) -> Result<Self, String> {
        let lab = Lab::build(topology.public_hosts(), &[a, b]).map_err(|e| format!("lab: {e}"))?;
        let tmp = TempDir::new("natbench").map_err(|e| format!("tempdir: {e}"))?;
        let public = PublicSide::start(&lab, &bin, tmp.path(), topology, RELAY_PORT, SETUP)?;
        Ok(Self {
            a,
            b,
            bin,
            topology,
            public,
            tmp,
            lab,
        })
    }

    /// Drops `percent`% of UDP on both sites' WAN links, each direction,
    /// from now on (the rules outlive the trials' mapping flushes).
    pub fn set_loss(&self, percent: u8) -> Result<(), String> {
        for i in 0..2 {
            let site = self.lab.site(i).ok_or("missing site")?;
            site.set_loss(percent).map_err(|e| format!("loss: {e}"))?;
        }
        Ok(())
    }

    /// Runs trial number `n` (0-based).
    pub fn trial(&self, n: usize, plan: PingPlan, conntrack: bool) -> Result<Trial, String> {
        let port = BASE_PORT + u16::try_from(n % 1000).unwrap_or(0);
        let mut nodes = Vec::new();
        for i in 0..2 {
            let site = self.lab.site(i).ok_or("missing site")?;
            if conntrack {
                site.rebind().map_err(|e| format!("rebind: {e}"))?;
            }
            site.seed_mapping(port)
                .map_err(|e| format!("seed mapping: {e}"))?;
            let dir = self.tmp.join(&format!("t{n}-n{i}"));
            init(&self.bin, &dir, Some(&self.public.ticket))?;
            let mut args = vec!["--listen".to_string(), format!("0.0.0.0:{port}")];
            args.extend(self.public.site_args());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            nodes.push(LabNode::start(&self.bin, &site.host, &dir, &args, SETUP)?);
        }
        for (node, preset) in nodes.iter().zip([self.a, self.b]) {
            for public in self.public.nodes() {
                let public = &public.id;
                node.wait_peer(public, SETUP, |p| is_connected_via(p, "direct"))
                    .ok_or_else(|| format!("node never reached {public}:\n{}", node.log()))?;
            }
            let want = preset.expected_nat_type();
            node.wait_nat_type(want, SETUP)
                .ok_or_else(|| format!("NAT never classified {want}:\n{}", node.log()))?;
        }
        let (a, b) = (&nodes[0], &nodes[1]);
        let run = pingwatch::until_direct(&self.bin, &a.dir, &b.id, plan.interval, plan.timeout)?;
        let first = run.pongs.first();
        let relayed = run.first("relayed");
        let direct = run.first("direct");
        let switch = logtime::first_logged(&a.log(), logtime::SWITCH_MESSAGE);
        self.keep_logs(n, &[("a", a), ("b", b)]);
        let birthday = |key: &str| -> u64 {
            [a, b]
                .iter()
                .filter_map(|node| node.status())
                .filter_map(|s| s["traversal"]["birthday"][key].as_u64())
                .sum()
        };
        let to_direct = match (relayed, direct) {
            (Some(r), Some(d)) => Some(d.at.saturating_duration_since(r.at)),
            (None, Some(_)) => Some(Duration::ZERO),
            _ => None,
        };
        Ok(Trial {
            first_relayed: relayed.map(|r| r.at.saturating_duration_since(run.started)),
            to_direct: to_direct.filter(|_| run.success),
            switch_logged_ms: match (relayed, switch) {
                (Some(r), Some(s)) => Some(signed_ms(r.wall, s)),
                _ => None,
            },
            direct_first: first.is_some_and(|p| p.path == "direct"),
            error: (!run.success).then(|| first_line(&run.stderr)),
            birthday_packets: birthday("packets"),
            birthday_runs: birthday("runs"),
        })
    }
}

impl PairLab {
    /// Copies the nodes' logs to `$RELAY_LAB_BENCH_LOG_DIR`, when set, as
    /// `<A>-<B>-<trial>-<a|b>.log` (for looking into slow or failed trials;
    /// set `RUST_LOG` for more detail).
    fn keep_logs(&self, n: usize, nodes: &[(&str, &LabNode)]) {
        let Some(dir) = std::env::var_os("RELAY_LAB_BENCH_LOG_DIR") else {
            return;
        };
        let dir = PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let (a, b, t) = (self.a, self.b, self.topology.name());
        for (side, node) in nodes {
            let _ = std::fs::write(dir.join(format!("{a}-{b}-{t}-{n}-{side}.log")), node.log());
        }
    }
}

/// `to - from` in milliseconds, signed.
fn signed_ms(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().rfind(|l| l.starts_with("error: "));
    line.or_else(|| text.lines().last())
        .unwrap_or("no output")
        .trim()
        .to_string()
}
