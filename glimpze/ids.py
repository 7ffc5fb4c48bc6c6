"""Identifiers and secrets: prefixed random strings, and how secrets are stored (hashed)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Ids are base32 in Crockford's lower-case alphabet (no i, l, o, u): unambiguous when read aloud.
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"

ID_TIME_CHARS = 9  # milliseconds since 2020 in base32: ordered for a thousand years
ID_RANDOM_CHARS = 11  # then 55 random bits
_EPOCH_MS = 1_577_836_800_000  # 2020-01-01
SECRET_LENGTH = 40  # base62: ~238 bits
DISPLAY_PREFIX_LENGTH = 12  # "gzp_" and 8 characters: enough to recognise a key in a list


def new_id(prefix: str) -> str:
    """An id such as ``evt_0rb8m2k9qd1x5vzt7c4p``: the creation time, then random characters.

    Ids that grow with time land at the end of their index: random ones would dirty a different
    B-tree page on every insert, which was measured as the costliest part of writing an event.
    """
    now = int(time.time() * 1000) - _EPOCH_MS
    return prefix + _base32(now, ID_TIME_CHARS) + _base32(_random.bits(5 * ID_RANDOM_CHARS), ID_RANDOM_CHARS)


class _RandomPool:
    """os.urandom read 4 KiB at a time: one system call per ~500 ids instead of one each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def bits(self, count: int) -> int:
        size = (count + 7) // 8
        with self._lock:
            if self._offset + size > len(self._buffer):
                self._buffer, self._offset = os.urandom(4096), 0
            chunk = self._buffer[self._offset : self._offset + size]
            self._offset += size
        return int.from_bytes(chunk) >> (8 * size - count)


_random = _RandomPool()


# Two characters at a time (10 bits each): one by one, an id's twenty took ~5 µs.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]


def _base32(number: int, chars: int) -> str:
    """The low `5 * chars` bits of `number` as `chars` Crockford characters, most significant first."""
    pairs = [_PAIRS[(number >> shift) & 1023] for shift in range(5 * (chars & ~1) - 10, -1, -10)]
    lead = _CROCKFORD[(number >> 5 * (chars - 1)) & 31] if chars % 2 else ""
    return lead + "".join(pairs)


def new_secret(prefix: str) -> str:
    """A random bearer secret such as ``gzw_…``: letters and digits only, so a double-click selects it."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))


def looks_like(secret: str, prefix: str) -> bool:
    """True when `secret` has the shape of one we mint (used to tell 401 from 404 on ingest)."""
    body = secret[len(prefix) :]
    return secret.startswith(prefix) and len(body) == SECRET_LENGTH and all(c in _ALPHABET for c in body)


def hash_secret(secret: str) -> str:
    """How secrets are stored. They carry ~238 random bits, so a plain SHA-256 is enough
    (a slow password hash would only slow every request)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time string comparison."""
    return hmac.compare_digest(a.encode(), b.encode())


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_PREFIX_LENGTH]
