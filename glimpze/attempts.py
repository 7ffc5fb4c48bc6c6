"""One delivery attempt: a claimed delivery, signed and sent over HTTP, and its outcome.

The request is a webhook's POST of the outgoing event's payload, or an approval callback's own
request (callbacks.py): POST or PUT with seed 002's body, or GET with the fields in its URL, when
the signatures cover the full URL instead of a body. Either way it carries DESIGN §4's headers
(`X-Glimpze-Signature`, Standard Webhooks' `webhook-*`, `X-Glimpze-Event`, `-Delivery`,
`-Attempt`). The dispatcher (delivery.py) decides what to claim and what an outcome means.
"""

from __future__ import annotations

import asyncio
import email.utils
import sqlite3
import time
from dataclasses import dataclass

import httpx
import msgspec

from glimpze.signing import signature_headers

RESPONSE_HEAD_BYTES = 512
RESPONSE_READ_LIMIT = 64 * 1024


@dataclass(slots=True)
class Claim:
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
    ordered: bool
    secrets: list[str]

    @property
    def callback(self) -> bool:
        return self.webhook_id is None


@dataclass(slots=True)
class Outcome:
    """One attempt's result."""

    status_code: int | None
    latency_ms: float
    error: str | None = None
    response_head: str | None = None
    retry_after: float | None = None
    disable: bool = False
    delivered: bool = False


async def attempt(client: httpx.AsyncClient, claim: Claim, now: float) -> Outcome:
    """Send `claim` once, signed at `now`. Any 2xx is delivered, and a callback's 409 too (the
    receiver already has this answer: an n8n resume URL that resumed)."""
    # A GET callback has no body: its signature covers the full URL, which holds the fields.
    signed = claim.url.encode() if claim.method == "GET" else claim.payload
    headers = {
        **claim.headers,
        **({} if claim.method == "GET" else {"Content-Type": "application/json"}),
        **signature_headers(claim.secrets, claim.id, int(now), signed),
        "X-Glimpze-Event": claim.event_type,
        "X-Glimpze-Delivery": claim.id,
        "X-Glimpze-Attempt": str(claim.attempt),
    }
    body = None if claim.method == "GET" else claim.payload
    start = time.perf_counter()
    try:
        async with asyncio.timeout(claim.timeout):
            async with client.stream(
                claim.method, claim.url, content=body, headers=headers, timeout=claim.timeout
            ) as response:
                head = await _read_head(response)
    except (httpx.HTTPError, TimeoutError, OSError) as exc:
        return Outcome(None, _ms_since(start), error=_describe(exc, claim.timeout))
    status = response.status_code
    delivered = 200 <= status < 300 or (claim.callback and status == 409)
    return Outcome(
        status,
        _ms_since(start),
        error=None if delivered else f"HTTP {status}",
        response_head=head,
        retry_after=_retry_after(response, now) if status in (429, 503) else None,
        disable=status == 410 or response.headers.get("webhook-delivery", "").strip().lower() == "disable",
        delivered=delivered,
    )


def claim_of(row: sqlite3.Row, now: float) -> Claim:
    """A claim from a row of the dispatcher's claim queries (webhook and callback rows alike)."""
    secrets = [row["secret"]]
    if row["previous_secret"] and (row["previous_secret_expires_at"] or 0) > now:
        secrets.append(row["previous_secret"])
    number = row["attempts"] + 1
    return Claim(
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
        ordered=bool(row["ordered"]),
        secrets=secrets,
    )


async def _read_head(response: httpx.Response) -> str:
    """The first bytes of the answer, for the attempt log. A large body is not read to its end."""
    head = b""
    read = 0
    async for chunk in response.aiter_bytes():
        if len(head) < RESPONSE_HEAD_BYTES:
            head += chunk[: RESPONSE_HEAD_BYTES - len(head)]
        read += len(chunk)
        if read > RESPONSE_READ_LIMIT:
            break
    return head.decode("utf-8", "replace")


def _retry_after(response: httpx.Response, now: float) -> float | None:
    value = response.headers.get("retry-after", "").strip()
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
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return f"no answer within {timeout:g} s"
    text = str(exc) or type(exc).__name__
    return text[:500]


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000
