"""Signed CTA context (DESIGN §5): sign a payload into a destination URL, and verify it.

A card whose rule forwards context sends the visitor to
`{url}?glimpze_ctx=<base64url JSON, no padding>&glimpze_ts=<unix>&glimpze_sig=<hex HMAC-SHA256>`,
the HMAC keyed with the project's context secret (its UTF-8 bytes) over `"{ts}.{ctx}"`.
The customer's backend checks it with `verify(query, secret)`, which returns the payload only when
the signature matches and the timestamp is within 300 s of now.

This module is the Python verifier customers copy or import: it uses the standard library only,
so `glimpze/chat/ctx.py` works on its own, without the rest of Glimpze or its dependencies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

CTX_PARAM = "glimpze_ctx"
TS_PARAM = "glimpze_ts"
SIG_PARAM = "glimpze_sig"
PARAMS = (CTX_PARAM, TS_PARAM, SIG_PARAM)
WINDOW_SECONDS = 300

# Why a URL does not verify (`check`), as `POST /v1/ctas/verify` reports it.
MISSING = "missing_parameters"  # glimpze_ctx, glimpze_ts or glimpze_sig is absent or empty
MALFORMED = "malformed"  # a parameter repeated, a timestamp that is not a number, a signature that is not hex
BAD_SIGNATURE = "bad_signature"  # altered, or signed with another secret
EXPIRED = "expired"  # genuine, but signed more than 300 s from now

Query = str | Mapping[str, str | Sequence[str]]
_HEX_64 = re.compile(r"[0-9a-fA-F]{64}")


def encode_ctx(payload: Mapping[str, Any]) -> str:
    """The `glimpze_ctx` value: compact JSON, base64url without padding."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def signature(secret: str, ts: int, ctx: str) -> str:
    return hmac.new(secret.encode(), f"{ts}.{ctx}".encode(), hashlib.sha256).hexdigest()


def sign(payload: Mapping[str, Any], secret: str, ts: int) -> dict[str, str]:
    """The three query parameters for `payload`, signed at unix time `ts`."""
    ctx = encode_ctx(payload)
    return {CTX_PARAM: ctx, TS_PARAM: str(ts), SIG_PARAM: signature(secret, ts, ctx)}


def signed_url(url: str, payload: Mapping[str, Any], secret: str, ts: int) -> str:
    """`url` with the signed parameters appended to its query (kept as it is), before any fragment."""
    base, hash_, fragment = url.partition("#")
    params = "&".join(f"{name}={value}" for name, value in sign(payload, secret, ts).items())  # URL-safe already
    if "?" not in base:
        joined = f"{base}?{params}"
    elif base.endswith(("?", "&")):
        joined = base + params
    else:
        joined = f"{base}&{params}"
    return joined + hash_ + fragment


def verify(query: Query, secret: str | Iterable[str], now: float | None = None) -> dict[str, Any] | None:
    """The signed payload, or None when the parameters are missing, altered, or older than 300 s.

    `query` is a mapping of query parameters (a framework's `request.args`, or `parse_qs` output),
    a query string, or a whole URL. `secret` may be a list (current secret first, then the previous
    one during a rotation). Signatures are compared in constant time."""
    payload, _ = check(query, secret, now)
    return payload


def check(
    query: Query, secret: str | Iterable[str], now: float | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """`(payload, None)` for a valid context, else `(None, reason)` with one of the reasons above."""
    values = _params(query)
    if values is None:
        return None, MALFORMED
    ctx, ts_text, sig = (values.get(name) or "" for name in PARAMS)
    if not (ctx and ts_text and sig):
        return None, MISSING
    if not (ts_text.isascii() and ts_text.isdigit() and len(ts_text) <= 12 and _HEX_64.fullmatch(sig)):
        return None, MALFORMED
    ts = int(ts_text)
    secrets = [secret] if isinstance(secret, str) else list(secret)
    given = sig.lower().encode()
    if not any(hmac.compare_digest(signature(s, ts, ctx).encode(), given) for s in secrets):
        return None, BAD_SIGNATURE
    if abs((time.time() if now is None else now) - ts) > WINDOW_SECONDS:
        return None, EXPIRED
    try:
        payload = json.loads(base64.urlsafe_b64decode(ctx + "=" * (-len(ctx) % 4)))
    except (binascii.Error, ValueError):
        return None, MALFORMED
    return (payload, None) if isinstance(payload, dict) else (None, MALFORMED)


def _params(query: Query) -> dict[str, str] | None:
    """Our three parameters from `query`, one value each; None when one is given more than once
    (which of two values a framework picks differs, so neither is trusted)."""
    if isinstance(query, str):
        text = query.partition("#")[0]
        text = text.partition("?")[2] if "?" in text else text
        query = parse_qs(text, keep_blank_values=True)
    found: dict[str, str] = {}
    for name in PARAMS:
        value = query.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            if len(value) != 1:
                return None
            value = value[0]
        found[name] = value
    return found
