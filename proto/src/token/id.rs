//! Token ids: 16 random bytes, printed as 32 lowercase hex digits.

use rand::RngCore;

use super::TokenError;

/// A token's unique id (16 random bytes from the OS RNG).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId([u8; 16]);

impl TokenId {
    /// The id a root token names as its parent: all zero.
    pub const NONE: TokenId = TokenId([0; 16]);

    /// A fresh random id (never [`TokenId::NONE`]).
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        while bytes == [0; 16] {
            rand::rngs::OsRng.fill_bytes(&mut bytes);
        }
        Self(bytes)
    }

    /// Wraps raw bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The 32-byte `token_id` of a `token-revocation` ledger entry: the id,
    /// then 16 zero bytes.
    pub fn revocation_key(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(&self.0);
        key
    }

    /// The id in a `token-revocation` entry's `token_id`; `None` unless the
    /// last 16 bytes are zero (not a key written by [`Self::revocation_key`]).
    pub fn from_revocation_key(key: &[u8; 32]) -> Option<Self> {
        let (id, pad) = key.split_at(16);
        if pad.iter().any(|b| *b != 0) {
            return None;
        }
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(id);
        Some(Self(bytes))
    }
}

impl std::fmt::Display for TokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for TokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenId({self})")
    }
}

impl std::str::FromStr for TokenId {
    type Err = TokenError;

    /// Exactly 32 lowercase hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TokenError::Malformed(format!("a token id is 32 lowercase hex digits: {s:?}"));
        if s.len() != 32 {
            return Err(bad());
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let hi = hex_digit(pair[0]).ok_or_else(bad)?;
            let lo = hex_digit(pair[1]).ok_or_else(bad)?;
            bytes[i] = hi << 4 | lo;
        }
        Ok(Self(bytes))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_roundtrip_and_strictness() {
        let id = TokenId::random();
        assert_ne!(id, TokenId::NONE);
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<TokenId>(), Ok(id));
        let fixed = TokenId::from_bytes([0xab; 16]);
        assert_eq!(fixed.to_string(), "ab".repeat(16));
        assert!("AB".repeat(16).parse::<TokenId>().is_err());
        assert!(text[..31].parse::<TokenId>().is_err());
        assert!(format!("{text}0").parse::<TokenId>().is_err());
        assert!("g".repeat(32).parse::<TokenId>().is_err());
    }

    #[test]
    fn revocation_key_roundtrip() {
        let id = TokenId::from_bytes([9; 16]);
        let key = id.revocation_key();
        assert_eq!(&key[16..], &[0; 16]);
        assert_eq!(TokenId::from_revocation_key(&key), Some(id));
        let mut other = key;
        other[31] = 1;
        assert_eq!(TokenId::from_revocation_key(&other), None);
    }
}
