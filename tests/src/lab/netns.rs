//! Network namespaces and veth pairs, driven through `ip`.
//!
//! A [`Netns`] is just a name under `/run/netns`; creating one brings its
//! loopback up. Nothing here touches the root namespace: every `ip` call
//! names its namespace with `-n`, and veth pairs are created directly inside
//! the namespaces that own their ends. Deleting a namespace (see
//! [`crate::lab::guard`]) removes its veth ends with it.

use std::net::Ipv4Addr;
use std::process::Command;

use super::cmd::{run, run_with_stdin, LabResult};

/// A named network namespace created by the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` and brings its loopback up.
    pub fn create(name: &str) -> LabResult<Self> {
        run("ip", &["netns", "add", name])?;
        let ns = Self {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A handle for an existing namespace (no check).
    pub fn existing(name: &str) -> Self {
        Self {
            name: name.to_string(),
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME args...`.
    pub fn ip(&self, args: &[&str]) -> LabResult<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs `program args...` inside the namespace and waits for it.
    pub fn exec(&self, program: &str, args: &[&str]) -> LabResult<String> {
        self.exec_with_stdin(program, args, None)
    }

    /// Like [`Netns::exec`], feeding `stdin` to the program.
    pub fn exec_with_stdin(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> LabResult<String> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        run_with_stdin("ip", &full, stdin)
    }

    /// A [`Command`] that runs `program` inside the namespace. `ip netns
    /// exec` execs the program in place, so the child's pid is the
    /// program's own and killing the child kills the program.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.name.as_str()]).arg(program);
        cmd
    }

    /// Writes `value` to `/proc/sys/<key>` (a `/`-separated sysctl path)
    /// inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> LabResult<()> {
        let script = format!("echo {value} > /proc/sys/{key}");
        self.exec("sh", &["-c", &script]).map(drop)
    }

    /// Turns on IPv4 forwarding and turns off ICMP redirects (a lab router
    /// must not teach hosts shortcuts around the NAT).
    pub fn enable_forwarding(&self) -> LabResult<()> {
        self.sysctl("net/ipv4/ip_forward", "1")?;
        self.sysctl("net/ipv4/conf/all/send_redirects", "0")?;
        self.sysctl("net/ipv4/conf/default/send_redirects", "0")
    }

    /// Adds `addr/prefix` to `dev` and brings `dev` up.
    pub fn add_addr(&self, dev: &str, addr: Ipv4Addr, prefix: u8) -> LabResult<()> {
        self.ip(&["addr", "add", &format!("{addr}/{prefix}"), "dev", dev])?;
        self.link_up(dev)
    }

    /// Brings `dev` up.
    pub fn link_up(&self, dev: &str) -> LabResult<()> {
        self.ip(&["link", "set", dev, "up"]).map(drop)
    }

    /// Adds a default route via `gateway`.
    pub fn default_route(&self, gateway: Ipv4Addr) -> LabResult<()> {
        self.ip(&["route", "add", "default", "via", &gateway.to_string()])
            .map(drop)
    }

    /// Routes `net/prefix` via `gateway`.
    pub fn route(&self, net: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> LabResult<()> {
        self.ip(&[
            "route",
            "add",
            &format!("{net}/{prefix}"),
            "via",
            &gateway.to_string(),
        ])
        .map(drop)
    }

    /// Creates a veth pair with end `local` in this namespace and end `peer`
    /// in `other`; both ends are brought up.
    pub fn veth_to(&self, local: &str, other: &Netns, peer: &str) -> LabResult<()> {
        self.ip(&[
            "link",
            "add",
            local,
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "netns",
            &other.name,
        ])?;
        self.link_up(local)?;
        other.link_up(peer)
    }

    /// Creates a bridge `name` in this namespace and brings it up.
    pub fn add_bridge(&self, name: &str) -> LabResult<()> {
        self.ip(&["link", "add", name, "type", "bridge"])?;
        self.link_up(name)
    }

    /// Enslaves `dev` to `bridge`.
    pub fn attach(&self, dev: &str, bridge: &str) -> LabResult<()> {
        self.ip(&["link", "set", dev, "master", bridge]).map(drop)
    }

    /// The pids of every process running inside the namespace.
    pub fn pids(&self) -> LabResult<Vec<u32>> {
        let out = run("ip", &["netns", "pids", &self.name])?;
        Ok(out
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// Applies an nftables script (`nft -f -`) inside the namespace.
    pub fn nft(&self, script: &str) -> LabResult<String> {
        self.exec_with_stdin("nft", &["-f", "-"], Some(script))
    }
}

/// Every namespace name currently registered under `/run/netns`.
pub fn list_all() -> LabResult<Vec<String>> {
    let out = run("ip", &["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}
