//! UPnP Internet Gateway Device: finding the WAN connection service in a
//! device description, and the three SOAP actions a port-mapping client
//! needs (`GetExternalIPAddress`, `AddPortMapping`, `DeletePortMapping`):
//! building their bodies and reading the answers. Sans-IO.

use std::net::{IpAddr, Ipv4Addr};

use super::http::{HttpResponse, HttpUrl};
use super::xml;

/// Service types we can map with, best first.
pub const SERVICE_TYPES: [&str; 3] = [
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
];

/// UPnP error: the external port is taken by another mapping.
pub const ERR_CONFLICT: u16 = 718;
/// UPnP error: the gateway only does permanent (lease 0) mappings.
pub const ERR_ONLY_PERMANENT: u16 = 725;

/// The WAN connection service of a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgdService {
    /// Its service type (one of [`SERVICE_TYPES`]).
    pub service_type: String,
    /// Where SOAP requests go.
    pub control: HttpUrl,
}

/// Why an IGD answer was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgdError {
    /// The description names no WAN connection service.
    #[error("no WANIPConnection/WANPPPConnection service in the description")]
    NoService,
    /// The control URL is unusable or on another host.
    #[error("unusable control URL")]
    ControlUrl,
    /// A SOAP fault, with the UPnP error code when there is one.
    #[error("SOAP fault {code:?}: {description}")]
    Fault {
        /// UPnP error code.
        code: Option<u16>,
        /// Its description.
        description: String,
    },
    /// An HTTP status other than 200 and no SOAP fault.
    #[error("HTTP status {0}")]
    Status(u16),
    /// A success answer without the expected value.
    #[error("answer lacks {0}")]
    Missing(&'static str),
}

/// Finds the best WAN connection service in `description`, fetched from
/// `location`. Its control URL must be on the same host.
pub fn find_service(location: &HttpUrl, description: &str) -> Result<IgdService, IgdError> {
    let base = xml::text(description, "URLBase")
        .and_then(|b| HttpUrl::parse(&b))
        .filter(|b| b.addr.ip() == location.addr.ip())
        .unwrap_or_else(|| location.clone());
    let services = xml::elements(description, "service");
    for wanted in SERVICE_TYPES {
        for service in &services {
            let Some(service_type) = xml::text(service, "serviceType") else {
                continue;
            };
            if service_type.trim() != wanted {
                continue;
            }
            let control = xml::text(service, "controlURL")
                .and_then(|c| base.join(&c))
                .ok_or(IgdError::ControlUrl)?;
            if control.addr.ip() != location.addr.ip() {
                return Err(IgdError::ControlUrl);
            }
            return Ok(IgdService {
                service_type: wanted.to_owned(),
                control,
            });
        }
    }
    Err(IgdError::NoService)
}

fn envelope(service: &str, action: &str, args: &[(&str, String)]) -> String {
    let mut body = String::new();
    for (name, value) in args {
        body.push_str(&format!("<{name}>{}</{name}>", xml::escape(value)));
    }
    format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:{action} xmlns:u=\"{service}\">{body}</u:{action}></s:Body></s:Envelope>\r\n"
    )
}

/// `GetExternalIPAddress` body.
pub fn get_external_ip(service: &str) -> String {
    envelope(service, "GetExternalIPAddress", &[])
}

/// `AddPortMapping` body: UDP `external` -> `client`:`internal` for
/// `lease` seconds (0: permanent).
pub fn add_port_mapping(
    service: &str,
    external: u16,
    client: Ipv4Addr,
    internal: u16,
    lease: u32,
) -> String {
    envelope(
        service,
        "AddPortMapping",
        &[
            ("NewRemoteHost", String::new()),
            ("NewExternalPort", external.to_string()),
            ("NewProtocol", "UDP".to_owned()),
            ("NewInternalPort", internal.to_string()),
            ("NewInternalClient", client.to_string()),
            ("NewEnabled", "1".to_owned()),
            ("NewPortMappingDescription", "relay-node".to_owned()),
            ("NewLeaseDuration", lease.to_string()),
        ],
    )
}

/// `DeletePortMapping` body for UDP `external`.
pub fn delete_port_mapping(service: &str, external: u16) -> String {
    envelope(
        service,
        "DeletePortMapping",
        &[
            ("NewRemoteHost", String::new()),
            ("NewExternalPort", external.to_string()),
            ("NewProtocol", "UDP".to_owned()),
        ],
    )
}

/// Reads a SOAP answer: `Ok(body)` on HTTP 200, the fault otherwise.
pub fn soap_result(response: &HttpResponse) -> Result<String, IgdError> {
    let body = String::from_utf8_lossy(&response.body).into_owned();
    if response.status == 200 {
        return Ok(body);
    }
    let code = xml::text(&body, "errorCode").and_then(|c| c.parse().ok());
    let description = xml::text(&body, "errorDescription");
    if code.is_none() && description.is_none() {
        return Err(IgdError::Status(response.status));
    }
    Err(IgdError::Fault {
        code,
        description: description.unwrap_or_default().chars().take(120).collect(),
    })
}

/// The address in a `GetExternalIPAddress` answer body.
pub fn external_ip(body: &str) -> Result<IpAddr, IgdError> {
    xml::text(body, "NewExternalIPAddress")
        .and_then(|t| t.parse().ok())
        .ok_or(IgdError::Missing("NewExternalIPAddress"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESC: &str = r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><device>
<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-microsoft-com:service:OSInfo:1</serviceType>
<controlURL>/ctl/OSInfo</controlURL></service></serviceList>
<deviceList><device><deviceList><device><serviceList><service>
<serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
<controlURL>/ctl/IPConn</controlURL></service></serviceList></device></deviceList></device></deviceList>
</device></root>"#;

    fn location() -> HttpUrl {
        HttpUrl::parse("http://10.1.0.1:34967/rootDesc.xml").unwrap()
    }

    #[test]
    fn finds_the_wan_service() {
        let s = find_service(&location(), DESC).unwrap();
        assert_eq!(s.service_type, SERVICE_TYPES[1]);
        assert_eq!(s.control.addr, "10.1.0.1:34967".parse().unwrap());
        assert_eq!(s.control.path, "/ctl/IPConn");
        assert_eq!(
            find_service(&location(), "<root/>"),
            Err(IgdError::NoService)
        );
        let foreign = DESC.replace("/ctl/IPConn", "http://10.7.7.7/ctl");
        assert_eq!(
            find_service(&location(), &foreign),
            Err(IgdError::ControlUrl)
        );
    }

    #[test]
    fn bodies_and_answers() {
        let add = add_port_mapping(
            SERVICE_TYPES[1],
            40000,
            Ipv4Addr::new(10, 1, 0, 2),
            40000,
            3600,
        );
        assert!(add.contains(
            "<u:AddPortMapping xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\">"
        ));
        assert!(add.contains("<NewInternalClient>10.1.0.2</NewInternalClient>"));
        assert!(add.contains("<NewLeaseDuration>3600</NewLeaseDuration>"));
        assert!(delete_port_mapping(SERVICE_TYPES[1], 40000)
            .contains("<NewExternalPort>40000</NewExternalPort>"));
        assert!(get_external_ip(SERVICE_TYPES[1]).contains("GetExternalIPAddress"));

        let ok = HttpResponse {
            status: 200,
            headers: vec![],
            body: b"<s:Envelope><s:Body><u:GetExternalIPAddressResponse><NewExternalIPAddress>198.51.101.10</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>".to_vec(),
        };
        let body = soap_result(&ok).unwrap();
        assert_eq!(external_ip(&body), Ok("198.51.101.10".parse().unwrap()));
        assert_eq!(
            external_ip("<x/>"),
            Err(IgdError::Missing("NewExternalIPAddress"))
        );
        let fault = HttpResponse {
            status: 500,
            headers: vec![],
            body: b"<s:Fault><detail><UPnPError><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault>".to_vec(),
        };
        assert_eq!(
            soap_result(&fault),
            Err(IgdError::Fault {
                code: Some(ERR_CONFLICT),
                description: "ConflictInMappingEntry".into()
            })
        );
        let bare = HttpResponse {
            status: 404,
            headers: vec![],
            body: vec![],
        };
        assert_eq!(soap_result(&bare), Err(IgdError::Status(404)));
    }
}
