"""Delivery signatures (DESIGN §4): `X-Glimpze-Signature` and Standard Webhooks headers.

- `X-Glimpze-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`, the key being the
  secret string's UTF-8 bytes (seed 003's scheme);
- `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{t}.{body}")>`
  with key = base64-decode of the secret minus `whsec_`, so the `standardwebhooks` libraries verify it.
During a secret rotation both secrets sign: each header carries two signatures.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_signing_secret() -> str:
    """`whsec_` and base64 of 32 random bytes (the Standard Webhooks secret format)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def glimpze_signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=256)
def _standard_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(_standard_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signature_headers(secrets_: list[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The signature headers for `body`, signed with every secret given (current first)."""
    glimpze = ",".join(f"v1={glimpze_signature(s, timestamp, body)}" for s in secrets_)
    standard = " ".join(f"v1,{standard_signature(s, message_id, timestamp, body)}" for s in secrets_)
    return {
        "X-Glimpze-Signature": f"t={timestamp},{glimpze}",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard,
    }


def verify_glimpze_signature(secret: str, header: str, body: bytes, now: float, tolerance: int = 300) -> bool:
    """The receiver's side of `X-Glimpze-Signature`, for tests and the docs."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k == "t"]
    if not stamps or not stamps[0].isdigit() or abs(now - int(stamps[0])) > tolerance:
        return False
    expected = glimpze_signature(secret, int(stamps[0]), body)
    return any(hmac.compare_digest(expected, v) for k, v in parts if k == "v1")
