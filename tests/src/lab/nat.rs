//! NAT presets, loss and rebinding, as nftables rulesets inside a site's
//! router namespace.
//!
//! Every NAT preset lives in one table, `ip labnat`; loss lives in its own
//! table, `inet labloss`, so either can be replaced without the other. The
//! rules (explained at length in docs/LAB.md):
//!
//! - **open**: no table at all; the router just forwards a routed public
//!   subnet.
//! - **full cone** and **port-restricted cone** (endpoint-independent
//!   mapping): two dynamic maps, `out_map` (inside ip . port -> outside
//!   port) and `in_map` (outside port -> inside ip . port). The source-NAT
//!   chain reuses a mapping from `out_map` when one exists and otherwise
//!   picks a random outside port; a filter chain that runs after source NAT
//!   records the translation the packet actually got in both maps. Plain
//!   `masquerade` is not used because it turns endpoint-dependent as soon
//!   as two flows contend for a port.
//! - **full cone** adds endpoint-independent filtering: inbound UDP to a
//!   mapped outside port is destination-NATed through `in_map`, whoever
//!   sends it.
//! - **port-restricted cone** and **symmetric** filter by address and port:
//!   only conntrack replies come in.
//! - **symmetric**: `masquerade random`, a fresh random port per flow.
//! - **carrier-grade**: NAT stacked on NAT. The site's router is the
//!   carrier's NAT, and a home router sits between it and the host, each
//!   with the port-restricted cone rules (RFC 6888 asks carrier-grade NATs
//!   for endpoint-independent mapping); the home router's WAN is in the
//!   shared address space 100.64.0.0/10.
//!
//! Unsolicited inbound UDP that a preset refuses is dropped silently (no
//! ICMP) and counted in the named counter `unsolicited`.

use std::fmt;
use std::net::Ipv4Addr;

use super::cmd::{LabError, LabResult};
use super::netns::Netns;

/// The router's interface towards the internet.
pub const WAN_IF: &str = "wan";
/// The router's interface towards its LAN.
pub const LAN_IF: &str = "lan";
/// How long an idle cone mapping lives, in seconds.
pub const MAPPING_TIMEOUT_S: u32 = 120;

/// How a site's router treats its host's traffic (RFC 4787 terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatPreset {
    /// No NAT: the host has a public address routed through the router.
    Open,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestrictedCone,
    /// Endpoint-dependent mapping (a random port per flow), and
    /// address-and-port-dependent filtering.
    Symmetric,
    /// A port-restricted cone home router behind a port-restricted cone
    /// carrier-grade NAT (NAT stacked on NAT).
    CarrierGrade,
}

impl NatPreset {
    /// Every preset, in a fixed order.
    pub const ALL: [NatPreset; 4] = [
        NatPreset::Open,
        NatPreset::FullCone,
        NatPreset::PortRestrictedCone,
        NatPreset::Symmetric,
    ];

    /// A short lowercase name (used in namespace names and reports).
    pub fn name(self) -> &'static str {
        match self {
            NatPreset::Open => "open",
            NatPreset::FullCone => "fullcone",
            NatPreset::PortRestrictedCone => "portrestricted",
            NatPreset::Symmetric => "symmetric",
            NatPreset::CarrierGrade => "carriergrade",
        }
    }

    /// Whether the host sits behind address translation at all.
    pub fn translates(self) -> bool {
        self != NatPreset::Open
    }

    /// Whether one inside ip:port keeps one outside port for every
    /// destination.
    pub fn endpoint_independent_mapping(self) -> bool {
        matches!(
            self,
            NatPreset::FullCone | NatPreset::PortRestrictedCone | NatPreset::CarrierGrade
        )
    }

    /// The NAT type a node behind this preset should classify itself as,
    /// given observers on two different IPs: "open", "cone" (full cone and
    /// port-restricted cone map endpoint-independently; classification does
    /// not test filtering) or "symmetric".
    pub fn expected_nat_type(self) -> &'static str {
        match self {
            NatPreset::Open => "open",
            NatPreset::FullCone | NatPreset::PortRestrictedCone | NatPreset::CarrierGrade => "cone",
            NatPreset::Symmetric => "symmetric",
        }
    }

    /// Whether anyone may send to a mapped outside port.
    pub fn endpoint_independent_filtering(self) -> bool {
        matches!(self, NatPreset::Open | NatPreset::FullCone)
    }

    /// The `nft -f` script for this preset on a router whose WAN address is
    /// `wan_ip`; empty for [`NatPreset::Open`]. It replaces any earlier
    /// `labnat` table.
    pub fn ruleset(self, wan_ip: Ipv4Addr) -> String {
        if self == NatPreset::Open {
            return String::new();
        }
        if self == NatPreset::CarrierGrade {
            // Each of the two routers (see `Lab::add_site`).
            return NatPreset::PortRestrictedCone.ruleset(wan_ip);
        }
        let mut s = String::new();
        s.push_str("table ip labnat { }\ndelete table ip labnat\ntable ip labnat {\n");
        s.push_str("  counter unsolicited { }\n");
        if self.endpoint_independent_mapping() {
            let t = MAPPING_TIMEOUT_S;
            s.push_str(&format!(
                "  map out_map {{ type ipv4_addr . inet_service : inet_service; \
                 flags dynamic, timeout; timeout {t}s; size 4096; }}\n  \
                 map in_map {{ type inet_service : ipv4_addr . inet_service; \
                 flags dynamic, timeout; timeout {t}s; size 4096; }}\n"
            ));
        }
        // Inbound: destination NAT through the mapping (full cone only).
        s.push_str("  chain pre {\n    type nat hook prerouting priority dstnat; policy accept;\n");
        if self == NatPreset::FullCone {
            s.push_str(&format!(
                "    iifname \"{WAN_IF}\" ip daddr {wan_ip} udp dport @in_map \
                 dnat ip to udp dport map @in_map\n"
            ));
        }
        s.push_str("  }\n");
        // Outbound: source NAT.
        s.push_str(
            "  chain post {\n    type nat hook postrouting priority srcnat; policy accept;\n",
        );
        if self.endpoint_independent_mapping() {
            s.push_str(&format!(
                "    oifname \"{WAN_IF}\" ip saddr . udp sport @out_map \
                 snat ip to {wan_ip} : ip saddr . udp sport map @out_map\n    \
                 oifname \"{WAN_IF}\" meta l4proto udp snat ip to {wan_ip} : 20000-59999 random\n    \
                 oifname \"{WAN_IF}\" snat ip to {wan_ip}\n"
            ));
        } else {
            s.push_str(&format!("    oifname \"{WAN_IF}\" masquerade random\n"));
        }
        s.push_str("  }\n");
        if self.endpoint_independent_mapping() {
            // After source NAT: remember the translation this flow got.
            let t = MAPPING_TIMEOUT_S;
            s.push_str(&format!(
                "  chain learn {{\n    type filter hook postrouting priority srcnat + 10; policy accept;\n    \
                 oifname \"{WAN_IF}\" meta l4proto udp ct direction original update @out_map \
                 {{ ct original ip saddr . ct original proto-src timeout {t}s : udp sport }}\n    \
                 oifname \"{WAN_IF}\" meta l4proto udp ct direction original update @in_map \
                 {{ udp sport timeout {t}s : ct original ip saddr . ct original proto-src }}\n  }}\n"
            ));
        }
        // Unmatched inbound UDP to the router itself: drop silently.
        s.push_str(&format!(
            "  chain input {{\n    type filter hook input priority filter; policy accept;\n    \
             iifname \"{WAN_IF}\" meta l4proto udp counter name unsolicited drop\n  }}\n"
        ));
        s.push_str(
            "  chain forward {\n    type filter hook forward priority filter; policy accept;\n",
        );
        if !self.endpoint_independent_filtering() {
            s.push_str(&format!(
                "    iifname \"{WAN_IF}\" ct state established,related accept\n    \
                 iifname \"{WAN_IF}\" counter name unsolicited drop\n"
            ));
        }
        s.push_str("  }\n}\n");
        s
    }

    /// Installs this preset in `router` (WAN address `wan_ip`).
    pub fn apply(self, router: &Netns, wan_ip: Ipv4Addr) -> LabResult<()> {
        if self.translates() {
            router.nft(&self.ruleset(wan_ip))?;
        }
        Ok(())
    }
}

impl fmt::Display for NatPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How many unsolicited inbound UDP packets `router`'s preset has dropped
/// (0 for a router without the `labnat` table).
pub fn unsolicited_drops(router: &Netns) -> LabResult<u64> {
    match router.exec("nft", &["list", "counter", "ip", "labnat", "unsolicited"]) {
        Ok(out) => parse_packets(&out)
            .ok_or_else(|| LabError::Helper(format!("no packet count in nft output: {out}"))),
        Err(_) if !has_labnat(router) => Ok(0),
        Err(e) => Err(e),
    }
}

fn has_labnat(router: &Netns) -> bool {
    router
        .exec("nft", &["list", "table", "ip", "labnat"])
        .is_ok()
}

/// The `packets N` value in `nft list counter` output.
pub(crate) fn parse_packets(out: &str) -> Option<u64> {
    let mut words = out.split_whitespace();
    while let Some(word) = words.next() {
        if word == "packets" {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// Drops `percent`% of UDP in both directions on interface `dev` of `ns`
/// with an nftables random-drop rule (this kernel has no netem). 0 removes
/// the rule. Dropped packets are counted in `inet labloss` counter
/// `dropped`.
pub fn set_loss(ns: &Netns, dev: &str, percent: u8) -> LabResult<()> {
    let mut script = String::from("table inet labloss { }\ndelete table inet labloss\n");
    if percent > 0 {
        // `numgen random mod 100` is 0..=99, so `< 100` cannot be written.
        let rand = if percent >= 100 {
            String::new()
        } else {
            format!("numgen random mod 100 < {percent} ")
        };
        script.push_str(&format!(
            "table inet labloss {{\n  counter dropped {{ }}\n  \
             chain ingress {{ type filter hook prerouting priority raw - 10; policy accept;\n    \
             iifname \"{dev}\" meta l4proto udp {rand}counter name dropped drop\n  }}\n  \
             chain egress {{ type filter hook postrouting priority raw - 10; policy accept;\n    \
             oifname \"{dev}\" meta l4proto udp {rand}counter name dropped drop\n  }}\n}}\n"
        ));
    }
    ns.nft(&script).map(drop)
}

/// Packets dropped so far by [`set_loss`] in `ns`.
pub fn loss_drops(ns: &Netns) -> LabResult<u64> {
    let out = ns.exec("nft", &["list", "counter", "inet", "labloss", "dropped"])?;
    parse_packets(&out)
        .ok_or_else(|| LabError::Helper(format!("no packet count in nft output: {out}")))
}

/// The nft script that holds (drops) every UDP packet entering `router`,
/// before conntrack sees it, while its mappings are flushed; with `false`
/// it removes the hold. Table `inet labhold`, counter `held`.
pub fn hold_ruleset(on: bool) -> String {
    let mut script = String::from("table inet labhold { }\ndelete table inet labhold\n");
    if on {
        script.push_str(
            "table inet labhold {\n  counter held { }\n  \
             chain ingress { type filter hook prerouting priority raw - 10; policy accept;\n    \
             meta l4proto udp counter name held drop\n  }\n}\n",
        );
    }
    script
}

/// Forces every mapping in `router` to be forgotten, as when a NAT reboots
/// or its bindings expire: flushes conntrack and empties the cone maps. The
/// next packet of every flow gets a fresh outside port (a "rebinding").
///
/// The flush must be atomic for the flows: a packet that passes between
/// `conntrack -F` and emptying the maps (in either order) gets its old
/// outside port back from `out_map`, or puts it back there, and its flow
/// keeps that port, so nothing rebinds. So UDP through the router is held
/// (dropped, [`hold_ruleset`]) for the few milliseconds of the flush, as a
/// rebooting NAT would drop it.
pub fn rebind(router: &Netns) -> LabResult<()> {
    router.nft(&hold_ruleset(true))?;
    let flushed = flush_mappings(router);
    let released = router.nft(&hold_ruleset(false)).map(drop);
    flushed.and(released)
}

/// Gives `host:port` its endpoint-independent mapping before any packet
/// does (cone presets only; a no-op otherwise): `out_map` and `in_map` get
/// `host . port : wan_port`.
///
/// Why: the cone presets allocate an outside port for each new flow and
/// remember it only after source NAT (the `learn` chain). When a node opens
/// two flows within microseconds (it dials its relay and another peer at
/// start), both first packets can pass source NAT before either is
/// learned, on two cores at once, and get two outside ports: the node then
/// rightly classifies its "cone" as symmetric. A real endpoint-independent
/// NAT allocates once; seeding the mapping makes the emulation do the same.
/// The entry ages and refreshes like a learned one.
pub fn seed_mapping(router: &Netns, host: Ipv4Addr, port: u16, wan_port: u16) -> LabResult<()> {
    if !has_labnat(router) {
        return Ok(());
    }
    let maps = router.exec("nft", &["list", "maps", "ip"])?;
    if !maps.contains("out_map") {
        return Ok(());
    }
    router.nft(&format!(
        "add element ip labnat out_map {{ {host} . {port} : {wan_port} }}
         add element ip labnat in_map {{ {wan_port} : {host} . {port} }}
"
    ))?;
    Ok(())
}

fn flush_mappings(router: &Netns) -> LabResult<()> {
    if has_labnat(router) {
        let maps = router.exec("nft", &["list", "maps", "ip"])?;
        for map in ["out_map", "in_map"] {
            if maps.contains(map) {
                router.exec("nft", &["flush", "map", "ip", "labnat", map])?;
            }
        }
    }
    // `conntrack -F` exits 0 also when the table is already empty.
    router.exec("conntrack", &["-F"]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_drops_udp_before_conntrack_and_lifts() {
        let on = hold_ruleset(true);
        assert!(
            on.contains("priority raw - 10")
                && on.contains("meta l4proto udp counter name held drop")
        );
        assert!(hold_ruleset(false).ends_with("delete table inet labhold\n"));
    }

    #[test]
    fn open_has_no_rules() {
        assert!(NatPreset::Open
            .ruleset(Ipv4Addr::new(198, 51, 100, 10))
            .is_empty());
    }

    #[test]
    fn cone_presets_use_both_maps_and_symmetric_masquerades() {
        let wan = Ipv4Addr::new(198, 51, 100, 10);
        let full = NatPreset::FullCone.ruleset(wan);
        assert!(full.contains("map out_map") && full.contains("map in_map"));
        assert!(full.contains("dnat ip to udp dport map @in_map"));
        let prc = NatPreset::PortRestrictedCone.ruleset(wan);
        assert!(prc.contains("map out_map") && !prc.contains("dnat"));
        assert!(prc.contains("ct state established,related accept"));
        let sym = NatPreset::Symmetric.ruleset(wan);
        assert!(sym.contains("masquerade random") && !sym.contains("map"));
    }

    #[test]
    fn packet_counts_parse() {
        let out = "table ip labnat {\n\tcounter unsolicited {\n\t\tpackets 7 bytes 300\n\t}\n}\n";
        assert_eq!(parse_packets(out), Some(7));
        assert_eq!(parse_packets("nothing"), None);
    }
}
