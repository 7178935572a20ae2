//! SSDP discovery of an Internet Gateway Device: the M-SEARCH request we
//! send to 239.255.255.250:1900 (and to the default gateway directly), and
//! the parsing of the unicast answers. Sans-IO.
//!
//! An answer is only taken when it names a gateway service type and its
//! `LOCATION` is a plain-HTTP URL on the very IP the answer came from, so
//! a stray or hostile answer cannot point our HTTP requests at a third
//! host.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::http::{parse_head, HttpUrl};

/// The SSDP multicast group and port.
pub const SSDP_MULTICAST: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(239, 255, 255, 250), 1900));
/// The SSDP port.
pub const SSDP_PORT: u16 = 1900;
/// The search target we ask for.
pub const SEARCH_TARGET: &str = "urn:schemas-upnp-org:device:InternetGatewayDevice:1";
/// Longest answer looked at.
pub const MAX_ANSWER: usize = 2048;

/// The M-SEARCH request (`MX` 1: gateways answer within a second).
pub fn search_request() -> Vec<u8> {
    format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: {SEARCH_TARGET}\r\n\r\n"
    )
    .into_bytes()
}

/// Why an SSDP answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsdpError {
    /// Over [`MAX_ANSWER`] bytes.
    #[error("SSDP answer too long")]
    TooLong,
    /// Not an HTTP `200` answer.
    #[error("not an SSDP search answer")]
    NotAnswer,
    /// The search target is not a gateway service.
    #[error("SSDP answer for another device type")]
    NotGateway,
    /// No usable `LOCATION`.
    #[error("SSDP answer without a usable LOCATION")]
    Location,
    /// `LOCATION` points elsewhere than the answer's source.
    #[error("SSDP LOCATION on another host than the answer's source")]
    ForeignLocation,
}

/// Reads an answer that came from `src`: the description URL.
pub fn parse_answer(src: SocketAddr, data: &[u8]) -> Result<HttpUrl, SsdpError> {
    if data.len() > MAX_ANSWER {
        return Err(SsdpError::TooLong);
    }
    let ((first, headers), _) = parse_head(data).map_err(|_| SsdpError::NotAnswer)?;
    let mut status = first.split_whitespace();
    if !status.next().is_some_and(|v| v.starts_with("HTTP/1.")) || status.next() != Some("200") {
        return Err(SsdpError::NotAnswer);
    }
    let target = super::http::header(&headers, "st").unwrap_or("");
    let gateway = [
        "InternetGatewayDevice",
        "WANIPConnection",
        "WANPPPConnection",
    ]
    .iter()
    .any(|t| target.contains(t));
    if !gateway {
        return Err(SsdpError::NotGateway);
    }
    let location = super::http::header(&headers, "location").ok_or(SsdpError::Location)?;
    let url = HttpUrl::parse(location).ok_or(SsdpError::Location)?;
    if url.addr.ip().to_canonical() != src.ip().to_canonical() {
        return Err(SsdpError::ForeignLocation);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(st: &str, location: &str) -> Vec<u8> {
        format!("HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: {st}\r\nUSN: uuid:x::{st}\r\nEXT:\r\nSERVER: Debian UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: {location}\r\n\r\n").into_bytes()
    }

    #[test]
    fn request_shape() {
        let r = String::from_utf8(search_request()).unwrap();
        assert!(r.starts_with("M-SEARCH * HTTP/1.1\r\n"));
        assert!(r.contains("MAN: \"ssdp:discover\"\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
    }

    #[test]
    fn takes_gateway_answers_on_their_own_host() {
        let src: SocketAddr = "10.1.0.1:1900".parse().unwrap();
        let url = parse_answer(
            src,
            &answer(SEARCH_TARGET, "http://10.1.0.1:34967/rootDesc.xml"),
        )
        .unwrap();
        assert_eq!(url.addr, "10.1.0.1:34967".parse().unwrap());
        assert_eq!(url.path, "/rootDesc.xml");
        assert_eq!(
            parse_answer(src, &answer(SEARCH_TARGET, "http://10.9.9.9:80/d.xml")),
            Err(SsdpError::ForeignLocation)
        );
        assert_eq!(
            parse_answer(
                src,
                &answer(
                    "urn:schemas-upnp-org:device:MediaServer:1",
                    "http://10.1.0.1/"
                )
            ),
            Err(SsdpError::NotGateway)
        );
        assert_eq!(
            parse_answer(src, &answer(SEARCH_TARGET, "ftp://10.1.0.1/")),
            Err(SsdpError::Location)
        );
        assert_eq!(
            parse_answer(src, b"NOTIFY * HTTP/1.1\r\n\r\n"),
            Err(SsdpError::NotAnswer)
        );
        assert_eq!(parse_answer(src, &[0; 4000]), Err(SsdpError::TooLong));
        assert_eq!(parse_answer(src, b"\xff\xfe"), Err(SsdpError::NotAnswer));
    }
}
