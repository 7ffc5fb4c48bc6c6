"""Identifiers and secrets: prefixed random strings, and how secrets are stored (hashed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Ids are base32 in Crockford's lower-case alphabet (no i, l, o, u): unambiguous when read aloud.
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789abcdefghjkmnpqrstvwxyz")

ID_LENGTH = 16  # 80 bits
SECRET_LENGTH = 40  # base62: ~238 bits
SECRET_PREFIXES = ("gzp_", "gzw_", "gzr_")
DISPLAY_PREFIX_LENGTH = 12  # "gzp_" and 8 characters: enough to recognise a key in a list


def new_id(prefix: str) -> str:
    """A random id such as ``fd_7m2k9q4r8c1x5vzt`` (lower case, copy-friendly)."""
    return prefix + base64.b32encode(secrets.token_bytes(ID_LENGTH * 5 // 8)).translate(_TO_CROCKFORD).decode()


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
