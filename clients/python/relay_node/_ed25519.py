"""Strict ed25519 signature verification (RFC 8032) in pure Python.

Only verification, of public data, so timing does not matter. Strict as
ed25519-dalek's verify_strict: non-canonical point encodings, S >= L and
small-order keys or R points are refused.
"""

import hashlib
from typing import Optional, Tuple

__all__ = ["verify_strict"]

Point = Tuple[int, int, int, int]  # extended coordinates X, Y, Z, T

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY: Point = (0, 1, 1, 0)


def _add(a: Point, b: Point) -> Point:
    # The complete addition law for a = -1 twisted Edwards curves.
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    e1 = (y1 - x1) * (y2 - x2) % P
    e2 = (y1 + x1) * (y2 + x2) % P
    c = 2 * D * t1 * t2 % P
    z = 2 * z1 * z2 % P
    e, f, g, h = e2 - e1, z - c, z + c, e2 + e1
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(k: int, point: Point) -> Point:
    acc = IDENTITY
    while k:
        if k & 1:
            acc = _add(acc, point)
        point = _add(point, point)
        k >>= 1
    return acc


def _same(a: Point, b: Point) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def _decode(data: bytes) -> Optional[Point]:
    """The point of a 32-byte encoding, or None if it is not a canonical
    encoding of a curve point."""
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


BASE = _decode((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))


def _small_order(point: Point) -> bool:
    return _same(_mul(8, point), IDENTITY)


def verify_strict(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is a valid strict ed25519 signature of `message`
    by `public_key` (32 bytes)."""
    if len(public_key) != 32 or len(signature) != 64 or BASE is None:
        return False
    a = _decode(public_key)
    r = _decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= L or _small_order(a) or _small_order(r):
        return False
    digest = hashlib.sha512(signature[:32] + public_key + message).digest()
    k = int.from_bytes(digest, "little") % L
    return _same(_mul(s, BASE), _add(r, _mul(k, a)))
