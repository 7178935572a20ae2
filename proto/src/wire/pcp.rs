//! PCP (RFC 6887) MAP messages, as a port-mapping client sends and reads
//! them. Sans-IO: requests are emitted into fixed-size arrays, responses
//! parsed from untrusted bytes with typed errors (never a panic).
//!
//! A request is a 24-byte common header and, for MAP, a 36-byte body:
//!
//! ```text
//! request header   version 2 | opcode | reserved 2 | lifetime u32 |
//!                  client IP (16, IPv4-mapped for IPv4)
//! response header  version 2 | 0x80|opcode | reserved | result |
//!                  lifetime u32 | epoch u32 | reserved 12
//! MAP body         nonce 12 | protocol | reserved 3 | internal port u16 |
//!                  external port u16 | external IP (16)
//! ```
//!
//! In a request the body's port and IP are *suggestions* (zero: any); in a
//! response they are what was assigned. Lifetime 0 deletes a mapping.
//! Options may follow the body; a client that sends none may ignore them,
//! but the whole datagram must be a multiple of 4 and at most
//! [`MAX_LEN`] bytes. A gateway speaking only NAT-PMP answers a PCP
//! request with a NAT-PMP "unsupported version" response: its first byte
//! is 0, which [`PcpResponse::parse`] reports as [`PcpError::NatPmpOnly`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// The PCP version byte.
pub const VERSION: u8 = 2;
/// Opcode ANNOUNCE.
pub const OP_ANNOUNCE: u8 = 0;
/// Opcode MAP.
pub const OP_MAP: u8 = 1;
/// The R bit: set in every response.
pub const RESPONSE_BIT: u8 = 0x80;
/// Length of the common header.
pub const HEADER_LEN: usize = 24;
/// Length of a MAP request or response without options.
pub const MAP_LEN: usize = HEADER_LEN + 36;
/// Longest PCP message.
pub const MAX_LEN: usize = 1100;
/// Length of a mapping nonce.
pub const NONCE_LEN: usize = 12;
/// IANA protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// PCP result codes (RFC 6887 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PcpResult {
    /// 0.
    Success,
    /// 1.
    UnsupportedVersion,
    /// 2.
    NotAuthorized,
    /// 3.
    MalformedRequest,
    /// 4.
    UnsupportedOpcode,
    /// 5.
    UnsupportedOption,
    /// 6.
    MalformedOption,
    /// 7.
    NetworkFailure,
    /// 8.
    NoResources,
    /// 9.
    UnsupportedProtocol,
    /// 10.
    UserExceededQuota,
    /// 11.
    CannotProvideExternal,
    /// 12.
    AddressMismatch,
    /// 13.
    ExcessiveRemotePeers,
    /// Any other code.
    Other(u8),
}

impl PcpResult {
    /// From the wire value.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Success,
            1 => Self::UnsupportedVersion,
            2 => Self::NotAuthorized,
            3 => Self::MalformedRequest,
            4 => Self::UnsupportedOpcode,
            5 => Self::UnsupportedOption,
            6 => Self::MalformedOption,
            7 => Self::NetworkFailure,
            8 => Self::NoResources,
            9 => Self::UnsupportedProtocol,
            10 => Self::UserExceededQuota,
            11 => Self::CannotProvideExternal,
            12 => Self::AddressMismatch,
            13 => Self::ExcessiveRemotePeers,
            other => Self::Other(other),
        }
    }

    /// The wire value.
    pub fn code(&self) -> u8 {
        match self {
            Self::Success => 0,
            Self::UnsupportedVersion => 1,
            Self::NotAuthorized => 2,
            Self::MalformedRequest => 3,
            Self::UnsupportedOpcode => 4,
            Self::UnsupportedOption => 5,
            Self::MalformedOption => 6,
            Self::NetworkFailure => 7,
            Self::NoResources => 8,
            Self::UnsupportedProtocol => 9,
            Self::UserExceededQuota => 10,
            Self::CannotProvideExternal => 11,
            Self::AddressMismatch => 12,
            Self::ExcessiveRemotePeers => 13,
            Self::Other(code) => *code,
        }
    }

    /// The RFC's name for it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::UnsupportedVersion => "UNSUPP_VERSION",
            Self::NotAuthorized => "NOT_AUTHORIZED",
            Self::MalformedRequest => "MALFORMED_REQUEST",
            Self::UnsupportedOpcode => "UNSUPP_OPCODE",
            Self::UnsupportedOption => "UNSUPP_OPTION",
            Self::MalformedOption => "MALFORMED_OPTION",
            Self::NetworkFailure => "NETWORK_FAILURE",
            Self::NoResources => "NO_RESOURCES",
            Self::UnsupportedProtocol => "UNSUPP_PROTOCOL",
            Self::UserExceededQuota => "USER_EX_QUOTA",
            Self::CannotProvideExternal => "CANNOT_PROVIDE_EXTERNAL",
            Self::AddressMismatch => "ADDRESS_MISMATCH",
            Self::ExcessiveRemotePeers => "EXCESSIVE_REMOTE_PEERS",
            Self::Other(_) => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for PcpResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Other(code) => write!(f, "result code {code}"),
            other => f.write_str(other.name()),
        }
    }
}

/// Why a PCP response was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PcpError {
    /// Shorter than its header or body.
    #[error("PCP message of {0} bytes is too short")]
    TooShort(usize),
    /// Longer than [`MAX_LEN`] or not a multiple of 4.
    #[error("PCP message of {0} bytes has a bad length")]
    BadLength(usize),
    /// The first byte is 0: the gateway speaks NAT-PMP only.
    #[error("the gateway answered in NAT-PMP (no PCP)")]
    NatPmpOnly,
    /// Another version byte.
    #[error("unknown PCP version {0}")]
    Version(u8),
    /// The R bit is clear: a request, not a response.
    #[error("PCP request where a response was expected")]
    NotResponse,
    /// An opcode this client never sends.
    #[error("unexpected PCP opcode {0}")]
    Opcode(u8),
}

impl PcpError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        "invalid-pcp"
    }
}

/// An IP address as PCP carries it: IPv4 as IPv4-mapped IPv6.
pub fn ip_to_wire(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The address PCP carries, IPv4-mapped turned back into IPv4.
pub fn ip_from_wire(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// A MAP request (also used by fake gateways in tests to read one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapRequest {
    /// Requested lifetime in seconds (0 deletes).
    pub lifetime: u32,
    /// Our own address, as the gateway must see it as the source.
    pub client: IpAddr,
    /// Identifies the mapping; renewals and deletion reuse it.
    pub nonce: [u8; NONCE_LEN],
    /// The port to map.
    pub internal_port: u16,
    /// Suggested external port (0: any).
    pub external_port: u16,
    /// Suggested external address (unspecified: any).
    pub external_ip: IpAddr,
}

impl MapRequest {
    /// The request's bytes (no options).
    pub fn emit(&self) -> [u8; MAP_LEN] {
        let mut b = [0u8; MAP_LEN];
        b[0] = VERSION;
        b[1] = OP_MAP;
        b[4..8].copy_from_slice(&self.lifetime.to_be_bytes());
        b[8..24].copy_from_slice(&ip_to_wire(self.client));
        b[24..36].copy_from_slice(&self.nonce);
        b[36] = PROTO_UDP;
        b[40..42].copy_from_slice(&self.internal_port.to_be_bytes());
        b[42..44].copy_from_slice(&self.external_port.to_be_bytes());
        b[44..60].copy_from_slice(&ip_to_wire(self.external_ip));
        b
    }

    /// Reads a UDP MAP request; `None` for anything else.
    pub fn parse(data: &[u8]) -> Option<Self> {
        if data.len() < MAP_LEN
            || data.len() > MAX_LEN
            || data[0] != VERSION
            || data[1] != OP_MAP
            || data[36] != PROTO_UDP
        {
            return None;
        }
        Some(Self {
            lifetime: u32::from_be_bytes(data[4..8].try_into().ok()?),
            client: ip_from_wire(data[8..24].try_into().ok()?),
            nonce: data[24..36].try_into().ok()?,
            internal_port: u16::from_be_bytes([data[40], data[41]]),
            external_port: u16::from_be_bytes([data[42], data[43]]),
            external_ip: ip_from_wire(data[44..60].try_into().ok()?),
        })
    }
}

/// An ANNOUNCE request (asks the gateway for its epoch).
pub fn announce_request(client: IpAddr) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[0] = VERSION;
    b[1] = OP_ANNOUNCE;
    b[8..24].copy_from_slice(&ip_to_wire(client));
    b
}

/// The MAP part of a successful MAP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapResponse {
    /// Echo of the request's nonce.
    pub nonce: [u8; NONCE_LEN],
    /// IANA protocol number.
    pub protocol: u8,
    /// The internal port the mapping is for.
    pub internal_port: u16,
    /// The external port assigned.
    pub external_port: u16,
    /// The external address assigned.
    pub external_ip: IpAddr,
}

/// A parsed PCP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcpResponse {
    /// Opcode without the R bit.
    pub opcode: u8,
    /// Result code.
    pub result: PcpResult,
    /// Granted lifetime (on success) or how long an error lasts.
    pub lifetime: u32,
    /// Seconds since the gateway's mapping state was (re)initialized.
    pub epoch: u32,
    /// The MAP body, for MAP responses that carry one.
    pub map: Option<MapResponse>,
}

impl PcpResponse {
    /// Parses one datagram from the gateway.
    pub fn parse(data: &[u8]) -> Result<Self, PcpError> {
        let &version = data.first().ok_or(PcpError::TooShort(0))?;
        if version == 0 {
            return Err(PcpError::NatPmpOnly);
        }
        if version != VERSION {
            return Err(PcpError::Version(version));
        }
        if data.len() < HEADER_LEN {
            return Err(PcpError::TooShort(data.len()));
        }
        if data.len() > MAX_LEN || !data.len().is_multiple_of(4) {
            return Err(PcpError::BadLength(data.len()));
        }
        if data[1] & RESPONSE_BIT == 0 {
            return Err(PcpError::NotResponse);
        }
        let opcode = data[1] & !RESPONSE_BIT;
        if opcode != OP_MAP && opcode != OP_ANNOUNCE {
            return Err(PcpError::Opcode(opcode));
        }
        let result = PcpResult::from_code(data[3]);
        let lifetime = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let epoch = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let map = if opcode == OP_MAP {
            // Error responses may be truncated to the header (RFC 6887
            // §7.2 allows copying only part of the request).
            match data.get(HEADER_LEN..MAP_LEN) {
                Some(b) => Some(MapResponse {
                    nonce: b[0..12].try_into().map_err(|_| PcpError::TooShort(0))?,
                    protocol: b[12],
                    internal_port: u16::from_be_bytes([b[16], b[17]]),
                    external_port: u16::from_be_bytes([b[18], b[19]]),
                    external_ip: ip_from_wire(
                        b[20..36].try_into().map_err(|_| PcpError::TooShort(0))?,
                    ),
                }),
                None if result == PcpResult::Success => {
                    return Err(PcpError::TooShort(data.len()));
                }
                None => None,
            }
        } else {
            None
        };
        Ok(Self {
            opcode,
            result,
            lifetime,
            epoch,
            map,
        })
    }

    /// Emits a response (for fake gateways in tests).
    pub fn emit(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[0] = VERSION;
        b[1] = RESPONSE_BIT | self.opcode;
        b[3] = self.result.code();
        b[4..8].copy_from_slice(&self.lifetime.to_be_bytes());
        b[8..12].copy_from_slice(&self.epoch.to_be_bytes());
        if let Some(m) = &self.map {
            b.extend_from_slice(&m.nonce);
            b.extend_from_slice(&[m.protocol, 0, 0, 0]);
            b.extend_from_slice(&m.internal_port.to_be_bytes());
            b.extend_from_slice(&m.external_port.to_be_bytes());
            b.extend_from_slice(&ip_to_wire(m.external_ip));
        }
        b
    }
}

/// The unspecified IPv4 address, which a request suggests for "any
/// external address".
pub fn any_v4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> MapRequest {
        MapRequest {
            lifetime: 7200,
            client: "10.1.0.2".parse().unwrap(),
            nonce: [7; NONCE_LEN],
            internal_port: 40000,
            external_port: 40000,
            external_ip: any_v4(),
        }
    }

    #[test]
    fn map_request_layout_and_roundtrip() {
        let b = request().emit();
        assert_eq!(b.len(), 60);
        assert_eq!(&b[0..4], &[2, 1, 0, 0]);
        assert_eq!(&b[4..8], &7200u32.to_be_bytes());
        // IPv4-mapped client address.
        assert_eq!(
            &b[8..24],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 0, 2]
        );
        assert_eq!(b[36], PROTO_UDP);
        assert_eq!(MapRequest::parse(&b), Some(request()));
        assert_eq!(MapRequest::parse(&b[..59]), None);
        let a = announce_request("10.1.0.2".parse().unwrap());
        assert_eq!(&a[0..2], &[2, 0]);
    }

    #[test]
    fn map_response_roundtrip() {
        let r = PcpResponse {
            opcode: OP_MAP,
            result: PcpResult::Success,
            lifetime: 3600,
            epoch: 99,
            map: Some(MapResponse {
                nonce: [7; NONCE_LEN],
                protocol: PROTO_UDP,
                internal_port: 40000,
                external_port: 41000,
                external_ip: "198.51.101.10".parse().unwrap(),
            }),
        };
        let b = r.emit();
        assert_eq!(b.len(), MAP_LEN);
        assert_eq!(b[1], 0x81);
        assert_eq!(PcpResponse::parse(&b), Ok(r));
        // Options after the body are tolerated.
        let mut with_option = b.clone();
        with_option.extend_from_slice(&[0x80, 0, 0, 0]);
        assert_eq!(PcpResponse::parse(&with_option), Ok(r));
    }

    #[test]
    fn errors_and_garbage() {
        assert_eq!(PcpResponse::parse(&[]), Err(PcpError::TooShort(0)));
        assert_eq!(
            PcpResponse::parse(&[0, 129, 0, 1, 0, 0, 0, 0]),
            Err(PcpError::NatPmpOnly)
        );
        assert_eq!(PcpResponse::parse(&[3; 24]), Err(PcpError::Version(3)));
        assert_eq!(PcpResponse::parse(&[2; 10]), Err(PcpError::TooShort(10)));
        assert_eq!(PcpResponse::parse(&[2; 26]), Err(PcpError::BadLength(26)));
        assert_eq!(
            PcpResponse::parse(&[2; 1104]),
            Err(PcpError::BadLength(1104))
        );
        let mut b = [0u8; 24];
        b[0] = 2;
        b[1] = 1;
        assert_eq!(PcpResponse::parse(&b), Err(PcpError::NotResponse));
        b[1] = 0x82;
        assert_eq!(PcpResponse::parse(&b), Err(PcpError::Opcode(2)));
        // An error answer truncated to the header is fine.
        b[1] = 0x81;
        b[3] = 2;
        let r = PcpResponse::parse(&b).unwrap();
        assert_eq!(r.result, PcpResult::NotAuthorized);
        assert_eq!(r.map, None);
        // A success without the body is not.
        b[3] = 0;
        assert_eq!(PcpResponse::parse(&b), Err(PcpError::TooShort(24)));
        assert_eq!(PcpResult::from_code(200).code(), 200);
        assert_eq!(PcpResult::AddressMismatch.to_string(), "ADDRESS_MISMATCH");
    }
}
