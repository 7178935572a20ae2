//! Join tickets: one copy-pasteable string holding a node's NodeId, its
//! reachable addresses and the mesh network key. A ticket is a secret.
//!
//! Text form: `rnt1` + lowercase base32 of `version || postcard(body) || crc32`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{NetworkKey, NodeId, ParseTicketError};

const PREFIX: &str = "rnt1";
const VERSION: u8 = 1;
/// Bounds the decoded size so a hostile string cannot make us allocate much.
const MAX_TEXT_LEN: usize = 4096;

/// What a new member needs to join a mesh.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The inviting node.
    pub node_id: NodeId,
    /// Addresses where the inviting node can be reached.
    pub addrs: Vec<SocketAddr>,
    /// The mesh network key.
    pub network_key: NetworkKey,
}

#[derive(Serialize, Deserialize)]
struct Body {
    node_id: [u8; 32],
    addrs: Vec<SocketAddr>,
    network_key: [u8; 32],
}

impl Ticket {
    /// Parses a ticket's text form strictly.
    pub fn decode(text: &str) -> Result<Self, ParseTicketError> {
        let text = text.trim();
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or(ParseTicketError::Prefix(PREFIX))?;
        if rest.len() > MAX_TEXT_LEN {
            return Err(ParseTicketError::Body);
        }
        let bytes = crate::base32_decode(rest)?;
        if bytes.len() < 1 + 4 {
            return Err(ParseTicketError::Body);
        }
        let (payload, sum) = bytes.split_at(bytes.len() - 4);
        if crc32(payload).to_be_bytes() != sum {
            return Err(ParseTicketError::Checksum);
        }
        let (&version, body) = payload.split_first().ok_or(ParseTicketError::Body)?;
        if version != VERSION {
            return Err(ParseTicketError::Version(version));
        }
        let (body, trailing): (Body, &[u8]) =
            postcard::take_from_bytes(body).map_err(|_| ParseTicketError::Body)?;
        if !trailing.is_empty() {
            return Err(ParseTicketError::Trailing(trailing.len()));
        }
        let node_id = NodeId::from_bytes(&body.node_id).map_err(|_| ParseTicketError::NodeId)?;
        Ok(Self {
            node_id,
            addrs: body.addrs,
            network_key: NetworkKey::from_bytes(body.network_key),
        })
    }

    /// The ticket's text form.
    pub fn encode(&self) -> String {
        let body = Body {
            node_id: *self.node_id.as_bytes(),
            addrs: self.addrs.clone(),
            network_key: *self.network_key.as_bytes(),
        };
        let mut bytes = vec![VERSION];
        // Serializing plain data into a Vec cannot fail.
        if let Ok(encoded) = postcard::to_allocvec(&body) {
            bytes.extend_from_slice(&encoded);
        }
        let sum = crc32(&bytes);
        bytes.extend_from_slice(&sum.to_be_bytes());
        format!("{PREFIX}{}", crate::base32_encode(&bytes))
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("node_id", &self.node_id)
            .field("addrs", &self.addrs)
            .field("network_key", &self.network_key)
            .finish()
    }
}

impl std::str::FromStr for Ticket {
    type Err = ParseTicketError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::decode(s)
    }
}

/// CRC-32 (IEEE), bitwise: tickets are small and parsed rarely.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;
    use proptest::prelude::*;

    fn sample() -> Ticket {
        Ticket {
            node_id: SecretKey::from_bytes(&[3; 32]).node_id(),
            addrs: vec![
                "192.0.2.1:4433".parse().unwrap(),
                "[2001:db8::1]:4433".parse().unwrap(),
            ],
            network_key: NetworkKey::from_bytes([9; 32]),
        }
    }

    #[test]
    fn roundtrip() {
        let t = sample();
        let text = t.encode();
        assert!(text.starts_with("rnt1"));
        assert_eq!(Ticket::decode(&text), Ok(t.clone()));
        assert_eq!(Ticket::decode(&format!("  {text}\n")), Ok(t));
    }

    #[test]
    fn crc_vector() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let text = sample().encode();
        for cut in 0..text.len() {
            assert!(Ticket::decode(&text[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn altered_ticket_is_rejected() {
        let text = sample().encode();
        let mut chars: Vec<char> = text.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let altered: String = chars.into_iter().collect();
        assert!(Ticket::decode(&altered).is_err());
    }

    #[test]
    fn debug_hides_network_key() {
        let dbg = format!("{:?}", sample());
        assert!(dbg.contains("<redacted>"));
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in "rnt1[a-z2-7]{0,200}") {
            let _ = Ticket::decode(&s);
        }
    }
}
