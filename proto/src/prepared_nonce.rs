//! Ed25519 signing with a nonce prepared before the message is known.
//!
//! An ed25519 signature of `M` by the key `(a, A = aB)` is `(R, S)` with
//! `R = rB`, `k = SHA-512(R || A || M)` and `S = r + k·a (mod L)`. RFC 8032
//! derives `r` from the message (`SHA-512(prefix || M)`), so the costly
//! half of a signature, the base-point multiplication `rB` (about 17 µs of
//! a 20 µs signature here), has to wait for the message. Verification checks
//! `[S]B = R + [k]A` and cannot tell how `r` was chosen: any `r` that is
//! secret, uniform and used once gives an equally valid and equally strong
//! signature (the Schnorr signature's security argument assumes exactly
//! that). A [`PreparedNonce`] is such an `r` with its `R`, computed ahead of
//! time on a thread that is otherwise idle; [`PreparedKey::sign`]
//! then costs one SHA-512 and a scalar multiply-add.
//!
//! How each rule is kept:
//! - **Secret and uniform, even with a weak RNG:** `r` is hedged,
//!   `SHA-512(context || prefix || seed)` reduced mod `L`, where `prefix` is
//!   the key's secret RFC 8032 hash prefix and `seed` 32 fresh bytes from
//!   the OS. Knowing the seed without the key, or the key without the
//!   seed, does not give `r`.
//! - **Used once:** a nonce is not `Clone`, signing takes it by value, and
//!   it is zeroed when dropped. It is never written anywhere.
//! - **Bound to its key:** a nonce remembers the key it was made for;
//!   signing with another key ignores it and signs deterministically.
//!
//! The signatures differ from RFC 8032's deterministic ones for the same
//! message (the nonce differs), which no verifier can observe; nothing in
//! relay-node compares two signatures of one message. `verify_strict`
//! accepts them: `S` is reduced, and `R` is a multiple of the base point,
//! never of small order. Where signatures must be reproducible,
//! [`SecretKey::sign`] stays deterministic.

use curve25519_dalek::{EdwardsPoint, Scalar};
use ed25519_dalek::hazmat::ExpandedSecretKey;
use rand::RngCore;
use ring::digest::{Context as Digest, SHA512};

use crate::{NodeId, SecretKey};

/// Domain separation for the nonce derivation.
const NONCE_CONTEXT: &[u8] = b"relay-node prepared ed25519 nonce v1\0";

/// A one-time ed25519 nonce and its commitment `R = rB`, made for one key.
/// See the module docs.
pub struct PreparedNonce {
    r: Scalar,
    big_r: [u8; 32],
    key: NodeId,
}

impl std::fmt::Debug for PreparedNonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The nonce is as secret as the key: print only whose it is.
        write!(f, "PreparedNonce({})", self.key)
    }
}

impl Drop for PreparedNonce {
    fn drop(&mut self) {
        // Overwrite the secret scalar; `black_box` keeps the compiler from
        // dropping the store as dead (the value is never read again).
        self.r = Scalar::ZERO;
        std::hint::black_box(&self.r);
    }
}

impl PreparedNonce {
    /// Prepares a nonce for `secret` from 32 fresh OS random bytes. `None`
    /// when the OS RNG fails (the caller then signs deterministically).
    pub fn generate(secret: &SecretKey) -> Option<Self> {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.try_fill_bytes(&mut seed).ok()?;
        let nonce = Self::from_seed(secret, &seed);
        seed = [0; 32];
        std::hint::black_box(&seed);
        nonce
    }

    /// Prepares the nonce of `secret` for `seed` (exposed for tests; use
    /// [`PreparedNonce::generate`]). `None` only in the impossible case that
    /// the derived scalar is zero.
    pub fn from_seed(secret: &SecretKey, seed: &[u8; 32]) -> Option<Self> {
        let esk = ExpandedSecretKey::from(secret.seed_bytes());
        let mut h = Digest::new(&SHA512);
        h.update(NONCE_CONTEXT);
        h.update(&esk.hash_prefix);
        h.update(seed);
        let r = Scalar::from_bytes_mod_order_wide(&wide(h.finish().as_ref()));
        if r == Scalar::ZERO {
            return None;
        }
        let big_r = EdwardsPoint::mul_base(&r).compress().to_bytes();
        Some(Self {
            r,
            big_r,
            key: secret.node_id(),
        })
    }

    /// The key this nonce was prepared for.
    pub fn key(&self) -> NodeId {
        self.key
    }
}

/// A key expanded once (its secret scalar and public key) for signing with
/// prepared nonces, so that each signature skips the SHA-512 of the seed.
/// Zeroed when dropped; prints only its public key.
pub struct PreparedKey {
    expanded: ExpandedSecretKey,
    key: NodeId,
    /// Kept for the deterministic fallback.
    secret: SecretKey,
}

impl std::fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PreparedKey({})", self.key)
    }
}

impl PreparedKey {
    /// Expands `secret`.
    pub fn new(secret: &SecretKey) -> Self {
        Self {
            expanded: ExpandedSecretKey::from(secret.seed_bytes()),
            key: secret.node_id(),
            secret: secret.clone(),
        }
    }

    /// The key's public identity.
    pub fn node_id(&self) -> NodeId {
        self.key
    }

    /// The key itself.
    pub fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// Signs `message` with ed25519 using `nonce` (see the module docs).
    /// A nonce made for another key is dropped unused and the signature is
    /// the deterministic one of [`SecretKey::sign`].
    pub fn sign(&self, nonce: PreparedNonce, message: &[u8]) -> [u8; 64] {
        if nonce.key != self.key {
            return self.secret.sign(message);
        }
        let mut h = Digest::new(&SHA512);
        h.update(&nonce.big_r);
        h.update(self.key.as_bytes());
        h.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&wide(h.finish().as_ref()));
        let s = k * self.expanded.scalar + nonce.r;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&nonce.big_r);
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }
}

/// A SHA-512 output as the 64-byte array the scalar reduction takes.
fn wide(digest: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    let n = digest.len().min(64);
    out[..n].copy_from_slice(&digest[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, VerifyingKey};

    /// `verify_strict`, as every signed structure of relay-node is checked.
    fn strict(id: &NodeId, msg: &[u8], sig: &[u8; 64]) -> bool {
        VerifyingKey::from_bytes(id.as_bytes())
            .is_ok_and(|k| k.verify_strict(msg, &Signature::from_bytes(sig)).is_ok())
    }

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes(&[n; 32])
    }

    #[test]
    fn a_prepared_signature_verifies_strictly_and_only_for_its_message() {
        let k = key(3);
        for i in 0..32u8 {
            let msg = [i; 100];
            let nonce = PreparedNonce::generate(&k).unwrap();
            let sig = PreparedKey::new(&k).sign(nonce, &msg);
            assert!(strict(&k.node_id(), &msg, &sig), "message {i}");
            let mut other = msg;
            other[0] ^= 1;
            assert!(!strict(&k.node_id(), &other, &sig));
            let mut bad = sig;
            bad[40] ^= 1;
            assert!(!strict(&k.node_id(), &msg, &bad));
        }
    }

    #[test]
    fn prepared_nonces_differ_and_so_do_their_signatures() {
        let k = key(4);
        let a = PreparedKey::new(&k).sign(PreparedNonce::generate(&k).unwrap(), b"m");
        let b = PreparedKey::new(&k).sign(PreparedNonce::generate(&k).unwrap(), b"m");
        assert_ne!(a[..32], b[..32], "two nonces gave one R");
        assert_ne!(a, k.sign(b"m"), "not the deterministic signature");
    }

    #[test]
    fn the_nonce_depends_on_the_key_and_the_seed() {
        let a = PreparedNonce::from_seed(&key(1), &[9; 32]).unwrap();
        let b = PreparedNonce::from_seed(&key(2), &[9; 32]).unwrap();
        let c = PreparedNonce::from_seed(&key(1), &[8; 32]).unwrap();
        let again = PreparedNonce::from_seed(&key(1), &[9; 32]).unwrap();
        assert_ne!(a.big_r, b.big_r);
        assert_ne!(a.big_r, c.big_r);
        assert_eq!(a.big_r, again.big_r);
    }

    #[test]
    fn a_nonce_for_another_key_falls_back_to_the_deterministic_signature() {
        let (a, b) = (key(5), key(6));
        let nonce = PreparedNonce::generate(&b).unwrap();
        assert_eq!(nonce.key(), b.node_id());
        let sig = PreparedKey::new(&a).sign(nonce, b"msg");
        assert_eq!(sig, a.sign(b"msg"));
        assert!(strict(&a.node_id(), b"msg", &sig));
    }

    #[test]
    fn one_nonce_and_message_give_one_signature_whichever_expansion_signs() {
        let k = key(8);
        let pk = PreparedKey::new(&k);
        assert_eq!(pk.node_id(), k.node_id());
        let a = pk.sign(PreparedNonce::from_seed(&k, &[2; 32]).unwrap(), b"m");
        let b = PreparedKey::new(&k).sign(PreparedNonce::from_seed(&k, &[2; 32]).unwrap(), b"m");
        assert_eq!(a, b);
        assert!(strict(&k.node_id(), b"m", &a));
        assert_eq!(format!("{pk:?}"), format!("PreparedKey({})", k.node_id()));
    }

    #[test]
    fn debug_prints_no_secret() {
        let k = key(7);
        let n = PreparedNonce::from_seed(&k, &[1; 32]).unwrap();
        let text = format!("{n:?}");
        assert_eq!(text, format!("PreparedNonce({})", k.node_id()));
    }
}
