//! Building a lab: an "internet" namespace, public hosts on it, and sites
//! (a NAT router namespace with one host namespace behind it).
//!
//! ```text
//!                     internet ns: bridge br0
//!                     203.0.113.1/24, 198.51.100.1/25, forwarding on
//!        ┌──────────────┬───────┴──────┬────────────────┐
//!   p0 ──┤ public host  │   r0 ────────┤ router site 0  │  ...
//!        │ 203.0.113.10 │   wan 198.51.100.10 (+ NAT preset)
//!        └──────────────┘              │ lan 10.1.0.1/24
//!                                      └── host site 0: 10.1.0.2
//! ```
//!
//! Public host `k` gets 203.0.113.(10+k). Site `i`'s router gets WAN address
//! 198.51.100.(10+i); a NATed site's LAN is 10.(i+1).0.0/24 (router .1, host
//! .2); an open site's LAN is instead a routed public /29 from
//! 198.51.100.128/25, so its host has a public address behind a plain
//! router. A carrier-grade site has two routers: the site's router is the
//! carrier's NAT, with LAN 100.64.(i+1).0/24 (.1), and a home router
//! (`inner`) on 100.64.(i+1).2 NATs the host's LAN 10.(i+1).0.0/24 behind
//! it. Every namespace belongs to the lab's [`LabGuard`] and is deleted
//! when the [`Lab`] drops.

use std::net::Ipv4Addr;

use super::block;
use super::cmd::{LabError, LabResult};
use super::guard::LabGuard;
use super::nat::{self, NatPreset, LAN_IF, WAN_IF};
use super::netns::Netns;

/// The port the lab's nodes listen on: each cone site's NAT gets its
/// mapping for the host's port at build time ([`Site::seed_mapping`]).
pub const SEEDED_PORT: u16 = 7420;
/// The internet bridge's name inside the internet namespace.
pub const BRIDGE: &str = "br0";
/// A host's only interface.
pub const HOST_IF: &str = "eth0";
/// The internet namespace's address on 203.0.113.0/24 (public hosts' gateway).
pub const INET_GW_A: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The internet namespace's address on 198.51.100.0/25 (routers' gateway).
pub const INET_GW_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

const MAX_PUBLIC: usize = 90;
const MAX_SITES: usize = 100;
const MAX_OPEN_SITES: usize = 16;

/// A host on the internet with a public address.
#[derive(Debug, Clone)]
pub struct PublicHost {
    /// Its namespace.
    pub ns: Netns,
    /// Its address (203.0.113.x).
    pub addr: Ipv4Addr,
}

impl PublicHost {
    /// Drops `percent`% of UDP on this host's link (0 removes it).
    pub fn set_loss(&self, percent: u8) -> LabResult<()> {
        nat::set_loss(&self.ns, HOST_IF, percent)
    }
}

/// A NAT router with one host behind it.
#[derive(Debug, Clone)]
pub struct Site {
    /// How the router translates and filters.
    pub preset: NatPreset,
    /// The router's namespace (interfaces `wan` and `lan`).
    pub router: Netns,
    /// The host's namespace (interface `eth0`).
    pub host: Netns,
    /// The router's public address.
    pub wan_addr: Ipv4Addr,
    /// The host's address (10.x for NATed sites, public for open ones).
    pub host_addr: Ipv4Addr,
    /// The home router behind the carrier's NAT, with its WAN address
    /// (carrier-grade sites only).
    pub inner: Option<(Netns, Ipv4Addr)>,
}

impl Site {
    /// Drops `percent`% of UDP on the router's WAN link (0 removes it).
    pub fn set_loss(&self, percent: u8) -> LabResult<()> {
        nat::set_loss(&self.router, WAN_IF, percent)
    }

    /// Forgets every mapping of this site's NAT (see [`nat::rebind`]).
    pub fn rebind(&self) -> LabResult<()> {
        if let Some((inner, _)) = &self.inner {
            nat::rebind(inner)?;
        }
        nat::rebind(&self.router)
    }

    /// Gives the host's UDP `port` its cone mapping before the first packet
    /// (see [`nat::seed_mapping`]; a no-op on other presets). Sites get it
    /// for [`SEEDED_PORT`] when built; call it again after [`Site::rebind`]
    /// or for another port, before a node starts there.
    pub fn seed_mapping(&self, port: u16) -> LabResult<()> {
        // Any port of the presets' range, different per host address and
        // port (a moved host shares its new router with another).
        let spread = u32::from(port) * 7919 + u32::from(self.host_addr).wrapping_mul(104_729);
        let wan_port = 20_000 + u16::try_from(spread % 40_000).unwrap_or(0);
        match &self.inner {
            // Both levels: host -> home WAN, home WAN -> carrier WAN.
            Some((inner, inner_wan)) => {
                let home_port = 20_000 + u16::try_from((spread / 7) % 40_000).unwrap_or(0);
                nat::seed_mapping(inner, self.host_addr, port, home_port)?;
                nat::seed_mapping(&self.router, *inner_wan, home_port, wan_port)
            }
            None => nat::seed_mapping(&self.router, self.host_addr, port, wan_port),
        }
    }

    /// Drops all UDP between this site's WAN link and `peer` (e.g. another
    /// site's public address) until [`Site::unblock`]; see [`block`].
    pub fn block(&self, peer: Ipv4Addr) -> LabResult<()> {
        block::block(&self.router, peer)
    }

    /// Lifts [`Site::block`].
    pub fn unblock(&self) -> LabResult<()> {
        block::unblock(&self.router)
    }

    /// Packets the current [`Site::block`] has dropped.
    pub fn blocked_drops(&self) -> LabResult<u64> {
        block::blocked_drops(&self.router)
    }

    /// Makes the router forget an idle UDP flow after `secs` seconds:
    /// both per-namespace conntrack UDP timeouts (`nf_conntrack_udp_timeout`
    /// for flows seen one way, `nf_conntrack_udp_timeout_stream` for flows
    /// seen both ways; defaults 30 s and 120 s or more). The presets filter
    /// through conntrack, so this is the NAT's binding lifetime. Flows that
    /// exist already take the new value at their next packet.
    pub fn set_udp_timeout(&self, secs: u32) -> LabResult<()> {
        let value = secs.to_string();
        for key in [
            "nf_conntrack_udp_timeout",
            "nf_conntrack_udp_timeout_stream",
        ] {
            self.router
                .sysctl(&format!("net/netfilter/{key}"), &value)?;
            let read = self
                .router
                .exec("cat", &[&format!("/proc/sys/net/netfilter/{key}")])?;
            if read.trim() != value {
                return Err(LabError::Helper(format!(
                    "{key} is {} after setting {value}",
                    read.trim()
                )));
            }
        }
        Ok(())
    }

    /// Unsolicited inbound UDP packets the router has dropped so far.
    pub fn unsolicited_drops(&self) -> LabResult<u64> {
        nat::unsolicited_drops(&self.router)
    }

    /// The address the rest of the internet sees this host's traffic from.
    pub fn public_addr(&self) -> Ipv4Addr {
        if self.preset.translates() {
            self.wan_addr
        } else {
            self.host_addr
        }
    }
}

/// A running lab; everything in it is torn down when it drops.
#[derive(Debug)]
pub struct Lab {
    internet: Netns,
    publics: Vec<PublicHost>,
    sites: Vec<Site>,
    open_sites: usize,
    // Last: dropped after the handles above, it deletes the namespaces.
    guard: LabGuard,
}

impl Lab {
    /// Waits for the lab lock and builds the internet namespace.
    pub fn new() -> LabResult<Self> {
        let mut guard = LabGuard::acquire()?;
        let internet = guard.create_netns("inet")?;
        internet.add_bridge(BRIDGE)?;
        internet.add_addr(BRIDGE, INET_GW_A, 24)?;
        internet.add_addr(BRIDGE, INET_GW_B, 25)?;
        internet.enable_forwarding()?;
        Ok(Self {
            internet,
            publics: Vec::new(),
            sites: Vec::new(),
            open_sites: 0,
            guard,
        })
    }

    /// A lab with `publics` public hosts and one site per preset given.
    pub fn build(publics: usize, presets: &[NatPreset]) -> LabResult<Self> {
        let mut lab = Self::new()?;
        for _ in 0..publics {
            lab.add_public_host()?;
        }
        for &preset in presets {
            lab.add_site(preset)?;
        }
        Ok(lab)
    }

    /// The prefix shared by this lab's namespace names.
    pub fn prefix(&self) -> &str {
        self.guard.prefix()
    }

    /// The internet namespace.
    pub fn internet(&self) -> &Netns {
        &self.internet
    }

    /// Public host `k`.
    pub fn public(&self, k: usize) -> Option<&PublicHost> {
        self.publics.get(k)
    }

    /// Site `i`.
    pub fn site(&self, i: usize) -> Option<&Site> {
        self.sites.get(i)
    }

    /// Every namespace this lab created.
    pub fn namespaces(&self) -> &[Netns] {
        self.guard.namespaces()
    }

    /// Adds public host `k` = the number of public hosts so far, at
    /// 203.0.113.(10+k).
    pub fn add_public_host(&mut self) -> LabResult<PublicHost> {
        let k = self.publics.len();
        if k >= MAX_PUBLIC {
            return Err(LabError::Full(format!("at most {MAX_PUBLIC} public hosts")));
        }
        let addr = Ipv4Addr::new(203, 0, 113, host_octet(10, k));
        let ns = self.guard.create_netns(&format!("p{k}"))?;
        let link = format!("p{k}");
        self.internet.veth_to(&link, &ns, HOST_IF)?;
        self.internet.attach(&link, BRIDGE)?;
        ns.add_addr(HOST_IF, addr, 24)?;
        ns.default_route(INET_GW_A)?;
        let host = PublicHost { ns, addr };
        self.publics.push(host.clone());
        Ok(host)
    }

    /// Adds site `i` = the number of sites so far: a router with WAN
    /// address 198.51.100.(10+i) running `preset`, and a host behind it.
    pub fn add_site(&mut self, preset: NatPreset) -> LabResult<Site> {
        let i = self.sites.len();
        if i >= MAX_SITES {
            return Err(LabError::Full(format!("at most {MAX_SITES} sites")));
        }
        let wan_addr = Ipv4Addr::new(198, 51, 100, host_octet(10, i));
        let (lan_net, lan_prefix, lan_gw, host_addr) = if preset.translates() {
            let x = host_octet(1, i);
            (
                Ipv4Addr::new(10, x, 0, 0),
                24,
                Ipv4Addr::new(10, x, 0, 1),
                Ipv4Addr::new(10, x, 0, 2),
            )
        } else {
            let j = self.open_sites;
            if j >= MAX_OPEN_SITES {
                return Err(LabError::Full(format!(
                    "at most {MAX_OPEN_SITES} open sites"
                )));
            }
            let base = host_octet(128, j * 8);
            (
                Ipv4Addr::new(198, 51, 100, base),
                29,
                Ipv4Addr::new(198, 51, 100, base + 1),
                Ipv4Addr::new(198, 51, 100, base + 2),
            )
        };

        let router = self
            .guard
            .create_netns(&format!("r{i}-{}", preset.name()))?;
        let host = self.guard.create_netns(&format!("h{i}"))?;
        let uplink = format!("r{i}");
        self.internet.veth_to(&uplink, &router, WAN_IF)?;
        self.internet.attach(&uplink, BRIDGE)?;
        router.add_addr(WAN_IF, wan_addr, 25)?;
        router.default_route(INET_GW_B)?;
        router.enable_forwarding()?;
        let mut inner = None;
        if preset == NatPreset::CarrierGrade {
            // The carrier's NAT (this router) faces a home router on
            // 100.64.x.0/24, which faces the host.
            let x = host_octet(1, i);
            let (cgn_lan, home_wan) = (Ipv4Addr::new(100, 64, x, 1), Ipv4Addr::new(100, 64, x, 2));
            let home = self.guard.create_netns(&format!("r{i}-home"))?;
            router.veth_to(LAN_IF, &home, WAN_IF)?;
            router.add_addr(LAN_IF, cgn_lan, 24)?;
            home.add_addr(WAN_IF, home_wan, 24)?;
            home.default_route(cgn_lan)?;
            home.enable_forwarding()?;
            home.veth_to(LAN_IF, &host, HOST_IF)?;
            home.add_addr(LAN_IF, lan_gw, lan_prefix)?;
            preset.apply(&home, home_wan)?;
            inner = Some((home, home_wan));
        } else {
            router.veth_to(LAN_IF, &host, HOST_IF)?;
            router.add_addr(LAN_IF, lan_gw, lan_prefix)?;
        }
        host.add_addr(HOST_IF, host_addr, lan_prefix)?;
        host.default_route(lan_gw)?;
        if !preset.translates() {
            self.internet.route(lan_net, lan_prefix, wan_addr)?;
            self.open_sites += 1;
        }
        preset.apply(&router, wan_addr)?;
        let site = Site {
            preset,
            router,
            host,
            wan_addr,
            host_addr,
            inner,
        };
        site.seed_mapping(SEEDED_PORT)?;
        self.sites.push(site.clone());
        Ok(site)
    }

    /// Moves site `from`'s host behind site `to`'s router, as when a
    /// laptop changes networks (not to or from a carrier-grade site): the host's link to its old router is
    /// deleted, and a new one joins it to `to`'s router on a LAN of its
    /// own, 10.(to+1).(m).0/24 (router .1, host .2, `m` counting the
    /// hosts moved there so far), with a new default route. Processes in
    /// the host namespace keep running (a socket bound to a wildcard
    /// simply sends from the new address). Site `from` then describes the
    /// host at its new place; returns that [`Site`]. Only NATed sites.
    pub fn move_host(&mut self, from: usize, to: usize) -> LabResult<Site> {
        let (Some(old), Some(dest)) = (self.sites.get(from).cloned(), self.sites.get(to).cloned())
        else {
            return Err(LabError::Helper(format!("no site {from} or {to}")));
        };
        if from == to || !dest.preset.translates() || dest.inner.is_some() || old.inner.is_some() {
            return Err(LabError::Helper(format!(
                "site {to} must be another NATed site"
            )));
        }
        let moved = self
            .sites
            .iter()
            .filter(|s| s.router.name() == dest.router.name())
            .count();
        let x = host_octet(1, to);
        let m = host_octet(0, moved);
        let gw = Ipv4Addr::new(10, x, m, 1);
        let host_addr = Ipv4Addr::new(10, x, m, 2);
        let site = Site {
            preset: dest.preset,
            router: dest.router,
            host: old.host,
            wan_addr: dest.wan_addr,
            host_addr,
            inner: None,
        };
        // Before the host's first packet through its new router.
        site.seed_mapping(SEEDED_PORT)?;
        // Deleting one end of a veth pair deletes both.
        site.host.ip(&["link", "del", HOST_IF])?;
        let lan = format!("{LAN_IF}{m}");
        site.router.veth_to(&lan, &site.host, HOST_IF)?;
        site.router.add_addr(&lan, gw, 24)?;
        site.host.add_addr(HOST_IF, host_addr, 24)?;
        site.host.default_route(gw)?;
        self.sites[from] = site.clone();
        Ok(site)
    }
}

/// `base + offset` as an address octet; callers bound `offset` so it fits.
fn host_octet(base: u8, offset: usize) -> u8 {
    u8::try_from(offset).map_or(u8::MAX, |o| base.saturating_add(o))
}
