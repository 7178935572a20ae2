//! Debian's miniupnpd (UPnP-IGD, NAT-PMP and PCP) inside a lab NAT router.
//!
//! Two things about miniupnpd shape this:
//!
//! - It refuses to map anything while its external interface's address is
//!   private or reserved, and its list of reserved ranges includes every
//!   documentation range the lab uses (198.51.100.0/24, 203.0.113.0/24).
//!   [`make_mappable`] therefore gives the router one more WAN address,
//!   [`MAPPABLE_WAN`], outside those ranges, makes it the interface's first
//!   address (the one miniupnpd reads), routes it from the internet
//!   namespace, and has the router's NAT translate to it. The address only
//!   exists inside the lab's namespaces, which have no link to any real
//!   network.
//! - It only adds rules to nftables chains it is told about. The chains
//!   live in an `inet miniupnpd` table created here: DNAT in `prerouting`,
//!   accept in `forward`. The lab preset's own forward filter drops new
//!   inbound flows, so [`make_mappable`] also lets destination-NATed
//!   packets through it, as a router offering port mapping does.
//!
//! [`Miniupnpd`] runs the daemon in the foreground (`-d`) with a generated
//! config (`ext_ifname=wan`, `listening_ip=lan`, NAT-PMP/PCP and UPnP on,
//! `secure_mode=yes`, allow rules for the LAN only), logs to a file, and
//! kills it on drop.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cmd::{LabError, LabResult};
use super::nat::{LAN_IF, WAN_IF};
use super::netns::Netns;
use super::topology::{Lab, Site, INET_GW_B};

/// The router's extra, non-reserved WAN address (see the module docs).
pub const MAPPABLE_WAN: Ipv4Addr = Ipv4Addr::new(198, 51, 101, 10);

/// The nftables table miniupnpd writes its rules into.
const TABLE: &str = "miniupnpd";

/// Prepares `site`'s router for miniupnpd: [`MAPPABLE_WAN`] as its first
/// WAN address and NAT source, routed from the internet namespace, the
/// `inet miniupnpd` chains, and destination-NATed inbound flows allowed
/// through the preset's forward filter.
pub fn make_mappable(lab: &Lab, site: &Site) -> LabResult<()> {
    let r = &site.router;
    let wan = site.wan_addr.to_string();
    let public = MAPPABLE_WAN.to_string();
    // Re-add the lab address after the new one, so the new one comes
    // first (miniupnpd reads the interface's first address).
    r.ip(&["addr", "del", &format!("{wan}/25"), "dev", WAN_IF])?;
    r.ip(&["addr", "add", &format!("{public}/32"), "dev", WAN_IF])?;
    r.ip(&["addr", "add", &format!("{wan}/25"), "dev", WAN_IF])?;
    r.default_route(INET_GW_B)?;
    lab.internet()
        .ip(&["route", "add", &format!("{public}/32"), "via", &wan])?;
    // The preset translates to the new address; everything else stays.
    let post = if site.preset.endpoint_independent_mapping() {
        format!(
            "flush chain ip labnat post\n\
             add rule ip labnat post oifname \"{WAN_IF}\" ip saddr . udp sport @out_map snat ip to {public} : ip saddr . udp sport map @out_map\n\
             add rule ip labnat post oifname \"{WAN_IF}\" meta l4proto udp snat ip to {public} : 20000-59999 random\n\
             add rule ip labnat post oifname \"{WAN_IF}\" snat ip to {public}\n"
        )
    } else {
        format!(
            "flush chain ip labnat post\n\
             add rule ip labnat post oifname \"{WAN_IF}\" snat ip to {public} random\n"
        )
    };
    r.nft(&post)?;
    r.nft(&format!(
        "insert rule ip labnat forward iifname \"{WAN_IF}\" ct status dnat accept\n"
    ))?;
    r.nft(&format!(
        "table inet {TABLE} {{\n\
           chain forward {{ type filter hook forward priority filter - 5; policy accept; jump forward_miniupnpd; }}\n\
           chain forward_miniupnpd {{ }}\n\
           chain prerouting {{ type nat hook prerouting priority dstnat - 5; policy accept; jump prerouting_miniupnpd; }}\n\
           chain prerouting_miniupnpd {{ }}\n\
           chain postrouting {{ type nat hook postrouting priority srcnat - 5; policy accept; jump postrouting_miniupnpd; }}\n\
           chain postrouting_miniupnpd {{ }}\n\
         }}\n"
    ))?;
    Ok(())
}

/// The config file text for a router whose LAN is `lan_net`/24.
pub fn config(lan_net: Ipv4Addr) -> String {
    format!(
        "ext_ifname={WAN_IF}\n\
         listening_ip={LAN_IF}\n\
         enable_natpmp=yes\n\
         enable_upnp=yes\n\
         secure_mode=yes\n\
         system_uptime=no\n\
         min_lifetime=120\n\
         max_lifetime=86400\n\
         clean_ruleset_interval=0\n\
         upnp_table_name={TABLE}\n\
         upnp_nat_table_name={TABLE}\n\
         upnp_forward_chain=forward_miniupnpd\n\
         upnp_nat_chain=prerouting_miniupnpd\n\
         upnp_nat_postrouting_chain=postrouting_miniupnpd\n\
         uuid=3c5a1b2e-0000-4000-8000-00000000beef\n\
         allow 1024-65535 {lan_net}/24 1024-65535\n\
         deny 0-65535 0.0.0.0/0 0-65535\n"
    )
}

/// A running miniupnpd (killed on drop).
#[derive(Debug)]
pub struct Miniupnpd {
    child: Child,
    log: PathBuf,
    router: Netns,
}

impl Miniupnpd {
    /// Starts miniupnpd in `site`'s router with files under `dir`, and
    /// waits (at most `timeout`) until it listens for NAT-PMP/PCP.
    pub fn start(site: &Site, dir: &Path, timeout: Duration) -> LabResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("miniupnpd dir", e))?;
        let conf = dir.join("miniupnpd.conf");
        let pid = dir.join("miniupnpd.pid");
        let log = dir.join("miniupnpd.log");
        let octets = site.host_addr.octets();
        let lan_net = Ipv4Addr::new(octets[0], octets[1], octets[2], 0);
        std::fs::write(&conf, config(lan_net)).map_err(|e| io_error("config", e))?;
        let out = std::fs::File::create(&log).map_err(|e| io_error("log", e))?;
        let err = out.try_clone().map_err(|e| io_error("log", e))?;
        let child = Command::new("ip")
            .args(["netns", "exec", site.router.name(), "miniupnpd", "-d", "-f"])
            .arg(&conf)
            .arg("-P")
            .arg(&pid)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| io_error("spawn miniupnpd", e))?;
        let daemon = Self {
            child,
            log,
            router: site.router.clone(),
        };
        let deadline = Instant::now() + timeout;
        loop {
            let text = daemon.log();
            if text.contains("Listening for NAT-PMP/PCP traffic") {
                return Ok(daemon);
            }
            if Instant::now() >= deadline || text.contains("Failed to") {
                return Err(LabError::Helper(format!(
                    "miniupnpd did not start:\n{text}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything miniupnpd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The redirect rules miniupnpd holds now (its `prerouting_miniupnpd`
    /// chain, as text).
    pub fn redirects(&self) -> String {
        self.router
            .exec(
                "nft",
                &["list", "chain", "inet", TABLE, "prerouting_miniupnpd"],
            )
            .unwrap_or_default()
    }
}

impl Drop for Miniupnpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn io_error(what: &str, e: std::io::Error) -> LabError {
    LabError::Helper(format!("{what}: {e}"))
}
