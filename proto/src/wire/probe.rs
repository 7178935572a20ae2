//! Traversal probe frames: `0x10` probe and `0x11` probe reply.
//!
//! Both travel as our own UDP frames on the path socket (first byte below
//! `0x40`, so they never reach quinn). Both have the same fixed size, so a
//! reply is never larger than the probe that caused it:
//!
//! ```text
//!  0      1      2            14                 46        47          63      65          81
//! +------+------+------------+------------------+---------+-----------+-------+-----------+
//! | type | flags| tx id (12) | sender NodeId 32 | family  | ip (16)   | port  | tag (16)  |
//! +------+------+------------+------------------+---------+-----------+-------+-----------+
//! ```
//!
//! - `type`: [`PROBE`] or [`PROBE_REPLY`].
//! - `flags`: [`FLAG_NOMINATE`], [`FLAG_KEEPALIVE`], [`FLAG_BINDING`]; other
//!   bits must be zero.
//! - `tx id`: chosen by the prober, echoed by the reply.
//! - `sender`: the NodeId of the node that built this frame (raw bytes; this
//!   codec does not validate the key, the receiver only uses it to look up a
//!   shared key).
//! - address: in a probe, the address the probe was sent to; in a reply, the
//!   source address the probe was seen from (the prober's reflexive address
//!   towards the replier). `family` is 4 or 6; an IPv4 address fills the
//!   first 4 bytes of the 16 and the rest must be zero. Port big-endian.
//! - `tag`: a truncated MAC over every byte before it, keyed per peer pair.
//!   Computing and checking it is the transport's job; this codec only
//!   carries it ([`ProbeFrame::signed_bytes`]).
//!
//! Parsing is strict: one frame has one encoding, so `emit(parse(b)) == b`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

/// First byte of a probe.
pub const PROBE: u8 = 0x10;
/// First byte of a probe reply.
pub const PROBE_REPLY: u8 = 0x11;
/// Flag: the controlling side nominates this path (or, in a reply,
/// acknowledges a nomination).
pub const FLAG_NOMINATE: u8 = 0x01;
/// Flag: a keepalive on an established direct path.
pub const FLAG_KEEPALIVE: u8 = 0x02;
/// Flag: a binding-lifetime probe (the measuring node's opening probe
/// from a fresh port, its reply, and the observer's check probe; see the
/// transport's `traversal::lifetime`). Answered like any probe, but it
/// never starts or feeds a punch and its source is not a path.
pub const FLAG_BINDING: u8 = 0x04;
/// Every flag this version knows.
pub const KNOWN_FLAGS: u8 = FLAG_NOMINATE | FLAG_KEEPALIVE | FLAG_BINDING;
/// Length of a transaction id.
pub const TX_LEN: usize = 12;
/// Length of the authentication tag.
pub const TAG_LEN: usize = 16;
/// Length of every probe and reply frame.
pub const PROBE_LEN: usize = 81;

const FLAGS_AT: usize = 1;
const TX_AT: usize = 2;
const SENDER_AT: usize = TX_AT + TX_LEN;
const FAMILY_AT: usize = SENDER_AT + 32;
const IP_AT: usize = FAMILY_AT + 1;
const PORT_AT: usize = IP_AT + 16;
const TAG_AT: usize = PORT_AT + 2;

/// Probe or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// `0x10`: please answer.
    Probe,
    /// `0x11`: the answer.
    Reply,
}

impl ProbeKind {
    /// The frame type byte.
    pub fn type_byte(&self) -> u8 {
        match self {
            Self::Probe => PROBE,
            Self::Reply => PROBE_REPLY,
        }
    }
}

/// Why a probe frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProbeError {
    /// Not exactly [`PROBE_LEN`] bytes.
    #[error("probe frame is {0} bytes, expected {PROBE_LEN}")]
    Length(usize),
    /// The first byte is not a probe type.
    #[error("frame type {0:#04x} is not a probe")]
    Type(u8),
    /// Unknown flag bits are set.
    #[error("unknown probe flags {0:#04x}")]
    Flags(u8),
    /// The address family is neither 4 nor 6.
    #[error("unknown address family {0}")]
    Family(u8),
    /// Padding after an IPv4 address is not zero.
    #[error("non-canonical address encoding")]
    Padding,
    /// The output buffer is too small.
    #[error("buffer of {0} bytes is too small for a probe")]
    Buffer(usize),
}

impl ProbeError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        "invalid-probe"
    }
}

/// A decoded probe or probe reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeFrame {
    /// Probe or reply.
    pub kind: ProbeKind,
    /// Flag bits (a subset of [`KNOWN_FLAGS`]).
    pub flags: u8,
    /// Transaction id.
    pub tx: [u8; TX_LEN],
    /// The builder's NodeId, raw.
    pub sender: [u8; 32],
    /// Probe: where it was sent. Reply: where the probe was seen from.
    pub addr: SocketAddr,
    /// Authentication tag over [`ProbeFrame::signed_bytes`].
    pub tag: [u8; TAG_LEN],
}

impl ProbeFrame {
    /// Whether `data` looks like a probe frame by its first byte.
    pub fn is_probe_frame(data: &[u8]) -> bool {
        matches!(data.first(), Some(&PROBE) | Some(&PROBE_REPLY))
    }

    /// Parses a whole datagram.
    pub fn parse(data: &[u8]) -> Result<Self, ProbeError> {
        if data.len() != PROBE_LEN {
            return Err(ProbeError::Length(data.len()));
        }
        let kind = match data[0] {
            PROBE => ProbeKind::Probe,
            PROBE_REPLY => ProbeKind::Reply,
            other => return Err(ProbeError::Type(other)),
        };
        let flags = data[FLAGS_AT];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(ProbeError::Flags(flags));
        }
        let mut tx = [0u8; TX_LEN];
        tx.copy_from_slice(&data[TX_AT..SENDER_AT]);
        let mut sender = [0u8; 32];
        sender.copy_from_slice(&data[SENDER_AT..FAMILY_AT]);
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&data[IP_AT..PORT_AT]);
        let port = u16::from_be_bytes([data[PORT_AT], data[PORT_AT + 1]]);
        let ip = match data[FAMILY_AT] {
            4 => {
                if ip[4..].iter().any(|b| *b != 0) {
                    return Err(ProbeError::Padding);
                }
                IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]))
            }
            6 => IpAddr::V6(Ipv6Addr::from(ip)),
            other => return Err(ProbeError::Family(other)),
        };
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&data[TAG_AT..]);
        Ok(Self {
            kind,
            flags,
            tx,
            sender,
            addr: SocketAddr::new(ip, port),
            tag,
        })
    }

    /// Writes the frame into `buf`; returns the length written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ProbeError> {
        if buf.len() < PROBE_LEN {
            return Err(ProbeError::Buffer(buf.len()));
        }
        if self.flags & !KNOWN_FLAGS != 0 {
            return Err(ProbeError::Flags(self.flags));
        }
        let buf = &mut buf[..PROBE_LEN];
        buf[0] = self.kind.type_byte();
        buf[FLAGS_AT] = self.flags;
        buf[TX_AT..SENDER_AT].copy_from_slice(&self.tx);
        buf[SENDER_AT..FAMILY_AT].copy_from_slice(&self.sender);
        let mut ip = [0u8; 16];
        match self.addr.ip() {
            IpAddr::V4(v4) => {
                buf[FAMILY_AT] = 4;
                ip[..4].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                buf[FAMILY_AT] = 6;
                ip = v6.octets();
            }
        }
        buf[IP_AT..PORT_AT].copy_from_slice(&ip);
        buf[PORT_AT..TAG_AT].copy_from_slice(&self.addr.port().to_be_bytes());
        buf[TAG_AT..].copy_from_slice(&self.tag);
        Ok(PROBE_LEN)
    }

    /// The frame as bytes.
    pub fn to_bytes(&self) -> Result<[u8; PROBE_LEN], ProbeError> {
        let mut out = [0u8; PROBE_LEN];
        self.emit(&mut out)?;
        Ok(out)
    }

    /// The bytes the tag covers: everything before it.
    pub fn signed_bytes(encoded: &[u8; PROBE_LEN]) -> &[u8] {
        &encoded[..TAG_AT]
    }

    /// Whether a flag is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(addr: SocketAddr) -> ProbeFrame {
        ProbeFrame {
            kind: ProbeKind::Probe,
            flags: FLAG_NOMINATE,
            tx: [7; TX_LEN],
            sender: [9; 32],
            addr,
            tag: [3; TAG_LEN],
        }
    }

    #[test]
    fn roundtrip_v4_and_v6() {
        for addr in ["203.0.113.5:4242", "[2001:db8::1]:9"] {
            let frame = sample(addr.parse().unwrap());
            let bytes = frame.to_bytes().unwrap();
            assert_eq!(bytes.len(), PROBE_LEN);
            assert_eq!(ProbeFrame::parse(&bytes), Ok(frame));
            let reply = ProbeFrame {
                kind: ProbeKind::Reply,
                ..frame
            };
            let rbytes = reply.to_bytes().unwrap();
            assert_eq!(rbytes[0], PROBE_REPLY);
            assert_eq!(ProbeFrame::parse(&rbytes), Ok(reply));
        }
    }

    #[test]
    fn rejects_malformed() {
        let good = sample("198.51.100.1:1".parse().unwrap())
            .to_bytes()
            .unwrap();
        assert_eq!(ProbeFrame::parse(&good[..80]), Err(ProbeError::Length(80)));
        let mut bad = good;
        bad[0] = 0x12;
        assert_eq!(ProbeFrame::parse(&bad), Err(ProbeError::Type(0x12)));
        let mut bad = good;
        bad[FLAGS_AT] = 0x80;
        assert_eq!(ProbeFrame::parse(&bad), Err(ProbeError::Flags(0x80)));
        let mut bad = good;
        bad[FLAGS_AT] = 0x08;
        assert_eq!(ProbeFrame::parse(&bad), Err(ProbeError::Flags(0x08)));
        let mut binding = good;
        binding[FLAGS_AT] = FLAG_BINDING;
        assert_eq!(ProbeFrame::parse(&binding).unwrap().flags, FLAG_BINDING);
        let mut bad = good;
        bad[FAMILY_AT] = 5;
        assert_eq!(ProbeFrame::parse(&bad), Err(ProbeError::Family(5)));
        let mut bad = good;
        bad[IP_AT + 10] = 1;
        assert_eq!(ProbeFrame::parse(&bad), Err(ProbeError::Padding));
        let mut small = [0u8; 10];
        assert_eq!(
            sample("198.51.100.1:1".parse().unwrap()).emit(&mut small),
            Err(ProbeError::Buffer(10))
        );
    }

    #[test]
    fn signed_bytes_exclude_tag() {
        let bytes = sample("198.51.100.1:1".parse().unwrap())
            .to_bytes()
            .unwrap();
        assert_eq!(ProbeFrame::signed_bytes(&bytes).len(), PROBE_LEN - TAG_LEN);
    }
}
