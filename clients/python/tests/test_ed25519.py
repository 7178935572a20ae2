"""The pure-Python strict ed25519 verifier, on RFC 8032's test vectors."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from relay_node._ed25519 import P, verify_strict  # noqa: E402

# RFC 8032, section 7.1, tests 1 and 2.
VECTORS = [
    (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]
L = 2**252 + 27742317777372353535851937790883648493


class VerifyStrict(unittest.TestCase):
    def test_valid_signatures_verify(self) -> None:
        for key, msg, sig in VECTORS:
            self.assertTrue(verify_strict(bytes.fromhex(key), bytes.fromhex(msg), bytes.fromhex(sig)))

    def test_tampering_fails(self) -> None:
        key, msg, sig = (bytes.fromhex(x) for x in VECTORS[1])
        self.assertFalse(verify_strict(key, b"\x73", sig))
        for i in (0, 31, 32, 63):
            bad = bytearray(sig)
            bad[i] ^= 0x01
            self.assertFalse(verify_strict(key, msg, bytes(bad)), i)
        other = bytes.fromhex(VECTORS[0][0])
        self.assertFalse(verify_strict(other, msg, sig))
        self.assertFalse(verify_strict(key[:31], msg, sig))
        self.assertFalse(verify_strict(key, msg, sig[:63]))

    def test_strictness(self) -> None:
        key, msg, sig = (bytes.fromhex(x) for x in VECTORS[1])
        # S + L: the same signature, malleated; refused.
        s = int.from_bytes(sig[32:], "little") + L
        self.assertFalse(verify_strict(key, msg, sig[:32] + s.to_bytes(32, "little")))
        # A small-order key (the identity point) and a non-canonical one.
        identity = (1).to_bytes(32, "little")
        self.assertFalse(verify_strict(identity, msg, identity + (0).to_bytes(32, "little")))
        self.assertFalse(verify_strict((P + 1).to_bytes(32, "little"), msg, sig))


if __name__ == "__main__":
    unittest.main()
