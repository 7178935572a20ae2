//! The canonical byte codec the ledger's encodings share.
//!
//! Integers are fixed-width big-endian; variable fields carry a length
//! prefix (`u16` for text and lists, `u32` for opaque bodies); booleans are
//! exactly `0` or `1`. One value has exactly one encoding, so a decoder that
//! accepts a byte string and an encoder that emits the value again agree byte
//! for byte. The [`Reader`] never panics and never allocates more than the
//! bytes it was given can fill.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::NodeId;

/// Why bytes did not decode. The owning decoder wraps it in its own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input ended inside a field.
    #[error("truncated: {0} needs more bytes")]
    Truncated(&'static str),
    /// A field holds a value its type does not allow.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// A length prefix exceeds the field's bound.
    #[error("{field} of {len} exceeds the bound of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The announced length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Bytes left over after the value.
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// Appends canonical fields to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Raw bytes, no prefix.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// `0` or `1`.
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    /// Big-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.raw(&v.to_be_bytes());
    }

    /// Big-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.raw(&v.to_be_bytes());
    }

    /// Big-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.raw(&v.to_be_bytes());
    }

    /// A list or text length; callers check bounds before encoding, so a
    /// length that does not fit is clamped (and then fails to decode).
    pub fn len16(&mut self, len: usize) {
        self.u16(u16::try_from(len).unwrap_or(u16::MAX));
    }

    /// UTF-8 text with a u16 length prefix.
    pub fn text(&mut self, s: &str) {
        self.len16(s.len());
        self.raw(s.as_bytes());
    }

    /// Opaque bytes with a u16 length prefix.
    pub fn bytes16(&mut self, b: &[u8]) {
        self.len16(b.len());
        self.raw(b);
    }

    /// Opaque bytes with a u32 length prefix.
    pub fn bytes32(&mut self, b: &[u8]) {
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.raw(b);
    }

    /// A NodeId's 32 key bytes.
    pub fn node_id(&mut self, id: &NodeId) {
        self.raw(id.as_bytes());
    }

    /// A socket address: `4` + 4 address bytes or `6` + 16, then the port.
    pub fn socket_addr(&mut self, addr: &SocketAddr) {
        match addr.ip() {
            IpAddr::V4(ip) => {
                self.u8(4);
                self.raw(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.u8(6);
                self.raw(&ip.octets());
            }
        }
        self.u16(addr.port());
    }
}

/// Reads canonical fields from a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `data` from its start.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len()
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), CodecError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Trailing(self.data.len()))
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], CodecError> {
        if self.data.len() < n {
            return Err(CodecError::Truncated(field));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    /// A fixed-size array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], CodecError> {
        let bytes = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, CodecError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Exactly `0` or `1`.
    pub fn bool(&mut self, field: &'static str) -> Result<bool, CodecError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CodecError::Invalid(field)),
        }
    }

    /// Big-endian u16.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// Big-endian u32.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// Big-endian u64.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A u16 length prefix, checked against `max`.
    pub fn len16(&mut self, field: &'static str, max: usize) -> Result<usize, CodecError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(CodecError::TooLong { field, len, max });
        }
        Ok(len)
    }

    /// UTF-8 text of at most `max` bytes.
    pub fn text(&mut self, field: &'static str, max: usize) -> Result<String, CodecError> {
        let len = self.len16(field, max)?;
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| CodecError::Invalid(field))
    }

    /// Opaque bytes (u16 prefix) of at most `max` bytes.
    pub fn bytes16(&mut self, field: &'static str, max: usize) -> Result<Vec<u8>, CodecError> {
        let len = self.len16(field, max)?;
        Ok(self.take(len, field)?.to_vec())
    }

    /// Opaque bytes (u32 prefix) of at most `max` bytes.
    pub fn bytes32(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], CodecError> {
        let len = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        if len > max {
            return Err(CodecError::TooLong { field, len, max });
        }
        self.take(len, field)
    }

    /// A NodeId (must be a valid ed25519 key).
    pub fn node_id(&mut self, field: &'static str) -> Result<NodeId, CodecError> {
        let bytes = self.array::<32>(field)?;
        NodeId::from_bytes(&bytes).map_err(|_| CodecError::Invalid(field))
    }

    /// A socket address as [`Writer::socket_addr`] writes it.
    pub fn socket_addr(&mut self, field: &'static str) -> Result<SocketAddr, CodecError> {
        let ip = match self.u8(field)? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>(field)?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>(field)?)),
            _ => return Err(CodecError::Invalid(field)),
        };
        Ok(SocketAddr::new(ip, self.u16(field)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_roundtrip() {
        let mut w = Writer::new();
        w.u8(7);
        w.bool(true);
        w.u64(u64::MAX - 1);
        w.text("héllo");
        w.socket_addr(&"[2001:db8::1]:7420".parse().unwrap());
        w.socket_addr(&"192.0.2.1:9".parse().unwrap());
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert!(r.bool("b").unwrap());
        assert_eq!(r.u64("c").unwrap(), u64::MAX - 1);
        assert_eq!(r.text("d", 16).unwrap(), "héllo");
        assert_eq!(
            r.socket_addr("e").unwrap(),
            "[2001:db8::1]:7420".parse().unwrap()
        );
        assert_eq!(r.socket_addr("f").unwrap(), "192.0.2.1:9".parse().unwrap());
        r.finish().unwrap();
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            Reader::new(&[2]).bool("flag"),
            Err(CodecError::Invalid("flag"))
        );
        assert_eq!(
            Reader::new(&[0, 1]).u32("n"),
            Err(CodecError::Truncated("n"))
        );
        assert_eq!(
            Reader::new(&[0, 9, b'a']).text("t", 8),
            Err(CodecError::TooLong {
                field: "t",
                len: 9,
                max: 8
            })
        );
        assert_eq!(
            Reader::new(&[0, 1, 0xff]).text("t", 8),
            Err(CodecError::Invalid("t"))
        );
        assert_eq!(
            Reader::new(&[5]).socket_addr("s"),
            Err(CodecError::Invalid("s"))
        );
        assert_eq!(Reader::new(&[1]).finish(), Err(CodecError::Trailing(1)));
    }
}
