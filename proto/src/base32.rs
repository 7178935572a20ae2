//! Lowercase RFC 4648 base32 without padding: copy-paste safe, case-strict.

use thiserror::Error;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why a base32 string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Base32Error {
    /// A character outside the lowercase base32 alphabet.
    #[error("invalid character {0:?} at position {1}")]
    InvalidChar(char, usize),
    /// The length cannot be produced by the encoder.
    #[error("invalid length {0}")]
    InvalidLength(usize),
    /// Trailing bits that the encoder would have left zero are set.
    #[error("non-canonical trailing bits")]
    NonCanonical,
}

/// Encodes bytes as lowercase base32 without padding.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn value(c: u8) -> Option<u32> {
    match c {
        b'a'..=b'z' => Some(u32::from(c - b'a')),
        b'2'..=b'7' => Some(u32::from(c - b'2') + 26),
        _ => None,
    }
}

/// Decodes strict lowercase base32 without padding.
///
/// Rejects uppercase, padding, whitespace, impossible lengths and set
/// trailing bits, so each byte string has exactly one text form.
pub fn decode(text: &str) -> Result<Vec<u8>, Base32Error> {
    let rem = text.len() % 8;
    if matches!(rem, 1 | 3 | 6) {
        return Err(Base32Error::InvalidLength(text.len()));
    }
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for (i, c) in text.bytes().enumerate() {
        let v = value(c).ok_or_else(|| {
            let ch = text[i..].chars().next().unwrap_or('?');
            Base32Error::InvalidChar(ch, i)
        })?;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
        buffer &= (1 << bits) - 1;
    }
    if buffer != 0 {
        return Err(Base32Error::NonCanonical);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc4648_vectors() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "my");
        assert_eq!(encode(b"fo"), "mzxq");
        assert_eq!(encode(b"foo"), "mzxw6");
        assert_eq!(encode(b"foob"), "mzxw6yq");
        assert_eq!(encode(b"fooba"), "mzxw6ytb");
        assert_eq!(encode(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn rejects_non_canonical() {
        assert_eq!(decode("mz"), Err(Base32Error::NonCanonical));
        assert!(matches!(
            decode("MY"),
            Err(Base32Error::InvalidChar('M', 0))
        ));
        assert_eq!(decode("m"), Err(Base32Error::InvalidLength(1)));
        assert!(decode("my=").is_err());
        assert!(decode("mé").is_err());
    }

    proptest! {
        #[test]
        fn roundtrip(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(decode(&encode(&data)), Ok(data));
        }

        #[test]
        fn decode_never_panics(s in ".{0,64}") {
            let _ = decode(&s);
        }
    }
}
