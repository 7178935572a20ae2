//! Blocking the direct path between two sites, as an nftables drop rule in
//! one site's router (its own table, `inet labblock`).
//!
//! A blocked router drops every UDP packet between its WAN link and one
//! peer address, in both directions, before NAT or conntrack see it, and
//! counts the drops in the named counter `blocked`. Traffic to anyone else
//! (a relay, say) is untouched, so two nodes behind blocked sites can only
//! meet through a relay until the block is lifted.

use std::net::Ipv4Addr;

use super::cmd::{LabError, LabResult};
use super::nat::{parse_packets, WAN_IF};
use super::netns::Netns;

/// The nft script that blocks UDP between `router`'s WAN link and `peer`,
/// or, with `None`, removes any block.
pub fn ruleset(peer: Option<Ipv4Addr>) -> String {
    let mut script = String::from("table inet labblock { }\ndelete table inet labblock\n");
    if let Some(peer) = peer {
        script.push_str(&format!(
            "table inet labblock {{\n  counter blocked {{ }}\n  \
             chain ingress {{ type filter hook prerouting priority raw - 10; policy accept;\n    \
             iifname \"{WAN_IF}\" ip saddr {peer} meta l4proto udp counter name blocked drop\n  }}\n  \
             chain egress {{ type filter hook postrouting priority raw - 10; policy accept;\n    \
             oifname \"{WAN_IF}\" ip daddr {peer} meta l4proto udp counter name blocked drop\n  }}\n}}\n"
        ));
    }
    script
}

/// Drops all UDP between `router`'s WAN link and `peer` (replacing any
/// earlier block).
pub fn block(router: &Netns, peer: Ipv4Addr) -> LabResult<()> {
    router.nft(&ruleset(Some(peer))).map(drop)
}

/// Lifts the block (a no-op without one). The drop counter goes with it.
pub fn unblock(router: &Netns) -> LabResult<()> {
    router.nft(&ruleset(None)).map(drop)
}

/// Packets the current block has dropped.
pub fn blocked_drops(router: &Netns) -> LabResult<u64> {
    let out = router.exec("nft", &["list", "counter", "inet", "labblock", "blocked"])?;
    parse_packets(&out)
        .ok_or_else(|| LabError::Helper(format!("no packet count in nft output: {out}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_and_unblock_scripts() {
        let on = ruleset(Some(Ipv4Addr::new(198, 51, 100, 11)));
        assert!(on.contains("ip saddr 198.51.100.11") && on.contains("ip daddr 198.51.100.11"));
        assert!(on.contains("counter name blocked drop"));
        let off = ruleset(None);
        assert!(off.ends_with("delete table inet labblock\n"));
    }
}
