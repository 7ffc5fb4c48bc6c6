"""One delivery attempt: a claimed delivery, signed and sent over HTTP, and its outcome.

The request is a webhook's POST of the outgoing event's payload, or an approval callback's own
request (callbacks.py): POST or PUT with seed 002's body, or GET with the fields in its URL, when
the signatures cover the full URL instead of a body. Either way it carries DESIGN §4's headers
(`X-Glimpze-Signature`, Standard Webhooks' `webhook-*`, `X-Glimpze-Event`, `-Delivery`,
`-Attempt`). The dispatcher (dispatcher.py) decides what to claim and what an outcome means.

Requests go through the lane's pool of http1.py, a small HTTP/1.1 client over the SSRF-guarded
network backend: httpx's client layer cost a third of the dispatcher's time per delivery
(bench.deliveries), and httpcore's pool and h11 under it most of the rest (issue 18).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
import msgspec

from glimpze import __version__
from glimpze.delivery.http1 import Answer, HttpError, Origin, Pool, Turn, no_turn
from glimpze.delivery.signing import signature_headers
from glimpze.rotation import still_good
from glimpze.store.sql import Row

USER_AGENT = f"Glimpze-Webhooks/{__version__}"
log = logging.getLogger("glimpze.delivery")

RESPONSE_HEAD_BYTES = 512
RESPONSE_READ_LIMIT = 64 * 1024


@dataclass(slots=True)
class DeliveryClaim:
    """A leased delivery, with what it takes to send it."""

    seq: int
    id: str
    attempt: int  # the number of this attempt (1 for the first)
    cycle_attempt: int  # the same, counted since the last replay
    payload: bytes  # the body (empty for a GET callback)
    event_type: str
    webhook_id: str | None  # None: an approval callback of feed `feed_id`
    feed_id: str | None
    project_id: str
    method: str
    url: str
    headers: dict[str, str]
    timeout: float
    secrets: list[str]

    @property
    def callback(self) -> bool:
        return self.webhook_id is None


@dataclass(slots=True)
class AttemptResult:
    """One attempt's result."""

    status_code: int | None
    latency_ms: float
    error: str | None = None
    response_head: str | None = None
    retry_after: float | None = None
    disable: bool = False
    delivered: bool = False


async def attempt(pool: Pool, claim: DeliveryClaim, now: float, turn: Turn = no_turn) -> AttemptResult:
    """Send `claim` once, signed at `now`. Any 2xx is delivered, and a callback's 409 too (the
    receiver already has this answer: an n8n resume URL that resumed)."""
    body = None if claim.method == "GET" else claim.payload
    start = time.perf_counter()
    try:
        # A GET callback has no body: its signature covers the full URL, which holds the fields.
        signed = claim.url.encode() if claim.method == "GET" else claim.payload
        signatures = signature_headers(claim.secrets, claim.id, int(now), signed)
        headers = request_headers(claim.method, claim.headers, signatures, claim.event_type, claim.id, claim.attempt)
        origin, target = _target(claim.url)
        async with asyncio.timeout(claim.timeout):
            response = await pool.request(
                claim.method,
                origin,
                target,
                list(headers.items()),
                body,
                connect_timeout=claim.timeout,
                head_bytes=RESPONSE_HEAD_BYTES,
                read_limit=RESPONSE_READ_LIMIT,
                turn=turn,
            )
    except (*HTTP_ERRORS, TimeoutError, OSError) as exc:
        return AttemptResult(None, _ms_since(start), error=_describe(exc, claim.timeout))
    except Exception as exc:  # a bug of ours or a library's: a failed attempt, retried, never a lost claim
        log.exception("delivery %s: the attempt failed unexpectedly", claim.id)
        return AttemptResult(None, _ms_since(start), error=f"internal error: {type(exc).__name__}")
    status = response.status
    delivered = 200 <= status < 300 or (claim.callback and status == 409)
    return AttemptResult(
        status,
        _ms_since(start),
        error=None if delivered else f"HTTP {status}",
        response_head=response.head.decode("utf-8", "replace"),
        retry_after=_retry_after(_header(response, b"retry-after"), now) if status in (429, 503) else None,
        disable=status == 410 or _header(response, b"webhook-delivery").strip().lower() == "disable",
        delivered=delivered,
    )


def request_headers(
    method: str, custom: dict[str, str], signatures: dict[str, str], event_type: str, delivery_id: str, attempt_no: int
) -> dict[str, str]:
    """The headers of one attempt, in the order they are sent (the dashboard's delivery inspector
    shows them with the signatures it cannot recompute)."""
    return {
        "User-Agent": USER_AGENT,
        **custom,
        **({} if method == "GET" else {"Content-Type": "application/json"}),
        **signatures,
        "X-Glimpze-Event": event_type,
        "X-Glimpze-Delivery": delivery_id,
        "X-Glimpze-Attempt": str(attempt_no),
    }


# What a request can raise: the network backend's errors (httpcore's have no common base), the
# client's, and a URL that does not parse.
HTTP_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    HttpError,
    httpx.InvalidURL,
)


@functools.lru_cache(maxsize=1024)
def _target(url: str) -> tuple[Origin, bytes]:
    """Where `url` goes (IDNA host) and its request target (percent-encoded path and query), as
    httpx would send it."""
    parsed = httpx.URL(url)
    scheme = parsed.scheme
    if scheme not in ("http", "https"):
        raise httpx.InvalidURL(f"{scheme}:// is not an HTTP URL")
    port = parsed.port or (443 if scheme == "https" else 80)
    return Origin(scheme, parsed.raw_host.decode("ascii"), port), parsed.raw_path


def claim_of(row: Row | Mapping[str, Any], now: float) -> DeliveryClaim:
    """A claim from a row of the dispatcher's claim queries (webhook and callback rows alike)."""
    secrets = [row["secret"]]
    if still_good(row["previous_secret"], row["previous_secret_expires_at"], now):
        secrets.append(row["previous_secret"])
    number = row["attempts"] + 1
    return DeliveryClaim(
        seq=row["seq"],
        id=row["id"],
        attempt=number,
        cycle_attempt=number - row["schedule_base"],
        payload=row["payload"],
        event_type=row["type"],
        webhook_id=row["webhook_id"],
        feed_id=row["feed_id"],
        project_id=row["project_id"],
        method=row["method"],
        url=row["url"],
        headers=msgspec.json.decode(row["headers"]),
        timeout=row["timeout_seconds"],
        secrets=secrets,
    )


def _header(response: Answer, name: bytes) -> str:
    """The first value of header `name` (lower case), or ""."""
    for key, value in response.headers:
        if key == name:
            return value.decode("latin-1")
    return ""


def _retry_after(value: str, now: float) -> float | None:
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, (TimeoutError, httpcore.TimeoutException)):
        return f"no answer within {timeout:g} s"
    text = str(exc) or type(exc).__name__
    return text[:500]


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000
