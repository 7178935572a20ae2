//! The port-mapping part of `status` and `netcheck`: which protocol holds a
//! mapping of our UDP port on the gateway (PCP, NAT-PMP, UPnP-IGD), the
//! mapped address and its time left, or why there is none
//! (`port-map-unavailable: ...`). Built from the transport's
//! `PortMapStatus`.

use relay_transport::portmap::Protocol;
use relay_transport::PortMapStatus;
use serde::{Deserialize, Serialize};

/// `port_map` in `status --json` and `netcheck --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapSection {
    /// "off" | "discovering" | "mapped" | "unavailable" | "stopped".
    pub state: String,
    /// "pcp" | "nat-pmp" | "upnp-igd", or null without a mapping.
    pub protocol: Option<String>,
    /// The mapped external address (`ip:port`).
    pub external_addr: Option<String>,
    /// Seconds until the mapping expires (renewed at half its lifetime);
    /// null without a mapping or for a permanent one.
    pub expires_in_s: Option<u64>,
    /// Why there is no mapping, as `kind: detail`.
    pub error: Option<String>,
}

impl Default for PortMapSection {
    fn default() -> Self {
        Self::new(&PortMapStatus::off())
    }
}

impl PortMapSection {
    /// From the transport's status.
    pub fn new(s: &PortMapStatus) -> Self {
        Self {
            state: s.state.to_string(),
            protocol: s.protocol.map(|p| p.as_str().to_string()),
            external_addr: s.external_addr.map(|a| a.to_string()),
            expires_in_s: s.expires_in.map(|d| d.as_secs()),
            error: s.error.clone(),
        }
    }

    /// One line for the text forms.
    pub fn line(&self) -> String {
        match (&self.protocol, &self.external_addr, &self.error) {
            (Some(protocol), Some(addr), _) => match self.expires_in_s {
                Some(s) => format!("{protocol} {addr} (expires in {s} s)"),
                None => format!("{protocol} {addr} (permanent)"),
            },
            (_, _, Some(error)) => format!("none: {error}"),
            _ => self.state.clone(),
        }
    }
}

/// `run --port-map-protocols`: the protocols to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolList(pub Vec<Protocol>);

/// Parses `pcp,nat-pmp,upnp-igd` (any non-empty subset, in the order to
/// try; no repeats).
pub fn parse_protocols(input: &str) -> Result<ProtocolList, String> {
    let mut list = Vec::new();
    for name in input.split(',') {
        let p = Protocol::parse(name).ok_or_else(|| {
            format!("unknown protocol {name:?} (expected pcp, nat-pmp, upnp-igd)")
        })?;
        if list.contains(&p) {
            return Err(format!("{p} given twice"));
        }
        list.push(p);
    }
    Ok(ProtocolList(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_lists() {
        assert_eq!(
            parse_protocols("upnp-igd,pcp"),
            Ok(ProtocolList(vec![Protocol::UpnpIgd, Protocol::Pcp]))
        );
        assert!(parse_protocols("pcp,pcp").is_err());
        assert!(parse_protocols("smtp").is_err());
        assert!(parse_protocols("").is_err());
    }
    use std::time::Duration;

    #[test]
    fn json_and_line() {
        let off = PortMapSection::default();
        assert_eq!(off.line(), "off");
        let v = serde_json::to_value(&off).unwrap();
        assert!(v["protocol"].is_null() && v["error"].is_null());

        let mapped = PortMapSection::new(&PortMapStatus {
            enabled: true,
            state: "mapped",
            protocol: Some(Protocol::NatPmp),
            external_addr: Some("198.51.101.10:40000".parse().unwrap()),
            expires_in: Some(Duration::from_millis(7_199_500)),
            error: None,
        });
        let v = serde_json::to_value(&mapped).unwrap();
        assert_eq!(v["protocol"], "nat-pmp");
        assert_eq!(v["external_addr"], "198.51.101.10:40000");
        assert_eq!(v["expires_in_s"], 7199);
        assert_eq!(
            mapped.line(),
            "nat-pmp 198.51.101.10:40000 (expires in 7199 s)"
        );

        let none = PortMapSection::new(&PortMapStatus {
            enabled: true,
            state: "unavailable",
            error: Some("port-map-unavailable: pcp: no answer".into()),
            ..PortMapStatus::default()
        });
        let v = serde_json::to_value(&none).unwrap();
        assert!(v["protocol"].is_null());
        assert_eq!(v["error"], "port-map-unavailable: pcp: no answer");
        assert_eq!(none.line(), "none: port-map-unavailable: pcp: no answer");
        let back: PortMapSection = serde_json::from_value(v).unwrap();
        assert_eq!(back, none);
    }
}
