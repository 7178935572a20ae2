//! NAT-PMP (RFC 6886) messages, as a port-mapping client sends and reads
//! them. Sans-IO: requests are emitted into fixed-size arrays, responses
//! parsed from untrusted bytes with typed errors (never a panic).
//!
//! Only what a client needs for UDP mappings:
//!
//! ```text
//! external address request  [0, 0]                                    2 bytes
//! external address response [0, 128, result u16, epoch u32, ip4]      12 bytes
//! UDP mapping request       [0, 1, 0, 0, internal u16, external u16,
//!                            lifetime u32]                            12 bytes
//! UDP mapping response      [0, 129, result u16, epoch u32,
//!                            internal u16, external u16, lifetime u32] 16 bytes
//! ```
//!
//! A mapping is deleted by requesting it with lifetime 0 (and suggested
//! external port 0). All integers are big-endian. A gateway that does not
//! speak the version answers with result code 1 in a short response of the
//! same header shape; [`NatPmpResponse::parse`] reports that as a response
//! with [`NatPmpResult::UnsupportedVersion`] whenever the first 8 bytes are
//! present.

use std::net::Ipv4Addr;

use thiserror::Error;

/// The UDP port a NAT-PMP (and PCP) server listens on.
pub const SERVER_PORT: u16 = 5351;
/// The NAT-PMP version byte.
pub const VERSION: u8 = 0;
/// Opcode of the external address request.
pub const OP_EXTERNAL_ADDRESS: u8 = 0;
/// Opcode of a UDP mapping request.
pub const OP_MAP_UDP: u8 = 1;
/// Added to the opcode in every response.
pub const RESPONSE_BIT: u8 = 128;
/// Longest datagram this codec looks at; anything longer is rejected.
pub const MAX_RESPONSE_LEN: usize = 1100;

/// NAT-PMP result codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatPmpResult {
    /// 0: success.
    Success,
    /// 1: unsupported version.
    UnsupportedVersion,
    /// 2: not authorized / refused.
    NotAuthorized,
    /// 3: network failure (e.g. the gateway has no external address).
    NetworkFailure,
    /// 4: out of resources.
    OutOfResources,
    /// 5: unsupported opcode.
    UnsupportedOpcode,
    /// Any other code.
    Other(u16),
}

impl NatPmpResult {
    /// From the wire value.
    pub fn from_code(code: u16) -> Self {
        match code {
            0 => Self::Success,
            1 => Self::UnsupportedVersion,
            2 => Self::NotAuthorized,
            3 => Self::NetworkFailure,
            4 => Self::OutOfResources,
            5 => Self::UnsupportedOpcode,
            other => Self::Other(other),
        }
    }

    /// The wire value.
    pub fn code(&self) -> u16 {
        match self {
            Self::Success => 0,
            Self::UnsupportedVersion => 1,
            Self::NotAuthorized => 2,
            Self::NetworkFailure => 3,
            Self::OutOfResources => 4,
            Self::UnsupportedOpcode => 5,
            Self::Other(code) => *code,
        }
    }
}

impl std::fmt::Display for NatPmpResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Success => f.write_str("success"),
            Self::UnsupportedVersion => f.write_str("unsupported version"),
            Self::NotAuthorized => f.write_str("not authorized"),
            Self::NetworkFailure => f.write_str("network failure"),
            Self::OutOfResources => f.write_str("out of resources"),
            Self::UnsupportedOpcode => f.write_str("unsupported opcode"),
            Self::Other(code) => write!(f, "result code {code}"),
        }
    }
}

/// Why a NAT-PMP response was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NatPmpError {
    /// Shorter than the response it claims to be.
    #[error("NAT-PMP response of {0} bytes is too short")]
    TooShort(usize),
    /// Longer than any response.
    #[error("NAT-PMP response of {0} bytes is too long")]
    TooLong(usize),
    /// The version byte is not 0.
    #[error("not a NAT-PMP response (version {0})")]
    Version(u8),
    /// The opcode is not a response opcode this client asked for.
    #[error("unexpected NAT-PMP opcode {0}")]
    Opcode(u8),
}

impl NatPmpError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        "invalid-nat-pmp"
    }
}

/// The external address request.
pub fn external_address_request() -> [u8; 2] {
    [VERSION, OP_EXTERNAL_ADDRESS]
}

/// A UDP mapping request: map `internal` port, preferably to `external`
/// (0: any), for `lifetime` seconds (0 deletes the mapping).
pub fn map_udp_request(internal: u16, external: u16, lifetime: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0] = VERSION;
    b[1] = OP_MAP_UDP;
    b[4..6].copy_from_slice(&internal.to_be_bytes());
    b[6..8].copy_from_slice(&external.to_be_bytes());
    b[8..12].copy_from_slice(&lifetime.to_be_bytes());
    b
}

/// What a response says, after the common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatPmpBody {
    /// Answer to the external address request.
    ExternalAddress {
        /// The gateway's external IPv4 address.
        ip: Ipv4Addr,
    },
    /// Answer to a UDP mapping request.
    MapUdp {
        /// The internal port the mapping is for.
        internal: u16,
        /// The external port assigned.
        external: u16,
        /// Seconds the mapping lasts.
        lifetime: u32,
    },
    /// A failure response (result code not success); bodies of failures
    /// are not looked at.
    Failed {
        /// The opcode it answers (without the response bit).
        opcode: u8,
    },
}

/// A parsed NAT-PMP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatPmpResponse {
    /// The result code.
    pub result: NatPmpResult,
    /// Seconds since the gateway's port-mapping table was (re)initialized.
    pub epoch: u32,
    /// The opcode-specific part.
    pub body: NatPmpBody,
}

impl NatPmpResponse {
    /// Parses one datagram from the gateway.
    pub fn parse(data: &[u8]) -> Result<Self, NatPmpError> {
        if data.len() > MAX_RESPONSE_LEN {
            return Err(NatPmpError::TooLong(data.len()));
        }
        let (&version, rest) = data.split_first().ok_or(NatPmpError::TooShort(0))?;
        if version != VERSION {
            return Err(NatPmpError::Version(version));
        }
        let &op = rest.first().ok_or(NatPmpError::TooShort(data.len()))?;
        if op != RESPONSE_BIT + OP_EXTERNAL_ADDRESS && op != RESPONSE_BIT + OP_MAP_UDP {
            return Err(NatPmpError::Opcode(op));
        }
        if data.len() < 8 {
            return Err(NatPmpError::TooShort(data.len()));
        }
        let result = NatPmpResult::from_code(u16::from_be_bytes([data[2], data[3]]));
        let epoch = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let opcode = op - RESPONSE_BIT;
        if result != NatPmpResult::Success {
            return Ok(Self {
                result,
                epoch,
                body: NatPmpBody::Failed { opcode },
            });
        }
        let body = if opcode == OP_EXTERNAL_ADDRESS {
            let ip: [u8; 4] = data
                .get(8..12)
                .and_then(|s| s.try_into().ok())
                .ok_or(NatPmpError::TooShort(data.len()))?;
            NatPmpBody::ExternalAddress { ip: ip.into() }
        } else {
            let b = data.get(8..16).ok_or(NatPmpError::TooShort(data.len()))?;
            NatPmpBody::MapUdp {
                internal: u16::from_be_bytes([b[0], b[1]]),
                external: u16::from_be_bytes([b[2], b[3]]),
                lifetime: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            }
        };
        Ok(Self {
            result,
            epoch,
            body,
        })
    }

    /// Emits a response (for fake gateways in tests; a client never sends
    /// one).
    pub fn emit(&self) -> Vec<u8> {
        let opcode = match self.body {
            NatPmpBody::ExternalAddress { .. } => OP_EXTERNAL_ADDRESS,
            NatPmpBody::MapUdp { .. } => OP_MAP_UDP,
            NatPmpBody::Failed { opcode } => opcode,
        };
        let mut b = vec![VERSION, RESPONSE_BIT.wrapping_add(opcode)];
        b.extend_from_slice(&self.result.code().to_be_bytes());
        b.extend_from_slice(&self.epoch.to_be_bytes());
        match self.body {
            NatPmpBody::ExternalAddress { ip } => b.extend_from_slice(&ip.octets()),
            NatPmpBody::MapUdp {
                internal,
                external,
                lifetime,
            } => {
                b.extend_from_slice(&internal.to_be_bytes());
                b.extend_from_slice(&external.to_be_bytes());
                b.extend_from_slice(&lifetime.to_be_bytes());
            }
            NatPmpBody::Failed { .. } => {}
        }
        b
    }
}

/// A request as a gateway sees it (for fake gateways in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatPmpRequest {
    /// `[0, 0]`.
    ExternalAddress,
    /// A UDP mapping request.
    MapUdp {
        /// Internal port.
        internal: u16,
        /// Suggested external port.
        external: u16,
        /// Requested lifetime in seconds (0 deletes).
        lifetime: u32,
    },
}

impl NatPmpRequest {
    /// Parses a request; `None` for anything else.
    pub fn parse(data: &[u8]) -> Option<Self> {
        match data {
            [VERSION, OP_EXTERNAL_ADDRESS] => Some(Self::ExternalAddress),
            [VERSION, OP_MAP_UDP, _, _, i0, i1, e0, e1, l0, l1, l2, l3] => Some(Self::MapUdp {
                internal: u16::from_be_bytes([*i0, *i1]),
                external: u16::from_be_bytes([*e0, *e1]),
                lifetime: u32::from_be_bytes([*l0, *l1, *l2, *l3]),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_rfc_layout() {
        assert_eq!(external_address_request(), [0, 0]);
        let r = map_udp_request(40000, 40001, 7200);
        assert_eq!(r, [0, 1, 0, 0, 0x9c, 0x40, 0x9c, 0x41, 0, 0, 0x1c, 0x20]);
        assert_eq!(
            NatPmpRequest::parse(&r),
            Some(NatPmpRequest::MapUdp {
                internal: 40000,
                external: 40001,
                lifetime: 7200
            })
        );
        assert_eq!(
            NatPmpRequest::parse(&external_address_request()),
            Some(NatPmpRequest::ExternalAddress)
        );
        assert_eq!(NatPmpRequest::parse(&[0, 1, 0]), None);
    }

    #[test]
    fn parses_what_a_gateway_sends() {
        // Captured shape: external address 198.51.101.10, epoch 5070.
        let ext = [0, 128, 0, 0, 0, 0, 0x13, 0xce, 198, 51, 101, 10];
        let r = NatPmpResponse::parse(&ext).unwrap();
        assert_eq!(r.result, NatPmpResult::Success);
        assert_eq!(r.epoch, 5070);
        assert_eq!(
            r.body,
            NatPmpBody::ExternalAddress {
                ip: Ipv4Addr::new(198, 51, 101, 10)
            }
        );
        assert_eq!(r.emit(), ext);
        let map = [
            0, 129, 0, 0, 0, 0, 0x13, 0xce, 0x9c, 0x40, 0x9c, 0x40, 0, 0, 0, 120,
        ];
        let r = NatPmpResponse::parse(&map).unwrap();
        assert_eq!(
            r.body,
            NatPmpBody::MapUdp {
                internal: 40000,
                external: 40000,
                lifetime: 120
            }
        );
        assert_eq!(r.emit(), map);
    }

    #[test]
    fn failures_and_garbage() {
        // Result 3 with a full body: reported as a failure.
        let fail = [0, 129, 0, 3, 0, 0, 0, 9, 0x9c, 0x40, 0, 0, 0, 0, 0, 0];
        let r = NatPmpResponse::parse(&fail).unwrap();
        assert_eq!(r.result, NatPmpResult::NetworkFailure);
        assert_eq!(r.body, NatPmpBody::Failed { opcode: 1 });
        // A short "unsupported version" answer is still understood.
        let r = NatPmpResponse::parse(&[0, 129, 0, 1, 0, 0, 0, 0]).unwrap();
        assert_eq!(r.result, NatPmpResult::UnsupportedVersion);
        assert_eq!(NatPmpResponse::parse(&[]), Err(NatPmpError::TooShort(0)));
        assert_eq!(NatPmpResponse::parse(&[0]), Err(NatPmpError::TooShort(1)));
        assert_eq!(
            NatPmpResponse::parse(&[2, 129]),
            Err(NatPmpError::Version(2))
        );
        assert_eq!(NatPmpResponse::parse(&[0, 1]), Err(NatPmpError::Opcode(1)));
        assert_eq!(
            NatPmpResponse::parse(&[0, 128, 0, 0, 0, 0, 0, 0, 1]),
            Err(NatPmpError::TooShort(9))
        );
        assert_eq!(
            NatPmpResponse::parse(&[0, 129, 0, 0, 0, 0, 0, 0, 1, 2, 3]),
            Err(NatPmpError::TooShort(11))
        );
        assert_eq!(
            NatPmpResponse::parse(&[0; 2000]),
            Err(NatPmpError::TooLong(2000))
        );
        assert_eq!(NatPmpResult::from_code(77).code(), 77);
    }
}
