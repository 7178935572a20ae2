//! One signed ledger entry and its canonical encoding.
//!
//! ```text
//! signed message = CONTEXT || fields
//! fields         = origin (32) || seq (u64) || prev_hash (32) || ts_unix_ms (u64)
//!                  || kind (u8) || body_len (u32) || body
//! wire form      = fields || signature (64)
//! hash           = SHA-256(CONTEXT || fields || signature)
//! ```
//!
//! Integers are big-endian. `seq` starts at 1 in each origin's feed and
//! `prev_hash` is the hash of the origin's entry `seq - 1` (all zero for
//! seq 1), so a feed is a hash chain. The signature is ed25519 by the
//! origin's key over the signed message and is checked with
//! `verify_strict`. [`Entry::decode`] is strict: a valid origin key, a
//! known kind, a body of at most [`MAX_BODY`] bytes that decodes for its
//! kind, and no trailing bytes.

use ed25519_dalek::{Signature, VerifyingKey};

use super::body::{Body, BodyError, EntryKind};
use super::codec::{CodecError, Reader, Writer};
use crate::{NodeId, SecretKey};

/// Domain separation for entry signatures and hashes.
pub const CONTEXT: &[u8] = b"relay-node/v1/ledger-entry\0";
/// Largest body in bytes.
pub const MAX_BODY: usize = 16 * 1024;
/// Bytes of an entry besides its body.
pub const FIXED_LEN: usize = 32 + 8 + 32 + 8 + 1 + 4 + 64;
/// Largest encoded entry.
pub const MAX_ENTRY: usize = FIXED_LEN + MAX_BODY;

/// The SHA-256 hash of an entry (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EntryHash(pub [u8; 32]);

impl EntryHash {
    /// The all-zero hash: the `prev_hash` of seq 1.
    pub const ZERO: EntryHash = EntryHash([0; 32]);

    /// The hash of the entry whose wire form is `wire` (as
    /// [`Entry::hash`], for a caller that has encoded it already).
    pub fn of_wire(wire: &[u8]) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(CONTEXT);
        ctx.update(wire);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        EntryHash(out)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Display for EntryHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for EntryHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EntryHash({})", &self.to_hex()[..12])
    }
}

/// A signed entry of one origin's feed.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// The node whose feed this is, and whose key signed it.
    pub origin: NodeId,
    /// Position in the feed, from 1.
    pub seq: u64,
    /// Hash of entry `seq - 1` of the same origin; zero for seq 1.
    pub prev_hash: EntryHash,
    /// When the origin wrote it (unix ms, the origin's clock).
    pub ts_unix_ms: u64,
    /// What it records.
    pub kind: EntryKind,
    /// The canonical body of `kind` (at most [`MAX_BODY`] bytes).
    pub body: Vec<u8>,
    /// The origin's ed25519 signature over the signed message.
    pub signature: [u8; 64],
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("origin", &self.origin)
            .field("seq", &self.seq)
            .field("kind", &self.kind)
            .field("ts_unix_ms", &self.ts_unix_ms)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Why an entry was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The bytes are not an entry.
    #[error("malformed entry: {0}")]
    Malformed(#[from] CodecError),
    /// A kind code this version does not know.
    #[error("unknown entry kind code {0}")]
    UnknownKind(u8),
    /// seq 0, or seq 1 with a non-zero prev_hash.
    #[error("bad chain start: seq {0} with this prev_hash")]
    BadStart(u64),
    /// The body does not decode for its kind.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The signature does not verify under the origin's key.
    #[error("signature of {origin} seq {seq} does not verify")]
    BadSignature {
        /// The claimed origin.
        origin: NodeId,
        /// The seq.
        seq: u64,
    },
}

impl EntryError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadSignature { .. } => "bad-signature",
            _ => "invalid-entry",
        }
    }
}

impl Entry {
    /// Builds and signs the entry `seq` of `secret`'s feed.
    pub fn sign(
        secret: &SecretKey,
        seq: u64,
        prev_hash: EntryHash,
        ts_unix_ms: u64,
        body: &Body,
    ) -> Result<Self, EntryError> {
        Self::sign_by(
            secret.node_id(),
            |m| secret.sign(m),
            seq,
            prev_hash,
            ts_unix_ms,
            body,
        )
    }

    /// [`Entry::sign`] with the signature made by `sign` over the message
    /// it is given: the key of `origin` signing with ed25519, for instance
    /// with a prepared nonce ([`crate::PreparedKey::sign`]), which skips a
    /// base-point multiplication. A signature by any other key gives an
    /// entry that fails [`Entry::verify_signature`].
    pub fn sign_by(
        origin: NodeId,
        sign: impl FnOnce(&[u8]) -> [u8; 64],
        seq: u64,
        prev_hash: EntryHash,
        ts_unix_ms: u64,
        body: &Body,
    ) -> Result<Self, EntryError> {
        let mut entry = Self {
            origin,
            seq,
            prev_hash,
            ts_unix_ms,
            kind: body.kind(),
            body: body.encode()?,
            signature: [0; 64],
        };
        entry.check_start()?;
        entry.signature = sign(&entry.signed_message());
        Ok(entry)
    }

    fn check_start(&self) -> Result<(), EntryError> {
        if self.seq == 0 || (self.seq == 1 && self.prev_hash != EntryHash::ZERO) {
            return Err(EntryError::BadStart(self.seq));
        }
        Ok(())
    }

    fn write_fields(&self, w: &mut Writer) {
        w.node_id(&self.origin);
        w.u64(self.seq);
        w.raw(&self.prev_hash.0);
        w.u64(self.ts_unix_ms);
        w.u8(self.kind.code());
        w.bytes32(&self.body);
    }

    /// What the origin signs: [`CONTEXT`] followed by the fields.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(CONTEXT);
        self.write_fields(&mut w);
        w.into_bytes()
    }

    /// The wire form: fields then signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode_into(&mut w);
        w.into_bytes()
    }

    /// Appends the wire form to `w`.
    pub fn encode_into(&self, w: &mut Writer) {
        self.write_fields(w);
        w.raw(&self.signature);
    }

    /// Length of the wire form.
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN + self.body.len()
    }

    /// Decodes one entry that fills `data` exactly. Does not check the
    /// signature (see [`Entry::verify_signature`]).
    pub fn decode(data: &[u8]) -> Result<Self, EntryError> {
        let mut r = Reader::new(data);
        let entry = Self::read(&mut r)?;
        r.finish()?;
        Ok(entry)
    }

    /// Reads one entry from `r` (for messages that carry several).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, EntryError> {
        Self::read_of(r, None)
    }

    /// Reads one entry that must belong to `origin` (already validated by
    /// the caller): the origin bytes are compared, not decompressed again.
    pub fn read_of(r: &mut Reader<'_>, origin: Option<&NodeId>) -> Result<Self, EntryError> {
        let origin = match origin {
            None => r.node_id("origin")?,
            Some(expected) => {
                if r.array::<32>("origin")? != *expected.as_bytes() {
                    return Err(CodecError::Invalid("origin").into());
                }
                *expected
            }
        };
        let seq = r.u64("seq")?;
        let prev_hash = EntryHash(r.array("prev_hash")?);
        let ts_unix_ms = r.u64("ts")?;
        let code = r.u8("kind")?;
        let kind = EntryKind::from_code(code).ok_or(EntryError::UnknownKind(code))?;
        let body = r.bytes32("body", MAX_BODY)?.to_vec();
        let signature = r.array("signature")?;
        let entry = Self {
            origin,
            seq,
            prev_hash,
            ts_unix_ms,
            kind,
            body,
            signature,
        };
        entry.check_start()?;
        Body::decode(kind, &entry.body)?;
        Ok(entry)
    }

    /// The typed body.
    pub fn body(&self) -> Result<Body, BodyError> {
        Body::decode(self.kind, &self.body)
    }

    /// Checks the origin's signature with `verify_strict`.
    pub fn verify_signature(&self) -> Result<(), EntryError> {
        let bad = || EntryError::BadSignature {
            origin: self.origin,
            seq: self.seq,
        };
        let key = VerifyingKey::from_bytes(self.origin.as_bytes()).map_err(|_| bad())?;
        key.verify_strict(
            &self.signed_message(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| bad())
    }

    /// The entry's hash (see the module docs).
    pub fn hash(&self) -> EntryHash {
        let mut w = Writer::new();
        self.encode_into(&mut w);
        EntryHash::of_wire(&w.into_bytes())
    }

    /// Whether `next` is this entry's successor in the hash chain.
    pub fn links_to(&self, next: &Entry) -> bool {
        next.origin == self.origin
            && Some(next.seq) == self.seq.checked_add(1)
            && next.prev_hash == self.hash()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::body::{NatType, NodeAnnouncement};

    fn announcement() -> Body {
        Body::NodeAnnouncement(NodeAnnouncement {
            addrs: vec!["192.0.2.10:7420".parse().unwrap()],
            nat: NatType::Open,
            relay: true,
            version: "0.1.0".into(),
            member_proof: None,
        })
    }

    fn key() -> SecretKey {
        SecretKey::from_bytes(&[42; 32])
    }

    #[test]
    fn golden_bytes() {
        let e = Entry::sign(
            &key(),
            1,
            EntryHash::ZERO,
            1_764_000_000_000,
            &announcement(),
        )
        .unwrap();
        let expected = [
            // origin: the public key of seed [42; 32]
            GOLDEN_ORIGIN,
            "0000000000000001", // seq 1
            "0000000000000000000000000000000000000000000000000000000000000000", // prev_hash
            "0000019ab697e800", // ts 1_764_000_000_000
            "01",               // kind node-announcement
            "00000012",         // body length 18
            // body: 1 address (v4 192.0.2.10 port 7420), nat open, relay, "0.1.0"
            "0001",
            "04c000020a1cfc",
            "01",
            "01",
            "0005302e312e30",
            GOLDEN_SIG,
        ]
        .concat();
        assert_eq!(hex_of(&e.encode()), expected);
        assert_eq!(e.hash().to_hex(), GOLDEN_HASH);
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        e.verify_signature().unwrap();
    }

    const GOLDEN_ORIGIN: &str = "197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61";
    const GOLDEN_SIG: &str = "33de26e6ecd0125342640425e5590ab70661000d8730c65a65a4e7a724fc7a7cd9f39fbacf0036f1621121c7e470912caeb6abfa58158921cf4f0a01c7a89300";
    const GOLDEN_HASH: &str = "4c6700d32dbe53b2df3242acd1633d1446e65a712b0d9eaa14f550cf42ebb237";

    fn hex_of(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn an_entry_signed_with_a_prepared_nonce_verifies_and_differs_only_in_its_signature() {
        let nonce = crate::PreparedNonce::generate(&key()).unwrap();
        let pk = crate::PreparedKey::new(&key());
        let e = Entry::sign_by(
            key().node_id(),
            |m| pk.sign(nonce, m),
            1,
            EntryHash::ZERO,
            5,
            &announcement(),
        )
        .unwrap();
        assert_eq!(EntryHash::of_wire(&e.encode()), e.hash());
        let plain = Entry::sign(&key(), 1, EntryHash::ZERO, 5, &announcement()).unwrap();
        e.verify_signature().unwrap();
        assert_eq!(e.signed_message(), plain.signed_message());
        assert_ne!(e.signature, plain.signature);
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let e = Entry::sign(&key(), 1, EntryHash::ZERO, 5, &announcement()).unwrap();
        let mut bytes = e.encode();
        let ts_at = 32 + 8 + 32 + 7;
        bytes[ts_at] ^= 1;
        let t = Entry::decode(&bytes).unwrap();
        assert!(matches!(
            t.verify_signature(),
            Err(EntryError::BadSignature { seq: 1, .. })
        ));
    }

    #[test]
    fn decoding_is_strict() {
        let e = Entry::sign(&key(), 2, EntryHash([1; 32]), 5, &announcement()).unwrap();
        let bytes = e.encode();
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            Entry::decode(&long),
            Err(EntryError::Malformed(CodecError::Trailing(1)))
        ));
        for cut in [0, 10, 80, bytes.len() - 1] {
            assert!(Entry::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_kind = bytes.clone();
        bad_kind[80] = 99;
        assert_eq!(Entry::decode(&bad_kind), Err(EntryError::UnknownKind(99)));
        let mut huge = bytes.clone();
        huge[81..85].copy_from_slice(&(MAX_BODY as u32 + 1).to_be_bytes());
        assert!(matches!(
            Entry::decode(&huge),
            Err(EntryError::Malformed(CodecError::TooLong { .. }))
        ));
        let mut seq0 = bytes.clone();
        seq0[32..40].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(Entry::decode(&seq0), Err(EntryError::BadStart(0)));
        assert_eq!(
            Entry::sign(&key(), 1, EntryHash([1; 32]), 5, &announcement()),
            Err(EntryError::BadStart(1))
        );
    }

    #[test]
    fn chain_links() {
        let a = Entry::sign(&key(), 1, EntryHash::ZERO, 5, &announcement()).unwrap();
        let b = Entry::sign(&key(), 2, a.hash(), 6, &announcement()).unwrap();
        let c = Entry::sign(&key(), 3, a.hash(), 7, &announcement()).unwrap();
        assert!(a.links_to(&b));
        assert!(!b.links_to(&c));
        assert!(!a.links_to(&c));
    }
}
