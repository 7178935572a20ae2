//! The protocol id and its wire encoding: the header in front of every
//! application stream and datagram.
//!
//! The header is the protocol id as a 16-bit unsigned integer in network
//! byte order (big-endian), [`HEADER_LEN`] bytes. A stream opener writes it
//! before anything else; a datagram's payload starts with it. Id 0 is
//! reserved and never registered.

use std::fmt;

use bytes::Bytes;
use thiserror::Error;

/// Length of the header in front of every stream and datagram.
pub const HEADER_LEN: usize = 2;

/// Names the protocol a stream or datagram belongs to.
///
/// Assigned ids (docs/DESIGN.md, "Protocol mux", keeps the table): 1 ping;
/// 2 ledger, 3 channels, 4 rpc are reserved for the layers that come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolId(u16);

impl ProtocolId {
    /// The reserved id 0; [`crate::mux::Mux::register`] refuses it.
    pub const RESERVED: ProtocolId = ProtocolId(0);

    /// The id `value`.
    pub const fn new(value: u16) -> Self {
        Self(value)
    }

    /// The numeric value.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The header bytes for this id.
    pub const fn to_header(self) -> [u8; HEADER_LEN] {
        self.0.to_be_bytes()
    }

    /// Reads the id from a complete header.
    pub const fn from_header(header: [u8; HEADER_LEN]) -> Self {
        Self(u16::from_be_bytes(header))
    }
}

impl fmt::Display for ProtocolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x}", self.0)
    }
}

/// A stream or datagram did not start with a whole header.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderError {
    /// Fewer than [`HEADER_LEN`] bytes before the end.
    #[error("bad-header: {0} bytes before the end, a {HEADER_LEN}-byte protocol id needed")]
    Truncated(usize),
    /// The stream failed before its header arrived.
    #[error("bad-header: stream failed before its protocol id: {0}")]
    Stream(String),
}

impl HeaderError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        "bad-header"
    }
}

/// Splits an application datagram into its protocol id and payload.
pub fn split_datagram(data: &Bytes) -> Result<(ProtocolId, Bytes), HeaderError> {
    match data.get(..HEADER_LEN) {
        Some(&[hi, lo]) => Ok((ProtocolId::from_header([hi, lo]), data.slice(HEADER_LEN..))),
        _ => Err(HeaderError::Truncated(data.len())),
    }
}

/// Prefixes `payload` with the header of `id`.
pub fn frame_datagram(id: ProtocolId, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&id.to_header());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Reads the header at the start of a stream. Not bounded in time; the
/// caller puts a timeout around it.
pub async fn read_header<R>(recv: &mut R) -> Result<ProtocolId, HeaderError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    read_header_rest(recv, PartialHeader::default()).await
}

/// The part of a stream's header read so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PartialHeader {
    bytes: [u8; HEADER_LEN],
    filled: usize,
}

/// What [`try_header_now`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderNow {
    /// The whole header.
    Read(Result<ProtocolId, HeaderError>),
    /// Not all of it has arrived: read the rest with [`read_header_rest`].
    Wait(PartialHeader),
}

/// Reads what has already arrived of a stream's header, without waiting
/// (the stream is polled once, with a waker that does nothing; the next
/// real poll registers its own).
pub(crate) fn try_header_now<R>(recv: &mut R) -> HeaderNow
where
    R: tokio::io::AsyncRead + Unpin,
{
    use std::task::{Context, Poll, Waker};
    let mut partial = PartialHeader::default();
    let mut cx = Context::from_waker(Waker::noop());
    while partial.filled < HEADER_LEN {
        let mut buf = tokio::io::ReadBuf::new(&mut partial.bytes[partial.filled..]);
        match std::pin::Pin::new(&mut *recv).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                if n == 0 {
                    return HeaderNow::Read(Err(HeaderError::Truncated(partial.filled)));
                }
                partial.filled += n;
            }
            Poll::Ready(Err(e)) => return HeaderNow::Read(Err(HeaderError::Stream(e.to_string()))),
            Poll::Pending => return HeaderNow::Wait(partial),
        }
    }
    HeaderNow::Read(Ok(ProtocolId::from_header(partial.bytes)))
}

/// Reads the rest of a header of which `partial` was read already.
pub(crate) async fn read_header_rest<R>(
    recv: &mut R,
    partial: PartialHeader,
) -> Result<ProtocolId, HeaderError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let PartialHeader {
        bytes: mut header,
        mut filled,
    } = partial;
    while filled < HEADER_LEN {
        let n = recv
            .read(&mut header[filled..])
            .await
            .map_err(|e| HeaderError::Stream(e.to_string()))?;
        if n == 0 {
            return Err(HeaderError::Truncated(filled));
        }
        filled += n;
    }
    Ok(ProtocolId::from_header(header))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn header_is_big_endian_u16() {
        assert_eq!(ProtocolId::new(1).to_header(), [0x00, 0x01]);
        assert_eq!(ProtocolId::new(0x1234).to_header(), [0x12, 0x34]);
        assert_eq!(ProtocolId::from_header([0xab, 0xcd]).get(), 0xabcd);
        assert_eq!(ProtocolId::new(1).to_string(), "0x0001");
    }

    #[test]
    fn datagram_round_trip() {
        let framed = frame_datagram(ProtocolId::new(7), b"hello");
        assert_eq!(&framed[..], b"\x00\x07hello");
        let (id, payload) = split_datagram(&framed).unwrap();
        assert_eq!(id, ProtocolId::new(7));
        assert_eq!(&payload[..], b"hello");
        let (id, payload) = split_datagram(&Bytes::from_static(b"\x00\x09")).unwrap();
        assert_eq!(id.get(), 9);
        assert!(payload.is_empty());
    }

    #[test]
    fn short_datagrams_are_refused() {
        for data in [&b""[..], &b"\x01"[..]] {
            let err = split_datagram(&Bytes::copy_from_slice(data)).unwrap_err();
            assert_eq!(err, HeaderError::Truncated(data.len()));
            assert_eq!(err.kind(), "bad-header");
        }
    }

    #[tokio::test]
    async fn header_split_across_writes() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move { read_header(&mut b).await });
        a.write_all(&[0x01]).await.unwrap();
        a.flush().await.unwrap();
        a.write_all(&[0x02, 0xff]).await.unwrap();
        assert_eq!(reader.await.unwrap().unwrap(), ProtocolId::new(0x0102));
    }

    #[tokio::test]
    async fn stream_ending_inside_the_header() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0x01]).await.unwrap();
        drop(a);
        assert_eq!(
            read_header(&mut b).await.unwrap_err(),
            HeaderError::Truncated(1)
        );
    }

    #[tokio::test]
    async fn a_header_already_there_is_read_without_waiting() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0x00, 0x04, b'x']).await.unwrap();
        assert_eq!(
            try_header_now(&mut b),
            HeaderNow::Read(Ok(ProtocolId::new(4)))
        );
        let mut rest = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut b, &mut rest)
            .await
            .unwrap();
        assert_eq!(&rest, b"x", "only the id was taken");
    }

    #[tokio::test]
    async fn half_a_header_is_kept_and_the_rest_read_later() {
        let (mut a, mut b) = tokio::io::duplex(64);
        assert_eq!(
            try_header_now(&mut b),
            HeaderNow::Wait(PartialHeader::default())
        );
        a.write_all(&[0x12]).await.unwrap();
        let HeaderNow::Wait(partial) = try_header_now(&mut b) else {
            panic!("one byte is not a header");
        };
        a.write_all(&[0x34]).await.unwrap();
        assert_eq!(
            read_header_rest(&mut b, partial).await.unwrap(),
            ProtocolId::new(0x1234)
        );
    }

    #[tokio::test]
    async fn a_stream_that_ended_early_is_refused_without_waiting() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0x01]).await.unwrap();
        drop(a);
        assert_eq!(
            try_header_now(&mut b),
            HeaderNow::Read(Err(HeaderError::Truncated(1)))
        );
    }
}
