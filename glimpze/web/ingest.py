"""`POST /ingest/{feed_id}` and `/ingest/{feed_id}/upload`: the write-key endpoints that curl, cron,
n8n, Zapier and Make call.

The hottest route, so it is an ASGI app mounted at /ingest rather than a Litestar handler: it
reads the headers it needs straight from the scope and sends its answer itself, skipping the
per-request signature parsing, dependency injection and response objects (~30 µs a request,
measured: as much as the ingest service itself). Errors are raised as usual and become
problem+json in `glimpze.problems`. (A mount, because Litestar 2.x cannot route an HTTP request
to an ASGI handler whose path has parameters.) An upload's body is handed over as it arrives,
so its images stream to disk instead of being held in memory.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TypedDict

from litestar import asgi
from litestar.enums import ScopeType
from litestar.exceptions import MethodNotAllowedException, NotFoundException
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from glimpze.errors import BadRequest, GlimpzeError, PayloadTooLarge
from glimpze.feeds.limits import client_ip
from glimpze.feeds.schemas import EVENT_MAX_BYTES
from glimpze.feeds.uploads import UPLOAD_MAX_BYTES
from glimpze.services import Services
from glimpze.web.problems import PROBLEM_JSON, error_body

_WANTED = {b"authorization", b"content-type", b"content-length", b"idempotency-key", b"x-forwarded-for"}
_JSON = [(b"content-type", b"application/json")]
_PROBLEM = [(b"content-type", PROBLEM_JSON.encode())]


@asgi("/ingest", is_mount=True, copy_scope=False)
async def ingest_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """Dispatch the paths under /ingest (the mount hands over the rest of the path)."""
    parts = scope["path"].strip("/").split("/")
    if not parts[0] or len(parts) > 2 or len(parts) == 2 and parts[1] != "upload":
        raise NotFoundException()
    if scope["type"] != ScopeType.HTTP or scope["method"] != "POST":
        raise MethodNotAllowedException(headers={"Allow": "POST"})
    glimpze: Services = scope["litestar_app"].state.glimpze
    start = time.perf_counter()
    try:
        await _answer(glimpze, scope, receive, send, parts[0], upload=len(parts) == 2)
    finally:
        glimpze.ingest.latency.observe(time.perf_counter() - start)


class _Sender(TypedDict):
    """What the ingest service is told of who sends, from the request's headers."""

    secret: str | None
    client: str
    content_type: str | None
    idempotency_key: str | None


async def _answer(glimpze: Services, scope: Scope, receive: Receive, send: Send, feed_id: str, *, upload: bool) -> None:
    headers = {name: value.decode("latin-1") for name, value in scope["headers"] if name in _WANTED}
    peer = scope.get("client")
    common: _Sender = {
        "secret": bearer_token(headers.get(b"authorization")),
        "client": client_ip(peer[0] if peer else None, headers.get(b"x-forwarded-for"), glimpze.trusted_proxies),
        "content_type": headers.get(b"content-type"),
        "idempotency_key": headers.get(b"idempotency-key"),
    }
    try:
        if upload:
            check_length(headers.get(b"content-length"), UPLOAD_MAX_BYTES)
            chunks = body_chunks(receive, UPLOAD_MAX_BYTES)
            outcome = await glimpze.ingest.upload(feed_id, chunks=chunks, **common)
        else:
            body = await read_body(receive, headers.get(b"content-length"), EVENT_MAX_BYTES)
            outcome = await glimpze.ingest.ingest(feed_id, body=body, **common)
    except GlimpzeError as exc:
        # Answered here rather than by the app's exception handlers: floods of 401s and 429s
        # must stay cheaper than accepted events (bench/throttle.py).
        await send_answer(send, exc.status, error_body(exc), exc.headers, _PROBLEM)
        return
    extra = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    await send_answer(send, outcome.status, outcome.body, {**outcome.headers, **extra}, _JSON)


async def send_answer(
    send: Send, status: int, body: bytes, headers: dict[str, str], content_type: list[tuple[bytes, bytes]]
) -> None:
    """Send a whole answer: its status, headers and body."""
    # Content-Length: without it uvicorn answers chunked, which costs more and trips simple clients.
    length = (b"content-length", str(len(body)).encode())
    raw = [*content_type, length, *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": raw}
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header (scheme case-insensitive)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def check_length(content_length: str | None, limit: int) -> None:
    """413 from the declared Content-Length, before anything is read."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        raise BadRequest(f"Content-Length {content_length!r} is not a number.") from None
    if declared > limit:
        raise PayloadTooLarge.over(limit)


async def body_chunks(receive: Receive, limit: int) -> AsyncIterator[bytes]:
    """The body as it arrives, refusing more than `limit` bytes in all."""
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise BadRequest("The client went away before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge.over(limit)
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def read_body(receive: Receive, content_length: str | None, limit: int) -> bytes:
    """The whole body, refusing more than `limit` bytes: from Content-Length before reading, else while reading."""
    check_length(content_length, limit)
    chunks = [chunk async for chunk in body_chunks(receive, limit)]
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
