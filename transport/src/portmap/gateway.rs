//! Finding the IPv4 default gateway: the lowest-metric default route in
//! `/proc/net/route` (Linux). The parser is pure; reading the file is the
//! only I/O, and a missing or odd file just means "no gateway".

use std::net::Ipv4Addr;

/// The route flag "usable".
const RTF_UP: u32 = 0x1;
/// The route flag "via a gateway".
const RTF_GATEWAY: u32 = 0x2;
/// Lines looked at, at most.
const MAX_LINES: usize = 4096;

/// The default gateway in the text of `/proc/net/route`.
pub fn parse_route_table(text: &str) -> Option<Ipv4Addr> {
    let mut best: Option<(u32, Ipv4Addr)> = None;
    for line in text.lines().skip(1).take(MAX_LINES) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_iface, dest, gateway, flags, _refcnt, _use, metric, mask, ..] = fields.as_slice()
        else {
            continue;
        };
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (Some(dest), Some(gateway), Some(flags), Some(mask)) =
            (hex(dest), hex(gateway), hex(flags), hex(mask))
        else {
            continue;
        };
        let metric: u32 = metric.parse().unwrap_or(u32::MAX);
        if dest != 0 || mask != 0 || flags & (RTF_UP | RTF_GATEWAY) != RTF_UP | RTF_GATEWAY {
            continue;
        }
        // The kernel prints the network-order address as a native integer.
        let ip = Ipv4Addr::from(gateway.to_ne_bytes());
        if ip.is_unspecified() {
            continue;
        }
        if best.is_none_or(|(m, _)| metric < m) {
            best = Some((metric, ip));
        }
    }
    best.map(|(_, ip)| ip)
}

/// The default gateway of this host, if `/proc/net/route` names one.
pub fn default_gateway() -> Option<Ipv4Addr> {
    let text = std::fs::read_to_string("/proc/net/route").ok()?;
    parse_route_table(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ne_hex(ip: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip))
    }

    #[test]
    fn picks_the_lowest_metric_default_route() {
        let table = format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             lan\t{}\t00000000\t0001\t0\t0\t0\t{}\t0\t0\t0\n\
             wlan\t00000000\t{}\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
             lan\t00000000\t{}\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             down\t00000000\t{}\t0002\t0\t0\t1\t00000000\t0\t0\t0\n",
            ne_hex([10, 1, 0, 0]),
            ne_hex([255, 255, 255, 0]),
            ne_hex([192, 168, 1, 1]),
            ne_hex([10, 1, 0, 1]),
            ne_hex([10, 9, 9, 9]),
        );
        assert_eq!(parse_route_table(&table), Some(Ipv4Addr::new(10, 1, 0, 1)));
    }

    #[test]
    fn nothing_usable() {
        assert_eq!(parse_route_table(""), None);
        assert_eq!(parse_route_table("header\ngarbage line\n\u{0}\n"), None);
        let no_default = format!(
            "h\nlan\t{}\t00000000\t0001\t0\t0\t0\t{}\t0\t0\t0\n",
            ne_hex([10, 1, 0, 0]),
            ne_hex([255, 255, 255, 0])
        );
        assert_eq!(parse_route_table(&no_default), None);
    }
}
